"""CPU kernel of the Boltzmann wealth step (numba): Mesa's one-at-a-time loop, literally.

Imported lazily by :mod:`populace.kernels.exchange` when numba is installed. The torch
reference is ``sequential_step`` of ``models/boltzmann.py`` (the random order for
everyone at once: a sort of departures and arrivals, counts along it, a fixed point for who has
a unit to give). Here the agents act in the same random order, one at a time, with the same
uniforms (the bits of :mod:`populace.kernels.random`, same sites and counters): each moves,
picks the same candidate among the agents in its new cell (earlier arrivals by rank, then the
agents still there by rank), and gives a unit if it has one at its turn. All numbers are
integers, so the results equal the reference's exactly.
"""

from __future__ import annotations

import numba
import numpy as np

from populace.kernels._numba_epi import _u64
from populace.kernels._numba_random import _mix


@numba.njit(cache=True, nogil=True)
def _neighbour(cell, width, height, u):
    """A uniformly random on-grid Moore neighbour of ``cell`` (``x * height + y``) by the
    uniform ``u``, as the reference's ``random_neighbour_cell``."""
    x, y = cell // height, cell % height
    left, down = np.int64(x > 0), np.int64(y > 0)
    cols = 1 + left + np.int64(x < width - 1)
    rows = 1 + down + np.int64(y < height - 1)
    k = min(np.int64(u * np.float64(cols * rows - 1)), cols * rows - 2)
    if k >= left * rows + down:  # the agent's own cell in the block, skipped
        k += 1
    return (x - left + k // rows) * height + (y - down + k % rows)


@numba.njit(cache=True, nogil=True)
def _by_cell(agents, cell, cells, start, out):
    """Counting sort of ``agents`` (in their order) by ``cell[agent]``: ``start`` ``[C + 1]``,
    ``out`` the agents of cell c at ``out[start[c]:start[c + 1]]``, in the given order."""
    start[:] = 0
    for a in agents:
        start[cell[a] + 1] += 1
    for c in range(cells):
        start[c + 1] += start[c]
    fill = start[:-1].copy()
    for a in agents:
        out[fill[cell[a]]] = a
        fill[cell[a]] += 1


@numba.njit(cache=True, nogil=True)
def _argsort(u, start, order):
    """``order``: the stable argsort of ``u`` (``[N]`` uniforms on [0, 1)), in expected linear
    time: a counting sort into about N buckets by value, then an insertion sort (stable) in
    each bucket, holding about one value. ``start`` ``[buckets + 1]`` is scratch."""
    n = u.shape[0]
    buckets = start.shape[0] - 1
    start[:] = 0
    for i in range(n):
        start[min(np.int64(u[i] * buckets), buckets - 1) + 1] += 1
    for k in range(buckets):
        start[k + 1] += start[k]
    fill = start[:-1].copy()
    for i in range(n):
        k = min(np.int64(u[i] * buckets), buckets - 1)
        order[fill[k]] = i
        fill[k] += 1
    for k in range(buckets):
        for j in range(start[k] + 1, start[k + 1]):
            a = order[j]
            m = j
            while m > start[k] and u[order[m - 1]] > u[a]:
                order[m] = order[m - 1]
                m -= 1
            order[m] = a


@numba.njit(cache=True, nogil=True)
def step(cell, wealth, width, height, keys, sites, starts):
    """One step of every member: agents in a random order (the stable argsort of uniforms
    ``sites[1]``, as ``Streams.permutation``) move to a random neighbour cell (``sites[0]``),
    then give one unit, if they have one, to a random agent of their new cell (``sites[2]``).

    Args:
        cell, wealth: ``[B, N]`` int64; keys: ``[B]`` member keys; sites, starts: the three
            draws' site constants and counters of agent 0.

    Returns:
        New ``(cell, wealth)`` and True, or False (then the outputs are undefined) when a cell is
        off the grid.
    """
    b_count, n = cell.shape
    cells = width * height
    dest = np.empty_like(cell)
    out = wealth.copy()
    order_key = np.empty(n)
    order = np.empty(n, dtype=np.int64)
    bucket_start = np.empty(max(n, 1) + 1, dtype=np.int64)
    from_start = np.empty(cells + 1, dtype=np.int64)
    to_start = np.empty(cells + 1, dtype=np.int64)
    leaving = np.empty(n, dtype=np.int64)
    arriving = np.empty(n, dtype=np.int64)
    gone = np.empty(cells, dtype=np.int64)
    come = np.empty(cells, dtype=np.int64)
    for b in range(b_count):
        for i in range(n):
            if cell[b, i] < 0 or cell[b, i] >= cells:
                return dest, out, False
    for b in range(b_count):
        k_move = _mix(np.uint64(keys[b]) ^ np.uint64(sites[0]))
        k_order = _mix(np.uint64(keys[b]) ^ np.uint64(sites[1]))
        k_mate = _mix(np.uint64(keys[b]) ^ np.uint64(sites[2]))
        for i in range(n):
            dest[b, i] = _neighbour(cell[b, i], width, height, _u64(k_move, starts[0] + i))
            order_key[i] = _u64(k_order, starts[1] + i)
        _argsort(order_key, bucket_start, order)
        # each cell's agents leaving it and arriving in it, in the order of their turns
        _by_cell(order, cell[b], cells, from_start, leaving)
        _by_cell(order, dest[b], cells, to_start, arriving)
        gone[:] = 0
        come[:] = 0
        w = out[b]
        for a in order:
            gone[cell[b, a]] += 1
            d = dest[b, a]
            earlier = come[d]  # arrived before a
            total = earlier + (from_start[d + 1] - from_start[d]) - gone[d]
            mate = -1
            if total > 0:
                u = _u64(k_mate, starts[2] + a)
                m = min(np.int64(u * np.float64(total)), total - 1)
                if m < earlier:
                    mate = arriving[to_start[d] + m]
                else:
                    mate = leaving[from_start[d] + gone[d] + m - earlier]
            come[d] += 1
            if mate >= 0 and w[a] > 0:
                w[a] -= 1
                w[mate] += 1
    return dest, out, True


@numba.njit(cache=True, nogil=True)
def steps(cell, wealth, width, height, keys, sites, starts):
    """:func:`step` once per row of ``sites`` and ``starts`` (``[S, 3]``: each step's three
    draws), each step from the last one's result; the same returns."""
    for s in range(sites.shape[0]):
        cell, wealth, ok = step(cell, wealth, width, height, keys, sites[s], starts[s])
        if not ok:
            return cell, wealth, False
    return cell, wealth, True
