"""FLAME GPU 2 circles model."""

from __future__ import annotations

import math

import pytest
import torch

from populace.engine import ParamError, Simulation
from populace.kernels import HAS_TRITON, INTERPRET
from populace.models import circles


@pytest.mark.parametrize("d", [0.6, 1.4])
def test_a_pair_moves_as_the_force_law_says(d):
    model = circles.build(agents=2, density=2 / 1000)  # a 10^3 box
    sim = Simulation(model, device="cpu", dtype=torch.float64)
    pos = torch.tensor([[[5.0, 5.0, 5.0], [5.0 + d, 5.0, 5.0]]], dtype=torch.float64)
    sim.state = sim.state.replace(pos=pos)
    sim.run(1)
    step = 0.05 * math.sin(-2 * math.pi * d / 2.0)  # along +x for agent 0
    torch.testing.assert_close(sim.state.pos[0, 0, 0].item(), 5.0 + step)
    torch.testing.assert_close(sim.state.pos[0, 1, 0].item(), 5.0 + d - step)
    gap = float(sim.state.pos[0, 1, 0] - sim.state.pos[0, 0, 0])
    assert (gap > d) if d < 1.0 else (gap < d)  # repelled below R/2, attracted above


def test_density_one_run_has_the_expected_neighbour_count():
    """At density 1 a sphere of radius 2 holds (4/3) pi 8 = 33.5 others (fewer at the walls)."""
    model = circles.build(agents=1000, density=1.0)
    result = Simulation(model, members=2, seed=3, device="cpu").run(5)
    first = result.series("neighbours")[:, 1]
    assert 20 < float(first.mean()) < 4 / 3 * math.pi * 8
    assert (result.series("drift")[:, 1:] > 0).all()


@pytest.mark.skipif(not (HAS_TRITON and INTERPRET), reason="needs TRITON_INTERPRET=1")
def test_triton_and_torch_backends_give_the_same_trajectory():
    runs = []
    for backend in ("triton", "torch"):
        model = circles.build(agents=30, density=0.1, backend=backend)
        runs.append(Simulation(model, seed=4, device="cpu", dtype=torch.float64).run(2))
    torch.testing.assert_close(runs[0].final_state.pos, runs[1].final_state.pos)


def test_negative_repulse_is_refused():
    with pytest.raises(ParamError, match=r"circles parameter 'repulse' must lie in \[0, inf\]"):
        Simulation(circles.build(agents=10, repulse=-0.05), device="cpu")
