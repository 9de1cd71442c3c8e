"""The optimisers: convergence, caps, reports, starts; the choice of method.

Most problems here are observation-only (fixed model rows, no simulation): deterministic and
cheap, with a known optimum — the data are the expected observations at known values.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from populace.calibration.fit import CalibrationError, Free, Problem, evaluate
from populace.calibration.observation import Series, expected_series
from populace.calibration.optimize import (
    adam,
    cmaes,
    differentiable,
    fit,
    multistart,
    nelder_mead,
    screened_starts,
)
from populace.models import covid_nyc_seir, sir

TRUE = {"ascertainment": 0.3, "delay": 6.0}


def observation_problem(loss="mse_log1p", **free_init):
    t = torch.arange(60, dtype=torch.float64)
    onsets = (2000 * torch.exp(-((t - 25) ** 2) / 80)).unsqueeze(0)  # one member, a bump
    data = expected_series(onsets, TRUE["ascertainment"], TRUE["delay"], cv=0.5)[0]
    model = covid_nyc_seir.build(agents=50, population="well_mixed")
    spec = {"reports": Series("cases", ratio="ascertainment", delay="delay")}
    free = [Free("ascertainment", free_init.get("a", 0.1)), Free("delay", free_init.get("d", 2.0))]
    return Problem(
        model,
        {"reports": data},
        free,
        series=spec,
        metrics={"cases": onsets.float()},
        loss=loss,
        dtype=torch.float64,
    )


def close_to_truth(problem, theta, rel):
    values = problem.split(theta.to(problem.dtype))
    for name, true in TRUE.items():
        assert float(values[name]) == pytest.approx(true, rel=rel), name


def test_adam_converges_and_says_so():
    problem = observation_problem()
    result = adam(problem, lr=0.1)
    assert result.converged and not result.hit_cap
    assert "no relative improvement" in result.message
    assert result.iterations == len(result.history) < 1000
    assert result.gradient_norm is not None and math.isfinite(result.gradient_norm)
    close_to_truth(problem, result.theta, rel=0.02)
    assert result.loss == pytest.approx(min(result.history))


def test_a_fit_stopped_by_the_cap_reports_it():
    problem = observation_problem()
    capped = adam(problem, lr=0.01, max_epochs=3)
    assert capped.hit_cap and not capped.converged and capped.iterations == 3
    assert "cap of 3 epochs" in capped.message
    assert capped.convergence()["hit_cap"] is True
    simplex = nelder_mead(problem, max_evaluations=8)
    assert simplex.hit_cap and not simplex.converged and simplex.evaluations <= 8


def test_scipy_nelder_mead_converges_on_the_same_objective():
    problem = observation_problem()
    result = nelder_mead(problem)
    assert result.converged and not result.hit_cap
    assert result.simplex_size is not None and result.simplex_size < 1e-2
    close_to_truth(problem, result.theta, rel=0.02)
    assert result.loss == evaluate(problem, result.theta) == result.history[-1]
    assert all(b <= a for a, b in zip(result.history, result.history[1:], strict=False))


def test_optuna_cmaes_improves_and_reports():
    problem = observation_problem()
    result = cmaes(problem, max_evaluations=400)
    assert result.loss < evaluate(problem, problem.start()) / 20
    close_to_truth(problem, result.theta, rel=0.1)
    assert result.method == "cmaes" and result.evaluations <= 400
    assert result.converged != result.hit_cap


def test_multistart_keeps_the_init_and_the_best_screened_draws():
    problem = observation_problem(a=0.01, d=25.0)  # a poor init
    points = screened_starts(problem, 3, 10, 1.5, seed=1)
    assert len(points) == 3 and torch.equal(points[0], problem.start())
    scores = [evaluate(problem, p) for p in points[1:]]
    assert scores == sorted(scores)
    fits = multistart(problem, "adam", starts=3, screen=10, seed=1)
    assert [f.loss for f in fits] == sorted(f.loss for f in fits)
    assert sorted(f.start for f in fits) == [0, 1, 2]
    assert fits[0].starts == [f.loss for f in sorted(fits, key=lambda f: f.start)]
    best = fit(problem, "adam", starts=3, screen=10, seed=1)
    assert best.loss == fits[0].loss
    close_to_truth(problem, best.theta, rel=0.02)
    with pytest.raises(CalibrationError, match="unknown method"):
        multistart(problem, "bfgs")
    with pytest.raises(CalibrationError, match="starts must be a positive integer"):
        multistart(problem, starts=0)


def test_auto_picks_adam_only_where_the_gradient_reaches_every_param():
    data = {"cases": torch.tensor([1.0, 3, 6, 9, 7, 4])}
    smooth = covid_nyc_seir.build(agents=200, population="well_mixed", initial=0.05)
    assert differentiable(Problem(smooth, data, [Free("beta")], members=2, loss="poisson"))
    plain = covid_nyc_seir.build(agents=200, population="well_mixed", estimator="none")
    assert not differentiable(Problem(plain, data, [Free("beta")], loss="poisson"))
    # sir with estimator="none" and a free ascertainment: the gradient misses beta only
    spec = {"I": Series("I", ratio="ascertainment")}
    model = sir.build(agents=100)
    problem = Problem(
        model, {"I": torch.full((5,), 3.0)}, [Free("beta")], series=spec, loss="poisson"
    )
    assert not differentiable(problem)
    with pytest.raises(CalibrationError, match=r"carries no gradient"):
        adam(problem, max_epochs=2)


def test_adam_refuses_a_free_parameter_without_gradient():
    model = sir.build(agents=100, estimator="straight_through", initial_infected=5)
    spec = {"I": Series("I", ratio="ascertainment")}
    # gamma reaches the loss, the initial probability is unused (initial_infected counts)
    problem = Problem(
        model,
        {"I": torch.full((8,), 3.0)},
        [Free("gamma"), Free("initial")],
        series=spec,
        members=2,
        loss="poisson",
    )
    with pytest.raises(CalibrationError, match=r"no gradient reaches \['initial'\]"):
        adam(problem, max_epochs=2)


def test_adam_refuses_a_gradient_that_is_zero_everywhere():
    # 200 agents at initial 0.0005: no infection in either member, so Adam could not move
    model = covid_nyc_seir.build(agents=200, population="well_mixed", initial=0.0005)
    problem = Problem(
        model, {"cases": torch.full((10,), 2.0)}, [Free("beta")], members=2, loss="poisson"
    )
    with torch.no_grad():
        assert float(problem.predict(problem.split(problem.start().float()))[0]["cases"].sum()) == 0
    with pytest.raises(CalibrationError, match=r"\['beta'\] is exactly 0"):
        adam(problem, max_epochs=2)


def test_score_function_gradient_needs_two_members():
    def problem(members):
        model = covid_nyc_seir.build(
            agents=200, population="well_mixed", estimator="score_function", initial=0.05
        )
        return Problem(
            model,
            {"cases": torch.full((10,), 2.0)},
            [Free("beta", 0.6)],
            members=members,
            loss="poisson",
        )

    with pytest.raises(CalibrationError, match="members >= 2"):
        adam(problem(1), max_epochs=1)
    one = problem(1)
    assert math.isfinite(evaluate(one, one.start()))  # a value needs no baseline
    two = problem(2)
    theta = two.start().float().requires_grad_(True)
    two.objective(two.split(theta)).backward()
    assert float(theta.grad.abs().sum()) > 0


def test_a_nan_objective_stops_the_fit_naming_the_values():
    problem = observation_problem()
    problem.loss_fn = lambda pred, obs, *r: pred.sum(dim=-1) * float("nan")
    with pytest.raises(CalibrationError, match=r"epoch 0: the objective is nan at \{'ascert"):
        adam(problem, max_epochs=2)
    with pytest.raises(CalibrationError, match=r"objective is nan at \{'ascertainment'"):
        nelder_mead(problem, max_evaluations=10)


@pytest.mark.parametrize("lr", [float("nan"), -0.1, 0.0, float("inf")])
def test_learning_rates_must_be_finite_and_positive(lr):
    with pytest.raises(CalibrationError, match="lr must be finite and > 0"):
        adam(observation_problem(), lr=lr, max_epochs=1)


def test_adam_through_the_simulator_lowers_the_loss():
    model = covid_nyc_seir.build(agents=400, population="well_mixed", initial=0.05)
    with torch.no_grad():
        from populace.engine import Simulation

        data = Simulation(model.with_params(beta=0.9), members=8, seed=5, progress=False).run(20)
    observed = {"cases": data.series("cases")[:, 1:].mean(dim=0)}
    problem = Problem(model, observed, [Free("beta", 0.4)], members=2, loss="poisson")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = adam(problem, max_epochs=25)
    assert result.loss < result.history[0]
    assert abs(result.values["beta"] - 0.9) < abs(0.4 - 0.9)
