"""Boids flocking (ABM comparison suite spec)."""

from __future__ import annotations

import math

import pytest
import torch

from populace.engine import ParamError, Simulation
from populace.kernels import HAS_TRITON, INTERPRET
from populace.models import boids
from tests.conftest import switch_kernel


def test_defaults_are_the_comparison_suite_spec():
    p = boids.BoidsParams()
    assert (p.cohere_factor, p.separation, p.separate_factor, p.match_factor, p.speed) == (
        0.03,
        1.0,
        0.015,
        0.05,
        1.0,
    )
    assert boids.build().options["visual_distance"] == 5.0


def test_flock_aligns_and_velocities_stay_unit():
    """Alignment spreads: polarisation climbs well above that of independent headings."""
    n = 100
    model = boids.build(agents=n, extent=15.0, visual_distance=5.0)
    result = Simulation(model, members=4, seed=1, device="cpu", dtype=torch.float64).run(80)
    order = result.series("order").mean(dim=0)
    chance = math.sqrt(math.pi / (4 * n))  # E|mean of n random unit vectors|
    assert order[0] < 2 * chance and order[-1] > 4 * chance
    torch.testing.assert_close(
        result.final_state.vel.norm(dim=-1), torch.ones(4, n, dtype=torch.float64)
    )
    assert (result.final_state.pos >= 0).all() and (result.final_state.pos < 15.0).all()


def test_one_step_matches_the_rule_by_hand():
    """Two birds 0.5 apart, facing opposite ways: every term of the rule is non-zero."""
    model = boids.build(agents=2, extent=20.0, visual_distance=5.0)
    sim = Simulation(model, device="cpu", dtype=torch.float64)
    pos = torch.tensor([[[5.0, 5.0], [5.5, 5.0]]], dtype=torch.float64)
    vel = torch.tensor([[[0.0, 1.0], [0.0, -1.0]]], dtype=torch.float64)
    sim.state = sim.state.replace(pos=pos, vel=vel)
    sim.run(1)
    d = torch.tensor([0.5, 0.0], dtype=torch.float64)  # x_1 - x_0
    raw = vel[0, 0] + 0.03 * d - 0.015 * d + 0.05 * vel[0, 1]
    want = raw / raw.norm()
    torch.testing.assert_close(sim.state.vel[0, 0], want)
    torch.testing.assert_close(sim.state.pos[0, 0], pos[0, 0] + want)


@pytest.mark.skipif(not (HAS_TRITON and INTERPRET), reason="needs TRITON_INTERPRET=1")
def test_triton_and_torch_backends_give_the_same_trajectory():
    runs = []
    for backend in ("triton", "torch"):
        model = boids.build(agents=40, extent=20.0, visual_distance=5.0, backend=backend)
        runs.append(Simulation(model, seed=4, device="cpu", dtype=torch.float64).run(2))
    torch.testing.assert_close(runs[0].final_state.pos, runs[1].final_state.pos)
    torch.testing.assert_close(runs[0].final_state.vel, runs[1].final_state.vel)


def test_per_member_separation_is_rejected():
    model = boids.build(agents=10).with_params(separation=torch.tensor([1.0, 2.0]))
    with pytest.raises(ParamError, match="separation"):
        Simulation(model, members=2, device="cpu")


def test_negative_params_are_refused():
    with pytest.raises(ParamError, match=r"boids parameter 'cohere_factor' must lie in \[0, inf\]"):
        Simulation(boids.build(agents=10, cohere_factor=-0.1), device="cpu")


def test_the_turn_kernel_equals_the_torch_turn_bit_for_bit():
    """flight.turn against models/boids.turn over a flock that has formed (per-member factors,
    one bird whose steering cancels its velocity exactly)."""
    pytest.importorskip("numba")
    from populace.kernels import flight
    from populace.kernels.swarm import boids_steer

    model = boids.build(agents=200, extent=60.0, visual_distance=10.0).with_params(
        cohere_factor=torch.tensor([0.03, 0.2]), speed=torch.tensor([1.0, 2.5])
    )
    sim = Simulation(model, members=2, seed=5, device="cpu")
    sim.run(15)
    state, params = sim.state, sim.params
    sums = list(boids_steer(state.pos, state.vel, state.grid, float(params.separation)))
    sums[0] = sums[0].clone()
    sums[1], sums[2] = torch.zeros_like(sums[1]), sums[2].clone()
    sums[2][0, 0] = -state.vel[0, 0] * sums[3][0, 0].clamp(min=1) / params.match_factor
    sums[0][0, 0] = 0.0
    factors = (params.cohere_factor, params.separate_factor, params.match_factor, params.speed)
    got = flight.turn(state.pos, state.vel, tuple(sums), factors, state.grid.box, True)
    want = boids.turn(state.pos, state.vel, tuple(sums), params, state.grid)
    assert got is not None
    for g, w in zip(got, want, strict=True):
        assert g.dtype == torch.float32 and torch.equal(g, w)
    assert torch.equal(got[1][0, 0], state.vel[0, 0])  # the cancelled bird kept its heading
    # where the kernel cannot run (a gradient, float64), it says so: the step takes the reference
    wide = [t.double() for t in (state.pos, state.vel)]
    assert (
        flight.turn(*wide, tuple(t.double() for t in sums), factors, state.grid.box, True) is None
    )
    grad = params.speed.clone().requires_grad_(True)
    assert (
        flight.turn(state.pos, state.vel, tuple(sums), (*factors[:3], grad), state.grid.box, True)
        is None
    )


def test_a_run_with_the_turn_kernel_equals_one_with_the_torch_turn(monkeypatch):
    pytest.importorskip("numba")
    from populace.kernels import flight

    model = boids.build(agents=150, extent=50.0, visual_distance=8.0)
    calls = switch_kernel(monkeypatch, flight, "turn", on=True)
    a = Simulation(model, members=2, seed=1, device="cpu").run(25)
    assert len(calls) == 25
    switch_kernel(monkeypatch, flight, "turn", on=False)  # the kernel cannot run
    b = Simulation(model, members=2, seed=1, device="cpu").run(25)
    assert a.metrics.equals(b.metrics)
    assert torch.equal(a.final_state.pos, b.final_state.pos)
