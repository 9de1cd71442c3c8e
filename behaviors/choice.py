"""Stochastic discrete choice with a selectable gradient estimator.

Forward values are always discrete: a Bernoulli choice is exactly 0 or 1, a categorical choice
is an exact one-hot vector. What differs between estimators is the gradient that flows back to
the probabilities:

- ``"none"``: no gradient (plain sampling).
- ``"straight_through"``: straight-through Gumbel-softmax. The hard sample is returned forward;
  the backward pass uses the gradient of the relaxed sample ``softmax((logits + g) / tau)``
  (binary: ``sigmoid((logit p - logit u) / tau)``). Biased, low variance; the bias shrinks as
  ``temperature`` goes to 0 while the variance grows.
- ``"score_function"``: REINFORCE. The value carries no gradient; :attr:`Choice.log_prob` does,
  and :func:`score_function_surrogate` turns a downstream cost into a surrogate whose gradient is
  the unbiased estimate ``(cost - baseline) * grad log p(x)``.

Every function takes its uniform noise ``u`` from the caller (``ctx.rng.uniform(...)``), so the
same seed gives the same choices whichever estimator is selected.
"""

from __future__ import annotations

import dataclasses

import torch

ESTIMATORS = ("none", "straight_through", "score_function")

#: keeps logit/log finite at u or p exactly 0 or 1 (at least the dtype's epsilon: in float32
#: 1 - 1e-12 rounds to 1, and logit(1) is infinite).
_EPS = 1e-12


def _eps(dtype: torch.dtype) -> float:
    return max(_EPS, float(torch.finfo(dtype).eps))


@dataclasses.dataclass(frozen=True)
class Choice:
    """The outcome of a stochastic choice.

    Attributes:
        value: ``[...]`` 0/1 (Bernoulli) or ``[..., K]`` one-hot (categorical), in the dtype of
            the probabilities; carries the straight-through gradient when selected.
        index: ``[...]`` int64, the chosen option (Bernoulli: 0 or 1).
        log_prob: ``[...]`` log-probability of the chosen option, differentiable w.r.t. the
            probabilities (the score-function estimator needs it).
    """

    value: torch.Tensor
    index: torch.Tensor
    log_prob: torch.Tensor


def _check(estimator: str, temperature: float) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; valid: {', '.join(ESTIMATORS)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _check_noise(name: str, probs: torch.Tensor, u: torch.Tensor) -> None:
    if not probs.is_floating_point():
        raise TypeError(f"{name}: probabilities must be floating, got {probs.dtype}")
    if u.shape != probs.shape:
        raise ValueError(
            f"{name}: noise u of shape {tuple(u.shape)} must match probabilities "
            f"{tuple(probs.shape)}"
        )
    p = probs.detach()
    if torch.isnan(p).any():
        raise ValueError(f"{name}: probabilities contain NaN")
    if (p < 0).any() or (p > 1).any():
        raise ValueError(
            f"{name}: probabilities must lie in [0, 1], got min {float(p.min())}, "
            f"max {float(p.max())}"
        )


def bernoulli(
    probs: torch.Tensor,
    u: torch.Tensor,
    *,
    estimator: str = "none",
    temperature: float = 1.0,
) -> Choice:
    """Draw ``x ~ Bernoulli(probs)`` as ``x = u < probs``.

    Args:
        probs: ``[...]`` probabilities in [0, 1] (may require grad).
        u: ``[...]`` uniform noise on [0, 1), same shape.
        estimator: ``"none" | "straight_through" | "score_function"``.
        temperature: relaxation temperature of the straight-through estimator.

    Returns:
        A :class:`Choice` whose ``value`` is exactly 0 or 1.
    """
    _check(estimator, temperature)
    _check_noise("bernoulli", probs, u)
    hard_bool = u < probs.detach()
    hard = hard_bool.to(probs.dtype)
    eps = _eps(probs.dtype)
    log_prob = torch.where(
        hard_bool, torch.log(probs.clamp_min(eps)), torch.log1p(-probs.clamp_max(1 - eps))
    )
    value = hard
    if estimator == "straight_through":
        # logistic noise -logit(u) makes (logit p - logit u > 0) the same event as u < p
        logit_p = torch.logit(probs, eps=eps)
        logit_u = torch.logit(u.to(probs.dtype), eps=eps)
        soft = torch.sigmoid((logit_p - logit_u) / temperature)
        value = hard + (soft - soft.detach())  # exactly hard forward: x - x == 0
    return Choice(value=value, index=hard_bool.to(torch.int64), log_prob=log_prob)


def categorical(
    probs: torch.Tensor,
    u: torch.Tensor,
    *,
    estimator: str = "none",
    temperature: float = 1.0,
) -> Choice:
    """Draw one of K options per row with the Gumbel-max trick.

    Args:
        probs: ``[..., K]`` probabilities (rows summing to 1; may require grad).
        u: ``[..., K]`` uniform noise on [0, 1), turned into Gumbel noise ``-log(-log u)``.
        estimator: ``"none" | "straight_through" | "score_function"``.
        temperature: relaxation temperature of the straight-through estimator.

    Returns:
        A :class:`Choice` with ``value`` ``[..., K]`` one-hot and ``index`` ``[...]``.
    """
    _check(estimator, temperature)
    _check_noise("categorical", probs, u)
    if probs.dim() == 0 or probs.shape[-1] < 1:
        raise ValueError(f"categorical: probabilities need a last axis of options, got {probs}")
    total = probs.detach().sum(dim=-1)
    if not torch.allclose(total, torch.ones_like(total), atol=1e-4):
        raise ValueError(
            f"categorical: probabilities must sum to 1 over the last axis, got sums in "
            f"[{float(total.min())}, {float(total.max())}]"
        )
    eps = _eps(probs.dtype)
    logits = torch.log(probs.clamp_min(eps))
    gumbel = -torch.log(-torch.log(u.to(probs.dtype).clamp(eps, 1 - eps)))
    index = torch.argmax(logits.detach() + gumbel, dim=-1)
    hard = torch.nn.functional.one_hot(index, probs.shape[-1]).to(probs.dtype)
    log_prob = torch.gather(logits, -1, index.unsqueeze(-1)).squeeze(-1)
    value = hard
    if estimator == "straight_through":
        soft = torch.softmax((logits + gumbel) / temperature, dim=-1)
        value = hard + (soft - soft.detach())  # exactly hard forward: x - x == 0
    return Choice(value=value, index=index, log_prob=log_prob)


def score_function_surrogate(
    cost: torch.Tensor,
    log_prob: torch.Tensor,
    baseline: torch.Tensor | float = 0.0,
) -> torch.Tensor:
    """A surrogate whose gradient is the score-function estimate of ``grad E[cost]``.

    ``surrogate = cost + (cost - baseline).detach() * (log_prob - log_prob.detach())``: its value
    equals ``cost`` (so it can stand in for the cost in a loss), its
    gradient is ``(cost - b) * grad log p(x)`` plus any direct path through ``cost``. A baseline
    that does not depend on this sample leaves the estimate unbiased and lowers its variance.

    Args:
        cost: ``[B]`` (or any shape) downstream cost of each sample.
        log_prob: same shape: the summed log-probability of the choices behind each cost.
        baseline: a number or tensor broadcastable to ``cost`` (e.g. :class:`MovingAverage`).
    """
    if cost.shape != log_prob.shape:
        raise ValueError(
            f"cost {tuple(cost.shape)} and log_prob {tuple(log_prob.shape)} must have one shape"
        )
    advantage = (cost - torch.as_tensor(baseline, dtype=cost.dtype, device=cost.device)).detach()
    return cost + advantage * (log_prob - log_prob.detach())


class MovingAverage:
    """An exponential moving average of past costs, the usual score-function baseline.

    Args:
        decay: weight of the old average (0 keeps only the last cost).
    """

    def __init__(self, decay: float = 0.9) -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.value: torch.Tensor | None = None

    def __call__(self) -> torch.Tensor | float:
        """The current baseline (0.0 before the first update)."""
        return 0.0 if self.value is None else self.value

    def update(self, cost: torch.Tensor) -> None:
        """Fold in the mean of ``cost`` (detached)."""
        c = cost.detach().mean()
        self.value = c if self.value is None else self.decay * self.value + (1 - self.decay) * c
