"""Param controls read from the declarations: a slider and a number box per scalar param (the
declared bounds are the slider's ends), a small table per one-axis param, read-only rows for the
rest (schedules, per-member values, two-axis tables).

A value outside the declared bounds is refused by :func:`checked` before it is sent to the run
(the slider cannot reach it; the number box shows the refusal).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

import torch

from populace.engine import Declaration, Model, ParamError, Params, Schedule
from populace.engine.display import describe_value


@dataclasses.dataclass(frozen=True)
class Control:
    """How one param is shown.

    Attributes:
        name: the param.
        decl: its declaration (bounds, unit, doc, axes).
        kind: ``"scalar"`` (slider + box), ``"axis"`` (a table, one box per label) or
            ``"fixed"`` (read-only: ``reason`` says why).
        value: a float (scalar), a list of floats (axis), or the value's description (fixed).
        low, high: the slider's ends: the declared bounds, or a range around the default where
            a bound is open (the box still takes any value within the declared bounds).
        step: the slider's step.
        labels: the axis' labels (axis).
        integer: the default is a whole number with whole bounds (slider steps by 1).
        reason: why a fixed param is not editable.
    """

    name: str
    decl: Declaration
    kind: str
    value: Any
    low: float = 0.0
    high: float = 1.0
    step: float = 0.01
    labels: tuple[str, ...] = ()
    integer: bool = False
    reason: str = ""


def controls(model: Model, params: Params | None = None) -> list[Control]:
    """One :class:`Control` per declared param of ``model`` (values from ``params``, default the
    model's)."""
    params = params if params is not None else model.params
    out = []
    for name, decl in params.declarations().items():
        out.append(_control(name, decl, getattr(params, name), model))
    return out


def _control(name: str, decl: Declaration, value: Any, model: Model) -> Control:
    if isinstance(value, Schedule):
        return Control(name, decl, "fixed", describe_value(value), reason="a schedule")
    t = torch.as_tensor(value, dtype=torch.float64).detach() if _numeric(value) else None
    if t is None:
        return Control(name, decl, "fixed", str(value), reason="not a number")
    if len(decl.axes) > 1:
        return Control(name, decl, "fixed", describe_value(value), reason="a table of 2+ axes")
    if t.dim() > len(decl.axes):
        return Control(name, decl, "fixed", describe_value(value), reason="set per member")
    low, high, step, integer = slider_range(decl, t)
    if not decl.axes:
        return Control(name, decl, "scalar", float(t), low, high, step, integer=integer)
    labels = tuple(str(v) for v in model.data.labels(decl.axes[0]))
    entries = t.expand(len(labels)) if t.dim() == 0 else t
    values = [float(v) for v in entries.tolist()]
    return Control(name, decl, "axis", values, low, high, step, labels, integer)


def _numeric(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, (numbers.Real, torch.Tensor))


def slider_range(decl: Declaration, value: torch.Tensor) -> tuple[float, float, float, bool]:
    """(low, high, step, integer) of a slider: the declared bounds where given, else a range
    that holds the current value with room on both sides."""
    v = value.double()
    vmin, vmax = float(v.min()), float(v.max())
    scale = max(abs(vmin), abs(vmax), 1e-9)
    low = decl.low if decl.low is not None else min(vmin - scale, 0.0)
    high = decl.high if decl.high is not None else max(4 * vmax, vmax + scale, low + 1.0)
    whole = all(float(x).is_integer() for x in (low, high)) and bool((v == v.round()).all())
    integer = whole and isinstance(decl.default, numbers.Integral) and high - low >= 2
    step = 1.0 if integer else _nice_step((high - low) / 200)
    return float(low), float(high), step, integer


def _nice_step(raw: float) -> float:
    """The largest of 1, 2, 5 × 10^k at most ``raw``."""
    if raw <= 0:
        return 1e-3
    power = 10.0 ** math.floor(math.log10(raw))
    for m in (5, 2, 1):
        if m * power <= raw:
            return m * power
    return power


def checked(decl: Declaration, name: str, value: Any) -> float | list[float]:
    """``value`` if it is a finite number (or list of them) within the declared bounds.

    Raises:
        ParamError: naming the param, its bounds and unit, and the value.
    """
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ParamError(f"parameter {name!r}: {v!r} is not a finite number")
        if (decl.low is not None and v < decl.low) or (decl.high is not None and v > decl.high):
            unit = f" ({decl.unit})" if decl.unit else ""
            raise ParamError(f"parameter {name!r} must lie in {decl.bounds_text()}{unit}, got {v}")
    return [float(v) for v in values] if isinstance(value, (list, tuple)) else float(value)
