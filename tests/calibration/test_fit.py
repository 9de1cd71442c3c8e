"""Parameter recovery, the gradient-free baseline, the neural calibrator, losses, observation."""

from __future__ import annotations

import math
import time

import pytest
import torch

from populace.calibration.baseline import nelder_mead
from populace.calibration.fit import CalibrationError, Free, Problem, evaluate, fit_adam
from populace.calibration.losses import mse_log1p, negbin_nll, normalized_deviation, poisson_nll
from populace.calibration.neural import NeuralCalibrator, fit_neural, lagged_features
from populace.calibration.observation import delay_weights, reported_cases
from populace.calibration.uncertainty import intervals
from populace.engine import Simulation
from populace.models import covid_nyc_seir

TRUE = {"beta": 0.7, "gamma": 0.25, "initial": 0.02}


def synthetic_problem(members=4, steps=40):
    model = covid_nyc_seir.build(agents=1000, population="well_mixed", sigma=0.5, **TRUE)
    with torch.no_grad():  # data: other seeds than the fit's
        result = Simulation(model, members=16, seed=100, progress=False).run(steps)
    observed = {k: result.series(k)[:, 1:].mean(dim=0) for k in ("cases", "I")}
    free = [Free("beta", 0.5), Free("gamma", 0.35, upper=1.0), Free("initial", 0.01, upper=1.0)]
    return Problem(model, observed, free, members=members, seed=0)


@pytest.mark.slow
def test_adam_recovers_beta_gamma_and_initial_infections_within_10_percent():
    fit = fit_adam(synthetic_problem(), epochs=60, lr=0.1)
    for name, true in TRUE.items():
        assert abs(fit.values[name] / true - 1) < 0.10, (name, fit.values[name], true)
    assert fit.loss < fit.history[0] / 10


@pytest.mark.slow
def test_nelder_mead_improves_the_same_objective():
    problem = synthetic_problem(members=2, steps=30)
    fit = nelder_mead(problem, evaluations=30)
    assert fit.evaluations <= 30 + len(problem.free)  # a shrink may finish its round
    assert fit.loss < evaluate(problem, problem.start().float())


def test_neural_calibrator_trains_through_the_simulator():
    model = covid_nyc_seir.build(agents=300, population="well_mixed", initial=0.02)
    with torch.no_grad():
        obs = Simulation(model.with_params(beta=0.9), members=4, seed=5, progress=False).run(21)
    cases = obs.series("cases")[:, 1:].mean(dim=0)
    problem = Problem(model, {"cases": cases}, [], members=2, seed=0)
    features = lagged_features(cases.unsqueeze(0), period=7, lags=1)  # [3, 1]
    net = NeuralCalibrator(features.shape[1], 0.05, 2.0, init=0.3)
    with torch.no_grad():
        start = float(problem.objective({"beta": net(features.float()).mean()}))
    fit, net = fit_neural(problem, net, features, epochs=15, lr=0.05)
    assert fit.loss < start
    assert len(fit.values["beta"]) == 3


def test_adam_on_a_non_differentiable_model_says_so():
    from populace.models import sir

    problem = Problem(sir.build(agents=100), {"I": torch.ones(5)}, [Free("beta", 0.5)])
    with pytest.raises(CalibrationError, match="not differentiable"):
        fit_adam(problem, epochs=1)


def test_problem_errors_name_the_problem():
    model = covid_nyc_seir.build(agents=50, population="well_mixed")
    with pytest.raises(CalibrationError, match="no metric"):
        Problem(model, {"deaths": torch.ones(3)}, [])
    with pytest.raises(CalibrationError, match="unknown parameter"):
        Problem(model, {"cases": torch.ones(3)}, [Free("bogus", 0.5)])
    with pytest.raises(CalibrationError, match="strictly inside"):
        Free("gamma", 1.5, upper=1.0)
    with pytest.raises(ValueError, match="unknown loss"):
        Problem(model, {"cases": torch.ones(3)}, [], loss="l7")


def test_losses_are_minimal_at_the_observation():
    obs = torch.tensor([3.0, 10.0, 0.0, 7.0])
    grid = torch.stack([obs * s for s in (0.5, 0.9, 1.0, 1.1, 2.0)]) + 1e-3
    for loss in (mse_log1p, poisson_nll, negbin_nll):
        values = loss(grid, obs)
        assert values.shape == (5,) and int(values.argmin()) == 2, loss.__name__


def test_poisson_nll_matches_torch_distribution():
    pred, obs = torch.tensor([[2.0, 5.0, 0.5]]), torch.tensor([1.0, 6.0, 0.0])
    ref = -torch.distributions.Poisson(pred).log_prob(obs) - torch.lgamma(obs + 1)
    torch.testing.assert_close(poisson_nll(pred, obs), ref.mean(dim=-1))


def test_negbin_nll_matches_torch_distribution():
    pred, obs, r = torch.tensor([[2.0, 5.0, 0.5]]), torch.tensor([1.0, 6.0, 0.0]), 4.0
    dist = torch.distributions.NegativeBinomial(total_count=r, probs=pred / (pred + r))
    torch.testing.assert_close(negbin_nll(pred, obs, r), -dist.log_prob(obs).mean(dim=-1))


def test_normalized_deviation():
    obs = torch.tensor([1.0, 2.0, 3.0])
    assert float(normalized_deviation(obs, obs)) == 0
    assert math.isclose(float(normalized_deviation(obs * 1.5, obs)), 0.5)
    with pytest.raises(ValueError, match="all-zero"):
        normalized_deviation(obs, torch.zeros(3))


def test_reporting_delay_shifts_mass_and_keeps_it():
    onsets = torch.zeros(1, 40)
    onsets[0, 5] = 100.0
    out = reported_cases(onsets, 0.5, 7.0, multiplier=2.0)
    assert math.isclose(float(out.sum()), 100.0, rel_tol=1e-5)  # 0.5 x 2 x 100
    assert int(out.argmax()) == 12
    w = delay_weights(torch.tensor([2.0, 5.0]))
    torch.testing.assert_close(w.sum(dim=-1), torch.ones(2))


def test_reporting_is_differentiable_in_delay_and_ascertainment():
    onsets = torch.rand(2, 30, dtype=torch.float64)
    a = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    d = torch.tensor(4.0, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda a, d: reported_cases(onsets, a, d), (a, d))


def test_intervals_cover_the_fits():
    from populace.calibration.fit import Fit

    fits = [
        Fit("adam", torch.zeros(1), {"beta": b, "w": [b, 2 * b]}, [], 0.0, 0.0, 1)
        for b in (0.4, 0.5, 0.6)
    ]
    table = intervals(fits)
    beta = table.filter(table["param"] == "beta").row(0, named=True)
    assert beta["lo"] < beta["mean"] < beta["hi"] and math.isclose(beta["mean"], 0.5)
    assert table.height == 3


def score_function_problem(members):
    model = covid_nyc_seir.build(
        agents=200, population="well_mixed", estimator="score_function", initial=0.05
    )
    return Problem(model, {"cases": torch.full((10,), 2.0)}, [Free("beta", 0.6)], members=members)


def test_score_function_gradient_needs_two_members():
    # one member: the only baseline is its own cost, so the gradient would be exactly 0
    with pytest.raises(CalibrationError, match="members >= 2"):
        fit_adam(score_function_problem(1), epochs=1)
    one = score_function_problem(1)
    assert math.isfinite(evaluate(one, one.start().float()))  # a value needs no baseline
    two = score_function_problem(2)
    theta = two.start().float().requires_grad_(True)
    two.objective(two.split(theta)).backward()
    assert float(theta.grad.abs().sum()) > 0


def test_adam_refuses_a_free_parameter_without_gradient():
    from populace.models import sir

    # the loss depends on ascertainment (differentiable) but not on beta (sir's transitions)
    free = [Free("beta", 0.5), Free("ascertainment", 0.5, upper=1.0)]
    problem = Problem(sir.build(agents=100), {"I": torch.full((5,), 3.0)}, free, observe=True)
    with pytest.raises(CalibrationError, match=r"no gradient reaches \['beta'\]"):
        fit_adam(problem, epochs=2)


def test_adam_refuses_a_gradient_that_is_zero_everywhere():
    # 200 agents at initial 0.001: no infection in either member, so Adam could not move
    model = covid_nyc_seir.build(agents=200, population="well_mixed", initial=0.001)
    free = [Free("beta", 0.6), Free("initial", 0.001, upper=1.0)]
    problem = Problem(model, {"cases": torch.full((10,), 2.0)}, free, members=2)
    with torch.no_grad():
        assert float(problem.predict(problem.split(problem.start().float()))[0]["cases"].sum()) == 0
    with pytest.raises(CalibrationError, match=r"\['beta', 'initial'\] is exactly 0"):
        fit_adam(problem, epochs=2)


def test_problem_refuses_schedule_pieces_after_the_last_step():
    model = covid_nyc_seir.build(agents=50, population="well_mixed")
    free = [Free("beta", [0.5, 0.5, 0.5], period=5)]  # pieces start at steps 0, 5 and 10
    with pytest.raises(CalibrationError, match=r"piece\(s\) \[2\] of 5 steps begin at or after"):
        Problem(model, {"cases": torch.ones(10)}, free)
    assert Problem(model, {"cases": torch.ones(11)}, free).steps == 11  # piece 2 holds step 10


@pytest.mark.parametrize("multiplier", [float("nan"), -3.0, 0.0, float("inf")])
def test_multiplier_must_be_finite_and_positive(multiplier):
    model = covid_nyc_seir.build(agents=50, population="well_mixed")
    with pytest.raises(CalibrationError, match="multiplier must be finite and > 0"):
        Problem(model, {"cases": torch.ones(3)}, [Free("beta", 0.5)], multiplier=multiplier)


@pytest.mark.parametrize("lr", [float("nan"), -0.1, 0.0, float("inf")])
def test_learning_rates_must_be_finite_and_positive(lr):
    model = covid_nyc_seir.build(agents=50, population="well_mixed")
    problem = Problem(model, {"cases": torch.ones(3)}, [Free("beta", 0.5)])
    with pytest.raises(CalibrationError, match="lr must be finite and > 0"):
        fit_adam(problem, epochs=1, lr=lr)
    net = NeuralCalibrator(1, 0.05, 2.0)
    features = torch.zeros(1, 1)
    with pytest.raises(CalibrationError, match="lr must be finite and > 0"):
        fit_neural(Problem(model, {"cases": torch.ones(3)}, []), net, features, lr=lr)
    with pytest.raises(CalibrationError, match="free_lr must be finite and > 0"):
        fit_neural(Problem(model, {"cases": torch.ones(3)}, []), net, features, free_lr=lr)


def test_a_nan_objective_stops_the_fit_naming_the_values():
    model = covid_nyc_seir.build(agents=100, population="well_mixed", initial=0.05)
    problem = Problem(model, {"cases": torch.ones(5)}, [Free("beta", 0.5)], members=2)
    problem.loss_fn = lambda pred, obs: pred.sum(dim=-1) * float("nan")
    with pytest.raises(CalibrationError, match=r"epoch 0: the objective is nan at \{'beta': 0\.5"):
        fit_adam(problem, epochs=2)
    with pytest.raises(CalibrationError, match=r"objective is nan at \{'beta': 0\.5"):
        nelder_mead(problem, evaluations=10)


def test_nelder_mead_stops_on_its_time_budget():
    from populace.models import sir

    problem = Problem(sir.build(agents=100), {"I": torch.full((10,), 5.0)}, [Free("beta", 0.5)])
    start = time.perf_counter()
    evaluate(problem, problem.start().float())
    one = time.perf_counter() - start
    # tol 0: it never converges, so only the clock stops it (5000 evaluations: a safety net)
    fit = nelder_mead(problem, evaluations=5000, seconds=0.5, tol=0.0)
    assert 2 < fit.evaluations < 5000
    assert 0.5 <= fit.seconds <= 0.5 + 5 * one + 0.5  # overruns by about one evaluation
    # history: the best objective so far after each evaluation; loss: the best of all
    assert len(fit.history) == fit.evaluations
    assert all(b <= a for a, b in zip(fit.history, fit.history[1:], strict=False))
    assert fit.loss == fit.history[-1] == evaluate(problem, fit.theta)
    with pytest.raises(CalibrationError, match="needs a budget"):
        nelder_mead(problem, evaluations=None)
    assert nelder_mead(problem, evaluations=4, tol=0.0).evaluations == 4  # strict count


def test_adam_returns_the_best_point_it_evaluated():
    # a learning rate far too large: the steps overshoot, the last point is not the best
    problem = synthetic_problem(members=2, steps=20)
    fit = fit_adam(problem, epochs=4, lr=0.5)
    assert min(fit.history) < fit.history[-1]  # the run did go uphill at the end
    assert fit.loss == pytest.approx(min(fit.history))
    assert fit.loss == pytest.approx(evaluate(problem, fit.theta))
    last = fit_adam(problem, epochs=4, lr=0.5, resample=True)  # noisy losses: the last point
    assert last.loss == pytest.approx(evaluate(problem, last.theta))
    assert last.loss > fit.loss
