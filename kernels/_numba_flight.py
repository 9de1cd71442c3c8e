"""CPU kernel of the boids turn and move (numba): one pass over the birds.

Imported lazily by :mod:`populace.kernels.flight` when numba is installed. The torch reference
is ``turn`` of ``models/boids.py``: a dozen elementwise ops over ``[B, N, 2]`` in float32. Here
each bird's numbers go through the same operations in the same order (no fused multiply-add:
numba compiles without fast-math), the speed's root from float64 squares rounded once to
float32 as there, so the results are equal bit for bit (but where torch's root, not correctly
rounded, falls on the other side of a float32 rounding boundary: about once in 10^10 roots).
float32 only: a float64 run's root is torch's own, which no kernel repeats.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def turn(pos, vel, cohere, separate, match, count, factors, box, tiny):
    """New ``(pos, vel)`` ``[B, N, 2]``: velocity plus the steering, normalised, then a move.

    Args:
        pos, vel, cohere, separate, match: ``[B, N, 2]`` float32; count: ``[B, N]`` neighbours.
        factors: ``[4, B]`` cohere, separate and match factors, speed (one column per member).
        box: ``[2]`` sides of the periodic box; tiny: the dtype's smallest normal number.
    """
    b_count, n, dim = pos.shape
    new_pos = np.empty_like(pos)
    new_vel = np.empty_like(vel)
    one = count.dtype.type(1)
    zero = count.dtype.type(0)
    for b in range(b_count):
        cf, sf, mf, speed = factors[0, b], factors[1, b], factors[2, b], factors[3, b]
        for i in range(n):
            k = max(count[b, i], one)
            vx = (
                vel[b, i, 0]
                + (cf * cohere[b, i, 0] + sf * separate[b, i, 0] + mf * match[b, i, 0]) / k
            )
            vy = (
                vel[b, i, 1]
                + (cf * cohere[b, i, 1] + sf * separate[b, i, 1] + mf * match[b, i, 1]) / k
            )
            wx, wy = np.float64(vx), np.float64(vy)
            norm = np.float32(np.sqrt(wx * wx + wy * wy))
            if norm > zero:
                scale = max(norm, tiny)
                vx, vy = vx / scale, vy / scale
            else:  # the steering cancels the velocity exactly: the old heading stays
                vx, vy = vel[b, i, 0], vel[b, i, 1]
            new_vel[b, i, 0] = vx
            new_vel[b, i, 1] = vy
            new_pos[b, i, 0] = _remainder(pos[b, i, 0] + speed * vx, box[0], zero)
            new_pos[b, i, 1] = _remainder(pos[b, i, 1] + speed * vy, box[1], zero)
    return new_pos, new_vel


@numba.njit(cache=True, nogil=True, inline="always")
def _remainder(x, side, zero):
    """``torch.remainder(x, side)``: ``fmod`` moved into the sign of ``side`` (exact)."""
    r = np.fmod(x, side)
    if r != zero and ((side < zero) != (r < zero)):
        r += side
    return r
