"""Model data: read-only tensors a model carries beside its state, shared by every member.

Per-agent attributes (``age: [N]``), contact layers (sparse CSR ``[N, N]``), lookup tables and
the labels of named axes live here, not in the state: they are moved to the run device once,
never copied per ensemble member, reached from steps and metrics as ``ctx.data.<name>``, shown
in the model's HTML repr, and checkpointed by content digest (a resume with other data is
refused, naming the tensor).

An *axis* is a named list of labels (``"borough": ("BX", "BK", ...)``). A tensor named like an
axis holds each agent's code into those labels (``data.borough: [N]`` int), which is what
per-axis params, targeted interventions and per-axis metrics use.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch


class DataError(ValueError):
    """Model data is malformed (bad codes, unknown name) or differs from a checkpoint's."""


def tensor_digest(t: torch.Tensor) -> str:
    """sha256 of a tensor's layout, dtype, shape and values (dense or sparse CSR/COO)."""
    h = hashlib.sha256()
    h.update(f"{t.layout}|{t.dtype}|{tuple(t.shape)}".encode())
    if t.layout == torch.sparse_csr:
        parts = [t.crow_indices(), t.col_indices(), t.values()]
    elif t.layout == torch.sparse_coo:
        t = t.coalesce()
        parts = [t.indices(), t.values()]
    else:
        parts = [t]
    for p in parts:
        p = p.detach().cpu().contiguous()
        h.update(p.view(torch.uint8).numpy() if p.numel() else b"")  # its buffer, not a copy
    return h.hexdigest()


class Data(Mapping[str, torch.Tensor]):
    """Named read-only tensors plus the labels of named axes.

    Args:
        tensors: name → tensor (dense, or sparse CSR/COO). No leading ensemble axis.
        axes: axis name → labels. A tensor with an axis's name must be integer codes into its
            labels (checked).

    Example::

        Data({"age": age_codes, "household": csr}, axes={"age": ("0-17", "18-64", "65+")})
    """

    def __init__(
        self,
        tensors: Mapping[str, torch.Tensor] | None = None,
        axes: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        tensors = dict(tensors or {})
        axes = {name: tuple(str(x) for x in labels) for name, labels in (axes or {}).items()}
        for name, t in tensors.items():
            if not name.isidentifier():
                raise DataError(f"model data name {name!r} must be an identifier")
            if not isinstance(t, torch.Tensor):
                raise DataError(f"model data {name!r}: expected a tensor, got {type(t).__name__}")
        for name, labels in axes.items():
            if not labels:
                raise DataError(f"axis {name!r} has no labels")
            if len(set(labels)) != len(labels):
                raise DataError(f"axis {name!r} has repeated labels: {labels}")
            codes = tensors.get(name)
            if codes is None:
                continue
            if (
                codes.is_floating_point()
                or codes.dtype == torch.bool
                or codes.layout != torch.strided
            ):
                raise DataError(
                    f"model data {name!r} names an axis, so it must hold dense integer codes, "
                    f"got {codes.dtype} {codes.layout}"
                )
            if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= len(labels)):
                raise DataError(
                    f"model data {name!r}: codes {int(codes.min())}..{int(codes.max())} outside "
                    f"0..{len(labels) - 1} of axis {name!r}"
                )
        self._tensors = tensors
        self.axes: dict[str, tuple[str, ...]] = axes
        self._digests: dict[str, str] | None = None

    # -- mapping -----------------------------------------------------------------------------
    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            return self._tensors[name]
        except KeyError:
            raise KeyError(f"no model data {name!r}; valid: {sorted(self._tensors)}") from None

    def __getattr__(self, name: str) -> torch.Tensor:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._tensors[name]
        except KeyError:
            raise AttributeError(
                f"no model data {name!r}; valid: {sorted(self._tensors)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    # identity semantics: tensors have no truth value, so two Data are equal only if the same
    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        shapes = {k: tuple(v.shape) for k, v in self._tensors.items()}
        return f"Data({shapes}, axes={ {k: len(v) for k, v in self.axes.items()} })"

    # -- axes ----------------------------------------------------------------------------------
    def axis_sizes(self) -> dict[str, int]:
        return {name: len(labels) for name, labels in self.axes.items()}

    def labels(self, axis: str) -> tuple[str, ...]:
        if axis not in self.axes:
            raise DataError(f"unknown axis {axis!r}; model axes: {sorted(self.axes)}")
        return self.axes[axis]

    def codes(self, axis: str, select: Any) -> list[int]:
        """Codes of ``select`` on ``axis``: a label, a code, or a sequence of them.

        Raises:
            DataError: naming an unknown label (with the valid ones) or a code out of range.
        """
        labels = self.labels(axis)
        items = [select] if isinstance(select, (str, int)) else list(select)
        out = []
        for item in items:
            if isinstance(item, bool):
                raise DataError(f"axis {axis!r}: {item!r} is neither a label nor a code")
            if isinstance(item, str):
                if item not in labels:
                    raise DataError(
                        f"axis {axis!r} has no label {item!r}; valid: {', '.join(labels)}"
                    )
                out.append(labels.index(item))
            elif isinstance(item, int) and 0 <= item < len(labels):
                out.append(item)
            else:
                raise DataError(f"axis {axis!r}: code {item!r} outside 0..{len(labels) - 1}")
        if not out:
            raise DataError(f"axis {axis!r}: empty selection")
        return out

    # -- device, digests -------------------------------------------------------------------------
    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Data:
        """A copy on ``device`` (floating tensors cast to ``dtype``); same axes and digests."""
        moved = {}
        for name, t in self._tensors.items():
            cast = dtype if (dtype is not None and t.is_floating_point()) else None
            moved[name] = t.to(device=device, dtype=cast)
        out = Data(moved, self.axes)
        out._digests = self.digests()
        return out

    def digests(self) -> dict[str, str]:
        """name → :func:`tensor_digest` of the data as built (computed once)."""
        if self._digests is None:
            self._digests = {name: tensor_digest(t) for name, t in self._tensors.items()}
        return self._digests

    def check_digests(self, saved: Mapping[str, str], where: str) -> None:
        """Refuse data that differs from ``saved`` digests, naming the tensors."""
        mine = self.digests()
        missing = sorted(set(saved) - set(mine))
        extra = sorted(set(mine) - set(saved))
        changed = sorted(n for n in set(saved) & set(mine) if saved[n] != mine[n])
        if missing or extra or changed:
            parts = []
            if changed:
                parts.append(f"different values in {changed}")
            if missing:
                parts.append(f"missing {missing}")
            if extra:
                parts.append(f"not in the checkpoint: {extra}")
            raise DataError(
                f"{where}: the model's data differs from the checkpoint's: " + "; ".join(parts)
            )

    def rows(self) -> list[list[str]]:
        """Rows for an HTML table: name, shape, dtype, layout, size."""
        out = []
        for name, t in self._tensors.items():
            layout = "csr" if t.layout == torch.sparse_csr else str(t.layout).split(".")[-1]
            if t.layout == torch.sparse_csr:
                size = f"{t.values().numel():,} entries"
            else:
                size = f"{t.numel():,} values"
            axis = f" (codes of axis {name!r})" if name in self.axes else ""
            out.append(
                [
                    name,
                    str(tuple(t.shape)),
                    str(t.dtype).removeprefix("torch."),
                    layout,
                    size + axis,
                ]
            )
        for name, labels in self.axes.items():
            shown = ", ".join(labels[:6]) + (", …" if len(labels) > 6 else "")
            out.append([f"axis {name}", f"({len(labels)},)", "labels", "", shown])
        return out


EMPTY = Data()
