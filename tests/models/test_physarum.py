"""Physarum (Jones 2010): analytic steady trail mass, network formation, CLI, bad params."""

from __future__ import annotations

import pytest
import torch

from populace.cli import main
from populace.engine import ParamError, Simulation
from populace.models import physarum


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: intra-op threads only add contention on the shared 2-core CI machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def concentration(trail: torch.Tensor, top: float = 0.1) -> torch.Tensor:
    """``[B]`` share of the trail mass held by the richest ``top`` fraction of cells."""
    flat = trail.flatten(1).sort(dim=1, descending=True).values
    return flat[:, : int(top * flat.shape[1])].sum(1) / flat.sum(1)


def test_trail_mass_reaches_the_analytic_steady_state():
    agents, dep, decay = 300, 5.0, torch.tensor([0.1, 0.25], dtype=torch.float64)
    model = physarum.build(agents=agents, world=32).with_params(deposit=dep, decay=decay)
    result = Simulation(model, members=2, seed=1, device="cpu", dtype=torch.float64).run(200)
    mass = result.series("trail_mass")  # [B, T]
    steady = torch.tensor([physarum.steady_mass(agents, dep, float(d)) for d in decay])
    assert (mass[:, 1:] >= mass[:, :-1] - 1e-9 * mass[:, -1:]).all()  # approached from below
    torch.testing.assert_close(mass[:, -1], steady.to(mass), rtol=1e-9, atol=0)
    # and the approach follows M(t+1) = (1 - decay) (M(t) + N deposit) step by step
    nxt = (1 - decay.view(-1, 1)) * (mass[:, :-1] + agents * dep)
    torch.testing.assert_close(mass[:, 1:], nxt, rtol=1e-9, atol=1e-9)


def test_agents_build_a_network_of_veins():
    """Sensing concentrates the trail into veins; without turning it stays spread out."""
    model = physarum.build(agents=800, world=64)
    veins = Simulation(model, members=2, seed=0, device="cpu").run(200).final_state.trail
    straight = (
        Simulation(model.with_params(rotation=0.0), members=2, seed=0, device="cpu")
        .run(200)
        .final_state.trail
    )
    assert (concentration(veins) > 0.5).all()
    assert (concentration(straight) < 0.25).all()


def test_runs_through_the_cli_on_the_ensemble_axis(capsys):
    argv = ["run", "physarum", "--agents", "200", "--steps", "5", "--members", "3"]
    argv += ["--set", "world=24", "--set", "decay=0.2", "--device", "cpu"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "physarum: 200 agents x 3 member(s)" in out and "trail_mass" in out and "coverage" in out


def test_bad_params_are_named():
    with pytest.raises(ParamError, match=r"physarum parameter 'decay' must lie in \[0, 1\]"):
        Simulation(physarum.build(agents=10, world=8).with_params(decay=1.5), device="cpu")
    with pytest.raises(ParamError, match="sensor_angle"):
        model = physarum.build(agents=10, world=8).with_params(sensor_angle=torch.ones(2))
        Simulation(model, members=2, device="cpu")
    with pytest.raises(ValueError, match="world"):
        physarum.build(agents=10, world=2)
