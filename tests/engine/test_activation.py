"""Activation primitives: per-cell order of sequential rounds, cellmates, neighbours, claims."""

from __future__ import annotations

import torch

from populace.engine import Context, Streams
from populace.engine.activation import (
    activation_batches,
    claim,
    random_cellmate,
    random_neighbour,
    random_rank,
    rounds,
)
from populace.populations.graphs import erdos_renyi


def ctx_of(members: int = 1, seed: int = 0) -> Context:
    return Context(
        0, Streams([seed + b for b in range(members)]), torch.device("cpu"), torch.float64
    )


def test_rounds_keep_every_cells_agents_in_rank_order_and_run_disjoint_agents_together():
    ctx = ctx_of(members=3)
    n, cells = 400, 200
    touched = ctx.rng.integers(0, cells, n, 2)  # [B, N, 2]
    rank = random_rank(ctx, n)
    when = rounds(rank, touched, cells)
    assert (when >= 0).all() and int(when.max()) < n // 4  # rounds, not one agent at a time
    for b in range(3):
        for c in range(cells):
            agents = ((touched[b] == c).any(dim=1)).nonzero().flatten()
            order = agents[torch.argsort(rank[b, agents])]
            steps = when[b, order]
            assert (steps[1:] > steps[:-1]).all()  # strictly later, in rank order, per cell


def test_random_cellmate_is_another_agent_of_the_cell_uniformly():
    ctx = ctx_of()
    cell = torch.tensor([[0, 0, 0, 1, 2, 2, -1]])
    picks = torch.stack([random_cellmate(cell, 3, ctx)[0] for _ in range(3000)])  # [T, N]
    assert (picks[:, 3] == -1).all() and (picks[:, 6] == -1).all()  # alone, absent
    assert set(picks[:, 4].tolist()) == {5} and set(picks[:, 5].tolist()) == {4}
    first = picks[:, 0]
    assert set(first.tolist()) == {1, 2}  # never itself
    share = (first == 1).double().mean().item()
    assert abs(share - 0.5) < 0.05


def test_random_neighbour_is_a_contact():
    ctx = ctx_of(members=2)
    layer = erdos_renyi(300, 3.0, seed=1)
    crow, col = layer.crow_indices(), layer.col_indices()
    pick = random_neighbour(layer, ctx)
    for i in range(300):
        contacts = set(col[crow[i] : crow[i + 1]].tolist())
        for b in range(2):
            assert (pick[b, i].item() in contacts) if contacts else pick[b, i].item() == -1


def test_claims_give_each_target_one_uniformly_random_winner():
    ctx = ctx_of()
    target = torch.tensor([[0, 0, 0, 0, 1, -1]])
    wins = torch.stack([claim(target, 2, ctx)[0] for _ in range(4000)])
    assert (wins[:, :4].sum(dim=1) == 1).all()  # exactly one of the four claimants
    assert wins[:, 4].all() and not wins[:, 5].any()
    shares = wins[:, :4].double().mean(dim=0)
    assert (shares - 0.25).abs().max() < 0.03


def test_activation_batches_split_a_random_order_evenly():
    batch = activation_batches(ctx_of(members=2), 10, 3)
    for b in range(2):
        assert sorted(torch.bincount(batch[b], minlength=3).tolist()) == [3, 3, 4]


def test_arrival_cellmates_are_those_present_at_each_agents_turn():
    from populace.engine.activation import arrival_cellmates

    ctx = ctx_of()
    # agent 0 moves first into cell 1, where agents 1 and 2 still are; agent 1 then finds cell 0
    # empty (agent 0 left it), agent 2 moves last into empty cell 2; agent 3 arrives in cell 1
    # after 0 (arrived) and while nobody else stayed (1 and 2 left)
    origin = torch.tensor([[0, 1, 1, 3]])
    dest = torch.tensor([[1, 0, 2, 1]])
    rank = torch.tensor([[0, 1, 2, 3]])
    picks = torch.stack([arrival_cellmates(origin, dest, rank, 4, ctx)[0] for _ in range(2000)])
    assert set(picks[:, 0].tolist()) == {1, 2}
    assert abs((picks[:, 0] == 1).double().mean().item() - 0.5) < 0.05
    assert (picks[:, 1] == -1).all() and (picks[:, 2] == -1).all()
    assert (picks[:, 3] == 0).all()


def test_a_random_neighbouring_cell_of_a_grid_is_uniform_over_the_moore_cells():
    from populace.populations.graphs import grid

    ctx = ctx_of()
    moore = grid(4, 3)  # 12 cells; cell 0 is a corner with 3 neighbours, 4 = (1, 1) has 8
    rows = torch.tensor([[0, 4]]).repeat(1, 3000)
    picks = random_neighbour(moore, ctx, rows=rows)[0].view(3000, 2)
    corner = torch.bincount(picks[:, 0], minlength=12)
    assert set(corner.nonzero().flatten().tolist()) == {1, 3, 4}
    inner = torch.bincount(picks[:, 1], minlength=12)
    assert set(inner.nonzero().flatten().tolist()) == {0, 1, 2, 3, 5, 6, 7, 8}
    assert ((inner[inner > 0].double() / 3000) - 1 / 8).abs().max() < 0.03
    wrapped = grid(4, 3, moore=False, torus=True)
    assert (wrapped.crow_indices().diff() == 4).all()  # von Neumann on a torus: 4 each
