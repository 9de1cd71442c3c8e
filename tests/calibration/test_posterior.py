"""Uncertainty: intervals over fits, predictive samples with observation noise."""

from __future__ import annotations

import math

import pytest
import torch

from populace.calibration.fit import Fit, Free, Problem
from populace.calibration.observation import Series
from populace.calibration.optimize import adam
from populace.calibration.posterior import Ensemble, fit_ensemble, intervals
from populace.models import covid_nyc_seir


def test_intervals_cover_the_fits():
    fits = [
        Fit("adam", torch.zeros(1), {"beta": b, "w": [b, 2 * b]}, [], 0.0, 0.0, 1)
        for b in (0.4, 0.5, 0.6)
    ]
    table = intervals(fits)
    beta = table.filter(table["param"] == "beta").row(0, named=True)
    assert beta["lo"] < beta["mean"] < beta["hi"] and math.isclose(beta["mean"], 0.5)
    assert table.height == 3
    with pytest.raises(ValueError, match="level"):
        intervals(fits, 1.5)


def noisy_problem(seed):
    """Observation-only: the rows of one simulated epidemic, Poisson-noisy data."""
    model = covid_nyc_seir.build(agents=500, population="well_mixed", initial=0.05)
    from populace.engine import Simulation

    with torch.no_grad():
        rows = Simulation(model, members=1, seed=seed, progress=False).run(40).series("cases")
    rows = rows[:, 1:].float() * 10
    g = torch.Generator().manual_seed(7)
    truth = 0.4 * rows[0]
    data = torch.poisson(truth.double(), generator=g)
    spec = {"reports": Series("cases", ratio="ascertainment")}
    return Problem(
        model,
        {"reports": data[:30]},
        [Free("ascertainment", 0.2)],
        series=spec,
        metrics={"cases": rows},
        seed=seed,
    )


def test_the_ensemble_gives_bands_and_intervals_that_hold_the_truth():
    ensemble = fit_ensemble(noisy_problem(0), [0, 1], lambda p: adam(p, lr=0.1))
    assert [f.seed for f in ensemble.fits] == [0, 1]
    table = ensemble.intervals()
    assert set(table["param"]) == {"ascertainment", "dispersion"}
    a = table.filter(table["param"] == "ascertainment").row(0, named=True)
    assert a["mean"] == pytest.approx(0.4, rel=0.15)
    samples = ensemble.samples(horizon=10, draws=20)
    assert samples["reports"].shape == (2 * 20, 40)  # fits x members x draws, rows + 10
    q = torch.quantile(samples["reports"], torch.tensor([0.05, 0.95], dtype=torch.float64), dim=0)
    data = ensemble.problem.observed["reports"]
    inside = ((data >= q[0, :30]) & (data <= q[1, :30])).double().mean()
    assert inside > 0.75  # a 90 % band holds most of the data
    with pytest.raises(ValueError, match="at least one fit"):
        Ensemble(ensemble.problem, [])
