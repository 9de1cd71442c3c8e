import dataclasses
import math

import polars as pl
import pytest
import torch

from populace.engine import NonFiniteError, Schedule, Simulation, StateError, member_seed
from populace.models import sir


def small_sir(agents=2_000):
    return sir.build(agents=agents, initial_infected=20, beta=0.6, gamma=0.2)


def test_member_runs_the_same_alone_or_in_a_batch_of_64():
    model = small_sir(500)
    batch = Simulation(model, members=64, seed=3, device="cpu").run(40)
    alone = Simulation(model, seeds=[member_seed(3, 41)], device="cpu").run(40)
    b = batch.metrics.filter(pl.col("member") == 41).drop("member")
    assert b.equals(alone.metrics.drop("member"))
    assert torch.equal(batch.final_state.health[41], alone.final_state.health[0])
    # and members really differ from each other
    assert not torch.equal(batch.final_state.health[40], batch.final_state.health[41])


def test_same_seed_same_result_other_seed_differs():
    model = small_sir()
    a = Simulation(model, members=2, seed=5, device="cpu").run(30)
    b = Simulation(model, members=2, seed=5, device="cpu").run(30)
    c = Simulation(model, members=2, seed=6, device="cpu").run(30)
    assert a.metrics.equals(b.metrics)
    assert not a.metrics.equals(c.metrics)


def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path):
    model = small_sir()
    full = Simulation(model, members=3, seed=9, device="cpu").run(60)

    first = Simulation(model, members=3, seed=9, device="cpu")
    first.run(25)
    path = first.save(tmp_path / "ck.pt")
    resumed = Simulation.resume(path, model, device="cpu")
    assert resumed.step == 25
    rest = resumed.run(35)
    assert torch.equal(rest.final_state.health, full.final_state.health)
    tail = full.metrics.filter(pl.col("step") >= 25)
    assert rest.metrics.equals(tail)


def test_resume_rejects_other_model_or_params(tmp_path):
    model = small_sir()
    sim = Simulation(model, members=1, seed=0, device="cpu")
    sim.run(2)
    path = sim.save(tmp_path / "ck.pt")
    with pytest.raises(ValueError, match="params"):
        Simulation.resume(path, model.with_params(beta=0.9), device="cpu")
    with pytest.raises(ValueError, match="not a populace checkpoint|model"):
        torch.save({"format": "x"}, tmp_path / "bad.pt")
        Simulation.resume(tmp_path / "bad.pt", model, device="cpu")
    with pytest.raises(ValueError, match="come from the checkpoint"):
        Simulation.resume(path, model, device="cpu", dtype=torch.float64)


def test_recording_every_k_and_chunking_do_not_change_values(decay):
    a = Simulation(decay, members=2, device="cpu", chunk=1).run(10)
    b = Simulation(decay, members=2, device="cpu", chunk=64).run(10)
    assert a.metrics.equals(b.metrics)
    c = Simulation(decay, members=2, device="cpu", record_every=4).run(10)
    assert sorted(set(c.metrics["step"].to_list())) == [0, 4, 8, 10]
    assert c.metrics.filter(pl.col("step") == 8).equals(a.metrics.filter(pl.col("step") == 8))
    assert c.metrics.columns == ["member", "step", "mean_x", "alive"]
    assert c.metrics["alive"].dtype == pl.Int64


def test_decay_matches_closed_form_with_schedule_and_per_member_params(decay):
    model = decay.with_params(rate=Schedule(torch.tensor([[0.1, 0.5], [0.2, 0.0]]), (0, 3)))
    res = Simulation(model, members=2, device="cpu", dtype=torch.float64).run(5)
    want = torch.tensor([0.9**3 * 0.8**2, 0.5**3 * 1.0**2], dtype=torch.float64)
    assert torch.allclose(res.series("mean_x")[:, -1], want)


def test_gradient_through_the_run_matches_analytic(decay):
    rate = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    model = decay.with_params(rate=rate)
    res = Simulation(model, members=1, device="cpu", dtype=torch.float64).run(6)
    x6 = res.series("mean_x")[0, -1]  # (1 - rate)^6
    x6.backward()
    assert rate.grad.item() == pytest.approx(-6 * 0.9**5)


def test_check_finite_names_step_and_field(decay):
    model = decay.with_params(rate=Schedule([0.1, math.inf], (0, 3)))
    with pytest.raises(ValueError, match="NaN/Inf"):  # params are checked at start
        Simulation(model, device="cpu")
    bad = decay.with_params(rate=Schedule([0.1, 1e38], (0, 3)))
    sim = Simulation(bad, device="cpu", check_finite=True)
    with pytest.raises(NonFiniteError, match=r"step [34]: field DecayState.x has NaN/Inf"):
        sim.run(10)


def test_bad_run_arguments(decay):
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="members"):
            Simulation(decay, members=bad, device="cpu")
    with pytest.raises(ValueError, match="steps"):
        Simulation(decay, device="cpu").run(-2)
    with pytest.raises(ValueError, match="per-member"):
        Simulation(decay.with_params(rate=torch.tensor([0.1, 0.2, 0.3])), members=2, device="cpu")
    with pytest.raises(ValueError, match="unknown device"):
        Simulation(decay, device="tpu")


def test_init_must_build_the_right_ensemble(decay):
    import dataclasses

    wrong = dataclasses.replace(decay, init=lambda p, ctx: decay.init(p, ctx).select([0, 0, 0]))
    with pytest.raises(StateError, match="3 members, expected 2"):
        Simulation(wrong, members=2, device="cpu")


def test_metric_must_return_one_value_per_member(decay):
    import dataclasses

    wrong = dataclasses.replace(decay, metrics={"x": lambda s, p, ctx: s.x})
    with pytest.raises(ValueError, match="metric 'x'.*expected \\[2\\]"):
        Simulation(wrong, members=2, device="cpu").run(1)


def test_interrupted_run_leaves_the_simulation_as_it_was(decay):
    noisy = decay.with_params(noise=0.1)
    fresh = Simulation(noisy, members=2, seed=4, device="cpu").run(20)
    calls = {"n": 0}

    def flaky(state, params, ctx):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return state

    sim = Simulation(
        dataclasses.replace(noisy, steps=(*noisy.steps, flaky)), members=2, seed=4, device="cpu"
    )
    with pytest.raises(KeyboardInterrupt):
        sim.run(20)
    assert sim.step == 0
    assert sim.run(20).metrics.equals(fresh.metrics)  # the random streams were rolled back


def test_bad_recording_arguments_and_a_bad_initial_state(decay):
    for what in ("record_every", "chunk"):
        for bad in (0, 1.5, True):
            with pytest.raises(ValueError, match=what):
                Simulation(decay, device="cpu", **{what: bad})
    init = decay.init
    nan_init = dataclasses.replace(
        decay, init=lambda p, ctx: init(p, ctx).replace(x=torch.full((1, 16), math.nan))
    )
    with pytest.raises(NonFiniteError, match="the initial state: field DecayState.x"):
        Simulation(nan_init, device="cpu", check_finite=True)


def test_absurd_member_counts_are_refused_before_building_seeds(decay):
    # (the old code looped building a billion seeds before failing)
    with pytest.raises(ValueError, match="members must be at most 1,048,576 in one run"):
        Simulation(decay, members=10**9, device="cpu")
