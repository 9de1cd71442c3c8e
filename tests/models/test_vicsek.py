"""Vicsek model against known results: ordered at zero noise, random at full noise."""

from __future__ import annotations

import json
import math

import pytest
import torch

from populace.cli import main
from populace.engine import ParamError, Simulation
from populace.kernels import HAS_TRITON, INTERPRET
from populace.models import vicsek


def test_zero_noise_orders_the_flock():
    model = vicsek.build(agents=100, density=4.0, noise=0.0, speed=0.3)
    result = Simulation(model, members=2, seed=1, device="cpu", dtype=torch.float64).run(60)
    first = result.metrics.filter(result.metrics["step"] == 0)["order"]
    assert first.max() < 0.5  # started disordered
    assert result.series("order")[:, -1].min() > 0.99


def test_full_noise_gives_independent_headings():
    """eta = 2 pi: headings are i.i.d. uniform each step, so |sum v_i| is Rayleigh distributed.

    E[v_a] = sqrt(pi / (4N)), Var[v_a] = (4 - pi) / (4N) per sample; members and steps are
    independent samples.
    """
    n, members, steps = 100, 16, 10
    model = vicsek.build(agents=n, density=4.0, noise=2 * math.pi, speed=0.1)
    result = Simulation(model, members=members, seed=7, device="cpu").run(steps)
    samples = result.series("order")[:, 1:].reshape(-1).double()  # drop the initial state
    se = math.sqrt((4 - math.pi) / (4 * n) / samples.numel())
    assert abs(float(samples.mean()) - vicsek.random_order(n)) < 3 * se


def test_alignment_conserves_mean_heading_of_a_fully_connected_group():
    # side 1 < radius / sin(45 deg): every pair is within the radius in the periodic box
    model = vicsek.build(agents=50, density=50.0, noise=0.0, speed=0.05)
    sim = Simulation(model, members=3, seed=3, device="cpu", dtype=torch.float64)
    before = vicsek.headings(sim.state.theta).sum(dim=1)
    sim.run(1)
    after = vicsek.headings(sim.state.theta)
    angle = torch.atan2(before[:, 1], before[:, 0])
    torch.testing.assert_close(
        after, torch.stack([angle.cos(), angle.sin()], -1)[:, None].expand_as(after)
    )
    torch.testing.assert_close(sim.state.neighbours, torch.full((3,), 50.0, dtype=torch.float64))


def test_members_are_reproducible_alone_or_in_a_batch():
    model = vicsek.build(agents=64, density=4.0, noise=1.0, speed=0.2)
    batch = Simulation(model, members=3, seed=5, device="cpu").run(10)
    again = Simulation(model, members=3, seed=5, device="cpu").run(10)
    alone = Simulation(model, seeds=[batch.seeds[2]], device="cpu").run(10)
    assert torch.equal(batch.final_state.pos, again.final_state.pos)
    assert torch.equal(batch.final_state.pos[2:], alone.final_state.pos)


def test_per_member_noise_orders_low_noise_members_more():
    model = vicsek.build(agents=100, density=4.0, speed=0.3)
    model = model.with_params(noise=torch.tensor([0.1, 2 * math.pi]))
    result = Simulation(model, members=2, seed=2, device="cpu").run(60)
    final = result.series("order")[:, -1]
    assert final[0] > 0.9 > 0.3 > final[1]


@pytest.mark.skipif(not (HAS_TRITON and INTERPRET), reason="needs TRITON_INTERPRET=1")
def test_triton_and_torch_backends_give_the_same_trajectory():
    runs = []
    for backend in ("triton", "torch"):
        model = vicsek.build(agents=36, density=1.0, noise=1.0, speed=0.2, backend=backend)
        runs.append(Simulation(model, seed=4, device="cpu", dtype=torch.float64).run(2))
    torch.testing.assert_close(runs[0].final_state.pos, runs[1].final_state.pos)
    torch.testing.assert_close(runs[0].final_state.theta, runs[1].final_state.theta)


def test_bad_settings_raise():
    with pytest.raises(ParamError, match=r"vicsek parameter 'noise' must lie in \[0, 6.28319\]"):
        Simulation(vicsek.build(agents=10, noise=-1.0), device="cpu")
    with pytest.raises(ParamError, match=r"vicsek parameter 'noise' must lie in \[0, 6.28319\]"):
        Simulation(vicsek.build(agents=10, noise=7.0), device="cpu")
    with pytest.raises(ValueError, match="density"):
        vicsek.build(agents=10, density=0.0)


def test_cli_run_reports_order(capsys):
    code = main(
        [
            "run",
            "vicsek",
            "--agents",
            "200",
            "--steps",
            "5",
            "--json",
            "--device",
            "cpu",
            "--set",
            "noise=0.5",
            "--set",
            "density=4",
            "--set",
            "speed=0.1",
        ]
    )
    assert code == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= record["order"] <= 1 and record["neighbours"] >= 1


def test_checkpoint_resume_continues_exactly(tmp_path):
    model = vicsek.build(agents=64, density=4.0, noise=1.0, speed=0.2)
    straight = Simulation(model, members=2, seed=8, device="cpu").run(6)
    sim = Simulation(model, members=2, seed=8, device="cpu")
    sim.run(3)
    path = sim.save(tmp_path / "vicsek.pt")
    resumed = Simulation.resume(path, model, device="cpu").run(3)
    assert torch.equal(resumed.final_state.pos, straight.final_state.pos)
    assert torch.equal(resumed.final_state.theta, straight.final_state.theta)


def test_sorting_by_cell_keeps_the_physics():
    """Reordering agents permutes them; the zero-noise flock still orders."""
    model = vicsek.build(agents=100, density=4.0, noise=0.0, speed=0.3, sort_every=5)
    sim = Simulation(model, members=2, seed=1, device="cpu", dtype=torch.float64)
    before = sim.state
    sorted_state = vicsek.sort_by_cell(1)(before, sim.params, sim.ctx)
    for a, b in ((before.pos, sorted_state.pos), (before.theta, sorted_state.theta)):
        assert torch.equal(a.sort(dim=1).values, b.sort(dim=1).values)
    torch.testing.assert_close(
        vicsek.order(sorted_state, sim.params, sim.ctx), vicsek.order(before, sim.params, sim.ctx)
    )
    assert sim.run(60).series("order")[:, -1].min() > 0.99
