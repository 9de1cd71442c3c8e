"""The Boltzmann wealth step in one call (CPU, numba): move, meet a cellmate, give a unit.

The torch reference is ``sequential_step`` of ``models/boltzmann.py`` (Mesa's
random-order loop for everyone at once): about fifty ops a step, which at Mesa's example size
(100 agents) cost far more than the work. :func:`step` runs the loop itself, one agent at a
time in the same random order with the same uniforms
(:mod:`populace.kernels._numba_exchange`), and returns the same tensors exactly, or None when
it cannot run (no numba, CUDA tensors, inside a ``torch.compile`` trace), before claiming any
draw: the caller then runs the reference.
"""

from __future__ import annotations

import torch

from populace.kernels._fused import Claim, ready, sites


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
    if not ok:
        raise ValueError(f"boltzmann: a cell index is off the {width} x {height} grid")
    return torch.from_numpy(dest), torch.from_numpy(out)
