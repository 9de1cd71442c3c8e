"""The Boltzmann wealth step in one call (CPU, numba): move, meet a cellmate, give a unit.

The torch reference is ``sequential_step`` of ``models/boltzmann.py`` (Mesa's
random-order loop for everyone at once): about fifty ops a step, which at Mesa's example size
(100 agents) cost far more than the work. :func:`step` runs the loop itself, one agent at a
time in the same random order with the same uniforms
(:mod:`populace.kernels._numba_exchange`), and returns the same tensors exactly, or None when
it cannot run (no numba, CUDA tensors, inside a ``torch.compile`` trace), before claiming any
draw: the caller then runs the reference. :func:`steps` runs several steps in one call (the
model's leap over the steps a simulation does not record).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from populace.kernels._fused import Claim, ready, sites


class Draws(Protocol):
    """What :func:`steps` needs of the random streams (``Streams``): numbering each step's
    draws from site 0, and claiming them."""

    def begin(self, step: int) -> None: ...

    def claim(self, *shape: int) -> tuple[torch.Tensor, int, int]: ...


def step(
    cell: torch.Tensor, wealth: torch.Tensor, width: int, height: int, claim: Claim
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """New ``(cell, wealth)`` (``[B, N]`` int64 each, ``cell = x * height + y``) after one step.

    Args:
        claim: claims, once the kernel can run, the reference's three ``[N]`` float64 draws in
            its order: the moves, the random order, the choice of cellmate.
    """
    if not ready(cell, wealth):
        return None
    from populace.kernels import _numba_exchange

    n = cell.shape[1]
    drawn = sites(claim, n, n, n)
    dest, out, ok = _numba_exchange.step(cell.numpy(), wealth.numpy(), width, height, *drawn)
    return _checked(dest, out, ok, width, height)


def steps(
    cell: torch.Tensor,
    wealth: torch.Tensor,
    width: int,
    height: int,
    rng: Draws,
    first: int,
    count: int,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """New ``(cell, wealth)`` after ``count`` steps from step ``first``: :func:`step`'s loop
    that many times in one call, each step claiming its three draws as :func:`step` would
    (``rng.begin(step)``, then the sites in order), so the numbers are those of ``count``
    calls; None, before claiming any draw, when the kernel cannot run."""
    if not ready(cell, wealth):
        return None
    from populace.kernels import _numba_exchange

    n = cell.shape[1]
    consts = np.empty((count, 3), dtype=np.int64)
    starts = np.empty((count, 3), dtype=np.int64)
    for s in range(count):
        rng.begin(first + s)
        keys, consts[s], starts[s] = sites(rng.claim, n, n, n)
    dest, out, ok = _numba_exchange.steps(
        cell.numpy(), wealth.numpy(), width, height, keys, consts, starts
    )
    return _checked(dest, out, ok, width, height)


def _checked(dest: np.ndarray, out: np.ndarray, ok: bool, width: int, height: int):
    if not ok:
        raise ValueError(f"boltzmann: a cell index is off the {width} x {height} grid")
    return torch.from_numpy(dest), torch.from_numpy(out)
