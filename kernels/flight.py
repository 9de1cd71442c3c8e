"""The boids turn and move in one call (CPU, numba): steering, normalising, moving, wrapping.

The torch reference is ``turn`` of ``models/boids.py``: about a dozen elementwise ops over
``[B, N, 2]``, which at the suite's 300 birds cost as much as the neighbour walk.
:func:`turn` runs them per bird in one pass (:mod:`populace.kernels._numba_flight`) and returns
the same tensors exactly, or None when it cannot run (no numba, CUDA tensors, a gradient, inside
a ``torch.compile`` trace, a bounded box, float64: see the kernel's module): the caller then runs
the reference.
"""

from __future__ import annotations

import numpy as np
import torch

from populace.kernels._fused import ready

_TINY = np.float32(torch.finfo(torch.float32).tiny)


def turn(
    pos: torch.Tensor,
    vel: torch.Tensor,
    sums: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    factors: tuple[torch.Tensor, ...],
    box: tuple[float, ...],
    periodic: bool,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """New ``(pos, vel)`` ``[B, N, 2]`` of the birds.

    Args:
        sums: ``boids_steer``'s cohere, separate, match ``[B, N, 2]`` and count ``[B, N]``.
        factors: cohere, separate and match factors and the speed, each ``[]`` or ``[B]``.
        box: the box sides; periodic: whether it wraps (a bounded box takes the reference).
    """
    # the sums come from pos and vel by a kernel: their dtype, device and gradient follow
    if not periodic or pos.shape[-1] != 2 or not ready(pos, vel, *factors, floats=torch.float32):
        return None
    from populace.kernels import _numba_flight

    table = np.empty((len(factors), pos.shape[0]), dtype=np.float32)  # [4, B]
    for row, f in zip(table, factors, strict=True):
        row[:] = f.numpy()  # [] or [B]
    new_pos, new_vel = _numba_flight.turn(
        *[t.contiguous().numpy() for t in (pos, vel, *sums)],
        table,
        np.asarray(box, dtype=np.float32),
        _TINY,
    )
    return torch.from_numpy(new_pos), torch.from_numpy(new_vel)
