"""Model parameters: dataclasses whose fields are numbers, tensors or schedules over time.

Any field may be a tensor with ``requires_grad=True`` (calibration) and any may be a
:class:`Schedule` (interventions, time-varying rates). A field's value is a scalar ``[]`` or a
per-member vector ``[B]``; steps broadcast it against agent tensors with :func:`member_view`.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Sequence
from typing import Any, TypeVar

import torch

P = TypeVar("P", bound="Params")


class ParamError(ValueError):
    """Unknown parameter name, bad value or bad schedule."""


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A piecewise-constant value over steps.

    ``values[k]`` holds for steps ``starts[k] <= step < starts[k+1]``; ``starts[0]`` must be 0.

    Attributes:
        values: ``[K]`` or ``[K, B]`` (one value per piece, optionally per member).
        starts: K increasing step indices.
    """

    values: torch.Tensor | Sequence[float]
    starts: tuple[int, ...]

    def __post_init__(self) -> None:
        values = self.values
        if not isinstance(values, torch.Tensor):
            values = torch.as_tensor(values, dtype=torch.get_default_dtype())
            object.__setattr__(self, "values", values)
        starts = tuple(int(s) for s in self.starts)
        object.__setattr__(self, "starts", starts)
        if values.dim() not in (1, 2) or values.shape[0] != len(starts):
            raise ParamError(
                f"Schedule: values of shape {tuple(values.shape)} need a first dim equal to the "
                f"{len(starts)} starts"
            )
        if (
            not starts
            or starts[0] != 0
            or any(b <= a for a, b in zip(starts, starts[1:], strict=False))
        ):
            raise ParamError(f"Schedule: starts must begin at 0 and increase, got {starts}")

    @classmethod
    def every(cls, values: torch.Tensor | Sequence[float], period: int) -> Schedule:
        """One value per ``period`` steps (e.g. weekly values with daily steps: period=7)."""
        if isinstance(period, bool) or not isinstance(period, int) or period < 1:
            raise ParamError(f"Schedule.every: period must be a positive integer, got {period!r}")
        n = len(values)
        return cls(values, tuple(range(0, n * period, period)))

    def at(self, step: int) -> torch.Tensor:
        """The value in force at ``step`` (``[]`` or ``[B]``), differentiable w.r.t. values."""
        return self.values[bisect.bisect_right(self.starts, step) - 1]

    def to(self, device: torch.device | str | None, dtype: torch.dtype | None) -> Schedule:
        return Schedule(self.values.to(device=device, dtype=dtype), self.starts)


def _as_tensor(name: str, value: Any, device, dtype) -> torch.Tensor | Schedule:
    if isinstance(value, Schedule):
        out = value.to(device, dtype)
        if not torch.isfinite(out.values.detach()).all():
            raise ParamError(f"parameter {name!r}: schedule has NaN/Inf values")
        return out
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        raise ParamError(
            f"parameter {name!r}: expected a number, tensor or Schedule, got {type(value).__name__}"
        )
    if isinstance(value, torch.Tensor):
        out = value.to(device=device, dtype=dtype if value.is_floating_point() else None)
        if out.dim() > 1:
            raise ParamError(f"parameter {name!r}: shape {tuple(out.shape)}; expected [] or [B]")
        if out.is_floating_point() and not torch.isfinite(out.detach()).all():
            raise ParamError(f"parameter {name!r}: NaN/Inf value {out}")
        return out
    if not math.isfinite(value):
        raise ParamError(f"parameter {name!r}: NaN/Inf value {value}")
    return torch.tensor(float(value), device=device, dtype=dtype)


@dataclasses.dataclass(frozen=True)
class Params:
    """Base of all model parameter sets. Subclasses are ``@dataclass(frozen=True)``."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self: P, **values: Any) -> P:
        """New params with some fields replaced; unknown names raise listing valid names."""
        unknown = sorted(set(values) - set(self.names()))
        if unknown:
            raise ParamError(
                f"unknown parameter(s) {unknown} for {type(self).__name__}; "
                f"valid: {list(self.names())}"
            )
        return dataclasses.replace(self, **values)

    def to(
        self: P, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> P:
        """Numbers become tensors on ``device``; floating tensors and schedules cast to ``dtype``.

        Tensors that require grad stay connected to their graph (``.to`` is differentiable).
        """
        dtype = dtype or torch.get_default_dtype()
        return dataclasses.replace(
            self, **{n: _as_tensor(n, getattr(self, n), device, dtype) for n in self.names()}
        )

    def at(self: P, step: int) -> P:
        """These params with every schedule resolved to its value at ``step``."""
        return dataclasses.replace(
            self,
            **{n: v.at(step) for n in self.names() if isinstance(v := getattr(self, n), Schedule)},
        )

    def check(self) -> None:
        """Model-specific validation of values (e.g. a probability <= 1); raise ParamError.

        Called by the simulation once the params are tensors; the default checks nothing.
        """

    def check_range(
        self,
        label: str,
        names: Sequence[str] | None = None,
        low: float = 0.0,
        high: float | None = None,
        what: str = "",
    ) -> None:
        """Raise :class:`ParamError` naming the first of ``names`` (default: every field) with a
        value, of any member or Schedule piece, below ``low`` or above ``high``.

        ``label`` names the model in the message; ``what`` says what the bound means
        (e.g. ``"a probability"``).
        """
        for name in self.names() if names is None else names:
            v = self.values(name)
            if (v < low).any() or (high is not None and (v > high).any()):
                bound = f"be >= {low:g}" if high is None else f"lie in [{low:g}, {high:g}]"
                note = f" ({what})" if what else ""
                raise ParamError(
                    f"{label} parameter {name!r} must {bound}{note}, got {getattr(self, name)}"
                )

    def values(self, name: str) -> torch.Tensor:
        """Every value a field takes: the tensor itself, or a schedule's ``values``."""
        v = getattr(self, name)
        return v.values if isinstance(v, Schedule) else torch.as_tensor(v)

    def requires_grad(self) -> bool:
        """Whether any field (or schedule) carries a gradient."""
        for n in self.names():
            v = getattr(self, n)
            t = v.values if isinstance(v, Schedule) else v
            if isinstance(t, torch.Tensor) and t.requires_grad:
                return True
        return False

    def _repr_html_(self) -> str:
        from populace.engine.display import describe_value, table

        rows = [[n, describe_value(getattr(self, n))] for n in self.names()]
        return table(rows, ["parameter", "value"], title=type(self).__name__)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly values: numbers, lists, or {"values", "starts"} for schedules."""
        out: dict[str, Any] = {}
        for n in self.names():
            v = getattr(self, n)
            if isinstance(v, Schedule):
                out[n] = {"values": v.values.detach().cpu().tolist(), "starts": list(v.starts)}
            elif isinstance(v, torch.Tensor):
                out[n] = v.detach().cpu().tolist()
            else:
                out[n] = v
        return out


def member_view(value: torch.Tensor, ndim: int) -> torch.Tensor:
    """Reshape a param value (``[]`` or ``[B]``) to broadcast against a ``[B, ...]`` tensor.

    Args:
        value: ``[]`` or ``[B]``.
        ndim: rank of the tensor it will combine with.

    Returns:
        ``[]`` or ``[B, 1, ..., 1]`` with ``ndim`` dims.
    """
    if value.dim() == 0:
        return value
    return value.reshape(value.shape[0], *([1] * (ndim - 1)))
