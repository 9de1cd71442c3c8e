"""Interventions: schedules on params, and rules triggered by a metric per ensemble member.

A counterfactual is just other params: ``SetParam("beta", 0.2, start=30)`` rewrites ``beta`` as
a :class:`~populace.engine.params.Schedule` that takes 0.2 from step 30 on; ``Ramp`` moves it
linearly over a window; a :class:`Trigger` switches a param per member while a metric is above a
threshold (with hysteresis), evaluated on the device with no host sync.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch

from populace.engine.params import ParamError, Params, Schedule


def _as_schedule(value: Any) -> Schedule:
    if isinstance(value, Schedule):
        return value
    return Schedule(torch.as_tensor(value, dtype=torch.get_default_dtype()).unsqueeze(0), (0,))


def _old(params: Params, name: str) -> Schedule:
    """The current value of param ``name`` as a schedule; unknown names raise."""
    if name not in params.names():
        raise ParamError(
            f"intervention on unknown parameter {name!r}; valid: {list(params.names())}"
        )
    return _as_schedule(getattr(params, name))


def _rewrite(params: Params, name: str, pieces: dict[int, Callable[[torch.Tensor], Any]]) -> Params:
    """Rewrite ``name`` as a schedule; ``pieces[start](old_value_at_start)`` gives new values.

    Breakpoints of the old schedule are kept; each new piece overrides from its start until the
    next new piece (a value of ``None`` returns to the old schedule).
    """
    old = _old(params, name)
    starts = sorted(set(old.starts) | set(pieces))
    values = []
    active = None  # the new piece in force
    for s in starts:
        if s in pieces:
            active = pieces[s]
        base = old.at(s)
        new = active(base) if active is not None else None
        values.append(base if new is None else torch.as_tensor(new, dtype=base.dtype))
    values = torch.stack(torch.broadcast_tensors(*values))
    return params.replace(**{name: Schedule(values, tuple(starts))})


@dataclasses.dataclass(frozen=True)
class SetParam:
    """From step ``start`` (until ``end``, exclusive, if given) the param takes ``value``."""

    name: str
    value: float | torch.Tensor
    start: int
    end: int | None = None

    def apply(self, params: Params) -> Params:
        if self.start < 0 or (self.end is not None and self.end <= self.start):
            raise ParamError(f"SetParam({self.name!r}): bad window [{self.start}, {self.end})")
        pieces: dict[int, Callable] = {self.start: lambda old: self.value}
        if self.end is not None:
            pieces[self.end] = lambda old: None
        return _rewrite(params, self.name, pieces)


@dataclasses.dataclass(frozen=True)
class ScaleParam:
    """From step ``start`` (until ``end``) the param is multiplied by ``factor``."""

    name: str
    factor: float | torch.Tensor
    start: int
    end: int | None = None

    def apply(self, params: Params) -> Params:
        if self.start < 0 or (self.end is not None and self.end <= self.start):
            raise ParamError(f"ScaleParam({self.name!r}): bad window [{self.start}, {self.end})")
        pieces: dict[int, Callable] = {}
        old = _old(params, self.name)
        # scale every piece of the old schedule that falls in the window
        window_starts = {self.start} | {s for s in old.starts if s > self.start}
        for s in window_starts:
            if self.end is None or s < self.end:
                pieces[s] = lambda base: base * self.factor
        if self.end is not None:
            pieces[self.end] = lambda base: None
        return _rewrite(params, self.name, pieces)


@dataclasses.dataclass(frozen=True)
class Ramp:
    """The param moves linearly from its value at ``start`` to ``to`` at ``end``, then stays."""

    name: str
    to: float
    start: int
    end: int

    def apply(self, params: Params) -> Params:
        if not 0 <= self.start < self.end:
            raise ParamError(f"Ramp({self.name!r}): need 0 <= start < end, got {self}")
        first = _old(params, self.name).at(self.start)
        span = self.end - self.start
        pieces: dict[int, Callable] = {}
        for s in range(self.start, self.end + 1):
            frac = (s - self.start) / span
            pieces[s] = lambda base, f=frac: first + f * (self.to - first)
        return _rewrite(params, self.name, pieces)


Intervention = SetParam | ScaleParam | Ramp


def apply_all(params: Params, interventions: tuple[Intervention, ...] | list) -> Params:
    """Apply interventions in order."""
    for item in interventions:
        params = item.apply(params)
    return params


@dataclasses.dataclass(frozen=True)
class Trigger:
    """Set ``name`` to ``value`` per member while ``metric`` is high (hysteresis).

    A member's rule turns on when ``metric(state, params) > on_above`` and off again when it
    falls below ``off_below`` (``off_below <= on_above``). Evaluated before each step on the device.

    Attributes:
        name: the param it acts on.
        value: the param's value while the rule is on.
        metric: ``(state, params) -> [B]``.
        on_above, off_below: thresholds.
        label: column name of the rule's on/off state in the recorded metrics.
        members: ``[B]`` bool mask of the members the rule applies to (None: all); set by studies.
    """

    name: str
    value: float
    metric: Callable[[Any, Params], torch.Tensor]
    on_above: float
    off_below: float
    label: str = "rule"
    members: torch.Tensor | None = None

    def __post_init__(self) -> None:
        for what in ("on_above", "off_below"):
            v = getattr(self, what)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ParamError(f"Trigger({self.name!r}): {what} must be finite, got {v!r}")
        if self.off_below > self.on_above:
            raise ParamError(
                f"Trigger({self.name!r}): off_below={self.off_below} > on_above={self.on_above}"
            )

    def update(self, on: torch.Tensor, state: Any, params: Params) -> torch.Tensor:
        """New ``[B]`` on/off flags from the metric of ``state``."""
        m = self.metric(state, params)
        on = torch.where(m > self.on_above, True, torch.where(m < self.off_below, False, on))
        return on if self.members is None else on & self.members.to(on.device)

    def apply(self, params: Params, on: torch.Tensor) -> Params:
        """Params with ``name`` replaced by ``value`` where ``on`` (shape becomes ``[B]``)."""
        if self.name not in params.names():
            raise ParamError(f"trigger on unknown parameter {self.name!r}; valid: {params.names()}")
        base = getattr(params, self.name)
        value = torch.as_tensor(self.value, dtype=base.dtype, device=base.device)
        return params.replace(**{self.name: torch.where(on, value, base)})
