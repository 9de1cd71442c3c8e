"""Rationing: exact caps, random subsets, quotas per group, strict priority."""

from __future__ import annotations

import math

import torch

from populace.engine import Context
from populace.engine.rng import Streams
from populace.epi.rationing import grouped_order, priority_quotas, random_order, ration


def ctx(members: int, seed: int = 0) -> Context:
    return Context(
        0, Streams([seed * 100 + b for b in range(members)]), torch.device("cpu"), torch.float64
    )


def test_ration_gives_exactly_min_quota_eligible():
    c = ctx(3)
    order = random_order(c, 1000)
    eligible = torch.rand(3, 1000, generator=torch.Generator().manual_seed(1)) < 0.3
    quota = torch.tensor([10, 0, 10_000])
    got = ration(eligible, order, quota)
    assert not (got & ~eligible).any()
    assert got.sum(dim=1).tolist() == [10, 0, int(eligible[2].sum())]


def test_ration_picks_a_uniform_subset():
    hits = torch.zeros(200)
    runs = 400
    eligible = torch.ones(1, 200, dtype=torch.bool)
    for seed in range(runs):
        order = random_order(ctx(1, seed), 200)
        hits += ration(eligible, order, torch.tensor([50]))[0].float()
    share = hits / runs  # each agent chosen with probability 1/4
    assert abs(float(share.mean()) - 0.25) < 1e-9
    assert float(share.std()) < 4 * math.sqrt(0.25 * 0.75 / runs)
    assert abs(float(share[:100].mean()) - float(share[100:].mean())) < 0.03  # no index bias


def test_grouped_ration_respects_each_groups_quota():
    group = torch.arange(900) % 3  # interleaved codes: the order must group them
    c = ctx(2)
    order = grouped_order(c, group)
    assert torch.equal(group[order[0]], group.sort().values)
    eligible = torch.ones(2, 900, dtype=torch.bool)
    eligible[:, group == 1] &= torch.arange(900)[group == 1] < 30  # only 10 of group 1 eligible
    quota = torch.tensor([[5.0, 20.0, 300.0], [0.0, 1.0, 2.0]])
    got = ration(eligible, order, quota, group=group)
    per_group = torch.stack([got[:, group == g].sum(dim=1) for g in range(3)], dim=1)
    assert per_group.tolist() == [[5, 10, 300], [0, 1, 2]]


def test_priority_quotas_serve_higher_priority_first_and_share_ties():
    counts = torch.tensor([[100.0, 50.0, 50.0, 80.0]])
    priority = torch.tensor([3.0, 1.0, 1.0, 0.0])  # band 0 first, 1 and 2 together, 3 never
    u = torch.tensor([0.5])
    got = priority_quotas(counts, priority, torch.tensor([130.0]), u)
    assert got.tolist() == [[100.0, 15.0, 15.0, 0.0]]
    got = priority_quotas(counts, priority, torch.tensor([1000.0]), u)
    assert got.tolist() == [[100.0, 50.0, 50.0, 0.0]]


def test_priority_quotas_round_without_losing_or_inventing_doses():
    g = torch.Generator().manual_seed(0)
    counts = torch.full((1, 3), 1000.0)
    priority = torch.ones(3)
    totals = []
    for _ in range(2000):
        u = torch.rand(1, generator=g, dtype=torch.float64)
        q = priority_quotas(counts, priority, torch.tensor([10.0]), u)
        assert (q == q.round()).all() and ((q == 3) | (q == 4)).all()
        totals.append(float(q.sum()))
    assert max(totals) == 10.0 and min(totals) >= 9.0
    assert abs(sum(totals) / len(totals) - 10.0) < 0.1
