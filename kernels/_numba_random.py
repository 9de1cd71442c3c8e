"""CPU kernel of the counter-based uniforms (numba): the same bits as
:func:`populace.kernels.random.bits_reference`, in one pass.

Imported lazily by :mod:`populace.kernels.random` when numba is installed.
"""

from __future__ import annotations

import numba
import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
S30, S27, S31, S40, S11 = (np.uint64(s) for s in (30, 27, 31, 40, 11))


@numba.njit(cache=True, nogil=True, inline="always")
def _mix(z):
    z = (z ^ (z >> S30)) * MIX1
    z = (z ^ (z >> S27)) * MIX2
    return z ^ (z >> S31)


@numba.njit(cache=True, nogil=True)
def uniform32(member, c, start, out):
    """Fill ``out`` (``[B, n]`` float32) with the uniforms of members ``member`` (``[B]``
    int64 keys) at site constant ``c`` (int64 bit pattern), elements from ``start``."""
    b_count, n = out.shape
    cu = np.uint64(c)
    scale = np.float32(5.960464477539063e-08)  # 2^-24
    for b in range(b_count):
        key = _mix(np.uint64(member[b]) ^ cu)
        for i in range(n):
            z = _mix(key + np.uint64(start + i + 1) * GOLDEN)
            out[b, i] = np.float32(z >> S40) * scale


@numba.njit(cache=True, nogil=True)
def uniform64(member, c, start, out):
    """As :func:`uniform32`, float64 with 53 bits."""
    b_count, n = out.shape
    cu = np.uint64(c)
    for b in range(b_count):
        key = _mix(np.uint64(member[b]) ^ cu)
        for i in range(n):
            z = _mix(key + np.uint64(start + i + 1) * GOLDEN)
            out[b, i] = np.float64(z >> S11) * 1.1102230246251565e-16
