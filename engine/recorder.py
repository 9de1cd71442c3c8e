"""Metric recording: ``[B]`` tensors each recorded step, copied to host in chunks."""

from __future__ import annotations

import polars as pl
import torch


def _kind(v: torch.Tensor) -> str:
    return "bool" if v.dtype == torch.bool else "float" if v.is_floating_point() else "int"


class Recorder:
    """Collects metrics on the device and copies them to host every ``chunk`` records.

    Copying once per chunk (not once per step) keeps the step loop free of host syncs. Floating
    metrics are kept as float64 and integer/bool metrics as int64, so counts stay exact at any
    size. With ``keep_graph=True`` the device tensors are also kept, attached to the autograd
    graph, so :meth:`series` can be differentiated (calibration).

    Args:
        names: metric names, in column order.
        chunk: records per host copy.
        keep_graph: keep differentiable device copies.
    """

    def __init__(self, names: list[str], chunk: int = 64, keep_graph: bool = False) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.names = list(names)
        self.chunk = chunk
        self.keep_graph = keep_graph
        self.steps: list[int] = []
        self._kind: dict[str, str] = {}  # "bool" | "int" | "float", from the first record
        self._pending: dict[str, list[torch.Tensor]] = {"float": [], "int": []}  # each [M, B]
        self._host: dict[str, list[torch.Tensor]] = {"float": [], "int": []}  # each [k, M, B]
        self._graph: dict[str, list[torch.Tensor]] = {n: [] for n in self.names}

    def record(self, step: int, values: dict[str, torch.Tensor]) -> None:
        """Record ``values`` (name → ``[B]``) for ``step``."""
        self.steps.append(step)
        if not self.names:
            return
        rows: dict[str, list[torch.Tensor]] = {"float": [], "int": []}
        for n in self.names:
            v = values[n]
            kind = self._kind.setdefault(n, _kind(v))
            if kind != _kind(v):
                raise ValueError(f"metric {n!r} changed dtype from {kind} to {v.dtype}")
            if self.keep_graph:
                self._graph[n].append(v)
            group = "float" if kind == "float" else "int"
            rows[group].append(v.detach().to(torch.float64 if group == "float" else torch.int64))
        for group, row in rows.items():
            if row:
                self._pending[group].append(torch.stack(row))
        if len(self.steps) % self.chunk == 0:
            self.flush()

    def flush(self) -> None:
        """Copy pending records to host (one transfer per kind)."""
        for group, pending in self._pending.items():
            if pending:
                self._host[group].append(torch.stack(pending).to("cpu"))
                self._pending[group] = []

    def _columns(self) -> dict[str, torch.Tensor]:
        """name → ``[T, B]`` host tensor (float64 or int64)."""
        self.flush()
        out = {}
        for group in ("float", "int"):
            if not self._host[group]:
                continue
            data = torch.cat(self._host[group])  # [T, M, B]
            names = [n for n in self.names if (self._kind[n] == "float") == (group == "float")]
            out.update({n: data[:, m, :] for m, n in enumerate(names)})
        return out

    def frame(self) -> pl.DataFrame:
        """Long table ``(member, step, metric...)``, one row per member and recorded step."""
        columns = self._columns()
        if not self.steps or (self.names and not columns):
            return pl.DataFrame(
                {"member": [], "step": []}, schema={"member": pl.Int64, "step": pl.Int64}
            )
        b = next(iter(columns.values())).shape[1] if columns else 1
        t = len(self.steps)
        cols: dict[str, object] = {
            "member": torch.arange(b).repeat(t).numpy(),
            "step": torch.tensor(self.steps).repeat_interleave(b).numpy(),
        }
        for n in self.names:
            col = columns[n].reshape(-1)
            cols[n] = (col.bool() if self._kind[n] == "bool" else col).numpy()
        return pl.DataFrame(cols)

    def series(self, name: str) -> torch.Tensor:
        """``[B, T]`` values of one metric over recorded steps.

        On the device and differentiable when ``keep_graph``; else a host tensor (float64, or
        int64 for integer and bool metrics).
        """
        if name not in self.names:
            raise KeyError(f"unknown metric {name!r}; valid: {self.names}")
        if self.keep_graph:
            return torch.stack(self._graph[name], dim=1)
        return self._columns()[name].T
