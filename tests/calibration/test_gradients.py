"""Gradient verification: each estimator's gradient of an expected loss against finite differences.

The expected loss is E[mse_log1p(daily cases, target)] of the well-mixed SEIR. Per-member
gradients come from a ``[B]`` parameter (member b only sees entry b); finite differences use
common random numbers (the same member seeds at theta +- h). Tolerances, stated:

- score function (unbiased): within 3 combined standard errors of the finite difference;
- straight-through at temperature 0.1 (biased, small): within 3 combined standard errors plus 15 %
  of the finite difference;
- both: the same sign, and the finite difference itself significantly nonzero (so the sign
  check can fail).
"""

from __future__ import annotations

import math

import pytest
import torch

from populace.behaviors.choice import score_function_surrogate
from populace.calibration.fit import Problem
from populace.models import covid_nyc_seir


def gradient_and_fd(
    estimator, name, agents, members, steps, temperature=0.1, initial=0.02, rel=0.05
):
    model = covid_nyc_seir.build(
        agents=agents,
        population="well_mixed",
        estimator=estimator,
        temperature=temperature,
        beta=0.8,
        gamma=0.2,
        sigma=0.5,
        initial=initial,
    )
    target = torch.full((steps,), 0.03 * agents)
    problem = Problem(
        model,
        {"cases": target},
        [],
        members=members,
        seed=3,
        dtype=torch.float64,
        loss="mse_log1p",
    )
    base = float(getattr(model.params, name))
    # per member: [B]; initial runs along the borough axis: [B, 5], all entries moved together
    shape = (members, 5) if name == "initial" else (members,)
    value = torch.full(shape, base, dtype=torch.float64, requires_grad=True)
    preds, final = problem.predict({name: value})
    costs = problem.member_costs(preds)
    if estimator == "score_function":
        baseline = ((costs.sum() - costs) / (members - 1)).detach()  # leave-one-out
        costs = score_function_surrogate(costs, final.log_prob, baseline)
    costs.sum().backward()
    grad = value.grad.reshape(members, -1).sum(dim=1)
    h = rel * base
    with torch.no_grad():
        up = problem.member_costs(problem.predict({name: base + h})[0])
        down = problem.member_costs(problem.predict({name: base - h})[0])
    fd = (up - down) / (2 * h)
    se = lambda x: float(x.std()) / math.sqrt(members)  # noqa: E731
    return float(grad.mean()), se(grad), float(fd.mean()), se(fd)


def check(g, g_se, fd, fd_se, rel_bias):
    assert abs(fd) > 3 * fd_se, f"finite difference {fd} ± {fd_se} is not significant"
    assert math.copysign(1, g) == math.copysign(1, fd), f"sign: gradient {g}, fd {fd}"
    tol = 3 * math.hypot(g_se, fd_se) + rel_bias * abs(fd)
    assert abs(g - fd) <= tol, f"gradient {g} ± {g_se} vs fd {fd} ± {fd_se} (tol {tol})"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["beta", "gamma", "initial"])
def test_straight_through_matches_finite_differences(name):
    g, g_se, fd, fd_se = gradient_and_fd("straight_through", name, 1000, 200, 10)
    check(g, g_se, fd, fd_se, rel_bias=0.15)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["beta", "gamma", "initial"])
def test_score_function_matches_finite_differences(name):
    g, g_se, fd, fd_se = gradient_and_fd("score_function", name, 100, 2000, 20, initial=0.05)
    check(g, g_se, fd, fd_se, rel_bias=0.0)


@pytest.mark.slow
def test_straight_through_bias_grows_with_temperature():
    # the documented bias: at temperature 1 the beta gradient is several times too large
    hot, hot_se, fd, fd_se = gradient_and_fd("straight_through", "beta", 1000, 200, 10, 1.0)
    cold, *_ = gradient_and_fd("straight_through", "beta", 1000, 200, 10, 0.1)
    assert abs(hot - fd) > 3 * math.hypot(hot_se, fd_se)
    assert abs(cold - fd) < abs(hot - fd)


def test_no_estimator_gives_no_gradient():
    model = covid_nyc_seir.build(agents=50, population="well_mixed", estimator="none")
    problem = Problem(model, {"cases": torch.ones(5)}, [], members=2, loss="poisson")
    beta = torch.tensor(0.5, requires_grad=True)
    assert not problem.objective({"beta": beta}).requires_grad


def test_network_population_gradient_flows_to_beta():
    # the contact-layer path (contact_pressure) carries the straight-through gradient too
    model = covid_nyc_seir.build(agents=200, population="random", degree=6.0, initial=0.05)
    problem = Problem(
        model, {"cases": torch.full((8,), 5.0)}, [], members=2, dtype=torch.float64, loss="poisson"
    )
    beta = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    problem.objective({"beta": beta}).backward()
    assert beta.grad is not None and torch.isfinite(beta.grad) and beta.grad != 0
