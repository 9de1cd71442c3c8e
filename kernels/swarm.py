"""Fused neighbour sums for swarm models: Vicsek alignment, boids steering, FLAME GPU circles.

All three walk the same cell list (:mod:`populace.kernels.neighbors`): for each agent, the 9 (2D)
or 27 (3D) stencil cells, every agent in them, keep those within the radius, accumulate. One
Triton kernel does the walk with the rule chosen at compile time (``RULE``), so the three share the
walk and differ only in what they add up:

- ``vicsek_align``: sum of neighbours' velocity vectors within ``radius``, the agent itself
  included, and the neighbour count.
- ``boids_steer``: over neighbours ``j != i`` within the visual distance: sum of displacements
  ``x_j - x_i`` (cohere), minus the displacements of those closer than ``separation``
  (separate), sum of their velocities (match), and the count.
- ``circles_force``: over ``j != i`` with ``0 < d < radius``: sum of
  ``sin(-2 pi d / radius) * (x_j - x_i) / d`` (repulsive below ``radius/2``, attractive above)
  and the count.

Each public function takes and returns agents in their original order (sorting is internal) and
dispatches with :func:`populace.kernels._backend.pick`: the Triton kernel on CUDA, else the torch
reference. References: ``method="cells"`` walks the cell list in torch (``O(B N)`` memory, medium
N); ``method="brute"`` uses all-pairs distances (``O(B N^2)``, small N, the oracle).

Determinism: the Triton kernel sums neighbours in sorted-cell order with no atomics, so a GPU run
is deterministic for a given input; its float rounding differs from the torch reference's.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from populace.kernels._backend import HAS_TRITON, choose
from populace.kernels.neighbors import (
    CellGrid,
    CellList,
    build_cells,
    candidate_pairs,
    check_positions,
    minimum_image,
)

if HAS_TRITON:
    import triton
    import triton.language as tl

VICSEK, BOIDS, CIRCLES = 0, 1, 2
BLOCK = 128

if HAS_TRITON:

    @triton.jit
    def _neighbour_sum_kernel(
        pos_ptr,  # [B, N, D] positions, sorted by cell
        vel_ptr,  # [B, N, D] velocities, sorted by cell (unused by CIRCLES)
        cell_ptr,  # [B, N] int64 cell id of each sorted slot
        start_ptr,  # [B, C] int64 first sorted slot of each cell
        end_ptr,  # [B, C] int64 one past the last sorted slot of each cell
        out_a_ptr,  # [B, N, D] vicsek: sum vel; boids: cohere; circles: force
        out_b_ptr,  # [B, N, D] boids: separate (others: untouched)
        out_c_ptr,  # [B, N, D] boids: match (others: untouched)
        count_ptr,  # [B, N] neighbour count
        N,
        C,
        box_x,
        box_y,
        box_z,
        n_x,
        n_y,
        n_z,
        radius2,
        radius,
        separation2,
        RULE: tl.constexpr,
        DIM: tl.constexpr,
        PERIODIC: tl.constexpr,
        SPAN_X: tl.constexpr,
        SPAN_Y: tl.constexpr,
        SPAN_Z: tl.constexpr,
        ACC: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        pid = tl.program_id(0)
        member = tl.program_id(1).to(tl.int64)
        slot = pid * BLOCK + tl.arange(0, BLOCK)
        lane = slot < N
        row = member * N + slot  # flat agent index of this lane (int64)
        xi = tl.load(pos_ptr + row * DIM + 0, mask=lane, other=0.0).to(ACC)
        yi = tl.load(pos_ptr + row * DIM + 1, mask=lane, other=0.0).to(ACC)
        zi = tl.zeros([BLOCK], dtype=ACC)
        if DIM == 3:
            zi = tl.load(pos_ptr + row * DIM + 2, mask=lane, other=0.0).to(ACC)
        cell = tl.load(cell_ptr + row, mask=lane, other=0)
        cx = cell % n_x
        cy = (cell // n_x) % n_y
        cz = cell // (n_x * n_y)

        ax = tl.zeros([BLOCK], dtype=ACC)
        ay = tl.zeros([BLOCK], dtype=ACC)
        az = tl.zeros([BLOCK], dtype=ACC)
        bx = tl.zeros([BLOCK], dtype=ACC)
        by = tl.zeros([BLOCK], dtype=ACC)
        bz = tl.zeros([BLOCK], dtype=ACC)
        mx = tl.zeros([BLOCK], dtype=ACC)
        my = tl.zeros([BLOCK], dtype=ACC)
        mz = tl.zeros([BLOCK], dtype=ACC)
        count = tl.zeros([BLOCK], dtype=ACC)

        for ox in tl.static_range(SPAN_X):
            for oy in tl.static_range(SPAN_Y):
                for oz in tl.static_range(SPAN_Z):
                    nx = cx + (ox - SPAN_X // 2)
                    ny = cy + (oy - SPAN_Y // 2)
                    nz = cz + (oz - SPAN_Z // 2)
                    if PERIODIC:
                        nx = (nx + n_x) % n_x
                        ny = (ny + n_y) % n_y
                        nz = (nz + n_z) % n_z
                        inside = lane
                    else:
                        inside = lane & (nx >= 0) & (nx < n_x) & (ny >= 0) & (ny < n_y)
                        inside = inside & (nz >= 0) & (nz < n_z)
                    nb = nx + n_x * (ny + n_y * nz)
                    first = tl.load(start_ptr + member * C + nb, mask=inside, other=0)
                    stop = tl.load(end_ptr + member * C + nb, mask=inside, other=0)
                    # loop to the fullest cell this block visits at this offset, not the box's
                    # (lanes hold consecutive sorted agents, so they mostly share cells)
                    longest = tl.max(stop - first, axis=0)
                    for k in range(0, longest):
                        j = first + k
                        ok = inside & (j < stop)
                        col = member * N + j
                        dx = tl.load(pos_ptr + col * DIM + 0, mask=ok, other=0.0).to(ACC) - xi
                        dy = tl.load(pos_ptr + col * DIM + 1, mask=ok, other=0.0).to(ACC) - yi
                        dz = tl.zeros([BLOCK], dtype=ACC)
                        if DIM == 3:
                            dz = tl.load(pos_ptr + col * DIM + 2, mask=ok, other=0.0).to(ACC) - zi
                        if PERIODIC:
                            # minimum image, same expression as neighbors.minimum_image
                            dx = dx - box_x * tl.floor(dx / box_x + 0.5)
                            dy = dy - box_y * tl.floor(dy / box_y + 0.5)
                            if DIM == 3:
                                dz = dz - box_z * tl.floor(dz / box_z + 0.5)
                        d2 = dx * dx + dy * dy + dz * dz
                        if RULE == 0:  # VICSEK: self included
                            near = ok & (d2 <= radius2)
                        elif RULE == 1:  # BOIDS
                            near = ok & (d2 <= radius2) & (j != slot)
                        else:  # CIRCLES: 0 < d < radius
                            near = ok & (d2 < radius2) & (d2 > 0) & (j != slot)
                        w = tl.where(near, 1.0, 0.0).to(ACC)
                        count += w
                        if RULE == 2:
                            d = tl.sqrt(tl.where(near, d2, 1.0))
                            f = tl.where(near, tl.sin(d / radius * -6.283185307179586) / d, 0.0)
                            ax += f * dx
                            ay += f * dy
                            az += f * dz
                        else:
                            vx = tl.load(vel_ptr + col * DIM + 0, mask=ok, other=0.0).to(ACC)
                            vy = tl.load(vel_ptr + col * DIM + 1, mask=ok, other=0.0).to(ACC)
                            vz = tl.zeros([BLOCK], dtype=ACC)
                            if DIM == 3:
                                vz = tl.load(vel_ptr + col * DIM + 2, mask=ok, other=0.0).to(ACC)
                            if RULE == 0:
                                ax += w * vx
                                ay += w * vy
                                az += w * vz
                            else:
                                ax += w * dx
                                ay += w * dy
                                az += w * dz
                                s = tl.where(near & (d2 < separation2), 1.0, 0.0).to(ACC)
                                bx -= s * dx
                                by -= s * dy
                                bz -= s * dz
                                mx += w * vx
                                my += w * vy
                                mz += w * vz

        tl.store(out_a_ptr + row * DIM + 0, ax, mask=lane)
        tl.store(out_a_ptr + row * DIM + 1, ay, mask=lane)
        if DIM == 3:
            tl.store(out_a_ptr + row * DIM + 2, az, mask=lane)
        if RULE == 1:
            tl.store(out_b_ptr + row * DIM + 0, bx, mask=lane)
            tl.store(out_b_ptr + row * DIM + 1, by, mask=lane)
            tl.store(out_c_ptr + row * DIM + 0, mx, mask=lane)
            tl.store(out_c_ptr + row * DIM + 1, my, mask=lane)
            if DIM == 3:
                tl.store(out_b_ptr + row * DIM + 2, bz, mask=lane)
                tl.store(out_c_ptr + row * DIM + 2, mz, mask=lane)
        tl.store(count_ptr + row, count, mask=lane)


def _check(pos: torch.Tensor, vel: torch.Tensor | None, grid: CellGrid, finite=True) -> None:
    """Shapes, dtypes and devices; NaN/Inf too unless ``finite=False`` (the numba kernel checks
    them in its first pass, sparing two tensor reductions and a sync)."""
    check_positions(pos, grid, finite=finite)
    if vel is not None:
        if vel.shape != pos.shape:
            raise ValueError(
                f"vel must have the shape of pos {tuple(pos.shape)}, got {tuple(vel.shape)}"
            )
        if vel.dtype != pos.dtype or vel.device != pos.device:
            raise ValueError(
                f"vel ({vel.dtype}, {vel.device}) must match pos ({pos.dtype}, {pos.device})"
            )
        if finite and not torch.isfinite(vel).all():
            raise ValueError("vel has NaN/Inf values")


def _neighbour_sums_numba(
    rule: int,
    pos: torch.Tensor,
    vel: torch.Tensor | None,
    grid: CellGrid,
    radius: float,
    separation: float,
) -> tuple[torch.Tensor, ...]:
    """Run the numba CPU kernel (cell list built inside); ``(a, b, c, count)``, original order."""
    from populace.kernels import _numba_swarm as nb

    B, N, D = pos.shape
    pos = pos.detach().contiguous()
    vel = vel.detach().contiguous() if vel is not None else pos
    out = [torch.empty_like(pos) for _ in range(3 if rule == BOIDS else 1)]
    count = torch.empty(B, N, dtype=pos.dtype)
    np_dtype = pos.numpy().dtype
    consts = np.zeros(8, dtype=np_dtype)
    consts[[nb.RADIUS2, nb.RADIUS, nb.SEPARATION2, nb.ONE, nb.HALF, nb.MINUS_TWO, nb.PI]] = (
        radius * radius,
        radius,
        separation * separation,
        1.0,
        0.5,
        -2.0,
        math.pi,
    )
    arrays = [t.numpy() for t in out] + [out[0].numpy()] * (3 - len(out))
    kernel = nb.neighbour_sums(rule, D, int(grid.periodic))
    status = kernel(
        pos.numpy(),
        vel.numpy(),
        np.asarray((*grid.box, 1.0)[:3], dtype=np_dtype),
        np.asarray((*grid.cell_size, 1.0)[:3], dtype=np_dtype),
        np.asarray((*grid.cells, 1)[:3], dtype=np.int64),
        consts,
        *arrays,
        count.numpy(),
    )
    if status != 0:
        raise ValueError("pos or vel has NaN/Inf values")
    if rule == BOIDS:
        return out[0], out[1], out[2], count
    return out[0], None, None, count


def _neighbour_sums_triton(
    rule: int,
    pos: torch.Tensor,
    vel: torch.Tensor | None,
    grid: CellGrid,
    cells: CellList,
    radius: float,
    separation: float,
) -> tuple[torch.Tensor, ...]:
    """Run the kernel on sorted copies, return ``(a, b, c, count)`` in the original order."""
    B, N, D = pos.shape
    spos = cells.sort(pos).contiguous()
    svel = cells.sort(vel).contiguous() if vel is not None else spos
    # only boids writes the second and third sums; the others get a placeholder (never stored)
    outs = [torch.empty_like(spos) for _ in range(3 if rule == BOIDS else 1)]
    outs += [outs[0]] * (3 - len(outs))
    count = torch.empty(B, N, dtype=pos.dtype, device=pos.device)
    box = (*grid.box, 1.0) if D == 2 else grid.box
    n = (*grid.cells, 1) if D == 2 else grid.cells
    span = (*grid.span, 1) if D == 2 else grid.span
    acc = tl.float64 if pos.dtype == torch.float64 else tl.float32
    launch = (triton.cdiv(N, BLOCK), B)
    _neighbour_sum_kernel[launch](
        spos,
        svel,
        cells.sorted_cell.contiguous(),
        cells.start.contiguous(),
        cells.end.contiguous(),
        outs[0],
        outs[1],
        outs[2],
        count,
        N,
        grid.count,
        *box,
        *n,
        radius * radius,
        radius,
        separation * separation,
        RULE=rule,
        DIM=D,
        PERIODIC=grid.periodic,
        SPAN_X=span[0],
        SPAN_Y=span[1],
        SPAN_Z=span[2],
        ACC=acc,
        BLOCK=BLOCK,
    )
    a = cells.unsort(outs[0])
    if rule != BOIDS:
        return a, None, None, cells.unsort(count)
    return a, cells.unsort(outs[1]), cells.unsort(outs[2]), cells.unsort(count)


def _near(rule: int, d2: torch.Tensor, other: torch.Tensor, radius: float) -> torch.Tensor:
    """Which candidates count: within the radius (vicsek: itself included; boids: others;
    circles: others at ``0 < d < radius``)."""
    if rule == VICSEK:
        return d2 <= radius * radius
    if rule == BOIDS:
        return (d2 <= radius * radius) & other
    return (d2 < radius * radius) & (d2 > 0) & other


def _neighbour_sums_reference(
    rule: int,
    pos: torch.Tensor,
    vel: torch.Tensor | None,
    grid: CellGrid,
    radius: float,
    separation: float,
    method: str,
) -> tuple[torch.Tensor, ...]:
    """Torch version of the kernel's sums: ``(a, b, c, count)``, each ``[B, N, D]`` / ``[B, N]``."""
    if method == "cells":
        return _cell_walk_reference(rule, pos, vel, grid, radius, separation)
    if method != "brute":
        raise ValueError(f"unknown reference method {method!r}; valid: cells, brute")
    N = pos.shape[1]
    delta = minimum_image(pos[:, None, :, :] - pos[:, :, None, :], grid)  # [B, i, j, D]
    d2 = (delta * delta).sum(-1)
    other = ~torch.eye(N, dtype=torch.bool, device=pos.device)
    vj = vel[:, None, :, :] if vel is not None else None
    near = _near(rule, d2, other, radius)
    w = near.to(pos.dtype)
    count = w.sum(2)  # sum over j
    zero = torch.zeros_like(pos)
    if rule == CIRCLES:
        d = torch.sqrt(torch.where(near, d2, 1.0))
        f = torch.where(near, torch.sin(d / radius * -2 * math.pi) / d, 0.0)
        return (f[..., None] * delta).sum(2), zero, zero, count
    if rule == VICSEK:
        return (w[..., None] * vj).sum(2), zero, zero, count
    s = (near & (d2 < separation * separation)).to(pos.dtype)
    return (
        (w[..., None] * delta).sum(2),
        -(s[..., None] * delta).sum(2),
        (w[..., None] * vj).sum(2),
        count,
    )


def _cell_walk_reference(
    rule: int,
    pos: torch.Tensor,
    vel: torch.Tensor | None,
    grid: CellGrid,
    radius: float,
    separation: float,
) -> tuple[torch.Tensor, ...]:
    """The cell-list sums in torch: candidates chunk by chunk (:func:`candidate_pairs`), kept
    by distance, added with ``index_add`` in pair order (the kernels' summation order)."""
    B, N, D = pos.shape
    cells = build_cells(pos, grid)
    rows = cells.sort(pos).reshape(B * N, D)  # sorted by cell: neighbour reads are near
    vel_rows = cells.sort(vel).reshape(B * N, D) if vel is not None else None
    a = torch.zeros_like(rows)
    b = torch.zeros_like(rows) if rule == BOIDS else None
    c = torch.zeros_like(rows) if rule == BOIDS else None
    count = torch.zeros(B * N, dtype=pos.dtype, device=pos.device)
    for i, j, _ in candidate_pairs(cells):
        delta = minimum_image(rows.index_select(0, j) - rows.index_select(0, i), grid)  # [P, D]
        sq = delta * delta
        d2 = sq[:, 0] + sq[:, 1] + (sq[:, 2] if D == 3 else 0)  # faster than sum(-1)
        keep = _near(rule, d2, i != j, radius).nonzero().squeeze(1)
        i, j = i.index_select(0, keep), j.index_select(0, keep)
        delta, d2 = delta.index_select(0, keep), d2.index_select(0, keep)
        count.index_add_(0, i, torch.ones_like(d2))
        if rule == CIRCLES:
            d = torch.sqrt(d2)
            a.index_add_(0, i, (torch.sin(d / radius * -2 * math.pi) / d)[:, None] * delta)
        elif rule == VICSEK:
            a.index_add_(0, i, vel_rows.index_select(0, j))
        else:
            a.index_add_(0, i, delta)
            close = (d2 < separation * separation).nonzero().squeeze(1)
            b.index_add_(0, i.index_select(0, close), -delta.index_select(0, close))
            c.index_add_(0, i, vel_rows.index_select(0, j))
    shape = (B, N, D)
    out = [cells.unsort(t.view(shape)) if t is not None else None for t in (a, b, c)]
    if rule == BOIDS:
        return out[0], out[1], out[2], cells.unsort(count.view(B, N))
    zero = torch.zeros_like(pos)
    return out[0], zero, zero, cells.unsort(count.view(B, N))


def _dispatch(
    rule: int,
    pos: torch.Tensor,
    vel: torch.Tensor | None,
    grid: CellGrid,
    radius: float,
    separation: float,
    backend: str,
    cells: CellList | None,
) -> tuple[torch.Tensor, ...]:
    where = choose(backend, pos)
    if where == "numba" and backend == "auto" and torch.is_grad_enabled():
        if pos.requires_grad or (vel is not None and vel.requires_grad):
            where = "torch"  # the reference is differentiable, the CPU kernel is not
    _check(pos, vel, grid, finite=where != "numba")
    if radius > grid.radius * (1 + 1e-12):
        raise ValueError(
            f"radius {radius} exceeds the cell grid's radius {grid.radius}: neighbours would be "
            "missed"
        )
    if where == "triton":
        cells = cells if cells is not None else build_cells(pos, grid)
        return _neighbour_sums_triton(rule, pos, vel, grid, cells, radius, separation)
    if where == "numba":
        return _neighbour_sums_numba(rule, pos, vel, grid, radius, separation)
    return _neighbour_sums_reference(rule, pos, vel, grid, radius, separation, "cells")


def vicsek_align_reference(
    pos: torch.Tensor, vel: torch.Tensor, grid: CellGrid, *, method: str = "brute"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch reference of :func:`vicsek_align` (``method``: ``"brute"`` or ``"cells"``)."""
    _check(pos, vel, grid)
    a, _, _, count = _neighbour_sums_reference(VICSEK, pos, vel, grid, grid.radius, 0.0, method)
    return a, count


def vicsek_align(
    pos: torch.Tensor,
    vel: torch.Tensor,
    grid: CellGrid,
    *,
    backend: str = "auto",
    cells: CellList | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the velocities of all agents within ``grid.radius`` (the agent itself included).

    Args:
        pos: ``[B, N, D]`` positions.
        vel: ``[B, N, D]`` velocities (Vicsek: unit heading vectors).
        grid: cell geometry; its radius is the interaction radius.
        backend: ``"auto" | "triton" | "torch"``.
        cells: a prebuilt cell list of ``pos`` (Triton path), to share it between kernels.

    Returns:
        total: ``[B, N, D]`` sum of neighbour velocities.
        count: ``[B, N]`` number of neighbours (>= 1: the agent itself).
    """
    a, _, _, count = _dispatch(VICSEK, pos, vel, grid, grid.radius, 0.0, backend, cells)
    return a, count


def boids_steer_reference(
    pos: torch.Tensor,
    vel: torch.Tensor,
    grid: CellGrid,
    separation: float,
    *,
    method: str = "brute",
) -> tuple[torch.Tensor, ...]:
    """Torch reference of :func:`boids_steer` (``method``: ``"brute"`` or ``"cells"``)."""
    _check(pos, vel, grid)
    return _neighbour_sums_reference(BOIDS, pos, vel, grid, grid.radius, separation, method)


def boids_steer(
    pos: torch.Tensor,
    vel: torch.Tensor,
    grid: CellGrid,
    separation: float,
    *,
    backend: str = "auto",
    cells: CellList | None = None,
) -> tuple[torch.Tensor, ...]:
    """Boids neighbour sums over the other agents within the visual distance ``grid.radius``.

    Args:
        pos, vel: ``[B, N, D]``.
        grid: cell geometry; its radius is the visual distance.
        separation: distance below which a neighbour repels.
        backend: ``"auto" | "triton" | "torch"``.
        cells: optional prebuilt cell list of ``pos``.

    Returns:
        cohere: ``[B, N, D]`` sum of ``x_j - x_i`` (minimum image).
        separate: ``[B, N, D]`` sum of ``x_i - x_j`` over neighbours closer than ``separation``.
        match: ``[B, N, D]`` sum of ``v_j``.
        count: ``[B, N]`` number of neighbours (self excluded).
    """
    if not (math.isfinite(separation) and separation >= 0):
        raise ValueError(f"separation must be finite and >= 0, got {separation}")
    return _dispatch(BOIDS, pos, vel, grid, grid.radius, separation, backend, cells)


def circles_force_reference(
    pos: torch.Tensor, grid: CellGrid, *, method: str = "brute"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch reference of :func:`circles_force` (``method``: ``"brute"`` or ``"cells"``)."""
    _check(pos, None, grid)
    a, _, _, count = _neighbour_sums_reference(CIRCLES, pos, None, grid, grid.radius, 0.0, method)
    return a, count


def circles_force(
    pos: torch.Tensor,
    grid: CellGrid,
    *,
    backend: str = "auto",
    cells: CellList | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """FLAME GPU "circles" pair forces, summed over the others within ``grid.radius``.

    Args:
        pos: ``[B, N, D]``.
        grid: cell geometry; its radius is the interaction radius ``R``.
        backend: ``"auto" | "triton" | "torch"``.
        cells: optional prebuilt cell list of ``pos``.

    Returns:
        force: ``[B, N, D]`` sum of ``sin(-2 pi d / R) (x_j - x_i) / d`` over ``0 < d < R``.
        count: ``[B, N]`` number of contributing neighbours.
    """
    a, _, _, count = _dispatch(CIRCLES, pos, None, grid, grid.radius, 0.0, backend, cells)
    return a, count
