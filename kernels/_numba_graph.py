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


@numba.njit(cache=True, nogil=True)
def is_own_transpose(crow, col, weight):
    """Whether the CSR arrays of A (``crow [N + 1]``, ``col [E]`` int64, ``weight [E]``) are
    exactly those of A^T as :func:`populace.kernels.graph.transposed` builds it (row j of A^T
    lists the edges ``(i, j)`` of A by ascending edge index): one pass with a cursor per row,
    ``[N]`` int64 of memory, where building A^T to compare takes about 30 bytes per edge.
    """
    n = crow.shape[0] - 1
    cursor = crow[:n].copy()  # the next entry of row j of A that A^T's row j must equal
    for i in range(n):
        for e in range(crow[i], crow[i + 1]):
            j = col[e]
            p = cursor[j]
            if p >= crow[j + 1] or col[p] != i or weight[p] != weight[e]:
                return False
            cursor[j] = p + 1
    return True  # every row's cursor moved to its end: the counts match too (they sum to E)
