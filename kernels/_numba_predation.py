"""CPU kernels of the wolf-sheep phases (numba): move, pay, die, eat and reproduce in one call.

Imported lazily by :mod:`populace.kernels.predation` when numba is installed. The torch
references are the phases of ``models/wolfsheep.py`` (``sheep_phase``, ``wolf_phase``,
``grass_phase``): some forty small ops each over ``[B, capacity]`` slots. Here each member's
slots are walked a few times in order, the uniforms computed inline (the bits of
:mod:`populace.kernels.random`, at the same sites and counters as the reference's draws) and
every energy operation done in the energy's dtype, one rounding per operation as in torch, so
the results equal the reference's bit for bit. Outputs are new arrays; inputs are only read.
"""

from __future__ import annotations

import numba
import numpy as np

from populace.kernels._numba_epi import _uniform
from populace.kernels._numba_random import _mix


@numba.njit(cache=True, nogil=True)
def _member_key(keys, b, c):
    """Member ``b``'s key mixed with the draw site constant ``c`` (an int64 bit pattern)."""
    return _mix(np.uint64(keys[b]) ^ np.uint64(c))


@numba.njit(cache=True, nogil=True)
def _walk(cell, alive, out, width, key, start):
    """Each living slot to a uniformly random Moore neighbour cell on the torus: the
    reference's ``integers(0, 8)`` (a 53-bit uniform times 8, truncated) and its k -> (dy, dx)
    code; an empty slot keeps its cell (its draw is skipped, not shifted: counters are slots)."""
    for i in range(cell.shape[0]):
        if not alive[i]:
            out[i] = cell[i]
            continue
        k = min(np.int64(_uniform(key, start + i, True) * 8.0), 7)
        if k >= 4:  # 0..8 without 4, the centre
            k += 1
        dy = np.int64(k >= 6) - np.int64(k < 3)
        dx = k - 3 * dy - 4
        y = cell[i] // width
        y, x = y + dy, cell[i] - y * width + dx  # one division; the wraps are compares
        y = y + width if y < 0 else (y - width if y >= width else y)
        x = x + width if x < 0 else (x - width if x >= width else x)
        out[i] = y * width + x


@numba.njit(cache=True, nogil=True)
def _pay(energy, alive, e_out, a_out, one, zero):
    """One unit of energy paid; below zero an animal dies."""
    for i in range(energy.shape[0]):
        e_out[i] = energy[i] - one
        a_out[i] = alive[i] and e_out[i] >= zero


@numba.njit(cache=True, nogil=True)
def _winners(cell, candidate, key, start, double, best, win):
    """Per cell, the candidate with the largest uniform (site ``key``, counters from ``start``)
    wins (``win``); ``best`` ``[C]`` is scratch. As the reference, equal keys all win."""
    best[:] = -1.0
    u = np.empty(cell.shape[0])
    for i in range(cell.shape[0]):
        if candidate[i]:
            u[i] = _uniform(key, start + i, double)
            best[cell[i]] = max(best[cell[i]], u[i])
    for i in range(cell.shape[0]):
        win[i] = candidate[i] and u[i] == best[cell[i]]


@numba.njit(cache=True, nogil=True)
def _reproduce(cell, energy, alive, p, key, start, double, two):
    """In place: each alive slot splits with probability ``p`` (uniform ``< p``); the k-th parent
    by slot index halves its energy and fills the k-th free slot (lowest first) with its cell
    and energy. Returns the births that found no free slot."""
    n = cell.shape[0]
    parents = np.empty(n, dtype=np.int64)
    free = np.empty(n, dtype=np.int64)
    wanted = 0
    n_free = 0
    for i in range(n):
        if alive[i]:
            if _uniform(key, start + i, double) < p:
                parents[wanted] = i
                wanted += 1
        else:
            free[n_free] = i
            n_free += 1
    born = min(wanted, n_free)
    for k in range(born):
        parent, slot = parents[k], free[k]
        energy[parent] = energy[parent] / two
        cell[slot] = cell[parent]
        energy[slot] = energy[parent]
        alive[slot] = True
    return wanted - born


@numba.njit(cache=True, nogil=True)
def _sheep(cell, energy, alive, grown, countdown, gain, p, regrowth, keys, double, units, scratch):
    """Member ``keys``' sheep phase into its out rows (``cell, energy, alive, grown,
    countdown``: (input, output) pairs): walk, pay, graze (one sheep per grown cell, by the
    keys; the cell's countdown restarts at ``regrowth``), reproduce. Returns the dropped
    births."""
    one, zero, two = units
    best, eats, width = scratch
    (c0, c), (e0, e), (a0, a) = cell, energy, alive
    _walk(c0, a0, c, width, keys[0], keys[3])
    _pay(e0, a0, e, a, one, zero)
    on_grass = eats  # scratch: candidates, then winners
    for i in range(c.shape[0]):
        on_grass[i] = a[i] and grown[0][c[i]]
    _winners(c, on_grass, keys[1], keys[4], double, best, eats)
    grown[1][:] = grown[0]
    countdown[1][:] = countdown[0]
    for i in range(c.shape[0]):
        e[i] = e[i] + (one if eats[i] else zero) * gain
        if eats[i]:
            grown[1][c[i]] = False
            countdown[1][c[i]] = regrowth
    return _reproduce(c, e, a, p, keys[2], keys[5], double, two)


@numba.njit(cache=True, nogil=True)
def _wolves(cell, energy, alive, sheep_cell, sheep_alive, gain, p, keys, double, units, scratch):
    """Member ``keys``' wolf phase into its out rows (``cell, energy, alive``: (input, output)
    pairs; ``sheep_alive`` updated in place): walk, pay, hunt (of the wolves on a cell with a
    living sheep the one with the largest key eats; of the sheep on a cell where a wolf eats,
    the one with the largest key is eaten), reproduce. Returns the dropped births."""
    one, zero, two = units
    best, flag, eats, prey, width = scratch
    (c0, c), (e0, e), (a0, a) = cell, energy, alive
    _walk(c0, a0, c, width, keys[0], keys[4])
    _pay(e0, a0, e, a, one, zero)
    flag[:] = False  # cells with a living sheep
    for j in range(sheep_cell.shape[0]):
        if sheep_alive[j]:
            flag[sheep_cell[j]] = True
    hunters = eats  # scratch: candidates, then winners
    for i in range(c.shape[0]):
        hunters[i] = a[i] and flag[c[i]]
    _winners(c, hunters, keys[1], keys[5], double, best, eats)
    flag[:] = False  # cells where a wolf eats
    for i in range(c.shape[0]):
        if eats[i]:
            flag[c[i]] = True
    for j in range(sheep_cell.shape[0]):
        prey[j] = sheep_alive[j] and flag[sheep_cell[j]]
    _winners(sheep_cell, prey, keys[2], keys[6], double, best, prey)
    for j in range(sheep_cell.shape[0]):
        sheep_alive[j] = sheep_alive[j] and not prey[j]
    for i in range(c.shape[0]):
        e[i] = e[i] + (one if eats[i] else zero) * gain
    return _reproduce(c, e, a, p, keys[3], keys[7], double, two)


@numba.njit(cache=True, nogil=True)
def _grass(grown, countdown, regrowth):
    """In place: eaten grass counts down and grows back at zero (its countdown then back to
    ``regrowth``)."""
    for k in range(grown.shape[0]):
        ready = not grown[k] and countdown[k] <= 0
        if ready:
            countdown[k] = regrowth
        elif not grown[k]:
            countdown[k] -= 1
        grown[k] = grown[k] or ready


@numba.njit(cache=True, nogil=True)
def step(
    sheep, wolves, grown, countdown, dropped, params, regrowth, width, keys, sites, starts,
    double, units,
):  # fmt: skip
    """One step of every member ``b``: the sheep phase, the wolf phase, the grass phase.
    Returns new ``(sheep, wolves, grown, countdown, dropped)``.

    Args:
        sheep, wolves: (cell, energy, alive) ``[B, S]`` / ``[B, W]``; grown, countdown:
            ``[B, C]``; dropped: ``[B]``.
        params: sheep gain, wolf gain, sheep and wolf reproduction, each ``[B]`` or ``[1]``.
        sites, starts: site constant and counter of slot 0 of the draws of the sheep walk,
            grazing keys, sheep reproduction, wolf walk, wolf keys, sheep keys, wolf
            reproduction.
        units: 1, 0, 2 in the energy's dtype.
    """
    sheep_out = (np.empty_like(sheep[0]), np.empty_like(sheep[1]), np.empty_like(sheep[2]))
    wolves_out = (np.empty_like(wolves[0]), np.empty_like(wolves[1]), np.empty_like(wolves[2]))
    grown_out, countdown_out = np.empty_like(grown), np.empty_like(countdown)
    dropped_out = np.empty_like(dropped)
    s, w = sheep[0].shape[1], wolves[0].shape[1]
    best = np.empty(grown.shape[1])
    flag = np.empty(grown.shape[1], dtype=np.bool_)
    eats_s, eats_w = np.empty(s, dtype=np.bool_), np.empty(w, dtype=np.bool_)
    prey = np.empty(s, dtype=np.bool_)
    mk = np.empty(7, dtype=np.uint64)
    for b in range(dropped.shape[0]):
        for k in range(7):
            mk[k] = _member_key(keys, b, sites[k])
        pv = (params[0][b % params[0].shape[0]], params[1][b % params[1].shape[0]])
        pr = (params[2][b % params[2].shape[0]], params[3][b % params[3].shape[0]])
        lost = _sheep(
            (sheep[0][b], sheep_out[0][b]),
            (sheep[1][b], sheep_out[1][b]),
            (sheep[2][b], sheep_out[2][b]),
            (grown[b], grown_out[b]),
            (countdown[b], countdown_out[b]),
            pv[0], pr[0], regrowth,
            (mk[0], mk[1], mk[2], starts[0], starts[1], starts[2]),
            double, units, (best, eats_s, width),
        )  # fmt: skip
        lost += _wolves(
            (wolves[0][b], wolves_out[0][b]),
            (wolves[1][b], wolves_out[1][b]),
            (wolves[2][b], wolves_out[2][b]),
            sheep_out[0][b], sheep_out[2][b],
            pv[1], pr[1],
            (mk[3], mk[4], mk[5], mk[6], starts[3], starts[4], starts[5], starts[6]),
            double, units, (best, flag, eats_w, prey, width),
        )  # fmt: skip
        _grass(grown_out[b], countdown_out[b], regrowth)
        dropped_out[b] = dropped[b] + lost
    return sheep_out, wolves_out, grown_out, countdown_out, dropped_out
