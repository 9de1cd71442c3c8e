"""Population sharding without a process group: blocks, halo plans, local layers and the halo
exchange (emulated from every rank's plan) give the rows one process computes, bit for bit;
the streams' views of agents draw each agent's own numbers; member slices of params."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from populace.engine import Context, Data, Params, Schedule, Streams, param
from populace.engine import distributed as D
from populace.engine.partition import (
    Blocks,
    BlockShard,
    block_bounds,
    cut_statistics,
    local_layer,
    plan,
)
from populace.engine.rng import ShardedDrawError
from populace.kernels import random as counter
from populace.kernels.graph import contact_pressure
from populace.populations.graphs import csr_from_edges, erdos_renyi


def weighted_layer(n: int, edges: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, n, (edges,), generator=g)
    dst = torch.randint(0, n, (edges,), generator=g)
    w = torch.rand(edges, generator=g, dtype=torch.float64) + 0.1
    return csr_from_edges(src, dst, n, w, dtype=torch.float64)


def test_blocks_have_near_equal_sizes_and_cover_the_agents():
    for n, world in [(10, 3), (7, 7), (1000, 64)]:
        b = block_bounds(n, world)
        assert b[0] == 0 and b[-1] == n and len(b) == world + 1
        sizes = [hi - lo for lo, hi in zip(b, b[1:], strict=False)]
        assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1


def test_blocks_snap_to_area_boundaries():
    codes = torch.repeat_interleave(torch.arange(6), torch.tensor([5, 1, 9, 3, 3, 7]))
    b = block_bounds(codes.numel(), 3, codes)
    starts = {0} | set((torch.nonzero(codes[1:] != codes[:-1]).flatten() + 1).tolist())
    assert set(b[:-1]) <= starts  # no area is split
    assert len(set(b)) == 4  # every rank holds agents


@pytest.mark.parametrize(
    "n, world, codes, words",
    [
        (2, 3, None, "world size 3 is larger than the 2 agents"),
        (4, 2, torch.tensor([0, 1, 0, 1]), "not ordered by the block axis"),
        (4, 3, torch.tensor([0, 0, 1, 1]), "larger than the 2 areas"),
    ],
)
def test_blocks_refuse_bad_splits(n, world, codes, words):
    with pytest.raises(D.DistributedError, match=words):
        block_bounds(n, world, codes)


@pytest.mark.parametrize("world", [2, 3, 5])
def test_local_layers_on_the_extended_vector_give_the_rows_of_one_process(world):
    n = 240
    layers = [weighted_layer(n, 900, 1), erdos_renyi(n, 4.0, 2)]
    x = torch.rand(3, n, dtype=torch.float64)
    whole = contact_pressure(layers, x, scales=[0.7, 1.3])
    bounds = block_bounds(n, world)
    halos = [plan(layers, bounds, r) for r in range(world)]
    for h in halos:
        ext = x[:, h.ids()]
        local = contact_pressure([local_layer(lay, h) for lay in layers], ext, scales=[0.7, 1.3])
        nb = h.below.numel()
        assert torch.equal(local[:, nb : nb + h.agents], whole[:, h.start : h.stop])
        assert torch.all(h.ids()[1:] > h.ids()[:-1])  # the extended vector is in global order


@pytest.mark.parametrize("world", [2, 4])
def test_what_each_rank_sends_is_what_the_others_receive(world):
    n = 200
    layers = [weighted_layer(n, 700, 3)]
    bounds = block_bounds(n, world)
    halos = [plan(layers, bounds, r) for r in range(world)]
    x = torch.arange(n, dtype=torch.float64) * 10  # values name their agent
    for r, h in enumerate(halos):
        got = []
        for q, other in enumerate(halos):  # emulate the all_to_all: rank q's block to r
            first = sum(other.send_counts[:r])
            assert other.send_counts[r] == h.recv_counts[q]
            sent = other.send[first : first + other.send_counts[r]] + other.start
            got.append(x[sent])
        received = torch.cat(got)
        assert torch.equal(received, x[torch.cat([h.below, h.above])])


def test_cut_statistics_count_the_edges_between_blocks():
    n = 150
    layer = erdos_renyi(n, 6.0, 5)
    bounds = block_bounds(n, 3)
    stats = cut_statistics([layer], bounds)
    crow, col = layer.crow_indices(), layer.col_indices()
    owner = torch.bucketize(torch.arange(n), torch.tensor(bounds[1:-1]), right=True)
    rows = torch.repeat_interleave(torch.arange(n), crow.diff())
    assert stats["cut_edges"] == int((owner[rows] != owner[col]).sum()) > 0
    assert stats["edges"] == col.numel()
    halos = [plan([layer], bounds, r) for r in range(3)]
    assert stats["halo"] == [h.below.numel() + h.above.numel() for h in halos]
    assert cut_statistics([layer], [0, n])["cut_edges"] == 0


# -- random numbers by global agent index -------------------------------------------------
def test_a_view_draws_the_agents_numbers_of_the_whole_population():
    seeds = [11, 22, 33]
    whole, view = Streams(seeds), Streams(seeds, agents=(40, 75))
    for s in (whole, view):
        s.begin(5)
    replicated = whole.uniform(7), view.uniform(7)  # not per agent: the same on every rank
    assert torch.equal(*replicated)
    a, b = whole.uniform(100, 3, dtype=torch.float64), view.uniform(35, 3, dtype=torch.float64)
    assert torch.equal(a[:, 40:75], b)
    assert torch.equal(whole.normal(100)[:, 40:75], view.normal(35))
    assert torch.equal(whole.integers(0, 9, 100)[:, 40:75], view.integers(0, 9, 35))


def test_a_view_refuses_draws_that_need_the_whole_population():
    view = Streams([1, 2], agents=(0, 10))
    with pytest.raises(ShardedDrawError, match="permutation of the 10 agents"):
        view.permutation(10)
    with pytest.raises(ShardedDrawError, match="agent axis first"):
        view.uniform(3, 10)


def test_uniform_at_gives_each_global_id_its_number():
    s = Streams([5, 6])
    s.begin(2)
    want = s.uniform(50)
    s.begin(2)
    ids = torch.tensor([[3, 49, 0, 17], [8, 8, 1, 30]])
    got = s.uniform_at(ids)
    assert torch.equal(got, torch.gather(want, 1, ids))
    keys = torch.tensor([-3, 2**40], dtype=torch.int64)
    ref = counter.uniform(keys, 99, 0, 64, torch.float64, backend="torch")
    assert torch.equal(counter.uniform_at(keys, 99, torch.arange(64), torch.float64), ref)
    with pytest.raises(ValueError, match="rows for 2 members"):
        counter.uniform_at(keys, 0, torch.zeros(3, 4, dtype=torch.int64))


# -- members ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class P(Params):
    a: float | torch.Tensor = param(1.0)
    b: float | torch.Tensor = param(1.0)
    c: float | torch.Tensor = param(1.0)


def test_member_slices_cut_per_member_values_and_keep_the_rest():
    beta = torch.arange(5.0, requires_grad=True)
    p = P(a=beta, b=Schedule(torch.arange(10.0).view(2, 5), (0, 3)), c=torch.tensor(2.0))
    sub = D.member_slice(p.to("cpu", torch.float32), 1, 3)
    assert sub.a.tolist() == [1.0, 2.0] and sub.a.requires_grad
    assert sub.b.values.tolist() == [[1.0, 2.0], [6.0, 7.0]] and sub.b.starts == (0, 3)
    assert float(sub.c) == 2.0
    assert [D.split(5, 3, r) for r in range(3)] == [(0, 1), (1, 3), (3, 5)]


def test_in_one_process_the_calibration_helpers_are_plain_means():
    x = torch.tensor([1.0, 2.0, 4.0], requires_grad=True)
    m = D.mean_over_members(x * x)
    m.backward()
    assert float(m.detach()) == 7.0 and x.grad.tolist() == pytest.approx([2 / 3, 4 / 3, 8 / 3])
    assert float(D.sum_over_members(x)) == 7.0
    assert D.member_seeds([4, 5]) == [4, 5]
    assert D.gather_members(x) is x and D.current() is None
    x.grad = torch.ones(3)
    D.average_grads([x])
    assert x.grad.tolist() == [1.0, 1.0, 1.0]


def test_sharding_without_a_process_group_is_refused():
    from populace.engine import Simulation
    from populace.models import sir

    with pytest.raises(D.DistributedError, match="no process group is initialised"):
        Simulation(sir.build(agents=10), device="cpu", distributed="agents")
    assert Simulation(sir.build(agents=10), device="cpu").shard is None


def test_the_version_hash_follows_the_sources(tmp_path, monkeypatch):
    pkg = tmp_path / "fake_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(D, "PACKAGES", ("fake_pkg",))
    first = D.version_hash()
    assert first == D.version_hash() and len(first) == 16
    (pkg / "__init__.py").write_text("x = 2\n")
    assert D.version_hash() != first


class FakeComm:
    """Rank 1 of 3, for what a shard computes without collectives."""

    rank, world = 1, 3


def test_a_block_shard_keeps_its_rows_of_the_data_and_state():
    from populace.models import network_sir

    model = network_sir.build(agents=90, degree=4.0, initial_infected=5)
    codes = torch.arange(90) // 10
    model = dataclasses.replace(
        model,
        data=Data({**model.data, "area": codes}, axes={"area": [str(a) for a in range(9)]}),
    )
    shard = BlockShard(FakeComm(), model, [7, 8], Blocks(axis="area"))
    assert shard.bounds == [0, 30, 60, 90]
    local = shard.local_data(model.data)
    assert torch.equal(local.area, codes[30:60])
    assert local.contacts.shape[0] == shard.halo.extended
    assert local.digests() == model.data.digests()  # checkpoints name the whole data
    assert shard.streams(Streams([7, 8])).agents == (30, 60)
    ctx = Context(0, Streams([7, 8]), torch.device("cpu"), torch.float32, model.data)
    state = model.init(model.params.to("cpu", torch.float32), ctx)
    part = shard.local_state(state)
    assert torch.equal(part.health, state.health[:, :, 30:60])
    assert torch.equal(part.log_prob, state.log_prob)  # no agent axis: kept whole


def test_a_model_without_contact_layers_is_not_split_by_agents():
    from populace.models import sir

    with pytest.raises(D.DistributedError, match="no contact layers"):
        BlockShard(FakeComm(), sir.build(agents=30), [1], Blocks())
