"""Model parameters: declared fields whose values are numbers, tensors or schedules over time.

A model's params subclass :class:`Params` and declare each field with :func:`param` — its
default, bounds, unit, doc and optional named axes — like a state field. The declarations are
the one source that checks, HTML reprs, the CLI's ``--set`` help and calibration bounds read.

Any value may be a tensor with ``requires_grad=True`` (calibration) or a :class:`Schedule`
(interventions, time-varying rates). A param without axes takes ``[]`` or ``[B]`` (one value per
ensemble member); a param declared ``axes=("area",)`` takes ``[]`` (broadcast), ``[A]`` or
``[B, A]`` where A is the size of the model data's axis ``area``. Steps broadcast a plain value
against ``[B, ...]`` agent tensors with :func:`member_view` and gather an axis value to agents by
their codes with :func:`per_agent`.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import torch

P = TypeVar("P", bound="Params")


class ParamError(ValueError):
    """Unknown parameter name, bad value or bad schedule."""


@dataclasses.dataclass(frozen=True)
class Declaration:
    """What a param is: default, inclusive bounds (None: unbounded), unit, doc, named axes."""

    default: Any
    low: float | None = None
    high: float | None = None
    unit: str = ""
    doc: str = ""
    axes: tuple[str, ...] = ()

    def bounds_text(self) -> str:
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        return f"[{lo}, {hi}]"

    def describe(self) -> str:
        """One line: bounds, unit, axes, doc (for CLI help and tables)."""
        parts = [self.bounds_text()]
        if self.unit:
            parts.append(self.unit)
        if self.axes:
            parts.append(f"per {' x '.join(self.axes)}")
        text = ", ".join(parts)
        return f"{text} — {self.doc}" if self.doc else text


def param(
    default: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    unit: str = "",
    doc: str = "",
    axes: Sequence[str] = (),
) -> Any:
    """Declare a param field: ``beta: Value = param(0.5, low=0, unit="1/day", doc="...")``.

    Args:
        default: a number, tensor or :class:`Schedule`.
        low, high: inclusive bounds checked before every run (None: unbounded).
        unit: e.g. ``"1/day"``, ``"probability/step"``, ``"days"``.
        doc: one line on what it is.
        axes: names of model-data axes the value runs along (``("area",)``, ``("age", "age")``).
    """
    for bound in (low, high):
        if bound is not None and not (isinstance(bound, numbers.Real) and math.isfinite(bound)):
            raise ParamError(f"param bounds must be finite numbers or None, got {bound!r}")
    if low is not None and high is not None and low > high:
        raise ParamError(f"param bounds: low={low} > high={high}")
    decl = Declaration(default, low, high, unit, doc, tuple(axes))
    return dataclasses.field(default=default, metadata={"param": decl})


#: a param's value: a number, a tensor or a schedule.
Value = float | torch.Tensor | Any


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A piecewise-constant value over steps.

    ``values[k]`` holds for steps ``starts[k] <= step < starts[k+1]``; ``starts[0]`` must be 0.

    Attributes:
        values: ``[K, ...]``: one value per piece, each shaped as the param's value
            (``[]``, ``[B]``, ``[A]`` or ``[B, A]``).
        starts: K increasing integer step indices, the first 0.
    """

    values: torch.Tensor | Sequence[float]
    starts: tuple[int, ...]

    def __post_init__(self) -> None:
        values = self.values
        if not isinstance(values, torch.Tensor):
            try:
                values = torch.as_tensor(values, dtype=torch.get_default_dtype())
            except (TypeError, ValueError, RuntimeError) as err:
                raise ParamError(f"Schedule: values are not numbers: {err}") from None
            object.__setattr__(self, "values", values)
        starts = []
        for s in self.starts:
            if isinstance(s, bool) or not isinstance(s, numbers.Integral):
                if not (isinstance(s, numbers.Real) and float(s).is_integer()):
                    raise ParamError(f"Schedule: starts must be integers, got {s!r}")
            starts.append(int(s))
        starts = tuple(starts)
        object.__setattr__(self, "starts", starts)
        if values.dim() < 1 or values.shape[0] != len(starts):
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
        """The value in force at ``step`` (>= 0), differentiable w.r.t. values."""
        if step < 0:
            raise ParamError(f"Schedule.at: step must be >= 0, got {step}")
        return self.values[bisect.bisect_right(self.starts, step) - 1]

    def to(self, device: torch.device | str | None, dtype: torch.dtype | None) -> Schedule:
        cast = dtype if self.values.is_floating_point() else None
        return Schedule(self.values.to(device=device, dtype=cast), self.starts)


def _canonical(name: str, value: torch.Tensor, axes: tuple[str, ...], sizes, lead: int):
    """Check a value's shape against its axes: ``[]``/``[B]`` without axes; ``[]`` (expanded to
    ``[*A]`` when sizes are known), ``[*A]`` or ``[B, *A]`` with axes. ``lead`` leading dims
    (a schedule's pieces) are kept."""
    shape = tuple(value.shape[lead:])
    k = len(axes)
    if not k:
        if len(shape) > 1:
            raise ParamError(
                f"parameter {name!r}: shape {tuple(value.shape)}; expected [] or [B] per piece"
                if lead
                else f"parameter {name!r}: shape {shape}; expected [] or [B]"
            )
        return value
    want = None
    if sizes is not None:
        missing = [a for a in axes if a not in sizes]
        if missing:
            raise ParamError(
                f"parameter {name!r} runs along axis {missing[0]!r}, which the model's data does "
                f"not define; model axes: {sorted(sizes)}"
            )
        want = tuple(sizes[a] for a in axes)
    if len(shape) == 0:
        return (
            value
            if want is None
            else value.reshape(value.shape[:lead] + (1,) * k).expand(*value.shape[:lead], *want)
        )
    if len(shape) not in (k, k + 1):
        raise ParamError(
            f"parameter {name!r}: shape {shape}; expected [], {list(axes)} or ['B', *{list(axes)}]"
        )
    if want is not None and shape[-k:] != want:
        raise ParamError(
            f"parameter {name!r}: trailing shape {shape[-k:]} does not match its axes "
            f"{dict(zip(axes, want, strict=True))}"
        )
    return value


def _as_tensor(
    name: str,
    value: Any,
    device,
    dtype,
    axes: tuple[str, ...] = (),
    sizes: Mapping[str, int] | None = None,
) -> torch.Tensor | Schedule:
    """A param value as a tensor (or schedule) on ``device``, finite in ``dtype``."""
    if isinstance(value, Schedule):
        out = value.to(device, dtype)
        if not torch.isfinite(out.values.detach()).all():
            raise ParamError(
                f"parameter {name!r}: schedule has NaN/Inf values in {str(dtype).split('.')[-1]}"
            )
        return Schedule(_canonical(name, out.values, axes, sizes, lead=1), out.starts)
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, torch.Tensor)):
        raise ParamError(
            f"parameter {name!r}: expected a number, tensor or Schedule, got {type(value).__name__}"
        )
    if isinstance(value, torch.Tensor):
        out = value.to(device=device, dtype=dtype if value.is_floating_point() else None)
        if out.dtype == torch.bool or out.is_complex():
            raise ParamError(f"parameter {name!r}: dtype {out.dtype} is not a number type")
        if out.is_floating_point() and not torch.isfinite(out.detach()).all():
            raise ParamError(
                f"parameter {name!r}: NaN/Inf value {value} in {str(out.dtype).split('.')[-1]}"
            )
        return _canonical(name, out, axes, sizes, lead=0)
    out = torch.tensor(float(value), device=device, dtype=dtype)
    if not torch.isfinite(out):
        raise ParamError(
            f"parameter {name!r}: NaN/Inf value {value} in {str(dtype).split('.')[-1]}"
        )
    return _canonical(name, out, axes, sizes, lead=0)


@dataclasses.dataclass(frozen=True)
class Params:
    """Base of all model parameter sets. Subclasses are ``@dataclass(frozen=True)``."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def declarations(cls) -> dict[str, Declaration]:
        """name → :class:`Declaration` (a field declared without :func:`param` is unbounded)."""
        out = {}
        for f in dataclasses.fields(cls):
            decl = f.metadata.get("param")
            out[f.name] = decl if decl is not None else Declaration(f.default)
        return out

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
        self: P,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        axes: Mapping[str, int] | None = None,
    ) -> P:
        """Numbers become tensors on ``device``; floating tensors and schedules cast to ``dtype``
        and checked finite there; axis params checked against ``axes`` (name → size) and a
        scalar value expanded along them.

        Tensors that require grad stay connected to their graph (``.to`` is differentiable).
        """
        dtype = dtype or torch.get_default_dtype()
        decls = self.declarations()
        return dataclasses.replace(
            self,
            **{
                n: _as_tensor(n, getattr(self, n), device, dtype, decls[n].axes, axes)
                for n in self.names()
            },
        )

    def at(self: P, step: int) -> P:
        """These params with every schedule resolved to its value at ``step`` (themselves when
        none is a schedule)."""
        resolved = {
            n: v.at(step) for n in self.names() if isinstance(v := getattr(self, n), Schedule)
        }
        return dataclasses.replace(self, **resolved) if resolved else self

    def validate(self, label: str = "") -> None:
        """Check every value against its declared bounds, then :meth:`check`.

        Raises:
            ParamError: naming the model (``label``), the param, its bounds and the value.
        """
        for name, decl in self.declarations().items():
            if decl.low is None and decl.high is None:
                continue
            v = self.values(name)
            if (decl.low is not None and (v < decl.low).any()) or (
                decl.high is not None and (v > decl.high).any()
            ):
                unit = f" ({decl.unit})" if decl.unit else ""
                who = f"{label} parameter" if label else "parameter"
                raise ParamError(
                    f"{who} {name!r} must lie in {decl.bounds_text()}{unit}, got "
                    f"{_short(getattr(self, name))}"
                )
        self.check()

    def check(self) -> None:
        """Model-specific checks across params (e.g. ``gamma * dt <= 1``); raise ParamError.

        Bounds of single params belong in their declarations, not here.
        """

    def values(self, name: str) -> torch.Tensor:
        """Every value a field takes: the tensor itself, or a schedule's ``values``."""
        v = getattr(self, name)
        return v.values if isinstance(v, Schedule) else torch.as_tensor(v)

    def members(self) -> dict[str, int]:
        """name → ensemble size B of each param given per member (after :meth:`to`)."""
        out = {}
        for name, decl in self.declarations().items():
            v = getattr(self, name)
            t, lead = (v.values, 1) if isinstance(v, Schedule) else (v, 0)
            if isinstance(t, torch.Tensor) and t.dim() - lead == len(decl.axes) + 1:
                out[name] = int(t.shape[lead])
        return out

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

        rows = [
            [
                n,
                describe_value(getattr(self, n)),
                d.bounds_text(),
                d.unit,
                " x ".join(d.axes),
                d.doc,
            ]
            for n, d in self.declarations().items()
        ]
        return table(
            rows,
            ["parameter", "value", "bounds", "unit", "axes", "what"],
            title=type(self).__name__,
        )

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


def _short(value: Any) -> str:
    if isinstance(value, Schedule):
        return f"schedule {value.values.detach().cpu().tolist()} from {list(value.starts)}"
    if isinstance(value, torch.Tensor):
        return str(value.detach().cpu().tolist())
    return repr(value)


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


def per_agent(value: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Gather a one-axis param value to agents by their codes on that axis.

    Args:
        value: ``[A]`` or ``[B, A]`` (as :meth:`Params.to` makes an axis param).
        codes: ``[N]`` integer codes into the axis.

    Returns:
        ``[N]`` or ``[B, N]``: broadcasts against ``[B, N]`` agent tensors. Differentiable.
    """
    if value.dim() not in (1, 2):
        raise ParamError(f"per_agent: expected an [A] or [B, A] value, got {tuple(value.shape)}")
    return value[..., codes]
