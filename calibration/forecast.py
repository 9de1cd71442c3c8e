"""Forecast scores and baselines: MAE, the weighted interval score, persistence and log-linear.

Forecasts are scored on weekly totals (the COVID-19 Forecast Hub's targets: 1 to 4 weeks ahead)
of a daily series. Two baselines are computed the same way from the data up to the origin:

- **persistence**: last week's mean held flat (the Forecast Hub's baseline); its quantiles come
  from the symmetrised past changes of the weekly total over the same horizon;
- **log-linear**: a least-squares line through ``log(1 + y)`` of the last two weeks, extrapolated;
  its quantiles from the residual spread of that line (normal in log space, widening with the
  horizon as a regression's prediction interval does).

The weighted interval score (Bracher et al. 2021) of quantiles at levels ``QUANTILES`` is
``WIS = (|y - median| / 2 + sum_k alpha_k / 2 * IS_alpha_k) / (K + 1/2)``, with the interval
score ``IS_a = (u - l) + 2/a (l - y)_+ + 2/a (y - u)_+`` of the central ``1 - a`` interval.
"""

from __future__ import annotations

import torch

#: quantile levels of a forecast: the Forecast Hub's 23.
QUANTILES = (
    0.01,
    0.025,
    *[round(0.05 * k, 2) for k in range(1, 20)],
    0.975,
    0.99,
)


def weekly(series: torch.Tensor, days: int = 7) -> torch.Tensor:
    """``[..., T]`` daily values → ``[..., T // days]`` totals of whole weeks."""
    w = series.shape[-1] // days
    return series[..., : w * days].reshape(*series.shape[:-1], w, days).sum(dim=-1)


def check_quantiles(levels: torch.Tensor) -> None:
    if levels.dim() != 1 or not bool(((levels > 0) & (levels < 1)).all()):
        raise ValueError(f"quantile levels must be a 1-d tensor in (0, 1), got {levels.tolist()}")


def weighted_interval_score(
    quantiles: torch.Tensor, observed: torch.Tensor, levels: torch.Tensor
) -> torch.Tensor:
    """WIS of quantile forecasts.

    Args:
        quantiles: ``[Q, ...]`` predictive quantiles at ``levels`` (sorted, symmetric around
            0.5 and including it).
        observed: ``[...]`` the outcomes.
        levels: ``[Q]`` quantile levels.

    Returns:
        ``[...]`` the score (lower is better; equals the absolute error for a point forecast).
    """
    check_quantiles(levels)
    levels = levels.to(torch.float64)
    q = quantiles.to(torch.float64)
    y = observed.to(torch.float64)
    mid = int(torch.argmin((levels - 0.5).abs()))
    if abs(float(levels[mid]) - 0.5) > 1e-9:
        raise ValueError("quantile levels must include the median 0.5")
    if not torch.allclose(levels, (1 - levels).flip(0), atol=1e-9):
        raise ValueError(f"quantile levels must be symmetric around 0.5, got {levels.tolist()}")
    total = 0.5 * (y - q[mid]).abs()
    k = mid
    for i in range(k):
        alpha = 2 * float(levels[i])
        lo, hi = q[i], q[-1 - i]
        score = (hi - lo) + 2 / alpha * (lo - y).clamp_min(0) + 2 / alpha * (y - hi).clamp_min(0)
        total = total + alpha / 2 * score
    return total / (k + 0.5)


def persistence(history: torch.Tensor, weeks: int, levels: torch.Tensor) -> torch.Tensor:
    """Persistence forecast of the next ``weeks`` weekly totals from a daily ``history``.

    Args:
        history: ``[T]`` daily values up to the origin (T >= 14).
        levels: ``[Q]`` quantile levels.

    Returns:
        ``[Q, weeks]`` quantiles; the median is 7 x the last week's mean.
    """
    h = history.to(torch.float64)
    if h.numel() < 14:
        raise ValueError(f"persistence needs at least 14 days of history, got {h.numel()}")
    level = h[-7:].sum()
    totals = torch.stack([h[i : i + 7].sum() for i in range(h.numel() - 6)])  # rolling weeks
    out = []
    for w in range(1, weeks + 1):
        lag = 7 * w
        diffs = totals[lag:] - totals[:-lag] if totals.numel() > lag else totals[-1:] * 0
        sym = torch.cat([diffs, -diffs])
        q = torch.quantile(sym, levels.to(torch.float64))
        out.append((level + q).clamp_min(0))
    return torch.stack(out, dim=1)


def log_linear(history: torch.Tensor, weeks: int, levels: torch.Tensor) -> torch.Tensor:
    """Log-linear trend forecast of the next ``weeks`` weekly totals: a line through
    ``log(1 + y)`` of the last 14 days, extrapolated day by day and summed per week.

    Returns:
        ``[Q, weeks]`` quantiles (normal in log space around the line, with the regression's
        prediction spread).
    """
    h = history.to(torch.float64)
    if h.numel() < 14:
        raise ValueError(f"log_linear needs at least 14 days of history, got {h.numel()}")
    y = torch.log1p(h[-14:])
    t = torch.arange(14, dtype=torch.float64)
    tm, ym = t.mean(), y.mean()
    sxx = ((t - tm) ** 2).sum()
    slope = ((t - tm) * (y - ym)).sum() / sxx
    intercept = ym - slope * tm
    resid = y - (intercept + slope * t)
    sd = torch.sqrt((resid**2).sum() / 12)
    ahead = torch.arange(14, 14 + 7 * weeks, dtype=torch.float64)
    mean = intercept + slope * ahead
    spread = sd * torch.sqrt(1 + 1 / 14 + (ahead - tm) ** 2 / sxx)
    z = torch.special.ndtri(levels.to(torch.float64))
    daily = torch.expm1(mean.unsqueeze(0) + z.unsqueeze(1) * spread.unsqueeze(0)).clamp_min(0)
    # quantiles of the daily values summed per week: comonotone days (a conservative band)
    return weekly(daily)


def sample_quantiles(samples: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """``[S, ...]`` samples → ``[Q, ...]`` quantiles at ``levels``."""
    check_quantiles(levels)
    return torch.quantile(samples.to(torch.float64), levels.to(torch.float64), dim=0)


def negbin_samples(mean: torch.Tensor, dispersion: float, draws: int, seed: int) -> torch.Tensor:
    """``[draws, *mean.shape]`` negative-binomial counts of mean ``mean`` and size
    ``dispersion`` (a gamma-Poisson mixture), for predictive bands with observation noise.
    Seeded; the global random state is left as it was."""
    if not dispersion > 0:
        raise ValueError(f"dispersion must be > 0, got {dispersion}")
    mu = mean.detach().to(torch.float64).clamp_min(1e-9).expand(draws, *mean.shape)
    r = torch.full_like(mu, float(dispersion))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rate = torch.distributions.Gamma(r, r / mu).sample()
        return torch.poisson(rate)
