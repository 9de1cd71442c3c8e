"""Cell-list neighbour search equals brute force: 2D/3D, periodic/bounded, edge-crossing pairs."""

from __future__ import annotations

import pytest
import torch

from populace.kernels.neighbors import (
    build_cells,
    candidate_pairs,
    cell_grid,
    minimum_image,
    pairs_brute_force,
    pairs_cell_list,
)

CASES = [
    # (dim, box, radius, periodic)
    (2, 10.0, 1.0, True),
    (2, 10.0, 1.0, False),
    (2, (7.0, 4.5), 1.3, True),  # non-square, cells wider than radius
    (2, (7.0, 2.5), 1.0, True),  # a periodic axis of 2 cells collapses to 1
    (3, 6.0, 1.5, True),
    (3, 6.0, 1.5, False),
    (3, (5.0, 3.0, 2.0), 1.1, True),
]


def random_positions(b, n, grid, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    box = torch.tensor(grid.box, dtype=dtype)
    return torch.rand(b, n, grid.dim, generator=g, dtype=dtype) * box


@pytest.mark.parametrize("dim,box,radius,periodic", CASES)
@pytest.mark.parametrize("include_self", [False, True])
def test_cell_list_pairs_equal_brute_force(dim, box, radius, periodic, include_self):
    grid = cell_grid(box, radius, periodic=periodic, dim=dim)
    pos = random_positions(3, 200, grid, seed=dim * 10 + periodic)
    want = pairs_brute_force(pos, grid, include_self=include_self)
    got = pairs_cell_list(pos, grid, include_self=include_self)
    assert want.shape[0] > 100  # the case exercises real neighbours
    assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pairs_across_periodic_edges_are_found(dtype):
    grid = cell_grid(10.0, 1.0, periodic=True, dim=2)
    # a pair across the x edge, one across the corner; a bounded box must not see them
    pos = torch.tensor([[[0.2, 5.0], [9.7, 5.2], [0.1, 0.1], [9.9, 9.8], [5.0, 5.0]]], dtype=dtype)
    pairs = {tuple(p) for p in pairs_cell_list(pos, grid).tolist()}
    assert pairs == {(0, 0, 1), (0, 1, 0), (0, 2, 3), (0, 3, 2)}
    assert torch.equal(pairs_cell_list(pos, grid), pairs_brute_force(pos, grid))
    bounded = cell_grid(10.0, 1.0, periodic=False, dim=2)
    assert pairs_cell_list(pos, bounded).shape[0] == 0


def test_bounded_box_finds_agents_outside_the_box():
    grid = cell_grid(6.0, 1.0, periodic=False, dim=3)
    pos = random_positions(2, 150, grid, seed=3) * 1.4 - 1.2  # some agents outside on both sides
    assert torch.equal(pairs_cell_list(pos, grid), pairs_brute_force(pos, grid))


def test_pairs_are_symmetric_and_within_radius():
    grid = cell_grid(8.0, 1.0, periodic=True, dim=2)
    pos = random_positions(2, 300, grid, seed=5)
    pairs = pairs_cell_list(pos, grid)
    flipped = pairs[:, [0, 2, 1]]
    assert {tuple(p) for p in pairs.tolist()} == {tuple(p) for p in flipped.tolist()}
    b, i, j = pairs.T
    d = minimum_image(pos[b, j] - pos[b, i], grid).norm(dim=-1)
    assert (d <= 1.0).all()


def test_cell_list_offsets_cover_every_agent_once():
    grid = cell_grid(5.0, 1.0, periodic=True, dim=2)
    pos = random_positions(4, 100, grid, seed=7)
    cells = build_cells(pos, grid)
    assert torch.equal(cells.order.sort(dim=1).values, torch.arange(100).expand(4, 100))
    assert torch.equal(
        cells.end - cells.start, torch.nn.functional.one_hot(cells.cell, grid.count).sum(1)
    )
    assert torch.equal(cells.sort(cells.cell[..., None])[..., 0], cells.sorted_cell)
    assert torch.equal(cells.unsort(cells.sort(pos)), pos)
    assert cells.max_occupancy == int((cells.end - cells.start).max())


@pytest.mark.parametrize("budget", [1, 37, 1000, 1 << 20])
def test_candidate_chunks_list_each_stencil_agent_once(budget):
    """Whatever the chunking, every agent gets exactly the agents of its stencil cells."""
    grid = cell_grid((7.0, 4.5), 1.3, periodic=True, dim=2)
    pos = random_positions(2, 120, grid, seed=11)
    pos[1, :60] *= 0.2  # member 1 clustered: occupancies far apart
    cells = build_cells(pos, grid)
    chunks = list(candidate_pairs(cells, budget))
    i = torch.cat([c[0] for c in chunks])
    j = torch.cat([c[1] for c in chunks])
    covered = torch.cat([torch.arange(c[2].start, c[2].stop) for c in chunks])
    assert torch.equal(covered, torch.arange(240))  # chunks tile the agents in order
    assert all(c[0].numel() <= max(budget, 1) + 9 * cells.max_occupancy for c in chunks)
    # brute force: j is a candidate of i iff their cells are stencil neighbours
    n_cells = torch.tensor(grid.cells)
    coords = torch.stack(
        [cells.sorted_cell % grid.cells[0], cells.sorted_cell // grid.cells[0]], -1
    )
    flat = coords.reshape(240, 2)
    member = torch.arange(240) // 120
    gap = torch.remainder(flat[None, :, :] - flat[:, None, :] + 1, n_cells) - 1
    want = ((gap.abs() <= 1).all(-1) & (member[:, None] == member[None, :])).nonzero()
    got = torch.stack([i, j], 1)
    assert torch.equal(torch.sort(i).values, i)  # grouped by querying agent
    key = lambda p: p[:, 0] * 240 + p[:, 1]  # noqa: E731
    assert torch.equal(torch.sort(key(got)).values, key(want))


def test_grid_shapes_and_stencil():
    assert cell_grid(10.0, 1.0, periodic=True, dim=2).cells == (10, 10)
    assert len(cell_grid(10.0, 1.0, periodic=True, dim=2).offsets()) == 9
    assert len(cell_grid(10.0, 1.0, periodic=True, dim=3).offsets()) == 27
    small = cell_grid((2.5, 10.0), 1.0, periodic=True)
    assert small.cells == (1, 10) and len(small.offsets()) == 3
    assert cell_grid((2.5, 10.0), 1.0, periodic=False).cells == (2, 10)
    assert min(cell_grid(7.0, 1.3, periodic=True, dim=2).cell_size) >= 1.3


def test_bad_input_is_rejected_with_a_clear_error():
    grid = cell_grid(5.0, 1.0, periodic=True, dim=2)
    with pytest.raises(ValueError, match=r"\[B, N, 2\]"):
        build_cells(torch.zeros(2, 10, 3), grid)
    with pytest.raises(ValueError, match="NaN"):
        build_cells(torch.full((1, 4, 2), float("nan")), grid)
    with pytest.raises(ValueError, match="floating"):
        build_cells(torch.zeros(1, 4, 2, dtype=torch.int64), grid)
    with pytest.raises(ValueError, match="radius"):
        cell_grid(5.0, 0.0, periodic=True, dim=2)
    with pytest.raises(ValueError, match="dim"):
        cell_grid(5.0, 1.0, periodic=True)
