"""Interventions: schedules on params, and rules triggered by a metric per ensemble member.

A counterfactual is just other params: ``SetParam("beta", 0.2, start=30)`` rewrites ``beta`` as
a :class:`~populace.engine.params.Schedule` that takes 0.2 from step 30 on; ``Ramp`` moves it
linearly over a window; a :class:`Trigger` switches a param per member while a metric is above a
threshold (with hysteresis), evaluated on the device with no host sync.

Every intervention may target part of an axis param: ``where={"borough": "BX"}`` (labels or
codes, one or several) changes only those entries, e.g. ``SetParam("school", 0.0, start=20,
where={"borough": "BX"})`` closes the Bronx's schools when ``school`` is declared
``axes=("borough",)``. A Trigger with ``axis="borough"`` reads a per-borough metric (``[B, A]``)
and switches each borough's entry on its own prevalence.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from populace.engine.data import EMPTY, Data
from populace.engine.params import ParamError, Params, Schedule, _as_tensor

#: ``{axis: label | code | [labels or codes]}``.
Where = Mapping[str, Any]


def _decl_axes(params: Params, name: str, what: str) -> tuple[str, ...]:
    if name not in params.names():
        raise ParamError(f"{what} on unknown parameter {name!r}; valid: {list(params.names())}")
    return params.declarations()[name].axes


def selection_mask(
    params: Params, name: str, where: Where | None, data: Data, what: str
) -> torch.Tensor | None:
    """``[*A]`` bool mask of the entries of axis param ``name`` that ``where`` selects (None:
    all). Unknown axes, labels and codes raise naming the valid ones."""
    if not where:
        return None
    axes = _decl_axes(params, name, what)
    if not axes:
        raise ParamError(
            f"{what} on {name!r} with where={dict(where)}: {name!r} has no axes (declare it "
            f"with param(..., axes=(...)) to target part of it)"
        )
    sizes = data.axis_sizes()
    mask = torch.ones(*(sizes[a] for a in axes), dtype=torch.bool)
    for axis, select in where.items():
        if axis not in axes:
            raise ParamError(
                f"{what} on {name!r}: where= names axis {axis!r}; {name!r} runs along {list(axes)}"
            )
        if axes.count(axis) > 1:
            raise ParamError(f"{what} on {name!r}: axis {axis!r} repeats; where= is ambiguous")
        dim = axes.index(axis)
        keep = torch.zeros(sizes[axis], dtype=torch.bool)
        try:
            keep[data.codes(axis, select)] = True
        except ValueError as err:
            raise ParamError(f"{what} on {name!r}: {err}") from None
        shape = [1] * len(axes)
        shape[dim] = sizes[axis]
        mask = mask & keep.view(shape)
    return mask


def _old(params: Params, name: str, data: Data, what: str) -> Schedule:
    """The current value of param ``name`` as a schedule, shaped along its axes."""
    axes = _decl_axes(params, name, what)
    value = _as_tensor(name, getattr(params, name), None, None, axes, data.axis_sizes())
    if isinstance(value, Schedule):
        return value
    return Schedule(value.unsqueeze(0), (0,))


def _rewrite(
    params: Params,
    name: str,
    pieces: dict[int, Callable[[torch.Tensor], Any]],
    data: Data,
    where: Where | None,
    what: str,
) -> Params:
    """Rewrite ``name`` as a schedule; ``pieces[start](old_value_at_start)`` gives new values.

    Breakpoints of the old schedule are kept; each new piece overrides from its start until the
    next new piece (a value of ``None`` returns to the old schedule). With ``where``, only the
    selected entries of the axis param change.
    """
    old = _old(params, name, data, what)
    mask = selection_mask(params, name, where, data, what)
    starts = sorted(set(old.starts) | set(pieces))
    values = []
    active = None  # the new piece in force
    for s in starts:
        if s in pieces:
            active = pieces[s]
        base = old.at(s)
        new = active(base) if active is not None else None
        if new is None:
            values.append(base)
            continue
        new = torch.as_tensor(new, dtype=base.dtype)
        if mask is not None:
            new = torch.where(mask, new, base)
        values.append(new)
    values = torch.stack(torch.broadcast_tensors(*values))
    return params.replace(**{name: Schedule(values, tuple(starts))})


def _window(what: str, start: int, end: int | None) -> None:
    ok = isinstance(start, int) and not isinstance(start, bool) and start >= 0
    ok = ok and (
        end is None or (isinstance(end, int) and not isinstance(end, bool) and end > start)
    )
    if not ok:
        raise ParamError(f"{what}: bad window [{start}, {end})")


@dataclasses.dataclass(frozen=True)
class SetParam:
    """From step ``start`` (until ``end``, exclusive, if given) the param takes ``value``
    (only the entries ``where`` selects, for an axis param)."""

    name: str
    value: float | torch.Tensor
    start: int
    end: int | None = None
    where: Where | None = None

    def apply(self, params: Params, data: Data = EMPTY) -> Params:
        what = f"SetParam({self.name!r})"
        _window(what, self.start, self.end)
        pieces: dict[int, Callable] = {self.start: lambda old: self.value}
        if self.end is not None:
            pieces[self.end] = lambda old: None
        return _rewrite(params, self.name, pieces, data, self.where, what)


@dataclasses.dataclass(frozen=True)
class ScaleParam:
    """From step ``start`` (until ``end``) the param is multiplied by ``factor`` (only the
    entries ``where`` selects, for an axis param)."""

    name: str
    factor: float | torch.Tensor
    start: int
    end: int | None = None
    where: Where | None = None

    def apply(self, params: Params, data: Data = EMPTY) -> Params:
        what = f"ScaleParam({self.name!r})"
        _window(what, self.start, self.end)
        pieces: dict[int, Callable] = {}
        old = _old(params, self.name, data, what)
        # scale every piece of the old schedule that falls in the window
        window_starts = {self.start} | {s for s in old.starts if s > self.start}
        for s in window_starts:
            if self.end is None or s < self.end:
                pieces[s] = lambda base: base * self.factor
        if self.end is not None:
            pieces[self.end] = lambda base: None
        return _rewrite(params, self.name, pieces, data, self.where, what)


@dataclasses.dataclass(frozen=True)
class Ramp:
    """The param moves linearly from its value at ``start`` to ``to`` at ``end``, then stays
    (only the entries ``where`` selects, for an axis param)."""

    name: str
    to: float
    start: int
    end: int
    where: Where | None = None

    def apply(self, params: Params, data: Data = EMPTY) -> Params:
        what = f"Ramp({self.name!r})"
        _window(what, self.start, self.end)
        first = _old(params, self.name, data, what).at(self.start)
        span = self.end - self.start
        pieces: dict[int, Callable] = {}
        for s in range(self.start, self.end + 1):
            frac = (s - self.start) / span
            pieces[s] = lambda base, f=frac: first + f * (self.to - first)
        return _rewrite(params, self.name, pieces, data, self.where, what)


Intervention = SetParam | ScaleParam | Ramp


def apply_all(params: Params, interventions: Sequence[Intervention], data: Data = EMPTY) -> Params:
    """Apply interventions in order (``data``: the model's, for ``where=`` and axis params)."""
    for item in interventions:
        params = item.apply(params, data)
    return params


@dataclasses.dataclass(frozen=True)
class Trigger:
    """Set ``name`` to ``value`` per member while ``metric`` is high (hysteresis).

    A member's rule turns on when ``metric(state, params, ctx) > on_above`` and off again when
    it falls below ``off_below`` (``off_below <= on_above``). Evaluated before each step on the
    device.

    Attributes:
        name: the param it acts on.
        value: the param's value while the rule is on.
        metric: ``(state, params, ctx) -> [B]``, or ``[B, A]`` with ``axis``.
        on_above, off_below: thresholds.
        label: column name of the rule's on/off state in the recorded metrics (with ``axis``,
            one column ``<label>_<axis label>`` per entry).
        members: ``[B]`` bool mask of the members the rule applies to (None: all); set by studies.
        where: for an axis param, the entries the rule may switch (None: all).
        axis: the rule is per entry of this axis: ``metric`` returns ``[B, A]`` and entry a of
            the param switches on its own metric value (the param must run along ``axis``).
    """

    name: str
    value: float
    metric: Callable[..., torch.Tensor]
    on_above: float
    off_below: float
    label: str = "rule"
    members: torch.Tensor | None = None
    where: Where | None = None
    axis: str | None = None

    def __post_init__(self) -> None:
        for what in ("on_above", "off_below"):
            v = getattr(self, what)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ParamError(f"Trigger({self.name!r}): {what} must be finite, got {v!r}")
        if self.off_below > self.on_above:
            raise ParamError(
                f"Trigger({self.name!r}): off_below={self.off_below} > on_above={self.on_above}"
            )

    def initial(self, members: int, params: Params, data: Data, device) -> torch.Tensor:
        """All-off flags: ``[B]``, or ``[B, A]`` with ``axis``; checks names and axes."""
        axes = _decl_axes(params, self.name, "trigger")
        if self.axis is None:
            return torch.zeros(members, dtype=torch.bool, device=device)
        if axes != (self.axis,):
            raise ParamError(
                f"Trigger({self.name!r}, axis={self.axis!r}): the param must run along exactly "
                f"that axis; it runs along {list(axes)}"
            )
        size = len(data.labels(self.axis))
        return torch.zeros(members, size, dtype=torch.bool, device=device)

    def update(self, on: torch.Tensor, state: Any, params: Params, ctx: Any) -> torch.Tensor:
        """New on/off flags (shaped as ``on``) from the metric of ``state``."""
        m = self.metric(state, params, ctx)
        if not isinstance(m, torch.Tensor) or m.shape != on.shape:
            got = tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__
            raise ParamError(
                f"Trigger({self.name!r}) {self.label!r}: metric returned {got}, expected "
                f"{list(on.shape)} at step {ctx.step}"
            )
        on = torch.where(m > self.on_above, True, torch.where(m < self.off_below, False, on))
        if self.members is None:
            return on
        keep = self.members.to(on.device)
        return on & (keep if on.dim() == 1 else keep.unsqueeze(1))

    def apply(self, params: Params, on: torch.Tensor, data: Data = EMPTY) -> Params:
        """Params with ``name`` replaced by ``value`` where ``on`` (and ``where``): the value
        becomes per member, ``[B]`` or ``[B, *A]``."""
        base = getattr(params, self.name)
        axes = _decl_axes(params, self.name, "trigger")
        value = torch.as_tensor(self.value, dtype=base.dtype, device=base.device)
        cond = on if on.dim() > 1 else on.view(on.shape[0], *([1] * len(axes)))
        mask = selection_mask(params, self.name, self.where, data, "trigger")
        if mask is not None:
            cond = cond & mask.to(cond.device)
        return params.replace(**{self.name: torch.where(cond, value, base)})

    def columns(self, data: Data) -> list[str]:
        """Recorded column names of this rule's flags."""
        if self.axis is None:
            return [self.label]
        return [f"{self.label}_{lab}" for lab in data.labels(self.axis)]

    def record(self, on: torch.Tensor, data: Data) -> dict[str, torch.Tensor]:
        """Column → ``[B]`` flags."""
        if on.dim() == 1:
            return {self.label: on}
        return {c: on[:, k] for k, c in enumerate(self.columns(data))}
