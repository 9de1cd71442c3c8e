"""Stigmergy fields on row slabs (gloo on CPU): deposits (nearest and bilinear, float amounts,
agents anywhere), NetLogo diffusion with evaporation and sensing past one halo row give the
single-process kernels' field and readings bit for bit on 1, 2 and 3 ranks, for a wrapped and
a closed field; mass is kept; diffusing each slab without the halo exchange would not. Physarum
on field rows (agents migrating between the rank of their row) is physarum bit for bit on 2
ranks, and its checkpoint resumes on 3 and on 1 to the same trajectory."""

from __future__ import annotations

import pytest
import torch
from field_ranks import CASES, H, W, in_process, physarum_run, sharded, start, whole, worker
from sharded_runs import group_of_one, launch, read_frame

from populace.engine import Simulation
from populace.engine.distributed import DistributedError
from populace.engine.field_slabs import FieldRows, FieldSlabs
from populace.kernels.stigmergy import deposit
from populace.models import physarum, physarum_slabs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fields")
    return {
        "reference": {case: whole(*case) for case in CASES},
        "physarum": physarum_run(None, "save", sharded=False),
        2: launch(2, "save", folder, target=worker),
        3: launch(3, "resume", folder, target=worker),
        1: [in_process(folder, "resume")],
    }


@pytest.mark.slow
@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_row_slabs_give_the_single_process_field_and_readings(runs, world, case):
    want = runs["reference"][case]
    for got in runs[world]:  # every rank holds the gathered field
        assert torch.equal(got[case]["field"], want["field"])
        assert torch.equal(got[case]["readings"], want["readings"])
        # the all-reduced total sums in another order: equal to rounding
        torch.testing.assert_close(got[case]["total"], want["field"].sum(dim=(1, 2)))


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 3])
def test_without_the_halo_exchange_the_field_differs(runs, world):
    want = runs["reference"][("wrap", "nearest", "float64")]["field"]
    got = runs[world][0]["no halo"]["field"]
    assert not torch.allclose(got, want)
    # the rows next to a slab edge are wrong, not just the bits
    assert (got - want).abs().max() > 1e-3


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_mass_is_kept_without_evaporation(case):
    boundary, mode, dtype = case
    s = start(getattr(torch, dtype))
    got = sharded(None, *case)
    # member 0 does not evaporate: its mass is the start plus every live deposit
    live = (s["amount"] * s["alive"])[0].sum()
    want = s["field"][0].sum() + 4 * live  # 4 steps
    torch.testing.assert_close(got["field"][0].sum(), want)
    assert got["field"][1].sum() < want  # member 1 evaporates


def test_one_slab_without_a_group_is_the_whole_field():
    slabs = FieldSlabs(H, W)
    f = torch.rand(2, H, W, dtype=torch.float64)
    assert torch.equal(slabs.gather(slabs.local(f)), f)
    ext, a = slabs.extend(slabs.local(f), 2)
    assert a == 2 and torch.equal(ext[:, :2], f[:, -2:]) and torch.equal(ext[:, -2:], f[:, :2])


def test_halo_rows_wrap_or_stop_at_a_closed_edge():
    class Comm:
        rank, world = 0, 3

    wrap, closed = FieldSlabs(10, 4, Comm(), "wrap"), FieldSlabs(10, 4, Comm(), "closed")
    assert wrap.rows == [(0, 3), (3, 6), (6, 10)]
    assert wrap.halo(0, 2) == ([8, 9], [3, 4]) and wrap.halo(2, 1) == ([5], [0])
    assert closed.halo(0, 2) == ([], [3, 4]) and closed.halo(2, 1) == ([5], [])


def test_bad_input_is_refused_with_its_name():
    class Comm:
        rank, world = 0, 4

    with pytest.raises(DistributedError, match="world size 4 is larger than the 3 rows"):
        FieldSlabs(3, 5, Comm())
    with pytest.raises(ValueError, match="unknown boundary 'open'"):
        FieldSlabs(3, 5, boundary="open")
    slabs = FieldSlabs(H, W)
    with pytest.raises(ValueError, match=r"must be \[B, 11, 7\]"):
        slabs.diffuse_evaporate(torch.zeros(1, H - 1, W), 0.5, 0.1)
    with pytest.raises(ValueError, match="pos has NaN"):
        slabs.deposit(torch.zeros(1, H, W), torch.full((1, 3, 2), float("nan")), 1.0)
    with pytest.raises(ValueError, match="unknown mode 'cubic'"):
        slabs.sense(
            torch.zeros(1, H, W), torch.zeros(1, 3, 2), torch.zeros(1, 3), [0.0], 1.0, mode="cubic"
        )


@pytest.mark.slow
def test_physarum_on_two_ranks_is_physarum(runs):
    want = runs["physarum"]
    for got in runs[2]:
        frame = read_frame(got["physarum"]["metrics"])
        assert frame.equals(read_frame(want["metrics"]))
        for name in ("trail", "pos", "heading"):
            assert torch.equal(got["physarum"][name], want[name]), name
    assert read_frame(want["metrics"])["coverage"].max() > 0.1  # the agents laid a trail


@pytest.mark.slow
@pytest.mark.parametrize("world", [1, 3])
def test_a_physarum_checkpoint_of_two_ranks_resumes_on_other_world_sizes(runs, world):
    want = read_frame(runs["physarum"]["after"])
    for got in runs[world]:
        assert read_frame(got["physarum"]["after"]).equals(want)


def test_physarum_on_rows_in_one_process_is_physarum():
    kw = {"agents": 50, "world": 10, "sensor_offset": 3.0}
    a = Simulation(physarum.build(**kw), members=2, seed=8, device="cpu").run(5)
    b = Simulation(physarum_slabs.build(**kw), members=2, seed=8, device="cpu").run(5)
    assert a.metrics.equals(b.metrics)
    assert torch.equal(a.final_state.trail, b.final_state.trail)
    assert torch.equal(a.final_state.pos, b.final_state.pos)


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_deposits_are_added_in_id_order_whatever_the_slots(mode):
    g = torch.Generator().manual_seed(3)
    field = torch.rand(1, 3, 3, generator=g)  # float32, 9 cells for 400 agents: many per cell
    pos = torch.rand(1, 400, 2, generator=g) * 3 - 0.5
    amount = torch.rand(1, 400, generator=g) * 1e3
    perm = torch.randperm(400, generator=g)
    slabs = FieldSlabs(3, 3)
    got = slabs.deposit(field, pos[:, perm], amount[:, perm], gid=perm[None], mode=mode)
    want = deposit(field, pos, amount, mode=mode, backend="torch")  # agent g at slot g
    assert torch.equal(got, want)
    # in slot order the same sums differ in the last bits: the order is what makes it exact
    shuffled = deposit(field, pos[:, perm], amount[:, perm], mode=mode, backend="torch")
    assert not torch.equal(shuffled, want)
    torch.testing.assert_close(shuffled, want)


def test_field_rows_refuse_a_state_without_a_field_grid():
    with group_of_one():
        with pytest.raises(DistributedError, match="PhysarumState has no field_grid"):
            Simulation(physarum.build(agents=20, world=6), device="cpu", distributed=FieldRows())
