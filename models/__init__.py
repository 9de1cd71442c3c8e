"""The model zoo. Each module defines ``NAME``, ``SUMMARY`` and ``build(agents, **options)``.

Anything that builds a :class:`~populace.engine.Model` runs like a zoo model: a zoo name
(``sir``), a function in a file (``path/to/my_model.py:build``) or in an importable module
(``package.module:build``). Its keyword arguments are its build options; every other ``--set``
name is a parameter of the model it returns.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import sys
from collections.abc import Callable
from pathlib import Path
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
    "boltzmann",
    "covid",
    "measles",
)


def module(name: str) -> ModuleType:
    """The zoo module of model ``name``; unknown names raise listing the valid ones."""
    if name not in ZOO:
        raise KeyError(f"unknown model {name!r}; valid: {', '.join(ZOO)}, or FILE.py:FUNCTION")
    return importlib.import_module(f"populace.models.{name}")


def builder(name: str) -> Callable:
    """The build function of a zoo name, ``file.py:function`` or ``package.module:function``.

    Raises:
        KeyError: an unknown zoo name, file, module or function (named).
    """
    if ":" not in name:
        return module(name).build
    where, _, func = name.rpartition(":")
    if not where or not func.isidentifier():
        raise KeyError(f"model {name!r}: expected FILE.py:FUNCTION or package.module:FUNCTION")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise KeyError(f"model {name!r}: no file {where}")
        mod_name = f"populace_user_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = mod  # dataclasses of the file resolve their module
        spec.loader.exec_module(mod)
    else:
        try:
            mod = importlib.import_module(where)
        except ModuleNotFoundError as err:
            raise KeyError(f"model {name!r}: cannot import {where!r} ({err})") from None
    fn = getattr(mod, func, None)
    if not callable(fn):
        raise KeyError(f"model {name!r}: {where} has no function {func!r}")
    return fn


def options(name: str) -> tuple[str, ...]:
    """Build options of model ``name`` (keyword arguments of its build function)."""
    sig = inspect.signature(builder(name))
    return tuple(
        p.name
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    )


def _accepts_none(annotation) -> bool:
    """Whether a (string, under ``from __future__ import annotations``) annotation admits None."""
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return "None" in text.replace(" ", "").split("|") or "Optional[" in text


def check_options(name: str, values: dict) -> None:
    """Refuse build options of model ``name`` that are unknown or of another kind than the default.

    An option whose default is a bool, int, float or str must get a value of that kind (an int
    is accepted for a float; floats must be finite), or None where its annotation allows None
    (``int | None``); options defaulting to None are checked by the model's ``build``.
    """
    params = inspect.signature(builder(name)).parameters
    valid = [k for k in options(name) if k != "agents"]
    for key, value in values.items():
        if key not in valid:
            raise KeyError(f"model {name!r} has no option {key!r}; options: {', '.join(valid)}")
        default = params[key].default
        if value is None and _accepts_none(params[key].annotation):
            continue  # ``--set initial_infected=None`` where the option is ``int | None``
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


def describe(name: str) -> str:
    """Text listing a model's build options (with defaults) and params (default, bounds, unit,
    axes, doc): the ``populace run MODEL --help`` epilogue. Zoo models read their ``PARAMS``
    class; other models are built with their defaults to find them."""
    fn = builder(name)
    sig = inspect.signature(fn)
    lines = [f"model {name}:", "  build options (--set NAME=VALUE):"]
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            default = "" if p.default is p.empty else f" = {p.default!r}"
            lines.append(f"    {p.name}{default}")
    cls = getattr(module(name), "PARAMS", None) if ":" not in name else None
    params = cls() if cls is not None else fn().params
    lines.append("  parameters (--set NAME=VALUE):")
    from populace.engine.display import describe_value

    for pname, decl in params.declarations().items():
        lines.append(f"    {pname} = {describe_value(getattr(params, pname))}  {decl.describe()}")
    return "\n".join(lines)


def summaries() -> dict[str, str]:
    """Model name → one-line summary."""
    return {name: module(name).SUMMARY for name in ZOO}
