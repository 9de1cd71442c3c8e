"""NYC: the data, the first-wave fit and the rolling forecasts at a small scale; bad inputs."""

from __future__ import annotations

import csv
import dataclasses
import json
import warnings

import numpy as np
import polars as pl
import pytest
import torch

from populace.calibration.data import NYC_BOROUGHS, NYC_CASES, NYC_SERIES, nyc_series
from populace.calibration.nyc import (
    anchored,
    damped,
    date_of,
    expected_ahead,
    fit_wave,
    held_rate,
    level,
    nd_rows,
    nyc_model,
    nyc_problem,
    observation_fit,
    observed,
    origins_of,
    predictive_weeks,
    report_lag,
    rolling_forecasts,
    row_of,
    score_origin,
    summarize,
    susceptible_ratio,
    toward_mean,
)
from populace.calibration.sequential import hold
from populace.engine import ParamError, Schedule, Simulation, per_agent
from populace.models import covid_nyc_seir


@pytest.fixture(scope="module")
def small_nyc():
    with warnings.catch_warnings():  # the population's marginal-rescaling notice
        warnings.simplefilter("ignore")
        return nyc_model(agents=3000)


@pytest.fixture(scope="module")
def march(small_nyc):
    problem = nyc_problem(small_nyc, "2020-03-28", members=2)
    return problem, fit_wave(problem, passes=1, max_updates=2, max_epochs=30)


def test_the_shipped_series_cover_the_study_and_refuse_other_windows():
    for kind in NYC_SERIES:
        frame = nyc_series(kind, "2020-03-01", "2021-04-30")
        assert frame.height == 426 and set(NYC_BOROUGHS) <= set(frame.columns), kind
        assert float(frame[NYC_BOROUGHS[0]].sum()) > 0
    with pytest.raises(ValueError, match="lies outside the data"):
        nyc_series("cases", "2019-12-01", "2020-03-31")
    with pytest.raises(ValueError, match="before its start"):
        nyc_series("deaths", "2020-05-01", "2020-04-01")
    with pytest.raises(ValueError, match="unknown NYC series"):
        nyc_series("tests", "2020-05-01", "2020-06-01")


def test_a_borough_with_zero_rate_has_no_cases_the_others_do():
    model = covid_nyc_seir.build(
        agents=500,
        population="well_mixed",
        beta=1.5,
        initial=torch.tensor([0.05, 0.05, 0.05, 0.05, 0.0]),
        beta_borough=torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0]),  # BX BK MN QN SI
    )
    with torch.no_grad():
        result = Simulation(model, members=3, seed=1, progress=False).run(25)
    assert float(result.series("cases_SI").sum()) == 0  # SI residents: never seeded or exposed
    for b in ("BX", "BK", "MN", "QN"):
        assert float(result.series(f"cases_{b}").sum()) > 0, b


def test_initial_infections_follow_the_borough_probabilities():
    p = torch.tensor([0.0, 0.5, 0.0, 0.0, 0.2])
    model = covid_nyc_seir.build(agents=5000, population="well_mixed", initial=p)
    with torch.no_grad():
        sim = Simulation(model, members=2, seed=3, progress=False)
    infected = sim.state.health[:, 2]  # S E I R: I
    borough = model.data["borough"]
    for k, prob in enumerate(p.tolist()):
        share = float(infected[:, borough == k].mean())
        assert share == pytest.approx(prob, abs=0.03), k
    with pytest.raises(ParamError, match=r"'initial': trailing shape \(4,\)"):
        covid_nyc_seir.CovidParams(initial=torch.ones(4) * 0.1).to(axes={"borough": 5})
    rates = per_agent(torch.tensor([0.5, 1, 1, 1, 3]), torch.tensor([0, 4, 4]))
    torch.testing.assert_close(rates, torch.tensor([0.5, 3.0, 3.0]))


def test_the_problem_observes_cases_hospitalisations_and_deaths(small_nyc, march):
    problem, _ = march
    assert set(problem.observed) == {
        f"{k}_{b}" for k in ("cases", "hosp", "deaths") for b in NYC_BOROUGHS
    }
    assert problem.rows == 28 and float(problem.model.params.beta) == 1.0
    assert {"ascertainment", "fatality", "death_delay", "dispersion_deaths"} <= set(
        problem.observation
    )
    assert isinstance(problem.fixed["ascertainment"], Schedule)
    assert row_of("2020-07-01") == 122 and date_of(122) == "2020-07-01"
    assert origins_of("2020-07-01", 3) == [122, 150, 178]
    with pytest.raises(ValueError, match="lies outside the data"):
        nyc_problem(small_nyc, "2031-01-01")


def test_the_wave_fit_and_its_nd_by_hand(march):
    problem, wave = march
    assert wave.pieces.shape == (2, 5)  # weeks from days 0, 7: their 12 + 7 days end by 28
    assert wave.predicted["cases_BX"].shape == (2, 28)
    assert isinstance(wave.values["ascertainment"], Schedule)
    rows = nd_rows(wave.predicted, problem.observed, "fit")
    with open(NYC_CASES, newline="") as fh:
        table = list(csv.DictReader(fh))
    first = [r["date_of_interest"] for r in table].index("03/01/2020")
    days = table[first : first + 28]
    obs = {b: np.array([float(r[f"{b}_CASE_COUNT"]) for r in days]) for b in NYC_BOROUGHS}
    mean = {b: wave.predicted[f"cases_{b}"].double().numpy().mean(axis=0) for b in NYC_BOROUGHS}
    obs["NYC"], mean["NYC"] = sum(obs.values()), sum(mean.values())
    for r in rows:
        b = r["borough"]
        nd = np.abs(mean[b] - obs[b]).sum() / np.abs(obs[b]).sum()
        assert r["nd"] == pytest.approx(nd, rel=1e-6), b


def test_rolling_forecasts_score_every_origin_against_both_baselines(small_nyc, march, monkeypatch):
    import populace.calibration.nyc as nyc

    _, wave = march
    origins = [row_of("2020-04-04"), row_of("2020-04-11")]
    calls = []

    def spy(model, pieces, history, row, weeks, held):
        calls.append((weeks, held))
        return held_rate(model, pieces, history, row, weeks, held)

    monkeypatch.setattr(nyc, "held_rate", spy)
    scores = rolling_forecasts(small_nyc, wave, origins=origins, max_updates=1, max_epochs=20)
    assert calls == [(2, "reproduction")] * 2  # each origin holds the last two weeks' mean
    assert scores.height == 2 * 5 * 4  # origins x boroughs x weeks
    assert set(scores["origin"]) == {"2020-04-04", "2020-04-11"}
    first = scores.filter((scores["origin"] == "2020-04-04") & (scores["borough"] == "BK"))
    cases = observed("2020-05-02", ("cases",))["cases_BK"]
    truth = cases[34:62].reshape(4, 7).sum(dim=1)
    assert first["observed"].to_list() == truth.tolist()  # weekly totals after the origin
    persistence = float(cases[27:34].sum())
    assert first["persistence"].to_list() == [persistence] * 4
    assert (scores["model_wis"] >= 0).all() and (scores["log_linear_wis"] >= 0).all()
    summary = summarize(scores)
    assert len(summary["per_origin"]) == 2
    mae = (scores["model"] - scores["observed"]).abs().mean()
    per = summary["per_origin"]
    assert np.mean([p["model_mae"] for p in per]) == pytest.approx(mae)
    assert summary["mean"]["relative_mae"] == pytest.approx(
        np.mean([p["model_mae"] / p["persistence_mae"] for p in per])
    )
    assert summary["pooled"]["relative_mae"] == pytest.approx(
        sum(p["model_mae"] for p in per) / sum(p["persistence_mae"] for p in per)
    )
    assert summary["pooled"]["relative_wis_log_linear"] == pytest.approx(
        sum(p["model_wis"] for p in per) / sum(p["log_linear_wis"] for p in per)
    )


def test_toward_mean_keeps_the_mean_and_scales_the_deviations():
    members = torch.tensor([[1.0, 4.0], [3.0, 8.0], [8.0, 0.0]], dtype=torch.float64)
    for spread in (0.0, 0.1, 1.0):
        out = toward_mean(members, spread)
        assert torch.allclose(out.mean(0), members.mean(0))
        assert torch.allclose(out - out.mean(0), spread * (members - members.mean(0)))
    assert torch.equal(toward_mean(members, 1.0), members)


def test_the_forecast_starts_from_the_last_weeks_observed_level():
    origin = 35
    seen = torch.full((origin,), 250.0, dtype=torch.float64)  # the data: 250 a day
    flat = torch.tensor([[80.0], [120.0]], dtype=torch.float64).expand(2, origin + 28)
    ahead = expected_ahead(seen, flat, spread=1.0)  # the model: 100 a day (members' mean)
    scale = (7 * 250 + 1) / (7 * 100 + 1)
    torch.testing.assert_close(ahead, flat[:, origin:] * scale)  # flat: nothing to damp
    assert torch.equal(expected_ahead(seen, flat, anchor=0, spread=1.0), flat[:, origin:])
    shrunk = expected_ahead(seen, flat, spread=0.0)  # every member the mean
    torch.testing.assert_close(shrunk, torch.full((2, 28), 100 * scale, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"expected must have 63 rows"):
        expected_ahead(seen, flat[:, :60])
    with pytest.raises(ValueError, match="member spread must be finite and >= 0"):
        expected_ahead(seen, flat, spread=float("nan"))


def test_damped_growth_keeps_a_shrinking_share_of_each_days_log_change():
    last, r, phi = 40.0, 0.05, 0.9
    days = torch.arange(28, dtype=torch.float64)
    growth = last * torch.exp(r * (days + 1))  # from last, r a day
    members = torch.stack([0.5 * growth, 1.5 * growth])  # [2, 28], their mean is growth
    out = damped(members, last, phi)
    keep = phi ** ((days + 1) / 7)
    expected = last * torch.exp(r * keep.cumsum(0))  # analytic: sum_k r phi^((k+1)/7)
    assert torch.allclose(out.mean(0), expected, rtol=1e-10)
    assert torch.allclose(out[1] / out[0], torch.full((28,), 3.0, dtype=torch.float64))
    assert torch.equal(damped(members, last, 1.0), members)
    flat = torch.full((2, 28), last, dtype=torch.float64)
    assert torch.allclose(damped(flat, last, phi), flat)  # no growth, nothing to damp
    falling = last * torch.exp(-r * (days + 1)).expand(2, 28)
    assert (damped(falling, last, phi) > falling).all()  # a decline is damped as well
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="damping must lie in"):
            damped(members, last, bad)


def test_the_pool_with_persistence_keeps_the_models_weight_of_the_damped_log_change():
    last, r, phi = 40.0, 0.05, 0.3
    days = torch.arange(28, dtype=torch.float64)
    growth = last * torch.exp(r * (days + 1))
    members = torch.stack([0.5 * growth, 1.5 * growth])  # [2, 28], their mean is growth
    alone = damped(members, last, phi)
    for w in (0.25, 0.5, 0.75):
        pooled = damped(members, last, phi, w)
        # log-linear pool: w log(model) + (1 - w) log(persistence, last held flat)
        expected = last * (alone.mean(0) / last) ** w
        assert torch.allclose(pooled.mean(0), expected, rtol=1e-10)
        assert torch.allclose(pooled[1] / pooled[0], torch.full((28,), 3.0, dtype=torch.float64))
    held = damped(members, last, phi, 0.0)  # persistence: the last week's level, members kept
    assert torch.allclose(held.mean(0), torch.full((28,), last, dtype=torch.float64))
    assert torch.equal(damped(members, last, 1.0, 1.0), members)
    # through the forecast: a model falling 5 % a day from the data's level, undamped
    origin = 35
    seen = torch.full((origin,), 100.0, dtype=torch.float64)
    path = 100.0 * torch.exp(-r * (torch.arange(origin + 28, dtype=torch.float64) - origin + 1))
    path = path.clamp_max(100.0).expand(2, origin + 28)
    model = expected_ahead(seen, path, spread=1.0, damping=1.0, weight=1.0)
    half = expected_ahead(seen, path, spread=1.0, damping=1.0, weight=0.5)
    # the model's last week is the data's (100 a day): no jump-off, 100 is persistence's level
    torch.testing.assert_close(half[0], 100.0 * (model[0] / 100.0) ** 0.5)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="model weight must lie in"):
            damped(members, last, phi, bad)


def test_the_forecast_centres_its_members_on_their_mean_at_the_city_scale(march):
    problem, _ = march
    origin, rows = 14, 14 + 28
    # three members: a borough's outbreak at 1 onset a day in two, 10 in the third
    level = torch.tensor([[1.0], [1.0], [10.0]], dtype=torch.float64).expand(3, rows)
    metrics = {f"cases_{b}": level.clone() for b in NYC_BOROUGHS}
    values = dict(problem.fixed)
    as_is = predictive_weeks(problem, metrics, values, origin, spread=1.0)["cases_BK"]
    city = predictive_weeks(problem, metrics, values, origin)["cases_BK"]
    spread = problem.multiplier**-0.5
    default = predictive_weeks(problem, metrics, values, origin, spread=spread)
    assert torch.equal(city, default["cases_BK"])  # None: 1 / sqrt(residents / agents)
    # the members' mean is kept (negative-binomial draws: within their noise) ...
    assert city.mean(0) == pytest.approx(as_is.mean(0), rel=0.05)
    # ... but the unshrunk mixture's median sits with the two small members, far below it
    assert (as_is.median(0).values < 0.5 * as_is.mean(0)).all()
    assert city.median(0).values == pytest.approx(city.mean(0), rel=0.1)
    with pytest.raises(ValueError, match="member spread must be finite and >= 0, got -1.0"):
        predictive_weeks(problem, metrics, values, origin, spread=-1.0)


def test_a_borough_whose_model_epidemic_died_out_is_flagged_and_scored_as_forecast(small_nyc):
    problem = nyc_problem(small_nyc, "2020-04-30", members=2)
    origin, rows = 21, 21 + 28
    assert float(problem.observed["cases_BK"][origin - 7 : origin].sum()) > 0
    alive = torch.full((2, rows), 10.0, dtype=torch.float64)
    metrics = {f"cases_{b}": alive.clone() for b in NYC_BOROUGHS}
    metrics["cases_BK"] = torch.zeros(2, rows, dtype=torch.float64)  # no infectious left
    scores = pl.DataFrame(score_origin(problem, metrics, dict(problem.fixed), origin))
    dead = scores.filter(pl.col("borough") == "BK")
    assert dead["model_extinct"].all() and (dead["model"] == 0).all()  # scored, not dropped
    assert not scores.filter(pl.col("borough") != "BK")["model_extinct"].any()
    assert summarize(scores)["per_origin"][0]["extinct_boroughs"] == 1


def test_rolling_forecasts_warn_where_the_model_died_out(small_nyc, march, monkeypatch):
    import populace.calibration.nyc as nyc

    _, wave = march

    def died_out_in_si(*args):
        rows = score_origin(*args)
        return [r | {"model_extinct": r["borough"] == "SI"} for r in rows]

    monkeypatch.setattr(nyc, "score_origin", died_out_in_si)
    with pytest.warns(RuntimeWarning, match=r"origin 2020-04-04: .* died out in SI \("):
        rolling_forecasts(
            small_nyc, wave, origins=[row_of("2020-04-04")], max_updates=1, max_epochs=5
        )


def test_susceptible_ratio_is_the_fraction_not_yet_infected_then_over_now(small_nyc):
    residents = torch.bincount(small_nyc.data["borough"].long(), minlength=5).double()
    onsets = torch.zeros(2, 10, 5, dtype=torch.float64)
    onsets[0, 2] = residents * 0.1  # member 0: 10 % of every borough before row 3
    onsets[1, 6, 0] = residents[0] * 0.3  # member 1: 30 % of BX on row 6
    history = {f"cases_{b}": onsets[:, :, k] for k, b in enumerate(NYC_BOROUGHS)}
    got = susceptible_ratio(small_nyc, since=3)(history, 8)
    s_then = 1 - torch.full((5,), 0.05, dtype=torch.float64)  # member mean: 5 %
    s_now = s_then - torch.tensor([0.15, 0, 0, 0, 0], dtype=torch.float64)
    torch.testing.assert_close(got, s_then / s_now)
    torch.testing.assert_close(
        susceptible_ratio(small_nyc, since=8)(history, 8), torch.ones(5, dtype=torch.float64)
    )


def test_the_held_rate_averages_the_last_weeks_reproduction_numbers(small_nyc):
    residents = torch.bincount(small_nyc.data["borough"].long(), minlength=5).double()
    onsets = torch.zeros(2, 21, 5, dtype=torch.float64)
    onsets[:, 12] = residents * 0.2  # 20 % of every borough infected on row 12
    history = {f"cases_{b}": onsets[:, :, k] for k, b in enumerate(NYC_BOROUGHS)}
    pieces = torch.tensor([[9.0] * 5, [0.2, 0.3, 0.4, 0.5, 0.6], [0.8, 0.3, 0.1, 0.5, 0.6]])
    pieces = pieces.double()
    last, since = held_rate(small_nyc, pieces, history, 21, 1, "reproduction")
    assert since == 17 and torch.equal(last, pieces[-1])
    rates, _ = held_rate(small_nyc, pieces, history, 21, 2, "rate")
    torch.testing.assert_close(rates, (pieces[-1] * pieces[-2]).sqrt())
    # the week before (middle row 10) had S = 1, this one (row 17) 0.8: its rate x 1 / 0.8
    two, since = held_rate(small_nyc, pieces, history, 21, 2, "reproduction")
    torch.testing.assert_close(two, (pieces[-1] * pieces[-2] / 0.8).sqrt())
    three, _ = held_rate(small_nyc, pieces, history, 21, 3, "reproduction")
    torch.testing.assert_close(three, (pieces[-1] * pieces[-2] / 0.8 * 9.0 / 0.8) ** (1 / 3))
    for weeks, match in ((0, "positive integer"), (True, "positive integer"), (4, "exceed the 3")):
        with pytest.raises(ValueError, match=match):
            held_rate(small_nyc, pieces, history, 21, weeks, "reproduction")


def test_report_lag_is_latency_plus_the_fitted_delay():
    model = covid_nyc_seir.build(agents=200, population="well_mixed", sigma=0.25)
    assert report_lag(model, {"delay": 12.4}) == 16  # 4 + 12.4
    knots = Schedule.every(torch.tensor([4.0, 16.0]), 14)  # geometric mean 8
    assert report_lag(model, {"delay": knots}) == 12
    with pytest.raises(ValueError, match="sigma must be > 0"):
        report_lag(model.with_params(sigma=0.0), {"delay": 5.0})


def test_holding_the_reproduction_number_raises_the_rate_as_susceptibles_deplete(small_nyc, march):
    problem, wave = march
    warm, rate = wave.filtered.warm, wave.pieces[-1]
    seen = []

    def rescale(history, row):
        seen.append(susceptible_ratio(small_nyc, warm.row - 4)(history, row))
        return seen[-1]

    by_rate = hold(problem, "beta_borough", rate, warm, warm.row + 21, wave.values)
    by_reff = hold(problem, "beta_borough", rate, warm, warm.row + 21, wave.values, rescale=rescale)
    assert len(seen) == 3 and all((f > 1).all() for f in seen)  # S(then) / S(now) > 1
    assert all((b >= a).all() for a, b in zip(seen, seen[1:], strict=False))  # and grows
    later = slice(warm.row, None)  # common random numbers: higher rates infect a superset
    for b in NYC_BOROUGHS:
        more = by_reff[f"cases_{b}"][:, later].sum(1) - by_rate[f"cases_{b}"][:, later].sum(1)
        assert (more >= 0).all(), b
    total = sum(by_reff[f"cases_{b}"][:, later].sum() for b in NYC_BOROUGHS)
    assert total > sum(by_rate[f"cases_{b}"][:, later].sum() for b in NYC_BOROUGHS)
    with pytest.raises(ValueError, match="unknown hold 'beta'; valid: reproduction, rate"):
        rolling_forecasts(small_nyc, wave, origins=[row_of("2020-04-04")], held="beta")


def test_forecast_origins_outside_the_data_or_the_fit_are_refused(small_nyc, march):
    _, wave = march
    with pytest.raises(ValueError, match="origins must increase and begin after"):
        rolling_forecasts(small_nyc, wave, origins=[row_of("2020-03-10")])
    with pytest.raises(ValueError, match="lies outside the data"):
        rolling_forecasts(small_nyc, wave, origins=[row_of("2025-10-01")])
    with pytest.raises(ValueError, match="held weeks 3 exceed the 2 weeks filtered"):
        rolling_forecasts(small_nyc, wave, origins=[row_of("2020-04-04")], held_weeks=3)


@pytest.mark.slow
def test_calibrate_nyc_cli_prints_the_contract(tmp_path, capsys):
    from populace.cli import main

    out = tmp_path / "nyc"
    args = [
        "calibrate-nyc",
        "--agents",
        "2000",
        "--fit-end",
        "2020-03-28",
        "--passes",
        "1",
        "--origins",
        "1",
        "--first-origin",
        "2020-04-04",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {
        "params",
        "nd",
        "converged",
        "nd_by_borough",
        "forecast_relative_mae",
        "forecast_origins",
    } <= set(last)
    assert set(last["nd_by_borough"]) == set(NYC_BOROUGHS)
    assert last["forecast_origins"] == ["2020-04-04"]
    for name in ("nd.csv", "forecasts.csv", "origins.csv", "fit.png", "calibration.json"):
        assert (out / name).is_file(), name
    rows = pl.read_csv(out / "forecasts.csv").filter(pl.col("model_extinct"))
    record = json.loads((out / "calibration.json").read_text())
    assert record["forecast_extinct"] == sorted(
        {f"{r['origin']} {r['borough']}" for r in rows.to_dicts()}
    )
    assert main([*args[:-2], "--fit-end", "2035-01-01"]) == 2
    assert "lies outside the data" in capsys.readouterr().err
    other = tmp_path / "other"
    assert main([*args[:-1], str(other), "--rolling-anchors", "fatality,tests"]) == 2
    assert "unknown anchor ratio(s) ['tests']" in capsys.readouterr().err
    assert main([*args[:-1], str(other), "--anchors", "fatality"]) == 2  # --passes 1
    assert "anchors ['fatality'] need passes >= 2, got 1" in capsys.readouterr().err
    assert main([*args[:-1], str(other), "--rolling-lag", "-1"]) == 2
    assert "rolling_lag must be a non-negative integer, got -1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # argparse refuses it
        main([*args[:-1], str(other), "--held-weeks", "0"])
    assert exit_.value.code == 2
    assert "--held-weeks: expected a positive integer, got '0'" in capsys.readouterr().err
    for flag, bad, says in (
        ("--damping", "0", "expected a number in (0, 1], got '0'"),
        ("--damping", "1.2", "expected a number in (0, 1], got '1.2'"),
        ("--model-weight", "-0.5", "expected a number in [0, 1], got '-0.5'"),
        ("--model-weight", "nan", "expected a number in [0, 1], got 'nan'"),
        ("--member-spread", "-1", "expected a finite number >= 0, got '-1'"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main([*args[:-1], str(other), flag, bad])
        assert exit_.value.code == 2
        assert f"{flag}: {says}" in capsys.readouterr().err
    assert not other.exists()  # nothing half-written


def test_anchored_moves_the_ascertainment_by_the_ratios_drift_after_the_wave():
    asc = Schedule.every(torch.full((6,), 0.1, dtype=torch.float64), 14)
    values = {
        "ascertainment": asc,
        # deaths say: twice the model's infections from day 28 on (fatality 2 x its constant)
        "fatality": Schedule.every(torch.tensor([0.01, 0.01, 0.02, 0.02, 0.02, 0.02]), 14),
        "hospitalised": 0.05,
    }
    one = anchored(values, {"fatality": 0.01}, after=28, rows=84)
    torch.testing.assert_close(
        one["ascertainment"].values,
        torch.tensor([0.1, 0.1, 0.05, 0.05, 0.05, 0.05], dtype=torch.float64),
    )
    assert one["fatality"] is values["fatality"] and one["ascertainment"].starts == asc.starts
    # two ratios: the geometric mean of their drifts (the constant one has none)
    two = anchored(values, {"fatality": 0.01, "hospitalised": 0.05}, after=28, rows=84)
    want = 0.1 / 2**0.5
    torch.testing.assert_close(two["ascertainment"].values[2:], torch.full((4,), want).double())
    torch.testing.assert_close(two["ascertainment"].values[:2], asc.values[:2])
    assert level(values["fatality"]) == pytest.approx(0.01 * 2 ** (4 / 6))
    assert level(0.3) == 0.3


def test_the_observation_fit_fits_a_ratio_over_time_when_asked(march):
    problem, wave = march
    truth = Schedule.every(torch.tensor([0.004, 0.016], dtype=torch.float64), 14)
    values = {**wave.values, "death_delay": 2.0}  # deaths follow onsets within days
    seen = dataclasses.replace(problem, fixed={}, metrics=wave.metrics, free=[])
    with torch.no_grad():
        expected, _ = seen.predict({**values, "fatality": truth})
    observed_ = dict(problem.observed)
    observed_ |= {f"deaths_{b}": expected[f"deaths_{b}"].mean(dim=0) for b in NYC_BOROUGHS}
    synthetic = dataclasses.replace(problem, observed=observed_, smoothness=0.0)
    fixed = {n: v for n, v in values.items() if n not in ("fatality", "ascertainment")}
    fitted, _ = observation_fit(
        synthetic, wave.metrics, values, max_epochs=200, fixed=fixed, varying={"fatality": 14}
    )
    knots = fitted["fatality"].values
    assert isinstance(fitted["fatality"], Schedule) and knots.shape == (2,)
    torch.testing.assert_close(knots.double(), truth.values, rtol=0.2, atol=0)  # the 4x rise
    constant, _ = observation_fit(synthetic, wave.metrics, values, max_epochs=20, fixed=fixed)
    assert not isinstance(constant["fatality"], Schedule)
