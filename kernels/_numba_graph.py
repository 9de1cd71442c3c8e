"""CPU kernel of one contact layer's pressure (numba): frontier push or row pull, one pass.

Imported lazily by :mod:`populace.kernels.graph` when numba is installed (the ``numba`` extra).
Rows are summed in column order and the frontier is walked in agent order, so for a layer with
sorted columns and its transpose both give every agent the same terms in the same order.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def layer_pressure(crow, col, weight, crow_t, col_t, weight_t, unit, x, push_fraction, part):
    """``part[b] = A @ x[b]`` for every member, written into ``part`` ``[B, N]``.

    Args:
        crow, col, weight: CSR of A (``[N + 1]``, ``[E]`` int64, ``[E]`` floats).
        crow_t, col_t, weight_t: CSR of A^T (the same arrays for a symmetric layer).
        unit: all weights are 1 (the products are then skipped: bit-identical).
        x: ``[B, N]`` node values (the dtype of ``part``).
        push_fraction: push from the nonzero entries of ``x`` when their edges are at most this
            fraction of all edges, else pull over all rows.

    Returns:
        True when the member values were pushed, False when pulled (for the benchmarks).
    """
    B, N = x.shape
    if N == 0:
        return False
    zero = np.zeros(1, x.dtype)[0]  # sums stay in x's dtype
    edges = col.shape[0]
    frontier_edges = 0
    for b in range(B):
        for j in range(N):
            if x[b, j] != 0:
                frontier_edges += crow_t[j + 1] - crow_t[j]
    push = frontier_edges <= push_fraction * edges * B
    if push:
        part[:, :] = zero
        for b in range(B):
            for j in range(N):
                v = x[b, j]
                if v == 0:
                    continue
                for e in range(crow_t[j], crow_t[j + 1]):
                    part[b, col_t[e]] += v if unit else weight_t[e] * v
        return True
    for b in range(B):
        for i in range(N):
            acc = zero
            for e in range(crow[i], crow[i + 1]):
                acc += x[b, col[e]] if unit else weight[e] * x[b, col[e]]
            part[b, i] = acc
    return False
