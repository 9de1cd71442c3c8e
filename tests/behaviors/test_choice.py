"""Stochastic choice: discrete forward values, gradient estimators vs analytic gradients."""

from __future__ import annotations

import pytest
import torch

from populace.behaviors.choice import (
    ESTIMATORS,
    MovingAverage,
    bernoulli,
    categorical,
    score_function_surrogate,
)

P = torch.tensor([0.1, 0.35, 0.5, 0.8], dtype=torch.float64)
C = torch.tensor([1.5, -2.0, 0.5, 3.0], dtype=torch.float64)
M = 40_000  # Monte Carlo samples


def noise(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bernoulli_forward_is_discrete_and_has_the_right_frequency(estimator, dtype):
    p = P.to(dtype).expand(M, -1)
    choice = bernoulli(p, noise(M, 4).to(dtype), estimator=estimator, temperature=0.5)
    assert set(choice.value.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(choice.value.detach(), choice.index.to(dtype))
    freq = choice.value.detach().double().mean(0)
    se = (P * (1 - P) / M).sqrt()
    assert ((freq - P).abs() < 5 * se).all(), freq


def test_estimators_share_the_forward_draw():
    u = noise(100, 4)
    values = [bernoulli(P.expand(100, -1), u, estimator=e).value.detach() for e in ESTIMATORS]
    assert all(torch.equal(values[0], v) for v in values[1:])


def test_score_function_matches_analytic_gradient_of_a_nonlinear_expectation():
    # f(x) = (c . x)^2; E f = sum c^2 p (1-p) + (c . p)^2
    p = P.clone().requires_grad_(True)
    choice = bernoulli(p.expand(M, -1), noise(M, 4, seed=1), estimator="score_function")
    cost = (choice.value * C).sum(-1) ** 2  # [M]
    assert not choice.value.requires_grad  # the value carries no pathwise gradient
    baseline = cost.detach().mean()
    surrogate = score_function_surrogate(cost, choice.log_prob.sum(-1), baseline)
    assert torch.allclose(surrogate.detach(), cost)
    (grad,) = torch.autograd.grad(surrogate.mean(), p)
    analytic = C**2 * (1 - 2 * P) + 2 * C * (C @ P)
    # per-sample estimates give the Monte Carlo standard error
    x = choice.value.detach()
    per_sample = (cost.detach() - baseline).unsqueeze(-1) * (x / P - (1 - x) / (1 - P))
    assert torch.allclose(grad, per_sample.mean(0), rtol=1e-9, atol=1e-12)
    se = per_sample.std(0) / M**0.5
    assert ((grad - analytic).abs() < 5 * se).all(), (grad, analytic, se)


def test_baseline_lowers_the_variance_of_the_score_function():
    p = P.clone()
    x = bernoulli(p.expand(M, -1), noise(M, 4, seed=2)).value
    cost = (x * C).sum(-1) + 20.0  # a large offset the baseline should remove
    score = x / P - (1 - x) / (1 - P)
    var_plain = (cost.unsqueeze(-1) * score).var(0)
    var_base = ((cost - cost.mean()).unsqueeze(-1) * score).var(0)
    assert (var_base < 0.1 * var_plain).all()


def relaxed_mean_gradient(p: torch.Tensor, temperature: float) -> torch.Tensor:
    """d/dp E_u[sigmoid((logit p - logit u)/tau)] by midpoint quadrature over u."""
    n = 200_000
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    p = p.clone().requires_grad_(True)
    soft = torch.sigmoid((torch.logit(p).unsqueeze(-1) - torch.logit(u)) / temperature)
    (grad,) = torch.autograd.grad(soft.mean(-1).sum(), p)
    return grad


@pytest.mark.parametrize("temperature", [0.3, 1.0])
def test_straight_through_is_unbiased_for_the_relaxed_objective(temperature):
    p = P.clone().requires_grad_(True)
    choice = bernoulli(
        p.expand(M, -1), noise(M, 4, seed=3), estimator="straight_through", temperature=temperature
    )
    cost = (choice.value * C).sum(-1)
    (grad,) = torch.autograd.grad(cost.mean(), p)
    expected = C * relaxed_mean_gradient(P, temperature)
    assert torch.allclose(grad, expected, rtol=0.05, atol=0.02), (grad, expected)


def straight_through_mean_gradient(temperature: float) -> torch.Tensor:
    """E_u of the gradient that ``bernoulli``'s straight-through estimator gives for the cost
    ``C . x``, by midpoint quadrature over the noise u (exact up to the grid)."""
    n = 200_000
    u = ((torch.arange(n, dtype=torch.float64) + 0.5) / n).unsqueeze(-1).expand(-1, 4)
    p = P.clone().requires_grad_(True)
    choice = bernoulli(p.expand(n, -1), u, estimator="straight_through", temperature=temperature)
    (grad,) = torch.autograd.grad((choice.value * C).sum(-1).mean(), p)
    return grad


def test_straight_through_bias_shrinks_with_temperature():
    exact = C  # d/dp E[C . x] = C, since E[x] = p
    bias_hot = (straight_through_mean_gradient(1.0) - exact).abs()
    bias_cold = (straight_through_mean_gradient(0.1) - exact).abs()
    assert (bias_hot > 0.05 * C.abs()).all()  # biased at temperature 1
    assert (bias_cold < 0.5 * bias_hot).all() and bias_cold.max() < bias_hot.max() / 4


def test_categorical_forward_one_hot_and_frequencies():
    probs = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    for estimator in ESTIMATORS:
        choice = categorical(probs.expand(M, -1), noise(M, 3, seed=4), estimator=estimator)
        value = choice.value.detach()
        assert torch.equal(value.sum(-1), torch.ones(M, dtype=torch.float64))
        assert set(value.unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(value.argmax(-1), choice.index)
        se = (probs * (1 - probs) / M).sqrt()
        assert ((value.mean(0) - probs).abs() < 5 * se).all()


def test_categorical_score_function_matches_softmax_gradient():
    theta = torch.tensor([0.3, -0.5, 1.0], dtype=torch.float64, requires_grad=True)
    c = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)
    probs = torch.softmax(theta, -1)
    choice = categorical(probs.expand(M, -1), noise(M, 3, seed=5), estimator="score_function")
    cost = choice.value @ c
    surrogate = score_function_surrogate(cost, choice.log_prob, cost.mean().detach())
    (grad,) = torch.autograd.grad(surrogate.mean(), theta)
    p = probs.detach()
    analytic = p * (c - c @ p)  # d/dtheta of sum_k c_k softmax_k
    assert torch.allclose(grad, analytic, atol=0.03), (grad, analytic)


def test_categorical_straight_through_gradient_flows():
    theta = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    choice = categorical(
        torch.softmax(theta, -1).expand(10, -1), noise(10, 3), estimator="straight_through"
    )
    (choice.value @ torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)).sum().backward()
    assert theta.grad is not None and theta.grad.abs().sum() > 0


def test_log_prob_gradcheck():
    u = noise(6, 4)
    p = torch.tensor([0.2, 0.4, 0.6, 0.7], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda q: bernoulli(q.expand(6, -1), u).log_prob, (p,))


def test_moving_average_baseline():
    b = MovingAverage(decay=0.5)
    assert b() == 0.0
    b.update(torch.tensor([2.0, 4.0]))
    b.update(torch.tensor([1.0]))
    assert float(b()) == pytest.approx(0.5 * 3.0 + 0.5 * 1.0)
    with pytest.raises(ValueError, match="decay"):
        MovingAverage(1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"estimator": "reinforce"}, "unknown estimator"),
        ({"temperature": 0.0}, "temperature"),
    ],
)
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bernoulli(P, noise(4), **kwargs)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="shape"):
        bernoulli(P, noise(3))
    with pytest.raises(ValueError, match="NaN"):
        bernoulli(torch.tensor([0.5, float("nan")]), noise(2))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bernoulli(torch.tensor([0.5, 1.5]), noise(2))
    with pytest.raises(TypeError, match="floating"):
        bernoulli(torch.tensor([0, 1]), noise(2))
    with pytest.raises(ValueError, match="sum to 1"):
        categorical(torch.tensor([0.5, 0.6], dtype=torch.float64), noise(2))
    with pytest.raises(ValueError, match="one shape"):
        score_function_surrogate(torch.zeros(3), torch.zeros(2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("estimator", ["straight_through", "score_function"])
def test_gradients_stay_finite_at_probability_one_and_zero(dtype, estimator):
    probs = torch.tensor([0.0, 1.0, 0.5], dtype=dtype, requires_grad=True)
    u = torch.tensor([0.3, 0.999, 0.2], dtype=dtype)
    c = bernoulli(probs, u, estimator=estimator)
    assert c.value.tolist() == [0.0, 1.0, 1.0]
    (c.value.sum() + c.log_prob.sum()).backward()
    assert torch.isfinite(probs.grad).all(), probs.grad
