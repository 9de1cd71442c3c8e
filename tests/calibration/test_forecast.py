"""Forecast scores and baselines against hand computations and exact series."""

from __future__ import annotations

import math

import pytest
import torch

from populace.calibration.forecast import (
    QUANTILES,
    log_linear,
    negbin_samples,
    persistence,
    sample_quantiles,
    weekly,
    weighted_interval_score,
)

LEVELS = torch.tensor(QUANTILES, dtype=torch.float64)


def test_the_quantile_levels_are_the_forecast_hubs():
    assert len(QUANTILES) == 23 and QUANTILES[11] == 0.5
    assert all(a < b for a, b in zip(QUANTILES, QUANTILES[1:], strict=False))


def test_wis_of_a_point_forecast_is_the_absolute_error():
    point = torch.full((23, 4), 10.0)
    y = torch.tensor([10.0, 13.0, 4.0, 0.0])
    torch.testing.assert_close(weighted_interval_score(point, y, LEVELS), (y - 10).abs().double())


def test_wis_by_hand_for_one_interval():
    levels = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)
    q = torch.tensor([[2.0], [5.0], [6.0]])
    y = torch.tensor([9.0])
    # (|9 - 5| / 2 + 0.5 / 2 * ((6 - 2) + 2 / 0.5 * (9 - 6))) / 1.5
    expected = (2.0 + 0.25 * (4 + 12)) / 1.5
    assert float(weighted_interval_score(q, y, levels)) == pytest.approx(expected)
    with pytest.raises(ValueError, match="symmetric"):
        weighted_interval_score(q, y, torch.tensor([0.2, 0.5, 0.75], dtype=torch.float64))
    with pytest.raises(ValueError, match="median"):
        weighted_interval_score(q[:2], y, torch.tensor([0.25, 0.75], dtype=torch.float64))


def test_persistence_holds_last_weeks_level():
    history = torch.cat([torch.full((21,), 5.0), torch.full((7,), 12.0)])
    q = persistence(history, 4, LEVELS)
    assert q.shape == (23, 4)
    assert torch.all(q[11] == 84.0)  # 7 x 12
    assert torch.all(q[0] <= q[11]) and torch.all(q[-1] >= q[11])
    flat = persistence(torch.full((28,), 3.0), 2, LEVELS)
    assert torch.all(flat == 21.0)  # no past change: no spread
    with pytest.raises(ValueError, match="14 days"):
        persistence(torch.ones(10), 1, LEVELS)


def test_log_linear_extrapolates_an_exponential_exactly():
    t = torch.arange(14 + 28, dtype=torch.float64)
    series = torch.expm1(0.5 + 0.05 * t)  # log(1 + y) is a line
    q = log_linear(series[:14], 4, LEVELS)
    torch.testing.assert_close(q[11], weekly(series[14:]), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(q[0], q[11], rtol=1e-9, atol=1e-9)  # no residual: no spread


def test_weekly_totals():
    torch.testing.assert_close(weekly(torch.arange(15.0)), torch.tensor([21.0, 70.0]))


def test_negative_binomial_samples_have_the_asked_mean_and_variance():
    mean = torch.tensor([5.0, 50.0])
    s = negbin_samples(mean, 4.0, 40_000, seed=3)
    assert s.shape == (40_000, 2)
    torch.testing.assert_close(s.mean(dim=0), mean.double(), rtol=0.03, atol=0.05)
    var = mean.double() + mean.double() ** 2 / 4
    torch.testing.assert_close(s.var(dim=0), var, rtol=0.06, atol=0.1)
    assert torch.equal(s, negbin_samples(mean, 4.0, 40_000, seed=3))  # seeded
    q = sample_quantiles(s, LEVELS)
    assert q.shape == (23, 2) and torch.all(q[1:] >= q[:-1])
    with pytest.raises(ValueError, match="dispersion"):
        negbin_samples(mean, 0.0, 5, seed=0)
    assert math.isfinite(float(q.sum()))
