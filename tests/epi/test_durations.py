"""Durations: exact laws, discretised continuous laws, the one-search table."""

from __future__ import annotations

import math

import pytest
import torch

from populace.epi.durations import Duration, Table, fixed, gamma, geometric, lognormal


def uniforms(n: int = 200_000, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_fixed_is_exact():
    d = fixed(3)
    assert d.pmf().tolist() == [0.0, 0.0, 1.0]
    assert (d.sample(uniforms(100)) == 3).all()


def test_geometric_sampling_follows_its_law():
    d = geometric(4.0)
    x = d.sample(uniforms())
    p = 0.25
    assert abs(float(x.mean()) - 4.0) < 4 * math.sqrt((1 - p) / p**2 / x.numel())
    for k in (1, 2, 5):
        share = float((x == k).double().mean())
        want = p * (1 - p) ** (k - 1)
        assert abs(share - want) < 4 * math.sqrt(want * (1 - want) / x.numel())
    assert (x >= 1).all() and (x == x.round()).all()


@pytest.mark.parametrize("law", [lognormal, gamma])
def test_discretised_law_is_the_rounded_continuous_one(law):
    d = law(6.0, 2.5)
    pmf = d.pmf()
    assert abs(float(pmf.sum()) - 1) < 1e-12 and (pmf >= 0).all()
    # P(D = d) = F(d + 1/2) - F(d - 1/2) from d = 2 on, against a fine numerical integral
    x = torch.linspace(1e-6, 60, 600_001, dtype=torch.float64)
    if law is lognormal:
        s2 = math.log1p((2.5 / 6) ** 2)
        mu = math.log(6.0) - s2 / 2
        dens = torch.exp(-((torch.log(x) - mu) ** 2) / (2 * s2)) / (x * math.sqrt(2 * math.pi * s2))
    else:
        k, theta = (6 / 2.5) ** 2, 2.5**2 / 6
        dens = torch.exp((k - 1) * torch.log(x) - x / theta - math.lgamma(k) - k * math.log(theta))
    dx = float(x[1] - x[0])
    for day in (2, 5, 6, 9):
        inside = (x >= day - 0.5) & (x < day + 0.5)
        assert abs(float(dens[inside].sum() * dx) - float(pmf[day - 1])) < 1e-4
    # the discretised mean is close to the continuous one (rounding is symmetric inside)
    assert abs(d.expected() - 6.0) < 0.05
    x = d.sample(uniforms())
    assert abs(float(x.mean()) - d.expected()) < 4 * float(x.std()) / math.sqrt(x.numel())


def test_table_draws_what_each_law_draws():
    laws = (fixed(2), geometric(3.0), lognormal(4.5, 1.5), gamma(8.0, 2.0), geometric(1.0))
    table = Table(laws)
    u = uniforms(50_000, seed=3)
    for j, law in enumerate(laws):
        slot = torch.full_like(u, j, dtype=torch.int64)
        assert torch.equal(table.sample(slot, u), law.sample(u)), law
    assert (table.sample(torch.full_like(u, -1, dtype=torch.int64), u) == 0).all()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: fixed(0), "whole number >= 1"),
        (lambda: fixed(2.5), "whole number >= 1"),
        (lambda: geometric(0.5), "mean must be >= 1"),
        (lambda: lognormal(4.0, 0.0), "must be > 0"),
        (lambda: gamma(-1.0, 1.0), "must be > 0"),
        (lambda: lognormal(float("nan"), 1.0), "finite"),
        (lambda: Duration("weibull", 3.0), "unknown duration kind 'weibull'"),
    ],
)
def test_bad_durations_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()
