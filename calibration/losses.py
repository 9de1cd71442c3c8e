"""Losses between simulated and observed series, and the normalized deviation.

All losses take ``pred`` ``[B, T]`` (or ``[T]``) expected counts, ``obs`` ``[T]`` observed counts,
and return ``[B]`` (one loss per ensemble member; ``[]`` for a ``[T]`` prediction), so that a
score-function estimator can weigh each member's cost by its own log-probability.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: keeps logs finite where a prediction is exactly 0.
_EPS = 1e-6


def _check(pred: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    obs = torch.as_tensor(obs, dtype=pred.dtype, device=pred.device)
    if obs.dim() != 1 or pred.shape[-1] != obs.shape[0]:
        raise ValueError(
            f"prediction of shape {tuple(pred.shape)} and observations of shape "
            f"{tuple(obs.shape)} must share the last (time) axis"
        )
    if not torch.isfinite(obs).all():
        raise ValueError("observations contain NaN/Inf")
    return obs


def mse_log1p(pred: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    """Mean squared error of ``log1p`` counts over time: ``[B, T], [T] -> [B]``."""
    obs = _check(pred, obs)
    return (torch.log1p(pred.clamp_min(0)) - torch.log1p(obs.clamp_min(0))).pow(2).mean(dim=-1)


def poisson_nll(pred: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    """Poisson negative log-likelihood per time point, mean over T (with ``log y!``, so it is the
    full log-likelihood and comparable with the negative binomial)."""
    obs = _check(pred, obs)
    rate = pred.clamp_min(_EPS)
    return (rate - obs * torch.log(rate) + torch.lgamma(obs + 1)).mean(dim=-1)


def negbin_nll(
    pred: torch.Tensor, obs: torch.Tensor, dispersion: torch.Tensor | float = 10.0
) -> torch.Tensor:
    """Negative-binomial NLL (mean ``pred``, size ``dispersion``; variance ``mu + mu^2/r``),
    mean over T; differentiable in ``dispersion`` (``[]`` or ``[B]``), so it can be fitted."""
    r = torch.as_tensor(dispersion, dtype=pred.dtype, device=pred.device)
    if not bool((r.detach() > 0).all()):
        raise ValueError(f"dispersion must be > 0, got {r.detach().tolist()}")
    obs = _check(pred, obs)
    mu = pred.clamp_min(_EPS)
    r = r.reshape(-1, 1) if r.dim() == 1 and mu.dim() == 2 else r
    ll = (
        torch.lgamma(obs + r)
        - torch.lgamma(r)
        - torch.lgamma(obs + 1)
        + r * torch.log(r / (r + mu))
        + obs * torch.log(mu / (r + mu))
    )
    return -ll.mean(dim=-1)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mse_log1p": mse_log1p,
    "poisson": poisson_nll,
    "negbin": negbin_nll,
}


def loss_function(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss called ``name``; unknown names raise listing the valid ones."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")
    return LOSSES[name]


def normalized_deviation(pred: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    """ND = sum |pred - obs| / sum |obs| over time: ``[..., T], [T] -> [...]``."""
    obs = _check(pred, obs)
    total = obs.abs().sum()
    if total == 0:
        raise ValueError("normalized deviation is undefined for an all-zero observed series")
    return (pred - obs).abs().sum(dim=-1) / total
