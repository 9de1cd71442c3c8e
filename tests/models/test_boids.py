"""Boids flocking (ABM comparison suite spec)."""

from __future__ import annotations

import math

import pytest
import torch

from populace.engine import ParamError, Simulation
from populace.kernels import HAS_TRITON, INTERPRET
from populace.models import boids


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
