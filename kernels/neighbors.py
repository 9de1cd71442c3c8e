"""Cell-list neighbour search in 2D and 3D boxes, periodic or bounded, over an ensemble axis.

A box ``[0, L_0) x ... x [0, L_{D-1})`` is cut into cells at least ``radius`` wide, so every
pair closer than ``radius`` lies in the same or in adjacent cells (the 3**D stencil). Agents are
sorted by cell id (the permutation is kept) and each cell gets ``start``/``end`` offsets into the
sorted order; neighbour walks then read contiguous runs of agents.

The walks are clustering-proof: :func:`candidate_pairs` lists, chunk by chunk, exactly the
candidates of each agent's stencil cells (work proportional to the occupancy of the cells
visited, never to the densest cell of the box), and the Triton kernels bound each block's loop by
the occupancy of the cells its lanes visit.

Periodic boxes use the minimum-image convention. A periodic axis with fewer than 3 cells becomes
one cell (its stencil is then the cell itself), so no pair is visited twice. A bounded box clamps
cell coordinates, so agents that stray outside the box are still found (clamping keeps adjacent
cells adjacent).

This module imports only torch (kernels/ rule); the brute-force all-pairs functions are the oracle
of the tests.
"""

from __future__ import annotations

import dataclasses
import functools
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
    """

    grid: CellGrid
    cell: torch.Tensor
    order: torch.Tensor
    sorted_cell: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor

    @functools.cached_property
    def max_occupancy(self) -> int:
        """The most agents in one cell over all members (a host int: reading it synchronises)."""
        return int((self.end - self.start).max()) if self.order.shape[1] else 0

    @functools.cached_property
    def runs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(first, length)``, each ``[B, C, S]`` int64: the run of sorted slots of every
        stencil cell (S = 3**D offsets, :meth:`CellGrid.offsets` order) of every cell; length 0
        where a bounded box has no cell."""
        nb, inside = stencil_table(self.grid, self.start.device)  # [C, S]
        first = self.start[:, nb]  # [B, C, S]
        length = torch.where(inside, self.end[:, nb] - first, 0)
        return first, length

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


def check_positions(
    pos: torch.Tensor, grid: CellGrid, name: str = "pos", *, finite: bool = True
) -> None:
    """Raise ValueError unless ``pos`` is a (finite, unless ``finite=False``) floating
    ``[B, N, D]`` tensor for ``grid``."""
    if not isinstance(pos, torch.Tensor) or pos.dim() != 3 or pos.shape[2] != grid.dim:
        shape = tuple(pos.shape) if isinstance(pos, torch.Tensor) else type(pos).__name__
        raise ValueError(f"{name} must be a [B, N, {grid.dim}] tensor, got {shape}")
    if not pos.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {pos.dtype}")
    if finite and not torch.isfinite(pos).all():
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
    return CellList(grid, cell, order, sorted_cell, start, end)


@functools.lru_cache(maxsize=16)
def stencil_table(grid: CellGrid, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The stencil of every cell, computed once per grid and device.

    Returns:
        nb: ``[C, S]`` int64 id of each stencil cell (clamped into the grid where bounded).
        inside: ``[C, S]`` bool, False where a bounded box has no such cell.
    """
    ids = torch.arange(grid.count, device=device)
    coords = torch.stack(
        [(ids // math.prod(grid.cells[:axis])) % n for axis, n in enumerate(grid.cells)], dim=-1
    )  # [C, D], axis 0 fastest, as cell_ids
    n_cells = torch.tensor(grid.cells, device=device)
    offsets = torch.tensor(grid.offsets(), device=device)  # [S, D]
    nb = coords[:, None, :] + offsets[None, :, :]  # [C, S, D]
    if grid.periodic:
        inside = torch.ones(nb.shape[:2], dtype=torch.bool, device=device)
        nb = torch.remainder(nb, n_cells)
    else:
        inside = ((nb >= 0) & (nb < n_cells)).all(dim=-1)
        nb = torch.minimum(torch.clamp(nb, min=0), n_cells - 1)
    return cell_ids(nb, grid), inside


#: candidate pairs per chunk of :func:`candidate_pairs` (memory: about 100 bytes per pair).
PAIR_BUDGET = 1 << 20


def candidate_pairs(
    cells: CellList, budget: int = PAIR_BUDGET
) -> Iterator[tuple[torch.Tensor, torch.Tensor, slice]]:
    """Every (agent, stencil candidate) pair, listed chunk by chunk of sorted agents.

    Each chunk holds whole agents and at most about ``budget`` pairs (more only when one
    agent alone has more candidates), so the work and memory follow the occupancy of the cells
    actually visited. Within a chunk, pairs come agent by agent, then stencil offset by offset
    (:meth:`CellGrid.offsets` order), then by sorted slot: the summation order of the kernels.

    Args:
        cells: from :func:`build_cells`.
        budget: pairs per chunk, >= 1.

    Yields:
        i: ``[P]`` int64 flat sorted slot ``b * N + k`` of the querying agent (non-decreasing).
        j: ``[P]`` int64 flat sorted slot of the candidate (every agent of the stencil cells,
            ``i`` itself included); the caller filters by distance.
        rows: the slice of flat sorted slots this chunk covers.
    """
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    B, N = cells.order.shape
    if N == 0:
        return
    device = cells.order.device
    C = cells.grid.count
    first, length = cells.runs  # [B, C, S]
    S = first.shape[-1]
    first = (first + (torch.arange(B, device=device) * N)[:, None, None]).reshape(B * C, S)
    length = length.reshape(B * C, S)
    row_cell = (cells.sorted_cell + (torch.arange(B, device=device) * C)[:, None]).reshape(-1)
    per_agent = length.sum(dim=1).index_select(0, row_cell)  # [B N] candidates per agent
    ends = torch.cumsum(per_agent, 0)
    total = int(ends[-1])
    bounds = [0, B * N]
    if total > budget:  # chunk k ends with the first agent whose running total reaches k budgets
        targets = torch.arange(budget, total, budget, device=device)
        cuts = torch.searchsorted(ends, targets) + 1
        bounds = [0, *sorted(set(cuts.tolist()) - {B * N}), B * N]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        rows = slice(lo, hi)
        counts = per_agent[rows]
        size = int(ends[hi - 1] - (ends[lo - 1] if lo else 0))
        if size == 0:
            continue
        i = torch.repeat_interleave(torch.arange(lo, hi, device=device), counts, output_size=size)
        run_len = length.index_select(0, row_cell[rows]).reshape(-1)  # [M S]
        run_first = first.index_select(0, row_cell[rows]).reshape(-1)
        # pair p of run q is slot run_first[q] + (p - first pair of q)
        base = run_first - (torch.cumsum(run_len, 0) - run_len)
        j = torch.repeat_interleave(base, run_len, output_size=size)
        j += torch.arange(size, device=device)
        yield i, j, rows


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
    B, N = pos.shape[:2]
    rows = cells.sort(pos).reshape(B * N, grid.dim)
    agent = (cells.order + (torch.arange(B, device=pos.device) * N)[:, None]).reshape(-1)
    found = []
    for i, j, _ in candidate_pairs(cells):
        delta = minimum_image(rows.index_select(0, j) - rows.index_select(0, i), grid)
        keep = (delta * delta).sum(-1) <= grid.radius**2
        if not include_self:
            keep &= i != j
        i, j = i[keep], j[keep]
        found.append(torch.stack([i // N, agent[i] - (i // N) * N, agent[j] - (j // N) * N], 1))
    if not found:
        return torch.empty(0, 3, dtype=torch.int64, device=pos.device)
    pairs = torch.cat(found)
    return _pairs(pairs[:, 0], pairs[:, 1], pairs[:, 2])
