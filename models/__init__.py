"""The model zoo. Each module defines ``NAME``, ``SUMMARY`` and ``build(agents, **options)``."""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

#: module names of the zoo, in listing order.
ZOO = (
    "sir",
    "network_sir",
    "metapop",
    "kuramoto",
    "ants",
    "physarum",
    "vicsek",
    "boids",
    "circles",
    "covid_nyc_seir",
    "schelling",
    "wolfsheep",
    "forestfire",
    "covid_behavior",
)


def module(name: str) -> ModuleType:
    """The zoo module of model ``name``; unknown names raise listing the valid ones."""
    if name not in ZOO:
        raise KeyError(f"unknown model {name!r}; valid: {', '.join(ZOO)}")
    return importlib.import_module(f"populace.models.{name}")


def options(name: str) -> tuple[str, ...]:
    """Build options of model ``name`` (keyword arguments of its ``build``)."""
    sig = inspect.signature(module(name).build)
    return tuple(
        p.name
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    )


def summaries() -> dict[str, str]:
    """Model name → one-line summary."""
    return {name: module(name).SUMMARY for name in ZOO}
