"""Cell-list neighbour search in 2D and 3D boxes, periodic or bounded, over an ensemble axis.

A box ``[0, L_0) x ... x [0, L_{D-1})`` is cut into cells at least ``radius`` wide, so every
pair closer than ``radius`` lies in the same or in adjacent cells (the 3**D stencil). Agents are
sorted by cell id (the permutation is kept) and each cell gets ``start``/``end`` offsets into the
sorted order; neighbour walks then read contiguous runs of agents.

Periodic boxes use the minimum-image convention. A periodic axis with fewer than 3 cells becomes
one cell (its stencil is then the cell itself), so no pair is visited twice. A bounded box clamps
cell coordinates, so agents that stray outside the box are still found (clamping keeps adjacent
cells adjacent).

This module imports only torch (kernels/ rule); the brute-force all-pairs functions are the oracle
of the tests.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterator, Sequence

import torch


@dataclasses.dataclass(frozen=True)
class CellGrid:
    """Geometry of a cell list (static: plain numbers).

    Attributes:
        box: box side per axis, ``D`` floats (D = 2 or 3).
        radius: interaction radius the cells are sized for.
        periodic: whether every axis wraps around.
        cells: cells per axis, ``D`` ints; cell ``(c_0, c_1, c_2)`` has id
            ``c_0 + n_0 * (c_1 + n_1 * c_2)``.
    """

    box: tuple[float, ...]
    radius: float
    periodic: bool
    cells: tuple[int, ...]

    @property
    def dim(self) -> int:
        return len(self.box)

    @property
    def cell_size(self) -> tuple[float, ...]:
        return tuple(side / n for side, n in zip(self.box, self.cells, strict=True))

    @property
    def count(self) -> int:
        """Total number of cells C."""
        return math.prod(self.cells)

    @property
    def span(self) -> tuple[int, ...]:
        """Stencil width per axis: 3, or 1 for a periodic axis of one cell."""
        return tuple(1 if (self.periodic and n == 1) else 3 for n in self.cells)

    def offsets(self) -> list[tuple[int, ...]]:
        """The stencil: cell offsets to visit around an agent's cell (9 in 2D, 27 in 3D)."""
        axes = [range(-(s // 2), s // 2 + 1) for s in self.span]
        return list(itertools.product(*axes))


def cell_grid(box: float | Sequence[float], radius: float, *, periodic: bool, dim: int = 0):
    """The cell grid of a box for interaction radius ``radius``.

    Args:
        box: side length (a cube/square when ``dim`` is given) or one side per axis.
        radius: interaction radius, > 0.
        periodic: wrap-around box (minimum image) or bounded box.
        dim: number of axes when ``box`` is a single number (2 or 3).

    Returns:
        A :class:`CellGrid` with ``floor(L / radius)`` cells per axis (at least 1; a periodic axis
        with fewer than 3 becomes 1 cell).
    """
    if isinstance(box, (int, float)):
        if dim not in (2, 3):
            raise ValueError(f"cell_grid: a scalar box needs dim=2 or 3, got dim={dim}")
        sides = (float(box),) * dim
    else:
        sides = tuple(float(s) for s in box)
    if len(sides) not in (2, 3):
        raise ValueError(f"cell_grid: box must have 2 or 3 sides, got {len(sides)}")
    if not all(math.isfinite(s) and s > 0 for s in sides):
        raise ValueError(f"cell_grid: box sides must be finite and > 0, got {sides}")
    if not (math.isfinite(radius) and radius > 0):
        raise ValueError(f"cell_grid: radius must be finite and > 0, got {radius}")
    cells = []
    for side in sides:
        n = max(int(side // radius), 1)
        if periodic and n < 3:
            n = 1
        cells.append(n)
    return CellGrid(sides, float(radius), bool(periodic), tuple(cells))


@dataclasses.dataclass(frozen=True)
class CellList:
    """Agents sorted by cell, per ensemble member.

    Attributes:
        grid: the geometry.
        cell: ``[B, N]`` int64, cell id of each agent (original order).
        order: ``[B, N]`` int64, ``order[b, k]`` is the agent in sorted slot ``k``.
        sorted_cell: ``[B, N]`` int64, cell id of sorted slot ``k`` (non-decreasing).
        start: ``[B, C]`` int64, first sorted slot of each cell.
        end: ``[B, C]`` int64, one past the last sorted slot of each cell.
        max_occupancy: the most agents in one cell over all members (a host int: loop bound).
    """

    grid: CellGrid
    cell: torch.Tensor
    order: torch.Tensor
    sorted_cell: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor
    max_occupancy: int

    def sort(self, values: torch.Tensor) -> torch.Tensor:
        """Reorder a ``[B, N, ...]`` agent tensor into sorted-by-cell order."""
        return _gather_agents(values, self.order)

    def unsort(self, values: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`sort`: ``[B, N, ...]`` in sorted order back to the original order."""
        idx = self.order.view(*self.order.shape, *([1] * (values.dim() - 2))).expand_as(values)
        return torch.empty_like(values).scatter_(1, idx, values)


def _gather_agents(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    idx = index.view(*index.shape, *([1] * (values.dim() - 2))).expand(
        *index.shape, *values.shape[2:]
    )
    return torch.gather(values, 1, idx)


def check_positions(pos: torch.Tensor, grid: CellGrid, name: str = "pos") -> None:
    """Raise ValueError unless ``pos`` is a finite floating ``[B, N, D]`` tensor for ``grid``."""
    if not isinstance(pos, torch.Tensor) or pos.dim() != 3 or pos.shape[2] != grid.dim:
        shape = tuple(pos.shape) if isinstance(pos, torch.Tensor) else type(pos).__name__
        raise ValueError(f"{name} must be a [B, N, {grid.dim}] tensor, got {shape}")
    if not pos.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {pos.dtype}")
    if not torch.isfinite(pos).all():
        raise ValueError(f"{name} has NaN/Inf values")


def wrap(pos: torch.Tensor, grid: CellGrid) -> torch.Tensor:
    """Positions folded into the box (periodic) or returned unchanged (bounded). ``[B, N, D]``."""
    if not grid.periodic:
        return pos
    box = pos.new_tensor(grid.box)
    return torch.remainder(pos, box)


def minimum_image(delta: torch.Tensor, grid: CellGrid) -> torch.Tensor:
    """Displacements ``[..., D]`` mapped to the nearest periodic image (bounded: unchanged)."""
    if not grid.periodic:
        return delta
    box = delta.new_tensor(grid.box)
    # floor(x + 0.5), not round(): the Triton kernels use the same expression
    return delta - box * torch.floor(delta / box + 0.5)


def cell_coords(pos: torch.Tensor, grid: CellGrid) -> torch.Tensor:
    """``[B, N, D]`` int64 cell coordinates of each agent (clamped into the grid)."""
    size = pos.new_tensor(grid.cell_size)
    coords = torch.floor(wrap(pos, grid) / size).to(torch.int64)
    high = torch.tensor(grid.cells, device=pos.device) - 1
    return torch.minimum(torch.clamp(coords, min=0), high)


def cell_ids(coords: torch.Tensor, grid: CellGrid) -> torch.Tensor:
    """Flatten ``[..., D]`` cell coordinates into ``[...]`` cell ids (axis 0 fastest)."""
    ids = coords[..., -1]
    for axis in range(grid.dim - 2, -1, -1):
        ids = ids * grid.cells[axis] + coords[..., axis]
    return ids


def build_cells(pos: torch.Tensor, grid: CellGrid) -> CellList:
    """Sort agents by cell and find each cell's run in the sorted order.

    Args:
        pos: ``[B, N, D]`` positions.
        grid: from :func:`cell_grid`.

    Returns:
        A :class:`CellList` (``start``/``end`` are ``[B, C]``).
    """
    check_positions(pos, grid)
    cell = cell_ids(cell_coords(pos, grid), grid)
    sorted_cell, order = torch.sort(cell, dim=1, stable=True)
    ids = torch.arange(grid.count, device=pos.device).expand(pos.shape[0], -1).contiguous()
    start = torch.searchsorted(sorted_cell, ids)
    end = torch.searchsorted(sorted_cell, ids, right=True)
    occupancy = int((end - start).max()) if pos.shape[1] else 0
    return CellList(grid, cell, order, sorted_cell, start, end, occupancy)


def neighbour_candidates(
    cells: CellList, coords: torch.Tensor, *, slots: bool = False
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Walk the stencil of every agent: yield ``(j, valid)`` per (offset, slot-in-cell).

    Every agent ``j`` in a stencil cell of agent ``i`` is yielded exactly once per ``i``,
    ``i`` itself included; the caller filters by distance. Memory stays ``O(B N)``.

    Args:
        cells: from :func:`build_cells`.
        coords: ``[B, N, D]`` cell coordinates of the querying agents (:func:`cell_coords`).
        slots: yield sorted slots instead of agent indices (for data already in sorted order:
            neighbours of a cell are then contiguous in memory).

    Yields:
        j: ``[B, N]`` int64 candidate agent index (original order), or sorted slot with
            ``slots=True``; arbitrary where not valid.
        valid: ``[B, N]`` bool.
    """
    grid = cells.grid
    n_cells = torch.tensor(grid.cells, device=coords.device)
    last = cells.order.shape[1] - 1
    for offset in grid.offsets():
        nb = coords + torch.tensor(offset, device=coords.device)
        if grid.periodic:
            nb = torch.remainder(nb, n_cells)
            inside = torch.ones(coords.shape[:2], dtype=torch.bool, device=coords.device)
        else:
            inside = ((nb >= 0) & (nb < n_cells)).all(dim=-1)
            nb = torch.minimum(torch.clamp(nb, min=0), n_cells - 1)
        nb_id = cell_ids(nb, grid)
        first = torch.gather(cells.start, 1, nb_id)
        stop = torch.where(inside, torch.gather(cells.end, 1, nb_id), first)
        for k in range(cells.max_occupancy):
            slot = first + k
            valid = slot < stop
            if not valid.any():
                break
            slot = slot.clamp(max=last)
            yield (slot if slots else torch.gather(cells.order, 1, slot)), valid


def _pairs(member: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    pairs = torch.stack([member, i, j], dim=1)
    if pairs.numel() == 0:
        return pairs.reshape(0, 3)
    n = int(pairs.max()) + 1
    key = (pairs[:, 0] * n + pairs[:, 1]) * n + pairs[:, 2]
    return pairs[torch.argsort(key)]


def pairs_brute_force(
    pos: torch.Tensor, grid: CellGrid, *, include_self: bool = False
) -> torch.Tensor:
    """All ordered pairs ``(member, i, j)`` with ``|x_j - x_i| <= radius``, by all-pairs distances.

    The oracle for tests: ``O(B N^2)`` memory.

    Args:
        pos: ``[B, N, D]``.
        grid: geometry (its radius, box and periodicity).
        include_self: whether to list ``(b, i, i)``.

    Returns:
        ``[P, 3]`` int64, sorted lexicographically.
    """
    check_positions(pos, grid)
    delta = minimum_image(pos[:, None, :, :] - pos[:, :, None, :], grid)  # [B, i, j, D]
    near = (delta * delta).sum(-1) <= grid.radius**2
    if not include_self:
        near &= ~torch.eye(pos.shape[1], dtype=torch.bool, device=pos.device)
    b, i, j = near.nonzero(as_tuple=True)
    return _pairs(b, i, j)


def pairs_cell_list(
    pos: torch.Tensor, grid: CellGrid, *, include_self: bool = False
) -> torch.Tensor:
    """Same result as :func:`pairs_brute_force`, found by walking the cell list.

    Returns:
        ``[P, 3]`` int64 ``(member, i, j)``, sorted lexicographically.
    """
    cells = build_cells(pos, grid)
    coords = cell_coords(pos, grid)
    B, N = pos.shape[:2]
    agent = torch.arange(N, device=pos.device).expand(B, N)
    member = torch.arange(B, device=pos.device)[:, None].expand(B, N)
    found = []
    for j, valid in neighbour_candidates(cells, coords):
        delta = minimum_image(_gather_agents(pos, j) - pos, grid)
        keep = valid & ((delta * delta).sum(-1) <= grid.radius**2)
        if not include_self:
            keep &= j != agent
        found.append(torch.stack([member[keep], agent[keep], j[keep]], dim=1))
    if not found:
        return torch.empty(0, 3, dtype=torch.int64, device=pos.device)
    pairs = torch.cat(found)
    return _pairs(pairs[:, 0], pairs[:, 1], pairs[:, 2])
