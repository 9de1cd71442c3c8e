"""The problem definition: bounds from declarations, observation series, warm starts, checks."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from populace.calibration.fit import CalibrationError, Free, Problem, evaluate
from populace.calibration.losses import mse_log1p, negbin_nll, normalized_deviation, poisson_nll
from populace.calibration.observation import (
    Series,
    delay_weights,
    expected_series,
    ratio_rows,
)
from populace.engine import Schedule, Simulation
from populace.models import covid_nyc_seir, sir


def seir(agents=300, **params):
    return covid_nyc_seir.build(agents=agents, population="well_mixed", initial=0.05, **params)


def test_bounds_come_from_the_declarations():
    model = sir.build(agents=100, initial_infected=None)
    problem = Problem(model, {"I": torch.arange(1.0, 11.0)}, [Free("beta"), Free("gamma")])
    beta, gamma = problem.free[:2]
    assert (beta.lower, beta.upper) == (0, None)  # declared low=0: log transform
    assert (gamma.lower, gamma.upper) == (0, 1)  # a probability: logit
    assert beta.initial_values() == [0.5] and gamma.initial_values() == [0.25]  # the model's
    assert problem.free[2].name == "dispersion"  # negbin: its dispersion is fitted too
    theta = problem.start()
    torch.testing.assert_close(
        problem.split(theta)["gamma"], torch.tensor(0.25, dtype=torch.float64)
    )
    narrow = Problem(model, {"I": torch.ones(5)}, [Free("gamma", 0.2, upper=0.5)])
    assert narrow.free[0].upper == 0.5
    with pytest.raises(CalibrationError, match=r"upper bound 2.0 lies outside the declared"):
        Problem(model, {"I": torch.ones(5)}, [Free("gamma", 0.2, upper=2.0)])
    with pytest.raises(CalibrationError, match="strictly inside"):
        Free("gamma", 1.5, upper=1.0)


def test_a_default_on_its_bound_starts_just_inside():
    model = sir.build(agents=100, initial_infected=None, gamma=1.0)
    problem = Problem(model, {"I": torch.ones(5)}, [Free("gamma")], loss="poisson")
    assert 0.99 < problem.free[0].initial_values()[0] < 1.0
    assert torch.isfinite(problem.start()).all()


def test_axis_params_get_one_value_per_label():
    model = seir()
    problem = Problem(
        model,
        {"cases": torch.ones(20)},
        [Free("beta_borough", 0.5, period=7), Free("initial")],
        loss="poisson",
    )
    rate, initial = problem.free
    assert (rate.count, rate.width, initial.width) == (2, 5, 5)  # 20 days: 2 whole weeks
    values = problem.split(problem.start())
    assert isinstance(values["beta_borough"], Schedule)
    assert values["beta_borough"].values.shape == (2, 5)
    assert values["initial"].shape == (5,)
    assert math.isfinite(evaluate(problem, problem.start()))


def test_too_few_nonzero_rows_for_the_free_params_are_refused():
    model = sir.build(agents=100, initial_infected=None)
    data = torch.tensor([0.0, 0.0, 3.0, 0.0, 0.0])  # one nonzero row
    free = [Free("beta"), Free("gamma")]
    with pytest.raises(CalibrationError, match=r"1 nonzero row\(s\) .* 3 free coordinate"):
        Problem(model, {"I": data}, free)  # beta, gamma and the dispersion
    with pytest.raises(CalibrationError, match="0 nonzero row"):
        Problem(model, {"I": torch.zeros(5)}, [Free("beta")], loss="poisson")


def test_bad_series_are_refused_naming_them():
    model = seir()
    gap = torch.tensor([1.0, float("nan"), 3.0])
    with pytest.raises(CalibrationError, match=r"'I' has a gap \(NaN/Inf\) at row\(s\) \[1\]"):
        Problem(model, {"cases": torch.ones(3), "I": gap}, [], loss="poisson")
    with pytest.raises(CalibrationError, match="different lengths"):
        Problem(model, {"cases": torch.ones(3), "I": torch.ones(4)}, [])
    with pytest.raises(CalibrationError, match="negative at row"):
        Problem(model, {"cases": torch.tensor([1.0, -2.0, 3.0])}, [])
    with pytest.raises(CalibrationError, match="no metric"):
        Problem(model, {"deaths": torch.ones(3)}, [])
    with pytest.raises(CalibrationError, match="unknown parameter"):
        Problem(model, {"cases": torch.ones(3)}, [Free("bogus", 0.5)])
    with pytest.raises(CalibrationError, match="not observation params"):
        Problem(model, {"cases": torch.ones(3)}, [], fixed={"beta": 0.3})
    with pytest.raises(ValueError, match="unknown loss"):
        Problem(model, {"cases": torch.ones(3)}, [], loss="l7")
    spec = {"deaths": Series("cases", ratio="fatality", delay="fatality")}
    with pytest.raises(CalibrationError, match="both a ratio and a delay"):
        Problem(model, {"deaths": torch.ones(3)}, [], series=spec)


def test_problem_refuses_schedule_pieces_after_the_last_step():
    model = seir(agents=50)
    free = [Free("beta", [0.5, 0.5, 0.5], period=5)]  # pieces start at steps 0, 5 and 10
    with pytest.raises(CalibrationError, match=r"piece\(s\) \[2\] of 5 steps begin at or after"):
        Problem(model, {"cases": torch.ones(10)}, free, loss="poisson")
    assert Problem(model, {"cases": torch.ones(11)}, free, loss="poisson").steps == 11


@pytest.mark.parametrize("multiplier", [float("nan"), -3.0, 0.0, float("inf")])
def test_multiplier_must_be_finite_and_positive(multiplier):
    with pytest.raises(CalibrationError, match="multiplier must be finite and > 0"):
        Problem(seir(agents=50), {"cases": torch.ones(3)}, [Free("beta")], multiplier=multiplier)


def test_a_warm_start_continues_the_run_exactly():
    # common random numbers: rows 6.. of a run carried from row 6 equal those of a whole run
    model = seir()
    spec = {"cases": Series("cases", ratio="ascertainment", delay="delay")}
    problem = Problem(
        model,
        {"cases": torch.ones(15)},
        [],
        series=spec,
        members=3,
        fixed={"ascertainment": 0.5, "delay": 2.0},
        loss="poisson",
    )
    whole, _ = problem.predict({"beta": torch.tensor(0.8)})
    warm = problem.warm_start({"beta": torch.tensor(0.8)}, row=6)
    carried = dataclasses.replace(problem, warm=warm)
    rest, _ = carried.predict({"beta": torch.tensor(0.8)})
    torch.testing.assert_close(rest["cases"], whole["cases"])
    assert float(whole["cases"][:, 6:].sum()) > 0  # the check can fail
    # another rate from row 6 changes only what follows
    other, _ = carried.predict({"beta": torch.tensor(2.0)})
    assert torch.equal(other["cases"][:, :6], whole["cases"][:, :6])
    assert not torch.equal(other["cases"][:, 8:], whole["cases"][:, 8:])


def test_fixed_metric_rows_give_an_observation_only_problem():
    model = seir()
    with torch.no_grad():
        onsets = Simulation(model, members=2, seed=4, progress=False).run(20).series("cases")
    rows = onsets[:, 1:].float()
    spec = {"cases": Series("cases", ratio="ascertainment", delay="delay")}
    problem = Problem(
        model,
        {"cases": torch.ones(20)},
        [Free("ascertainment", 0.3)],
        series=spec,
        metrics={"cases": rows},
        fixed={"delay": 3.0},
        loss="poisson",
    )
    preds, state = problem.predict(problem.split(problem.start().float()))
    assert state is None
    torch.testing.assert_close(
        preds["cases"], expected_series(rows, 0.3, 3.0, cv=0.5), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(CalibrationError, match="no room for free model params"):
        Problem(model, {"cases": torch.ones(20)}, [Free("beta")], metrics={"cases": rows})


def test_the_smoothness_penalty_counts_only_changes_between_pieces():
    model = seir()
    free = [Free("beta", [0.5, 0.5, 0.5], period=5)]
    problem = Problem(model, {"cases": torch.ones(15)}, free, loss="poisson", smoothness=2.0)
    flat = problem.split(problem.start().float())
    assert float(problem.penalty(flat)) == 0
    step = {"beta": Schedule.every(torch.tensor([0.5, 1.0, 1.0]), 5)}
    assert float(problem.penalty(step)) == pytest.approx(2.0 * math.log(2) ** 2, rel=1e-5)


def test_losses_are_minimal_at_the_observation():
    obs = torch.tensor([3.0, 10.0, 0.0, 7.0])
    grid = torch.stack([obs * s for s in (0.5, 0.9, 1.0, 1.1, 2.0)]) + 1e-3
    for loss in (mse_log1p, poisson_nll, negbin_nll):
        values = loss(grid, obs)
        assert values.shape == (5,) and int(values.argmin()) == 2, loss.__name__


def test_poisson_and_negbin_nll_match_torch_distributions():
    pred, obs = torch.tensor([[2.0, 5.0, 0.5]]), torch.tensor([1.0, 6.0, 0.0])
    ref = -torch.distributions.Poisson(pred).log_prob(obs)
    torch.testing.assert_close(poisson_nll(pred, obs), ref.mean(dim=-1))
    r = torch.tensor([4.0, 0.5])
    dist = torch.distributions.NegativeBinomial(
        total_count=r.unsqueeze(1), probs=pred / (pred + r.unsqueeze(1))
    )
    got = negbin_nll(pred.expand(2, 3), obs, r)  # one dispersion per member
    torch.testing.assert_close(got, -dist.log_prob(obs).mean(dim=-1))
    with pytest.raises(ValueError, match="dispersion must be > 0"):
        negbin_nll(pred, obs, 0.0)


def test_normalized_deviation():
    obs = torch.tensor([1.0, 2.0, 3.0])
    assert float(normalized_deviation(obs, obs)) == 0
    assert math.isclose(float(normalized_deviation(obs * 1.5, obs)), 0.5)
    with pytest.raises(ValueError, match="all-zero"):
        normalized_deviation(obs, torch.zeros(3))


@pytest.mark.parametrize("mean", [2.0, 7.0, 18.0])
def test_the_delay_distribution_has_the_asked_mean(mean):
    w = delay_weights(torch.tensor(mean, dtype=torch.float64), cv=0.4)
    k = torch.arange(w.numel(), dtype=torch.float64)
    assert float(w.sum()) == pytest.approx(1.0)
    # the density at day midpoints: the mean of days lies half a day below the continuous one
    assert float((w * k).sum()) == pytest.approx(mean - 0.5, abs=0.15)
    sd = float(((k - (w * k).sum()) ** 2 * w).sum().sqrt())
    assert sd == pytest.approx(0.4 * mean, rel=0.15)


def test_reporting_keeps_the_mass_and_is_differentiable():
    onsets = torch.zeros(1, 60)
    onsets[0, 5] = 100.0
    out = expected_series(onsets, 0.5, 7.0, multiplier=2.0)
    assert math.isclose(float(out.sum()), 100.0, rel_tol=1e-5)  # 0.5 x 2 x 100
    assert 10 <= int(out.argmax()) <= 12
    x = torch.rand(2, 30, dtype=torch.float64)
    a = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    d = torch.tensor(4.0, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda a, d: expected_series(x, a, d), (a, d))


def test_a_ratio_schedule_interpolates_between_its_knots():
    sched = Schedule(torch.tensor([0.1, 0.3, 0.2], dtype=torch.float64), (0, 10, 20))
    rows = ratio_rows(sched, 30, torch.float64, "cpu")
    assert rows.shape == (30,)
    assert float(rows[0]) == pytest.approx(0.1) and float(rows[10]) == pytest.approx(0.3)
    assert float(rows[5]) == pytest.approx(0.2) and float(rows[15]) == pytest.approx(0.25)
    assert torch.all(rows[20:] == 0.2)  # the last knot holds on
    per_member = Schedule(torch.tensor([[0.1, 0.2], [0.3, 0.4]]), (0, 4))
    assert ratio_rows(per_member, 6, torch.float32, "cpu").shape == (2, 6)
