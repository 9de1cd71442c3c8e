"""Agent state: frozen dataclasses of tensors with a leading ensemble axis ``[B, ...]``.

A model's state subclasses :class:`State` and declares each tensor with :func:`tensor_field`
(symbolic shape and dtype kind) and each piece of static metadata (box size, grid shape,
capacity) with :func:`static_field`. Steps never mutate a state; they return
``state.replace(field=new_tensor)``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch

S = TypeVar("S", bound="State")
T = TypeVar("T")

#: dtype kinds a field may declare instead of one exact dtype.
DTYPE_KINDS = {
    "float": lambda d: d.is_floating_point,
    "int": lambda d: not d.is_floating_point and not d.is_complex and d != torch.bool,
    "bool": lambda d: d == torch.bool,
    "complex": lambda d: d.is_complex,
}

#: symbol of the agent axis; fields with it at dim 1 are permuted together by `compact`.
AGENT_AXIS = "N"


class StateError(ValueError):
    """A state field has the wrong shape, dtype or device."""


def tensor_field(
    *shape: str | int,
    dtype: str | torch.dtype = "float",
    domain: tuple[float, float] | None = None,
) -> Any:
    """Declare a tensor field: ``shape`` gives symbolic dims ("B" first), ``dtype`` a kind or dtype,
    ``domain`` the inclusive range of valid values (e.g. ``(0, 2)`` for S/I/R codes), checked when
    a state is loaded from a checkpoint.

    Example: ``pos: torch.Tensor = tensor_field("B", "N", 2)``.
    """
    if not shape or shape[0] != "B":
        raise ValueError(
            f"a state tensor's shape must start with the ensemble axis 'B': {shape}. Per-agent "
            f"data shared by all members (ages, a contact graph) belongs in the model's data "
            f"(Model(data=...), read as ctx.data), not in the state"
        )
    if isinstance(dtype, str) and dtype not in DTYPE_KINDS:
        raise ValueError(f"unknown dtype kind {dtype!r}; valid: {sorted(DTYPE_KINDS)}")
    if domain is not None and not (len(domain) == 2 and domain[0] <= domain[1]):
        raise ValueError(f"domain must be (low, high) with low <= high, got {domain!r}")
    return dataclasses.field(metadata={"shape": tuple(shape), "dtype": dtype, "domain": domain})


def static_field(default: Any = dataclasses.MISSING) -> Any:
    """Declare static metadata (not a tensor): box size, grid shape, capacity.

    Tensors are refused here: read-only tensors shared by all members are model data.
    """
    return dataclasses.field(default=default, metadata={"static": True})


def _dtype_ok(dtype: torch.dtype, spec: str | torch.dtype) -> bool:
    return DTYPE_KINDS[spec](dtype) if isinstance(spec, str) else dtype == spec


def _per_class(fn: Callable[[type], T]) -> Callable[[type], T]:
    """``fn(cls)`` computed once per state class, kept in a plain dict. Not
    ``functools.cache``: ``torch.compile`` traces a dict lookup quietly but warns at every
    cache-wrapped call in a compiled step (and states are replaced and validated every step)."""
    table: dict[type, T] = {}

    @functools.wraps(fn)
    def lookup(cls: type) -> T:
        if cls not in table:
            table[cls] = fn(cls)
        return table[cls]

    return lookup


@_per_class
def _declared(cls: type) -> tuple[tuple[str, tuple, str | torch.dtype], ...]:
    """``(name, shape, dtype kind)`` of each tensor field of a state class, in field order
    (looked up once per class: states are validated at every step)."""
    return tuple(
        (f.name, f.metadata["shape"], f.metadata["dtype"])
        for f in dataclasses.fields(cls)
        if "shape" in f.metadata
    )


@_per_class
def _statics(cls: type) -> tuple[str, ...]:
    """The static fields of a state class."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("static"))


@_per_class
def _names(cls: type) -> dict[str, bool]:
    """Every field of a state class, each mapped to whether it is a tensor field."""
    return {f.name: "shape" in f.metadata for f in dataclasses.fields(cls)}


@_per_class
def _plain(cls: type) -> bool:
    """Whether a state class validates as :class:`State` does (no ``__post_init__`` of its
    own), so that a copy with alike tensors needs no new check."""
    return cls.__post_init__ is State.__post_init__


def _alike(new: Any, old: torch.Tensor) -> bool:
    """Whether ``new`` is a tensor of the same shape, dtype and device as ``old``."""
    return (
        isinstance(new, torch.Tensor)
        and new.shape == old.shape
        and new.dtype == old.dtype
        and new.device == old.device
    )


@dataclasses.dataclass(frozen=True)
class State:
    """Base of all model states. Subclasses are ``@dataclass(frozen=True)``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_dims", self.validate())

    @property
    def dims(self) -> dict[str, int]:
        """Sizes of the symbolic dims (``B``, ``N``, ...) as validated."""
        return self._dims

    # -- introspection -------------------------------------------------------------------
    @classmethod
    def tensor_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if "shape" in f.metadata)

    @classmethod
    def static_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("static"))

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensor fields by name."""
        return {name: getattr(self, name) for name in self.tensor_names()}

    def statics(self) -> dict[str, Any]:
        """The static metadata by name."""
        return {name: getattr(self, name) for name in self.static_names()}

    @property
    def members(self) -> int:
        """Ensemble size B."""
        return next(iter(self.tensors().values())).shape[0]

    @property
    def device(self) -> torch.device:
        return next(iter(self.tensors().values())).device

    # -- checks ----------------------------------------------------------------------------
    def validate(self) -> dict[str, int]:
        """Check every tensor field against its declaration; return the resolved dims.

        Raises:
            StateError: naming the field whose type, rank, size, dtype or device is wrong.
        """
        dims: dict[str, int] = {}
        origin: dict[str, str] = {}  # which field fixed each symbolic dim
        device = None
        cls = type(self).__name__
        for name in _statics(type(self)):
            if isinstance(getattr(self, name), torch.Tensor):
                raise StateError(
                    f"{cls}.{name}: a static field cannot hold a tensor; read-only tensors "
                    f"shared by all members are model data (Model(data=...), read as ctx.data)"
                )
        for name, spec, kind in _declared(type(self)):
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor):
                raise StateError(f"{cls}.{name}: expected a tensor, got {type(value).__name__}")
            shape = value.shape
            if len(shape) != len(spec):
                raise StateError(
                    f"{cls}.{name}: expected {len(spec)} dims {spec}, got shape {tuple(shape)}"
                )
            for axis, (sym, size) in enumerate(zip(spec, shape, strict=True)):
                if isinstance(sym, str):
                    origin.setdefault(sym, name)
                want = sym if isinstance(sym, int) else dims.setdefault(sym, size)
                if size != want:
                    where = "" if isinstance(sym, int) else f" as set by {cls}.{origin[sym]}"
                    raise StateError(
                        f"{cls}.{name}: dim {axis} ({sym}) is {size}, expected {want}{where} "
                        f"(shape {tuple(shape)}, declared {spec})"
                    )
            if not _dtype_ok(value.dtype, kind):
                raise StateError(f"{cls}.{name}: dtype {value.dtype} is not {kind}")
            if device is None:
                device, first = value.device, name
            elif value.device != device:
                raise StateError(
                    f"{cls}.{name}: on {value.device}, but {cls}.{first} is on {device}"
                )
        return dims

    def _repr_html_(self) -> str:
        from populace.engine.display import table, tensor_row

        rows = [tensor_row(n, t) for n, t in self.tensors().items()]
        rows += [[n, "static", "", "", repr(v)] for n, v in self.statics().items()]
        return table(
            rows, ["field", "shape", "dtype", "device", "range / value"], title=type(self).__name__
        )

    # -- functional updates ----------------------------------------------------------------
    def replace(self: S, **changes: Any) -> S:
        """A new state with some fields replaced (validated).

        A step's usual update, tensors replaced by tensors of the same shape, dtype and device,
        needs no new validation (the dims stay those validated): it is copied without one, the
        few microseconds that matter to a model of a hundred agents.
        """
        names = _names(type(self))
        unknown = set(changes) - names.keys()
        if unknown:
            raise StateError(
                f"{type(self).__name__} has no field(s) {sorted(unknown)}; valid: {list(names)}"
            )
        if _plain(type(self)) and all(
            names[k] and _alike(v, getattr(self, k)) for k, v in changes.items()
        ):
            out = object.__new__(type(self))
            out.__dict__.update(self.__dict__, **changes)
            return out
        return dataclasses.replace(self, **changes)

    def to(
        self: S, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> S:
        """Move tensors to ``device``; cast floating fields to ``dtype``."""
        moved = {}
        for name, t in self.tensors().items():
            moved[name] = t.to(
                device=device, dtype=dtype if (dtype and t.is_floating_point()) else None
            )
        return dataclasses.replace(self, **moved)

    def select(self: S, members: torch.Tensor | list[int] | slice) -> S:
        """The sub-ensemble of the given members (indexing the B axis of every field)."""
        return dataclasses.replace(self, **{n: t[members] for n, t in self.tensors().items()})

    def take_agents(self: S, index: torch.Tensor) -> S:
        """Reorder agents: gather every field with the agent axis at dim 1.

        Args:
            index: ``[B, N]`` int64, the new order of agents per member.
        """
        out = {}
        for f in dataclasses.fields(self):
            shape = f.metadata.get("shape")
            if shape and len(shape) > 1 and shape[1] == AGENT_AXIS:
                t = getattr(self, f.name)
                idx = index.view(*index.shape, *([1] * (t.dim() - 2))).expand(
                    *index.shape, *t.shape[2:]
                )
                out[f.name] = torch.gather(t, 1, idx)
        return dataclasses.replace(self, **out)


def state_dict(state: State) -> dict[str, Any]:
    """Plain dict (tensors + statics) for checkpoints."""
    return {"tensors": state.tensors(), "statics": state.statics()}


def check_domains(state: State, where: str = "") -> None:
    """Refuse values outside each field's declared ``domain`` (naming field and range)."""
    for f in dataclasses.fields(state):
        domain = f.metadata.get("domain")
        if domain is None:
            continue
        t = getattr(state, f.name)
        if t.numel() == 0:
            continue
        lo, hi = t.min().item(), t.max().item()
        if lo < domain[0] or hi > domain[1] or lo != lo or hi != hi:
            raise StateError(
                f"{where}{type(state).__name__}.{f.name}: values {lo:g}..{hi:g} outside the "
                f"declared domain [{domain[0]:g}, {domain[1]:g}]"
            )


def load_state_dict(template: S, data: Mapping[str, Any]) -> S:
    """Rebuild a state of ``template``'s class from :func:`state_dict` output (validated: fields,
    shapes, dtypes, statics and declared value domains)."""
    if set(data["tensors"]) != set(template.tensor_names()):
        raise StateError(
            f"checkpoint fields {sorted(data['tensors'])} do not match "
            f"{type(template).__name__} fields {sorted(template.tensor_names())}"
        )
    if data["statics"] != template.statics():
        raise StateError(
            f"checkpoint static metadata {data['statics']} differs from the model's "
            f"{template.statics()}"
        )
    tensors = {}
    for k, v in data["tensors"].items():
        if not isinstance(v, torch.Tensor):
            raise StateError(f"checkpoint field {k!r} is not a tensor ({type(v).__name__})")
        tensors[k] = v.to(template.device)
    state = dataclasses.replace(template, **tensors)
    if state.dims != template.dims:
        raise StateError(f"checkpoint dims {state.dims} differ from the model's {template.dims}")
    check_domains(state, "checkpoint: ")
    return state
