"""Metric history of a live run: ``[T, B]`` host arrays that only grow, read without copying."""

from __future__ import annotations

import threading

import numpy as np


class History:
    """Recorded steps and metric columns, appended in chunks by the simulation thread.

    Arrays are preallocated and doubled when full; rows below the published length never
    change, so a reader's slices stay valid while the writer appends (a reallocation leaves the
    old array to the reader).

    Args:
        names: metric column names.
        members: ensemble size B.
    """

    def __init__(self, names: list[str], members: int) -> None:
        self.names = list(names)
        self.members = members
        self._lock = threading.Lock()
        self._length = 0
        self._steps = np.zeros(64, dtype=np.int64)
        self._values = {n: np.zeros((64, members), dtype=np.float64) for n in self.names}

    def __len__(self) -> int:
        return self._length

    def append(self, steps: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Add ``steps`` ``[k]`` and each column's ``[k, B]`` values."""
        k = len(steps)
        with self._lock:
            n = self._length
            if n + k > len(self._steps):
                size = max(2 * len(self._steps), n + k)
                self._steps = _grown(self._steps, size, n)
                self._values = {m: _grown(v, size, n) for m, v in self._values.items()}
            self._steps[n : n + k] = steps
            for m in self.names:
                self._values[m][n : n + k] = values[m]
            self._length = n + k

    def read(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``steps [T]`` and name → ``[T, B]`` up to the current length (views, not copies)."""
        with self._lock:
            n = self._length
            return self._steps[:n], {m: v[:n] for m, v in self._values.items()}


def _grown(a: np.ndarray, size: int, keep: int) -> np.ndarray:
    out = np.zeros((size, *a.shape[1:]), dtype=a.dtype)
    out[:keep] = a[:keep]
    return out
