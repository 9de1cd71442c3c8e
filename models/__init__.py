"""The model zoo. Each module defines ``NAME``, ``SUMMARY`` and ``build(agents, **options)``."""

from __future__ import annotations

import importlib
import inspect
import math
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


def check_options(name: str, values: dict) -> None:
    """Refuse build options of model ``name`` that are unknown or of another kind than the default.

    An option whose default is a bool, int, float or str must get a value of that kind (an int
    is accepted for a float; floats must be finite); options defaulting to None are checked by
    the model's ``build``.
    """
    params = inspect.signature(module(name).build).parameters
    valid = [k for k in options(name) if k != "agents"]
    for key, value in values.items():
        if key not in valid:
            raise KeyError(f"model {name!r} has no option {key!r}; options: {', '.join(valid)}")
        default = params[key].default
        if isinstance(default, bool):
            kind, ok = "true or false", isinstance(value, bool)
        elif isinstance(default, int):
            kind, ok = "an integer", isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            kind = "a finite number"
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = ok and math.isfinite(value)
        elif isinstance(default, str):
            kind, ok = "a string", isinstance(value, str)
        else:
            continue
        if not ok:
            raise ValueError(f"{name}: option {key} must be {kind}, got {value!r}")


def summaries() -> dict[str, str]:
    """Model name → one-line summary."""
    return {name: module(name).SUMMARY for name in ZOO}
