"""CPU kernel of the swarm neighbour sums (numba): cell list and walk in one compiled pass.

Imported lazily by :mod:`populace.kernels.swarm` when numba is installed (the ``numba`` extra).
Per member: each agent's cell (same expressions as :func:`~populace.kernels.neighbors.cell_coords`,
in the positions' dtype), a stable counting sort by cell, then for each agent in sorted order the
stencil cells (:meth:`~populace.kernels.neighbors.CellGrid.offsets` order) and every agent in
them, in sorted order: the summation order of the torch reference. Work follows the occupancy of
the cells visited; memory is ``O(N + C)`` scratch per call.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

VICSEK, BOIDS, CIRCLES = 0, 1, 2
# slots of the ``consts`` array (in the positions' dtype, so all arithmetic stays in it)
RADIUS2, RADIUS, SEPARATION2, ZERO, ONE, HALF, MINUS_TWO, PI = range(8)


@numba.njit(cache=True, nogil=True, inline="always")
def _stencil(g, n, periodic, side, zero):
    """A stencil cell coordinate ``g`` on an axis of ``n`` cells: ``(coordinate, image shift,
    exists)``; a periodic axis wraps (shifting the image by a box side), a bounded one ends."""
    if g < 0:  # the far cell's agents, seen one box side down: x_j - side
        return g + n, side, periodic == 1
    if g >= n:
        return g - n, -side, periodic == 1
    return g, zero, True


@numba.njit(cache=True, nogil=True)
def _sort_by_cell(m, rule, pos, vel, box, size, cells, periodic, zero, start, order, sp, sv):
    """Counting sort of member ``m``'s agents by cell (stable); fills ``start`` ``[C + 1]``,
    ``order`` and the sorted copies ``sp``/``sv`` ``[N, D]``. Returns False on NaN/Inf."""
    N, D = pos.shape[1], pos.shape[2]
    n_cells = start.shape[0] - 1
    cell_of = order  # scratch until the scatter below: cell id of agent i
    start[:] = 0
    for i in range(N):
        cid = 0
        stride = 1
        for ax in range(D):
            x = pos[m, i, ax]
            if not np.isfinite(x) or (rule != CIRCLES and not np.isfinite(vel[m, i, ax])):
                return False
            if periodic == 1 and (x < zero or x >= box[ax]):
                # torch.remainder (fmod, shifted into [0, side)); the identity inside the box
                x = np.fmod(x, box[ax])
                if x < zero:
                    x += box[ax]
            c = np.int64(np.floor(x / size[ax]))
            c = min(max(c, 0), cells[ax] - 1)
            cid += c * stride
            stride *= cells[ax]
        cell_of[i] = cid
        start[cid + 1] += 1
    for c in range(n_cells):
        start[c + 1] += start[c]
    fill = start[:-1].copy()
    slot_of = np.empty(N, np.int64)
    for i in range(N):  # stable: agents of a cell keep their order
        s = fill[cell_of[i]]
        fill[cell_of[i]] += 1
        slot_of[i] = s
        for ax in range(D):
            sp[s, ax] = pos[m, i, ax]
            if rule != CIRCLES:
                sv[s, ax] = vel[m, i, ax]
    for i in range(N):
        order[slot_of[i]] = i
    return True


@functools.cache
def neighbour_sums(rule: int, dim: int, periodic: int):
    """The kernel for one rule (VICSEK, BOIDS or CIRCLES), dimension (2 or 3) and box (periodic
    1 or bounded 0), compiled with those as constants so the inner loop has no branch on them
    (numba caches each on disk).

    The kernel ``(pos, vel, box, size, cells, consts, out_a, out_b, out_c, count) -> status``
    fills ``out_a/out_b/out_c`` ``[B, N, D]`` and ``count`` ``[B, N]`` in the original order:
    pos, vel ``[B, N, D]`` C-contiguous, same float dtype (vel unused by CIRCLES); box, size
    ``[3]`` box and cell sides in that dtype (2D: a third side of 1); cells ``[3]`` int64 cells
    per axis (2D: 1 on the third); consts: see the slot names above. Status 0, or -1 when a
    position or velocity is NaN/Inf (the outputs are then undefined).
    """

    @numba.njit(cache=True, nogil=True)
    def kernel(pos, vel, box, size, cells, consts, out_a, out_b, out_c, count):
        return _walk(
            rule, dim, periodic, pos, vel, box, size, cells, consts, out_a, out_b, out_c, count
        )

    return kernel


@numba.njit(cache=True, nogil=True, inline="always")
def _walk(rule, dim, periodic, pos, vel, box, size, cells, consts, out_a, out_b, out_c, count):
    B, N, D = pos.shape
    nx, ny, nz = cells[0], cells[1], cells[2]
    # a periodic axis of one cell is its own stencil and takes the minimum image per pair
    wrap_x = periodic == 1 and nx == 1
    wrap_y = periodic == 1 and ny == 1
    wrap_z = periodic == 1 and nz == 1 and dim == 3
    span_x = 1 if wrap_x else 3
    span_y = 1 if wrap_y else 3
    span_z = 1 if nz == 1 else 3
    wrap_any = wrap_x or wrap_y or wrap_z
    r2, radius, sep2 = consts[RADIUS2], consts[RADIUS], consts[SEPARATION2]
    zero, one, half = consts[ZERO], consts[ONE], consts[HALF]
    start = np.empty(nx * ny * nz + 1, np.int64)
    order = np.empty(N, np.int64)
    sp = np.zeros((N, dim), pos.dtype)  # sorted positions and velocities
    sv = np.zeros((N, dim), pos.dtype)
    # the stencil of the current cell: run of sorted slots and image shift per visited cell
    run_lo = np.empty(27, np.int64)
    run_hi = np.empty(27, np.int64)
    shift = np.empty((27, 3), pos.dtype)
    for m in range(B):
        if not _sort_by_cell(
            m, rule, pos, vel, box, size, cells, periodic, zero, start, order, sp, sv
        ):
            return -1
        for cz in range(nz):
            for cy in range(ny):
                for cx in range(nx):
                    cid = cx + nx * (cy + ny * cz)
                    if start[cid] == start[cid + 1]:
                        continue
                    k = 0
                    for ox in range(span_x):
                        gx, sx, ok_x = _stencil(cx + ox - span_x // 2, nx, periodic, box[0], zero)
                        for oy in range(span_y):
                            gy, sy, ok_y = _stencil(
                                cy + oy - span_y // 2, ny, periodic, box[1], zero
                            )
                            for oz in range(span_z):
                                gz, sz, ok_z = _stencil(
                                    cz + oz - span_z // 2, nz, periodic, box[2], zero
                                )
                                if ok_x and ok_y and ok_z:
                                    nb = gx + nx * (gy + ny * gz)
                                    run_lo[k] = start[nb]
                                    run_hi[k] = start[nb + 1]
                                    shift[k, 0] = sx
                                    shift[k, 1] = sy
                                    shift[k, 2] = sz
                                    k += 1
                    for s in range(start[cid], start[cid + 1]):
                        xi, yi = sp[s, 0], sp[s, 1]
                        zi = sp[s, 2] if dim == 3 else zero
                        ax_, ay_, az_ = zero, zero, zero
                        bx_, by_, bz_ = zero, zero, zero
                        mx_, my_, mz_ = zero, zero, zero
                        n = zero
                        for q in range(k):
                            shift_x, shift_y, shift_z = shift[q, 0], shift[q, 1], shift[q, 2]
                            for t in range(run_lo[q], run_hi[q]):
                                # the image in the visited cell: the minimum image of every pair
                                # within the radius (cells are >= radius wide), bit for bit
                                dx = (sp[t, 0] - xi) - shift_x
                                dy = (sp[t, 1] - yi) - shift_y
                                dz = (sp[t, 2] - zi) - shift_z if dim == 3 else zero
                                if periodic == 1 and wrap_any:
                                    if wrap_x:
                                        dx = dx - box[0] * np.floor(dx / box[0] + half)
                                    if wrap_y:
                                        dy = dy - box[1] * np.floor(dy / box[1] + half)
                                    if wrap_z:
                                        dz = dz - box[2] * np.floor(dz / box[2] + half)
                                d2 = dx * dx + dy * dy + (dz * dz if dim == 3 else zero)
                                # branch-free sums (weights 0/1): the tests are unpredictable
                                if rule == VICSEK:
                                    w = one if d2 <= r2 else zero
                                    n += w
                                    ax_ += w * sv[t, 0]
                                    ay_ += w * sv[t, 1]
                                    if dim == 3:
                                        az_ += w * sv[t, 2]
                                elif rule == BOIDS:
                                    w = one if (d2 <= r2 and t != s) else zero
                                    c = one if (d2 <= r2 and t != s and d2 < sep2) else zero
                                    n += w
                                    ax_ += w * dx
                                    ay_ += w * dy
                                    az_ += w * dz
                                    bx_ -= c * dx
                                    by_ -= c * dy
                                    bz_ -= c * dz
                                    mx_ += w * sv[t, 0]
                                    my_ += w * sv[t, 1]
                                    if dim == 3:
                                        mz_ += w * sv[t, 2]
                                elif d2 < r2 and d2 > zero and t != s:
                                    d = np.sqrt(d2)
                                    f = np.sin(d / radius * consts[MINUS_TWO] * consts[PI]) / d
                                    n += one
                                    ax_ += f * dx
                                    ay_ += f * dy
                                    az_ += f * dz
                        i = order[s]
                        count[m, i] = n
                        out_a[m, i, 0] = ax_
                        out_a[m, i, 1] = ay_
                        if D == 3:
                            out_a[m, i, 2] = az_
                        if rule == BOIDS:
                            out_b[m, i, 0] = bx_
                            out_b[m, i, 1] = by_
                            out_c[m, i, 0] = mx_
                            out_c[m, i, 1] = my_
                            if D == 3:
                                out_b[m, i, 2] = bz_
                                out_c[m, i, 2] = mz_
    return 0
