"""The sequential filter of a time-varying rate, and its hold (nowcast and forecast)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from populace.calibration.fit import CalibrationError, Problem
from populace.calibration.sequential import (
    entry_targets,
    filter_schedule,
    hold,
    nowcast,
    nowcasts,
)
from populace.engine import Schedule, Simulation
from populace.models import covid_nyc_seir

TRUE = (0.9, 0.9, 0.35, 0.35, 0.35)  # weekly beta: a lockdown after two weeks


@pytest.fixture(scope="module")
def weekly_problem():
    model = covid_nyc_seir.build(
        agents=3000, population="well_mixed", estimator="none", initial=0.01, sigma=0.5
    )
    schedule = Schedule.every(torch.tensor(TRUE), 7)
    with torch.no_grad():
        data = Simulation(model.with_params(beta=schedule), members=8, seed=50, progress=False).run(
            35
        )
    observed = {"cases": data.series("cases")[:, 1:].mean(dim=0)}
    return Problem(model, observed, [], members=4, seed=0, loss="poisson")


def test_the_filter_recovers_each_weekly_rate(weekly_problem):
    filt = filter_schedule(weekly_problem, "beta", 7, start=0.5, lag=2)
    assert filt.pieces.shape == (4,)  # 35 days: pieces 0-3 have their 2 + 7 rows of data
    assert filt.warm.row == 28
    for k, (got, want) in enumerate(zip(filt.pieces.tolist(), TRUE, strict=False)):
        assert got == pytest.approx(want, rel=0.25), (k, filt.pieces.tolist())
    assert filt.pieces[0] > 2 * filt.pieces[3]  # the step change is found
    assert filt.metrics["cases"].shape == (4, 28)
    assert filt.evaluations <= 4 * 4


def test_hold_continues_the_filtered_simulation(weekly_problem):
    filt = filter_schedule(weekly_problem, "beta", 7, start=0.5, lag=2)
    rows = hold(weekly_problem, "beta", filt.pieces[-1], filt.warm, 40)
    assert rows["cases"].shape == (4, 40)
    torch.testing.assert_close(rows["cases"][:, :28], filt.metrics["cases"])
    # the same as one run of the filtered schedule (common random numbers)
    pieces = torch.cat([filt.pieces, filt.pieces[-1:]]).float()
    whole = dataclasses.replace(weekly_problem, free=[])
    with torch.no_grad():
        direct, _ = whole.metric_rows({"beta": Schedule.every(pieces, 7)}, None, 40)
    torch.testing.assert_close(rows["cases"], direct["cases"])


def test_hold_rescales_the_value_week_by_week(weekly_problem):
    filt = filter_schedule(weekly_problem, "beta", 7, start=0.5, lag=2)
    last = filt.pieces[-1]
    seen = []

    def rescale(history, row):
        seen.append((row, history["cases"].shape))
        return torch.tensor(1.0 if row < 35 else 0.5, dtype=torch.float64)

    rows = hold(weekly_problem, "beta", last, filt.warm, 40, rescale=rescale)
    assert seen == [(28, (4, 28)), (35, (4, 35))]  # each week sees the rows simulated so far
    pieces = torch.cat([filt.pieces, torch.stack([last, last * 0.5])]).float()
    whole = dataclasses.replace(weekly_problem, free=[])
    with torch.no_grad():
        direct, _ = whole.metric_rows({"beta": Schedule.every(pieces, 7)}, None, 40)
    torch.testing.assert_close(rows["cases"], direct["cases"])
    ones = hold(weekly_problem, "beta", last, filt.warm, 40, rescale=lambda h, r: torch.ones(()))
    torch.testing.assert_close(
        ones["cases"], hold(weekly_problem, "beta", last, filt.warm, 40)["cases"]
    )
    for bad in (torch.zeros(()), torch.tensor(float("nan")), torch.ones(2)):
        with pytest.raises(CalibrationError, match="need positive finite factors"):
            hold(weekly_problem, "beta", last, filt.warm, 40, rescale=lambda h, r, b=bad: b)
    with pytest.raises(CalibrationError, match="period must be a positive integer"):
        hold(weekly_problem, "beta", last, filt.warm, 40, rescale=rescale, period=0)


def test_the_filter_uses_no_data_after_until(weekly_problem):
    cut = dataclasses.replace(
        weekly_problem, observed={"cases": weekly_problem.observed["cases"].clone()}
    )
    cut.observed["cases"][21:] = 1e6  # nonsense after row 21
    a = filter_schedule(weekly_problem, "beta", 7, start=0.5, lag=7, until=21)
    b = filter_schedule(cut, "beta", 7, start=0.5, lag=7, until=21)
    torch.testing.assert_close(a.pieces, b.pieces)
    assert a.pieces.shape == (2,)  # the pieces whose 7 + 7 rows end by row 21


def test_filter_errors(weekly_problem):
    with pytest.raises(CalibrationError, match="has no parameter 'zeta'"):
        filter_schedule(weekly_problem, "zeta", 7)
    with pytest.raises(CalibrationError, match="until=99 lies outside"):
        filter_schedule(weekly_problem, "beta", 7, until=99)
    with pytest.raises(CalibrationError, match="period must be a positive integer"):
        filter_schedule(weekly_problem, "beta", 0)
    with pytest.raises(CalibrationError, match="no observed series for 'beta_borough'"):
        entry_targets(weekly_problem, "beta_borough")


def test_nowcast_fits_the_rate_in_force_since_the_last_piece(weekly_problem):
    # pieces 0-1 (beta 0.9) are complete by row 20; piece 2 (0.35, from row 14) has 4 of its
    # 2 + 7 rows: the nowcast finds the drop the last piece has not seen
    filt = filter_schedule(weekly_problem, "beta", 7, start=0.5, lag=2, until=20)
    assert filt.warm.row == 14 and filt.pieces.shape == (2,)
    assert float(filt.pieces[-1]) == pytest.approx(TRUE[1], rel=0.25)
    now = nowcast(weekly_problem, "beta", filt, 20, lag=2)
    assert now.shape == ()
    assert float(now) == pytest.approx(TRUE[2], rel=0.3), float(now)
    # too few rows in: the last piece
    held = nowcast(weekly_problem, "beta", filt, 20, lag=2, min_rows=5)
    assert float(held) == float(filt.pieces[-1])
    # 20 - (14 + 2) = 4 rows in: fitted with 4, the last piece with 5
    assert nowcasts(filt, 20, 2, 4) and not nowcasts(filt, 20, 2, 5)
    # no data after until are used
    cut = dataclasses.replace(
        weekly_problem, observed={"cases": weekly_problem.observed["cases"].clone()}
    )
    cut.observed["cases"][20:] = 1e6
    assert float(nowcast(cut, "beta", filt, 20, lag=2)) == float(now)


def test_nowcast_errors(weekly_problem):
    filt = filter_schedule(weekly_problem, "beta", 7, start=0.5, lag=2, until=20)
    with pytest.raises(CalibrationError, match="until=14 must lie after"):
        nowcast(weekly_problem, "beta", filt, 14, lag=2)
    with pytest.raises(CalibrationError, match="until=99 must lie after"):
        nowcast(weekly_problem, "beta", filt, 99, lag=2)
    with pytest.raises(CalibrationError, match="min_rows must be a positive integer"):
        nowcast(weekly_problem, "beta", filt, 20, lag=2, min_rows=0)
    with pytest.raises(CalibrationError, match="has no parameter 'zeta'"):
        nowcast(weekly_problem, "zeta", filt, 20, lag=2)
    empty = dataclasses.replace(filt, pieces=filt.pieces[:0])
    with pytest.raises(CalibrationError, match="at least one piece"):
        nowcast(weekly_problem, "beta", empty, 20, lag=2)
