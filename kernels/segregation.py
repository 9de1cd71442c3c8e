"""The Schelling step in one call (CPU, numba): unhappy agents matched to empty cells.

The torch reference is ``relocate`` of ``models/schelling.py``: some forty ops a step
over every cell, two argsorts among them. :func:`step` computes the same counts, draws the same
uniforms and makes the same moves (:mod:`populace.kernels._numba_segregation`), or returns None
when it cannot run (no numba, CUDA tensors, a gradient, inside a ``torch.compile`` trace),
before claiming any draw: the caller then runs the reference. :func:`counts` is the
neighbour counts of ``neighbour_counts`` (the metrics' work, a dozen ops over padded one-hot
grids there), equal to them exactly.
"""

from __future__ import annotations

import torch

from populace.kernels._fused import Claim, ready, sites


def step(
    grid: torch.Tensor, radius: int, min_similar: torch.Tensor, claim: Claim
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """New ``(grid, moved)``: ``[B, H, W]`` int8 and ``[B]`` int64.

    Args:
        min_similar: per member (``[]``, ``[B]`` or ``[B, 1, 1]``).
        claim: claims, once the kernel can run, the reference's two ``[H W]`` draws in its
            order: the movers' order, the empty cells' order.
    """
    b, h, w = grid.shape
    if min_similar.numel() not in (1, b):
        raise ValueError(f"min_similar must have one value per member ({b}): {min_similar.shape}")
    if min(h, w) < 2 * radius + 1 or not ready(grid, min_similar, floats=min_similar.dtype):
        return None  # (the reference refuses a grid smaller than the window)
    from populace.kernels import _numba_segregation

    drawn = sites(claim, h * w, h * w)
    limit = min_similar.reshape(-1).numpy()
    new, moved = _numba_segregation.step(grid.numpy(), radius, limit, *drawn)
    return torch.from_numpy(new), torch.from_numpy(moved)


def counts(grid: torch.Tensor, radius: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(similar, occupied)``, ``[B, H, W]`` float32 each, as ``neighbour_counts`` of
    ``models/schelling.py``, or None when the kernel cannot run (the caller then runs it).

    Args:
        grid: ``[B, H, W]`` int8 cell codes, no side below the window ``2 radius + 1``.
    """
    if min(grid.shape[-2:]) < 2 * radius + 1 or not ready(grid):
        return None
    from populace.kernels import _numba_segregation

    similar, occupied = _numba_segregation.counts(grid.numpy(), radius)
    return torch.from_numpy(similar), torch.from_numpy(occupied)
