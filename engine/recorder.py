"""Metric recording: ``[B]`` tensors each recorded step, copied to host in chunks."""

from __future__ import annotations

import polars as pl
import torch


class Recorder:
    """Collects metrics on the device and copies them to host every ``chunk`` records.

    Copying once per chunk (not once per step) keeps the step loop free of host syncs.
    With ``keep_graph=True`` the device tensors are also kept, attached to the autograd graph,
    so :meth:`series` can be differentiated (calibration).

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
        self._pending: list[torch.Tensor] = []  # each [M, B] float64, on device
        self._host: list[torch.Tensor] = []  # each [k, M, B] float64, on CPU
        self._graph: dict[str, list[torch.Tensor]] = {n: [] for n in self.names}
        self._kind: dict[str, str] = {}  # "bool" | "int" | "float", from the first record

    def record(self, step: int, values: dict[str, torch.Tensor]) -> None:
        """Record ``values`` (name → ``[B]``) for ``step``."""
        if not self.names:
            self.steps.append(step)
            return
        row = []
        for n in self.names:
            v = values[n]
            kind = "bool" if v.dtype == torch.bool else "float" if v.is_floating_point() else "int"
            self._kind.setdefault(n, kind)
            if self.keep_graph:
                self._graph[n].append(v)
            row.append(v.detach().to(torch.float64))
        self.steps.append(step)
        self._pending.append(torch.stack(row))
        if len(self._pending) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        """Copy pending records to host (one transfer)."""
        if self._pending:
            self._host.append(torch.stack(self._pending).to("cpu"))
            self._pending = []

    def frame(self) -> pl.DataFrame:
        """Long table ``(member, step, metric...)``, one row per member and recorded step."""
        self.flush()
        if not self._host:
            return pl.DataFrame(
                {"member": [], "step": []}, schema={"member": pl.Int64, "step": pl.Int64}
            )
        data = torch.cat(self._host)  # [T, M, B]
        t, _, b = data.shape
        cols: dict[str, object] = {
            "member": torch.arange(b).repeat(t).numpy(),
            "step": torch.tensor(self.steps).repeat_interleave(b).numpy(),
        }
        for m, n in enumerate(self.names):
            col = data[:, m, :].reshape(-1)
            cast = {"bool": torch.bool, "int": torch.int64, "float": torch.float64}[self._kind[n]]
            cols[n] = col.to(cast).numpy()
        return pl.DataFrame(cols)

    def series(self, name: str) -> torch.Tensor:
        """``[B, T]`` values of one metric over recorded steps.

        On the device and differentiable when ``keep_graph``; else a host float64 tensor.
        """
        if name not in self.names:
            raise KeyError(f"unknown metric {name!r}; valid: {self.names}")
        if self.keep_graph:
            return torch.stack(self._graph[name], dim=1)
        self.flush()
        m = self.names.index(name)
        return torch.cat(self._host)[:, m, :].T
