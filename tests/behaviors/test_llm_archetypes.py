"""Archetypes from attributes and clustering; broadcast and heterogeneity."""

from __future__ import annotations

import pytest
import torch

from populace.behaviors.llm import broadcast, group_by, heterogeneous, kmeans


def test_group_by_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    age = torch.randint(0, 3, (500,), generator=g)
    place = torch.randint(0, 4, (500,), generator=g)
    place[place == 2] = 1  # an empty combination must be dropped
    arch = group_by({"age": age, "place": place}, {"age": "abc", "place": ["p", "q", "r", "s"]})
    combos = sorted({(int(a), int(p)) for a, p in zip(age, place, strict=True)})
    assert arch.count == len(combos)
    for k, (a, p) in enumerate(combos):
        assert arch.labels[k] == {"age": "abc"[a], "place": "pqrs"[p]}
        members = ((age == a) & (place == p)).nonzero().flatten()
        assert torch.equal(arch.members(k), members)
        assert int(arch.sizes[k]) == members.numel()
    assert int(arch.sizes.sum()) == 500


def test_group_by_rejects_bad_codes():
    with pytest.raises(ValueError, match="outside"):
        group_by({"age": torch.tensor([0, 3])}, {"age": ["a", "b"]})
    with pytest.raises(ValueError, match="no value names"):
        group_by({"age": torch.tensor([0])}, {})


def test_kmeans_recovers_separated_clusters():
    g = torch.Generator().manual_seed(1)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    truth = torch.arange(300) % 3
    x = centers[truth] + 0.3 * torch.randn(300, 2, generator=g)
    arch = kmeans(x, 3, names=["a", "b"], generator=torch.Generator().manual_seed(2))
    assert arch.count == 3
    # same partition as the truth, up to relabelling
    pairs = {(int(t), int(a)) for t, a in zip(truth, arch.index, strict=True)}
    assert len(pairs) == 3
    assert set(arch.labels[0]) == {"a", "b"}
    with pytest.raises(ValueError, match="NaN"):
        kmeans(torch.tensor([[float("nan")]]), 1)


def test_broadcast_gathers_by_index_and_keeps_gradients():
    arch = group_by({"a": torch.tensor([1, 0, 1, 1])}, {"a": ["x", "y"]})
    values = torch.tensor([[0.2, 0.7], [0.5, 0.1]], requires_grad=True)
    out = broadcast(values, arch)
    assert torch.equal(out.detach(), torch.tensor([[0.7, 0.2, 0.7, 0.7], [0.1, 0.5, 0.1, 0.1]]))
    out.sum().backward()
    assert torch.equal(values.grad, torch.tensor([[1.0, 3.0], [1.0, 3.0]]))
    with pytest.raises(ValueError, match=r"\[B, K=2\]"):
        broadcast(torch.zeros(2, 3), arch)


def test_heterogeneity_spreads_around_the_archetype_value():
    p = torch.full((1, 10_000), 0.3)
    z = torch.randn(10_000, generator=torch.Generator().manual_seed(3))
    assert torch.equal(heterogeneous(p, z, 0.0), p)
    spread = heterogeneous(p, z, 0.5)
    assert spread.std() > 0.05
    # symmetric offsets on the logit scale: the median agent keeps the archetype value
    assert float(spread.median()) == pytest.approx(0.3, abs=0.01)
