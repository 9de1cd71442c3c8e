"""CPU kernel of the Schelling step (numba): neighbour counts, movers, random matching, moves.

Imported lazily by :mod:`populace.kernels.segregation` when numba is installed. The torch
reference is ``relocate`` of ``models/schelling.py`` (a separable box sum of one-hot
groups, two argsorts over all cells, gathers and scatters). Here each member's grid is read a
few times: the same-group neighbour counts as integers (exact, as the reference's float sums of
0/1), the movers and the empty cells in cell order, each put in the stable order of its
uniforms (the bits of :mod:`populace.kernels.random`, same sites and counters: the cell index),
and the k-th mover moved to the k-th empty cell. The results equal the reference's exactly.
"""

from __future__ import annotations

import numba
import numpy as np

from populace.kernels._numba_epi import _u32
from populace.kernels._numba_exchange import _argsort
from populace.kernels._numba_random import _mix


@numba.njit(cache=True, nogil=True)
def _wrapped(n, radius):
    """``[n + 2 radius]`` int64: entry ``j`` is ``(j - radius) mod n``, the torus index of a
    window position (a table read in the sums' loops instead of an integer division)."""
    out = np.empty(n + 2 * radius, dtype=np.int64)
    for j in range(n + 2 * radius):
        out[j] = (j - radius) % n
    return out


@numba.njit(cache=True, nogil=True)
def _window_sums(grid, group, radius, rows, out):
    """``out``: the number of cells of ``group`` in ``grid`` (``[H, W]`` codes) over each cell's
    ``(2 radius + 1)^2`` window on the torus, as running sums along rows then columns;
    ``rows`` ``[H, W]`` is scratch."""
    h, w = grid.shape
    span = 2 * radius + 1
    cols, lines = _wrapped(w, radius), _wrapped(h, radius)
    for y in range(h):
        s = 0
        for j in range(span):
            s += grid[y, cols[j]] == group
        rows[y, 0] = s
        for x in range(1, w):
            s += (grid[y, cols[x + span - 1]] == group) - (grid[y, cols[x - 1]] == group)
            rows[y, x] = s
    for x in range(w):
        out[0, x] = 0
    for j in range(span):
        for x in range(w):
            out[0, x] += rows[lines[j], x]
    for y in range(1, h):
        top, bottom = lines[y - 1], lines[y + span - 1]
        for x in range(w):
            out[y, x] = out[y - 1, x] + rows[bottom, x] - rows[top, x]


@numba.njit(cache=True, nogil=True, inline="always")
def _similar(code, same_a, same_b):
    """Neighbours of a cell's own group, from its window counts of each group (self removed);
    0 on an empty cell or a code other than the groups' (nobody alike, as the reference)."""
    if code == 1:
        return same_a - 1
    if code == 2:
        return same_b - 1
    return 0


@numba.njit(cache=True, nogil=True)
def _ordered(cells, count, key, start, u, scratch, order):
    """``cells[:count]`` (in cell order) rearranged into the stable order of their uniforms
    (site ``key``, counter = cell index + ``start``)."""
    for k in range(count):
        u[k] = _u32(key, start + cells[k])
    _argsort(u[:count], scratch[: count + 1], order[:count])
    for k in range(count):
        order[k] = cells[order[k]]


@numba.njit(cache=True, nogil=True)
def step(grid, radius, min_similar, keys, sites, starts):
    """One step of every member: an agent with fewer than ``min_similar[b]`` (``[B]`` or
    ``[1]``) neighbours of its group is unhappy; the unhappy agents (in the order of uniforms
    ``sites[0]``) move to the empty cells (in the order of uniforms ``sites[1]``), the k-th to
    the k-th, as many as both have.

    Args:
        grid: ``[B, H, W]`` int8 (0 empty, 1 and 2 the groups).

    Returns:
        New ``grid`` and ``moved`` ``[B]`` int64.
    """
    b_count, h, w = grid.shape
    n = h * w
    out = grid.copy()
    moved = np.zeros(b_count, dtype=np.int64)
    rows = np.empty((h, w), dtype=np.int32)
    same_a = np.empty((h, w), dtype=np.int32)
    same_b = np.empty((h, w), dtype=np.int32)
    movers = np.empty(n, dtype=np.int64)
    empty = np.empty(n, dtype=np.int64)
    mover_order = np.empty(n, dtype=np.int64)
    empty_order = np.empty(n, dtype=np.int64)
    u = np.empty(n, dtype=np.float64)
    scratch = np.empty(n + 1, dtype=np.int64)
    for b in range(b_count):
        g = grid[b]
        _window_sums(g, 1, radius, rows, same_a)
        _window_sums(g, 2, radius, rows, same_b)
        threshold = min_similar[b % min_similar.shape[0]]
        n_movers = 0
        n_empty = 0
        for y in range(h):
            for x in range(w):
                code = g[y, x]
                if code == 0:
                    empty[n_empty] = y * w + x
                    n_empty += 1
                    continue
                if _similar(code, same_a[y, x], same_b[y, x]) < threshold:
                    movers[n_movers] = y * w + x
                    n_movers += 1
        moves = min(n_movers, n_empty)
        moved[b] = moves
        if moves == 0:
            continue
        _ordered(movers, n_movers, _mix(np.uint64(keys[b]) ^ np.uint64(sites[0])), starts[0],
                 u, scratch, mover_order)  # fmt: skip
        _ordered(empty, n_empty, _mix(np.uint64(keys[b]) ^ np.uint64(sites[1])), starts[1],
                 u, scratch, empty_order)  # fmt: skip
        flat = out[b].reshape(n)
        for k in range(moves):
            src, dst = mover_order[k], empty_order[k]
            flat[dst] = flat[src]
            flat[src] = 0
    return out, moved


@numba.njit(cache=True, nogil=True)
def counts(grid, radius):
    """Each cell's same-group and occupied neighbours (self excluded; no same-group ones on an
    empty cell or a code other than the groups'), ``[B, H, W]`` float32 each, from the
    integer window sums (exact, as the reference's float sums of 0/1)."""
    b_count, h, w = grid.shape
    similar = np.empty((b_count, h, w), dtype=np.float32)
    occupied = np.empty((b_count, h, w), dtype=np.float32)
    rows = np.empty((h, w), dtype=np.int32)
    same_a = np.empty((h, w), dtype=np.int32)
    same_b = np.empty((h, w), dtype=np.int32)
    for b in range(b_count):
        g = grid[b]
        _window_sums(g, 1, radius, rows, same_a)
        _window_sums(g, 2, radius, rows, same_b)
        for y in range(h):
            for x in range(w):
                code = g[y, x]
                occupied[b, y, x] = same_a[y, x] + same_b[y, x] - (code == 1) - (code == 2)
                similar[b, y, x] = _similar(code, same_a[y, x], same_b[y, x])
    return similar, occupied
