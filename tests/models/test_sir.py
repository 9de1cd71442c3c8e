import math

import pytest
import torch

from populace.engine import ParamError, Simulation
from populace.models import sir


@pytest.mark.parametrize("r0, z", [(2.0, 0.7968), (3.0, 0.9405), (1.5, 0.5828)])
def test_final_size_solver_matches_published_values(r0, z):
    got = sir.final_size(r0)
    assert got == pytest.approx(z, abs=5e-5)
    assert got == pytest.approx(1 - math.exp(-r0 * got), abs=1e-9)
    assert sir.final_size(0.9) == 0.0


@pytest.mark.parametrize("excess", [1e-3, 1e-5, 1e-8])
def test_final_size_just_above_threshold(excess):
    # z = 1 - exp(-R0 z) with R0 = 1 + e has z ~ 2e / (1 + e)^2 to first order; the residual of
    # the equation is what the solver must make small, relative to the root
    r0 = 1 + excess
    z = sir.final_size(r0)
    assert z == pytest.approx(2 * excess, rel=3 * excess + 1e-9)
    assert abs(z + math.expm1(-r0 * z)) <= 1e-12 * z


def test_final_size_refuses_non_finite_r0():
    for bad in (math.nan, math.inf, -1.0):
        with pytest.raises(ValueError, match="R0 must be finite"):
            sir.final_size(bad)


@pytest.mark.parametrize("r0", [2.0, 3.0])
def test_attack_rate_matches_final_size_equation(r0):
    agents, gamma = 200_000, 0.25
    model = sir.build(agents=agents, initial_infected=agents // 1000, beta=r0 * gamma, gamma=gamma)
    sim = Simulation(model, members=8, seed=11, device="cpu", record_every=25)
    result = sim.run(50)
    while result.series("I")[:, -1].sum() > 0:  # run until the epidemic is over
        assert sim.step < 400, "epidemic did not end"
        result = sim.run(25)
    attack = result.series("R")[:, -1].float() / agents  # [B]
    assert abs(attack.mean().item() - sir.final_size(r0)) < 0.015


def test_counts_are_conserved_and_monotone():
    model = sir.build(agents=5_000, initial_infected=50)
    m = Simulation(model, members=4, seed=2, device="cpu").run(60).metrics
    assert (m["S"] + m["I"] + m["R"] == 5_000).all()
    for b in range(4):
        mb = m.filter(m["member"] == b).sort("step")
        assert (mb["S"].diff().drop_nulls() <= 0).all()
        assert (mb["R"].diff().drop_nulls() >= 0).all()


def test_no_transmission_without_beta():
    model = sir.build(agents=1_000, initial_infected=10, beta=0.0)
    res = Simulation(model, members=2, device="cpu").run(100)
    assert res.final()["S"] == 990


def test_float64_and_float32_agree_in_distribution():
    model = sir.build(agents=20_000, initial_infected=20)
    a = Simulation(model, members=4, seed=1, device="cpu", dtype=torch.float64).run(200)
    assert abs(a.final()["R"] / 20_000 - sir.final_size(2.0)) < 0.05


def test_straight_through_sir_is_differentiable_and_samples_the_same_law():
    # the estimator changes gradients, never forward values: same seed, same trajectory
    plain = sir.build(agents=2_000, initial_infected=20)
    smooth = sir.build(agents=2_000, initial_infected=20, estimator="straight_through")
    a = Simulation(plain, members=2, seed=3, device="cpu").run(30)
    beta = torch.tensor(0.5, requires_grad=True)
    b = Simulation(
        smooth, members=2, seed=3, device="cpu", params=smooth.params.replace(beta=beta)
    ).run(30)
    assert torch.equal(a.series("R"), b.series("R").detach().double())
    b.series("R")[:, -1].sum().backward()
    assert beta.grad is not None and beta.grad > 0  # more transmission, more recovered


def test_bad_sir_inputs():
    with pytest.raises(ValueError, match="initial_infected"):
        sir.build(agents=10, initial_infected=11)
    with pytest.raises(ParamError, match=r"sir parameter 'gamma' must lie in \[0, 1\]"):
        Simulation(sir.build(agents=10, gamma=2.0), device="cpu")
    with pytest.raises(ParamError, match=r"'beta' must lie in \[0, inf\]"):
        Simulation(sir.build(agents=10, beta=-1.0), device="cpu")
    with pytest.raises(ParamError, match="unknown parameter"):
        sir.build(agents=10, betta=0.3)
