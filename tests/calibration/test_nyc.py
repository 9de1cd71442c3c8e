"""The NYC first wave: per-borough rates, forecast continuation, neural calibrator on NYC data."""

from __future__ import annotations

import csv
import json
import warnings

import numpy as np
import pytest
import torch

from populace.calibration.data import NYC_BOROUGHS, NYC_CASES
from populace.calibration.fit import Problem, evaluate, fit_adam
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
from populace.engine import ParamError, Schedule, Simulation, per_agent
from populace.models import covid_nyc_seir


@pytest.fixture(scope="module")
def small_nyc():
    with warnings.catch_warnings():  # the population's marginal-rescaling notice
        warnings.simplefilter("ignore")
        return nyc_model(agents=1000)


def test_a_borough_with_zero_rate_has_no_cases_the_others_do():
    model = covid_nyc_seir.build(
        agents=500,
        population="well_mixed",
        beta=1.5,
        initial=0.05,
        beta_borough=torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0]),  # BX BK MN QN SI
    )
    with torch.no_grad():
        result = Simulation(model, members=3, seed=1, progress=False).run(25)
    assert float(result.series("cases_SI").sum()) == 0  # SI residents are never exposed
    for b in ("BX", "BK", "MN", "QN"):
        assert float(result.series(f"cases_{b}").sum()) > 0, b


def test_borough_rates_follow_schedules_and_members():
    borough = torch.tensor([0, 1, 2, 3, 4, 4])
    weekly = torch.tensor(
        [[[0.5, 1, 1, 1, 3], [2.0, 1, 1, 1, 3]], [[0.5, 1, 1, 1, 4], [2.0, 1, 1, 1, 4]]]
    )
    params = covid_nyc_seir.CovidParams(beta_borough=Schedule.every(weekly, 7)).to(
        "cpu", torch.float64, axes={"borough": 5}
    )
    rates = per_agent(params.at(8).beta_borough, borough)  # the second week's piece
    expected = torch.tensor([[0.5, 1, 1, 1, 4, 4], [2.0, 1, 1, 1, 4, 4]], dtype=torch.float64)
    torch.testing.assert_close(rates, expected)
    assert params.members() == {"beta_borough": 2}
    with pytest.raises(ParamError, match=r"'beta_borough': trailing shape \(4,\)"):
        covid_nyc_seir.CovidParams(beta_borough=torch.ones(4)).to(axes={"borough": 5})


def old_forecast(problem, values, horizon):
    """The forecast as it was before it reused Problem.predict: kept to check the results."""
    model_values = {k: v for k, v in values.items() if k not in ("ascertainment", "delay")}
    with torch.no_grad():
        sim = Simulation(
            problem.model,
            members=problem.members,
            seed=problem.seed,
            params=problem.model.params.replace(**model_values),
            dtype=problem.dtype,
            progress=False,
        )
        fitted, ahead = sim.run(problem.steps), sim.run(horizon)  # a continued simulation
        fit_out, ahead_out = {}, {}
        for name in problem.observed:
            onsets = torch.cat([fitted.series(name)[:, 1:], ahead.series(name)[:, 1:]], dim=1)
            reports = reported_cases(
                onsets.to(torch.float64),
                torch.as_tensor(values["ascertainment"], dtype=torch.float64),
                torch.as_tensor(values["delay"], dtype=torch.float64),
                multiplier=problem.multiplier,
            )
            fit_out[name], ahead_out[name] = reports[:, : problem.rows], reports[:, problem.rows :]
    return fit_out, ahead_out


@pytest.mark.parametrize("beta", ["city", "borough"])
def test_forecast_continues_the_fitted_simulation(small_nyc, beta):
    problem = nyc_problem(small_nyc, beta=beta, members=2, days=14)
    values = problem.split(problem.start())
    fitted, ahead = forecast(problem, values, horizon=10)
    with torch.no_grad():
        preds, _ = problem.predict(values)
    ref_fit, ref_ahead = old_forecast(problem, values, 10)
    for name in problem.observed:
        assert fitted[name].shape == (2, 14) and ahead[name].shape == (2, 10)
        torch.testing.assert_close(fitted[name], preds[name])  # the fit window: predict()
        # the same reports as before; only the dtype of the reporting differs (float32 now)
        torch.testing.assert_close(fitted[name].double(), ref_fit[name], rtol=1e-5, atol=1e-3)
        torch.testing.assert_close(ahead[name].double(), ref_ahead[name], rtol=1e-5, atol=1e-3)
    assert sum(float(v.sum()) for v in ahead.values()) > 0  # the check can fail


def test_forecast_follows_the_problem_rows_and_reporting():
    # steps_per_row 2 (each row sums two steps), no reporting model, 3 rows of forecast
    model = covid_nyc_seir.build(agents=300, population="well_mixed", initial=0.05)
    problem = Problem(
        model, {"cases": torch.ones(5), "I": torch.ones(5)}, [], steps_per_row=2, multiplier=3.0
    )
    assert (problem.members, problem.seed) == (4, 0)
    fitted, ahead = forecast(problem, {}, horizon=3)
    with torch.no_grad():
        run = Simulation(model, members=4, seed=0, dtype=torch.float32, progress=False)
        whole = run.run(16)
    cases = 3.0 * whole.series("cases")[:, 1:].reshape(4, 8, 2).sum(dim=-1).float()
    infected = (
        3.0 * whole.series("I")[:, 2::2].float()
    )  # a stock: its value at each row's last step
    torch.testing.assert_close(torch.cat([fitted["cases"], ahead["cases"]], dim=1), cases)
    torch.testing.assert_close(torch.cat([fitted["I"], ahead["I"]], dim=1), infected)
    assert ahead["cases"].shape == (problem.members, 3) and float(cases.sum()) > 0
    # observe=True with only a fixed delay: ascertainment defaults to 1 (as in predict)
    observed = Problem(model, {"cases": torch.ones(5)}, [], observe=True, fixed={"delay": 2.0})
    fitted, ahead = forecast(observed, {}, horizon=3)
    with torch.no_grad():
        preds, _ = observed.predict({}, horizon=3)
    torch.testing.assert_close(torch.cat([fitted["cases"], ahead["cases"]], dim=1), preds["cases"])


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
    # ND by hand (numpy) from the data file and the member-mean predictions
    with open(NYC_CASES, newline="") as fh:
        table = list(csv.DictReader(fh))
    first = [r["date_of_interest"] for r in table].index("03/01/2020")
    assert table[first + 14]["date_of_interest"] == "03/15/2020"  # the forecast's first day
    for window, lo, hi, pred in (
        ("fit", 0, 14, waves[0].fitted),
        ("forecast", 14, 42, waves[0].forecast),
    ):
        rows = table[first + lo : first + hi]
        observed = {b: np.array([float(r[f"{b}_CASE_COUNT"]) for r in rows]) for b in NYC_BOROUGHS}
        means = {b: pred[f"cases_{b}"].double().numpy().mean(axis=0) for b in NYC_BOROUGHS}
        observed["NYC"] = sum(observed[b] for b in NYC_BOROUGHS)
        means["NYC"] = sum(means[b] for b in NYC_BOROUGHS)
        for b in (*NYC_BOROUGHS, "NYC"):
            nd = np.abs(means[b] - observed[b]).sum() / np.abs(observed[b]).sum()
            got = errors.filter((errors["borough"] == b) & (errors["window"] == window))["nd"]
            assert got.len() == 1 and got[0] == pytest.approx(nd, rel=1e-6), (b, window)
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
    args = ["calibrate-nyc", "--agents", "1000", "--epochs", "1", "--days", "7"]
    assert main([*args, "--seeds", "0,1", "--beta", "city", "--out", str(out)]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    windows = {(r["borough"], r["window"]) for r in record["nd"]}
    assert ("SI", "forecast") in windows and ("NYC", "fit") in windows
    for name in ("nd.csv", "nd_intervals.csv", "param_intervals.csv", "fit.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "calibration.json").read_text())
    assert saved["forecast_window"] == ["2020-03-08", "2020-04-04"]
    assert saved["lr"] == 0.05 and saved["network_lr"] is None  # no network with --beta city
    assert main([*args, "--seeds", "a,b"]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert main([*args, "--network-lr", "0.01"]) == 2  # the default --beta is borough
    assert "network_lr is for beta='neural'" in capsys.readouterr().err


@pytest.mark.slow
def test_benchmark_compares_adam_and_nelder_mead_on_the_same_problem():
    from populace.benchmarks.calibration import compare

    record = compare(agents=1000, epochs=2, period=7, days=7)
    for method in ("adam", "nelder_mead"):
        assert set(record[method]["nd"]) == {*NYC_BOROUGHS, "NYC"}
        assert record[method]["loss"] > 0 and record[method]["seconds"] > 0
    assert record["nelder_mead"]["evaluations"] >= record["free_dimensions"] + 1
    # the same wall-time budget: Adam's seconds; Nelder-Mead stops on the clock
    assert record["budget_seconds"] == record["adam"]["seconds"]
    assert "nelder_mead_budget" not in record
    assert record["versions"]["torch"] and record["date"]


def test_evaluate_is_deterministic_on_the_nyc_problem(small_nyc):
    problem = nyc_problem(small_nyc, beta="borough", days=7)
    theta = problem.start().float()
    assert evaluate(problem, theta) == evaluate(problem, theta)


def test_adam_warns_about_boroughs_without_gradient_at_the_start(small_nyc):
    # 1000 agents, one week: some boroughs see no infectious contact in either member, so their
    # rates start with a zero gradient (the others still move, so it warns rather than stops)
    problem = nyc_problem(small_nyc, beta="borough", days=7, seed=0)
    with pytest.warns(UserWarning, match=r"the gradient of \['beta_borough\[\d\]'.* is exactly 0"):
        fit = fit_adam(problem, epochs=2)
    assert fit.history[1] != fit.history[0]  # the others moved: epoch 2 evaluated another point


def test_calibrate_nyc_network_lr_is_for_the_neural_calibrator_only():
    from populace.calibration.nyc import calibrate_nyc

    with pytest.raises(ValueError, match="network_lr is for beta='neural'"):
        calibrate_nyc(agents=300, beta="city", network_lr=0.01, seeds=[0], days=7)
