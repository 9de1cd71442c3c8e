"""The NYC first wave: per-borough rates, forecast continuation, neural calibrator on NYC data."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from populace.calibration.data import NYC_BOROUGHS
from populace.calibration.fit import evaluate, fit_adam
from populace.calibration.losses import normalized_deviation
from populace.calibration.neural import NeuralCalibrator
from populace.calibration.nyc import (
    borough_features,
    first_wave,
    forecast,
    forecast_window,
    neural_first_wave,
    nyc_model,
    nyc_problem,
    observed_cases,
    seed_intervals,
)
from populace.calibration.observation import reported_cases
from populace.engine import Schedule, Simulation
from populace.models import covid_nyc_seir


@pytest.fixture(scope="module")
def small_nyc():
    with warnings.catch_warnings():  # the population's marginal-rescaling notice
        warnings.simplefilter("ignore")
        return nyc_model(agents=400)


def test_a_borough_with_zero_rate_has_no_cases_the_others_do():
    model = covid_nyc_seir.build(
        agents=500, population="well_mixed", beta=1.5, initial=0.05, beta_SI=0.0
    )
    with torch.no_grad():
        result = Simulation(model, members=3, seed=1, progress=False).run(25)
    assert float(result.series("cases_SI").sum()) == 0  # SI residents are never exposed
    for b in ("BX", "BK", "MN", "QN"):
        assert float(result.series(f"cases_{b}").sum()) > 0, b


def test_borough_rates_follow_schedules_and_members():
    borough = torch.tensor([0, 1, 2, 3, 4, 4])
    params = covid_nyc_seir.CovidParams(
        beta_BX=torch.tensor([0.5, 2.0]), beta_SI=Schedule.every([3.0, 4.0], 7)
    ).to("cpu", torch.float64)
    rates = covid_nyc_seir.borough_rates(params.at(8), borough)  # SI's second piece
    expected = torch.tensor([[0.5, 1, 1, 1, 4, 4], [2.0, 1, 1, 1, 4, 4]], dtype=torch.float64)
    torch.testing.assert_close(rates, expected)


def test_forecast_continues_the_fitted_simulation(small_nyc):
    problem = nyc_problem(small_nyc, beta="city", members=2, days=14)
    values = problem.split(problem.start())
    fitted, ahead = forecast(problem, values, horizon=10)
    with torch.no_grad():
        preds, _ = problem.predict(values)
        # one uninterrupted run of 24 days gives the same reports (same member streams)
        sim = Simulation(
            problem.model,
            members=2,
            seed=problem.seed,
            params=problem.model.params.replace(
                **{k: v for k, v in values.items() if k not in ("ascertainment", "delay")}
            ),
            progress=False,
        )
        whole = sim.run(24)
    for name in problem.observed:
        # predict() reports in float32, forecast() in float64
        torch.testing.assert_close(fitted[name], preds[name].double(), rtol=1e-5, atol=1e-3)
        onsets = whole.series(name)[:, 1:].to(torch.float64)
        reports = reported_cases(
            onsets, values["ascertainment"], values["delay"], multiplier=problem.multiplier
        )
        torch.testing.assert_close(ahead[name], reports[:, 14:])
        assert ahead[name].shape == (2, 10)


def test_nyc_problem_shapes_and_errors(small_nyc):
    problem = nyc_problem(small_nyc, beta="borough", days=30)
    # 4 weekly pieces per borough (the last absorbs days 28-29), initial, ascertainment, delay
    assert problem.start().numel() == 5 * 4 + 3
    assert float(problem.model.params.beta) == 1.0
    assert set(problem.observed) == {f"cases_{b}" for b in NYC_BOROUGHS}
    assert forecast_window(122) == ("2020-07-01", "2020-07-28")
    july = observed_cases(*forecast_window(122))
    assert all(v.numel() == 28 for v in july.values())
    with pytest.raises(ValueError, match="unknown beta parametrisation"):
        nyc_problem(small_nyc, beta="weekly")
    with pytest.raises(ValueError, match="no whole piece"):
        nyc_problem(small_nyc, days=5)


@pytest.mark.slow
def test_first_wave_reports_nd_per_borough_for_fit_and_forecast(small_nyc):
    waves = [
        first_wave(
            nyc_problem(small_nyc, beta="city", period=14, days=14, seed=s),
            lambda p: fit_adam(p, epochs=1, lr=0.1),
        )
        for s in (0, 1)
    ]
    errors = waves[0].errors
    assert errors.height == 2 * (len(NYC_BOROUGHS) + 1)
    fit_bx = errors.filter((errors["borough"] == "BX") & (errors["window"] == "fit"))["nd"][0]
    obs = waves[0].fit_observed["cases_BX"]
    expected = normalized_deviation(waves[0].fitted["cases_BX"].mean(dim=0), obs)
    assert fit_bx == pytest.approx(float(expected))
    nd, params = seed_intervals(waves)
    assert nd.height == errors.height and (nd["lo"] <= nd["mean"]).all()
    assert (nd["mean"] <= nd["hi"]).all() and (nd["fits"] == 2).all()
    assert set(params["param"]) >= {"beta", "initial", "ascertainment", "delay"}


@pytest.mark.slow
def test_neural_calibrator_improves_the_loss_on_nyc_data(small_nyc):
    problem = nyc_problem(small_nyc, beta="neural", members=2, days=21)
    features = borough_features(problem)
    assert features.shape == (3, 2 * len(NYC_BOROUGHS))
    torch.manual_seed(problem.seed)  # the same initial network as neural_first_wave builds
    net = NeuralCalibrator(features.shape[1], 0.05, 3.0, init=0.6)
    with torch.no_grad():
        start_values = problem.split(problem.start())
        start_values["beta"] = Schedule.every(net(features.float()), 7)
        start = float(problem.objective(start_values))
    wave = neural_first_wave(problem, epochs=6, lr=0.05)
    assert wave.fit.history[0] == pytest.approx(start, rel=1e-5)
    assert wave.fit.loss < start
    assert len(wave.fit.values["beta"]) == 3


@pytest.mark.slow
def test_calibrate_nyc_cli_writes_the_report(tmp_path, capsys):
    from populace.cli import main

    out = tmp_path / "nyc"
    args = ["calibrate-nyc", "--agents", "300", "--epochs", "1", "--days", "7"]
    assert main([*args, "--seeds", "0,1", "--beta", "city", "--out", str(out)]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    windows = {(r["borough"], r["window"]) for r in record["nd"]}
    assert ("SI", "forecast") in windows and ("NYC", "fit") in windows
    for name in ("nd.csv", "nd_intervals.csv", "param_intervals.csv", "fit.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "calibration.json").read_text())
    assert saved["forecast_window"] == ["2020-03-08", "2020-04-04"]
    assert main([*args, "--seeds", "a,b"]) == 2
    assert "--seeds" in capsys.readouterr().err


@pytest.mark.slow
def test_benchmark_compares_adam_and_nelder_mead_on_the_same_problem():
    from populace.benchmarks.calibration import compare

    record = compare(agents=300, epochs=2, period=7, days=7)
    for method in ("adam", "nelder_mead"):
        assert set(record[method]["nd"]) == {*NYC_BOROUGHS, "NYC"}
        assert record[method]["loss"] > 0 and record[method]["seconds"] > 0
    assert record["nelder_mead"]["evaluations"] >= record["free_dimensions"] + 1
    assert record["versions"]["torch"] and record["date"]


def test_evaluate_is_deterministic_on_the_nyc_problem(small_nyc):
    problem = nyc_problem(small_nyc, beta="borough", days=7)
    theta = problem.start().float()
    assert evaluate(problem, theta) == evaluate(problem, theta)
