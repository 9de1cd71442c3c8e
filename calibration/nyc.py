"""The NYC first wave: per-borough daily cases fitted with the agent SEIR, then a 4-week forecast.

The observed series are the confirmed cases per borough from 2020-03-01 to 2020-06-30
(:func:`~populace.calibration.data.nyc_cases`); the model is
:mod:`populace.models.covid_nyc_seir` on the synthetic NYC population at a reduced scale, its
daily onsets per borough passed through the reporting model (ascertainment, delay) and scaled to
the real population. Free parameters, by ``beta`` parametrisation:

- ``"borough"``: a weekly transmission rate per borough (a ``beta_borough`` Schedule of ``[K, 5]``
  pieces, ``beta`` = 1);
- ``"city"``: a weekly city-wide ``beta`` Schedule and one constant relative rate per borough;
- ``"neural"``: the city-wide weekly ``beta`` comes from a :class:`NeuralCalibrator` reading the
  previous weeks' log cases per borough; the per-borough relative rates are free;

plus, in every case, the initial infections (``initial``), ``ascertainment`` and the reporting
``delay``. The last Schedule piece holds from its start to the end of the fit and beyond, so the
forecast (2020-07-01..07-28) continues the fitted simulation with the last fitted rates; it never
sees forecast data.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import torch

from populace.calibration.data import NYC_BOROUGHS, nyc_cases
from populace.calibration.fit import Fit, Free, Problem, fit_adam
from populace.calibration.neural import NeuralCalibrator, fit_neural, lagged_features
from populace.calibration.report import error_table, params_table, plot_fit, write_report
from populace.engine import Model

FIT_WINDOW = ("2020-03-01", "2020-06-30")
FORECAST_WINDOW = ("2020-07-01", "2020-07-28")
PARAMETRISATIONS = ("borough", "city", "neural")
#: starting values (sigma 0.3 and gamma 0.2 stay fixed: 3.3 latent and 5 infectious days).
START = {"rate": 0.6, "initial": 0.002, "ascertainment": 0.2, "delay": 5.0}


def observed_cases(start: str = FIT_WINDOW[0], end: str = FIT_WINDOW[1]) -> dict[str, torch.Tensor]:
    """``cases_<borough>`` → ``[T]`` float64 daily confirmed cases from ``start`` to ``end``."""
    frame = nyc_cases(start, end)
    return {f"cases_{b}": frame[b].to_torch().to(torch.float64) for b in NYC_BOROUGHS}


def forecast_window(rows: int, horizon: int = 28) -> tuple[str, str]:
    """The ``horizon`` days right after a fit of ``rows`` days from 2020-03-01 (ISO dates).

    With the full 122-day fit: 2020-07-01..2020-07-28.
    """
    first = dt.date.fromisoformat(FIT_WINDOW[0]) + dt.timedelta(days=rows)
    return first.isoformat(), (first + dt.timedelta(days=horizon - 1)).isoformat()


def nyc_model(agents: int = 2000, population_seed: int = 0, **options: Any) -> Model:
    """The SEIR on the synthetic NYC population of about ``agents`` agents (straight-through)."""
    from populace.models import covid_nyc_seir

    return covid_nyc_seir.build(
        agents=agents, population="nyc", population_seed=population_seed, **options
    )


def nyc_problem(
    model: Model,
    *,
    beta: str = "borough",
    period: int = 7,
    members: int = 2,
    seed: int = 0,
    days: int | None = None,
    loss: str = "mse_log1p",
) -> Problem:
    """The first-wave calibration problem on ``model`` (from :func:`nyc_model`).

    Args:
        beta: ``"borough" | "city" | "neural"`` (see the module docstring).
        period: days per piece of the weekly rates; the last piece absorbs a partial one.
        days: fit only the first ``days`` days of the window (tests; default: all 122).

    Raises:
        ValueError: an unknown ``beta`` parametrisation, or fewer days than one ``period``.
    """
    if beta not in PARAMETRISATIONS:
        raise ValueError(f"unknown beta parametrisation {beta!r}; valid: {PARAMETRISATIONS}")
    observed = observed_cases()
    if days is not None:
        observed = {k: v[:days] for k, v in observed.items()}
    rows = next(iter(observed.values())).numel()
    pieces = rows // period
    if pieces < 1:
        raise ValueError(f"{rows} days hold no whole piece of {period} days")
    rate = [START["rate"]] * pieces
    if beta == "borough":
        model = model.with_params(beta=1.0)  # the borough schedules are the rates themselves
        free = [Free("beta_borough", rate, period=period, width=len(NYC_BOROUGHS))]
    else:
        free = [Free("beta_borough", 1.0, width=len(NYC_BOROUGHS))]
        if beta == "city":
            free.insert(0, Free("beta", rate, period=period))
    free += [
        Free("initial", START["initial"], upper=0.1),
        Free("ascertainment", START["ascertainment"], upper=1.0),
        Free("delay", START["delay"], upper=15.0),
    ]
    from populace.models.covid_nyc_seir import NYC_RESIDENTS

    return Problem(
        model,
        observed,
        free,
        loss=loss,
        members=members,
        seed=seed,
        multiplier=NYC_RESIDENTS / model.options["agents"],
        observe=True,
    )


def borough_features(problem: Problem, period: int = 7, lags: int = 2) -> torch.Tensor:
    """``[W, 5 * lags]`` GradABM-style features: previous weeks' mean log1p cases per borough.

    ``W = problem.rows // period`` pieces, matching the problem's Schedules.
    """
    series = torch.stack([problem.observed[f"cases_{b}"] for b in NYC_BOROUGHS])  # [5, T]
    pieces = problem.rows // period
    return lagged_features(series[:, : pieces * period], period, lags)


def forecast(
    problem: Problem, values: Mapping[str, Any], horizon: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Predict the fit window and the ``horizon`` rows after it in one run of the fitted problem.

    :meth:`~populace.calibration.fit.Problem.predict` with a ``horizon``: the same simulation
    continues past the data, so the reporting delay convolves the onsets of the fit window into
    the first forecast days, as it would in reality. Nothing of the forecast window is used to
    choose ``values``.

    Returns:
        (fit, forecast): ``cases_<b>`` → ``[B, rows]`` and ``[B, horizon]`` expected reports.
    """
    with torch.no_grad():
        preds, _ = problem.predict(values, horizon=horizon)
    fit_out = {name: p[:, : problem.rows] for name, p in preds.items()}
    ahead_out = {name: p[:, problem.rows :] for name, p in preds.items()}
    return fit_out, ahead_out


def nd_rows(
    predicted: Mapping[str, torch.Tensor], observed: Mapping[str, torch.Tensor], window: str
) -> list[dict[str, Any]]:
    """ND of the member-mean prediction per borough, plus the city total (``borough`` "NYC").

    :func:`~populace.calibration.report.error_table` on the boroughs' ``cases_<b>`` series and
    their sum; ND is ``None`` where the observed series is all zero.
    """
    names = {b: f"cases_{b}" for b in NYC_BOROUGHS}
    pred = {b: predicted[n] for b, n in names.items()}
    obs = {b: torch.as_tensor(observed[n]) for b, n in names.items()}
    pred["NYC"] = sum(pred[b] for b in NYC_BOROUGHS)
    obs["NYC"] = sum(obs[b] for b in NYC_BOROUGHS)
    table = error_table(pred, obs, window)
    return [{"borough": r["series"], "window": window, "nd": r["nd"]} for r in table.to_dicts()]


@dataclasses.dataclass
class FirstWave:
    """One NYC first-wave fit and its forecast.

    Attributes:
        fit: the fitted parameters (:class:`~populace.calibration.fit.Fit`).
        errors: ND per borough and window: ``(borough, window, nd)``.
        fitted, forecast: ``cases_<b>`` → ``[B, 122]`` and ``[B, 28]`` expected reports.
        fit_observed: ``cases_<b>`` → ``[122]`` the data of the fit window.
        seed: member seed of the fit.
    """

    fit: Fit
    errors: pl.DataFrame
    fitted: dict[str, torch.Tensor]
    forecast: dict[str, torch.Tensor]
    fit_observed: dict[str, torch.Tensor]
    seed: int


def first_wave(
    problem: Problem,
    fitter: Callable[[Problem], Fit],
    values: Callable[[Fit], Mapping[str, Any]] | None = None,
) -> FirstWave:
    """Fit ``problem`` with ``fitter``, then score the fit and the 4-week forecast by ND.

    Args:
        fitter: e.g. ``lambda p: fit_adam(p, epochs=100)``.
        values: the model values of a fit (default: ``problem.split(fit.theta)``; the neural
            calibrator's fits hold their weekly ``beta`` in ``fit.values`` instead).
    """
    fit = fitter(problem)
    chosen = values(fit) if values is not None else problem.split(fit.theta)
    ahead_obs = observed_cases(*forecast_window(problem.rows))
    horizon = next(iter(ahead_obs.values())).numel()
    fitted, ahead = forecast(problem, chosen, horizon)
    rows = nd_rows(fitted, problem.observed, "fit") + nd_rows(ahead, ahead_obs, "forecast")
    observed = {k: torch.as_tensor(v) for k, v in problem.observed.items()}
    return FirstWave(fit, pl.DataFrame(rows), fitted, ahead, observed, problem.seed)


def adam_fitter(epochs: int, lr: float) -> Callable[[Problem], Fit]:
    return lambda problem: fit_adam(problem, epochs=epochs, lr=lr)


def neural_first_wave(
    problem: Problem,
    epochs: int,
    lr: float = 0.01,
    period: int = 7,
    hidden: int = 16,
    free_lr: float = 0.05,
) -> FirstWave:
    """:func:`first_wave` with the city-wide weekly ``beta`` from a neural calibrator.

    Args:
        lr: Adam learning rate of the network's weights.
        free_lr: Adam learning rate of the problem's free params.
    """
    features = borough_features(problem, period)
    with torch.random.fork_rng(devices=[]):  # seeded initial weights; the global RNG is kept
        torch.manual_seed(problem.seed)
        net = NeuralCalibrator(features.shape[1], 0.05, 3.0, hidden=hidden, init=START["rate"])
    trained: dict[str, Any] = {}

    def fitter(p: Problem) -> Fit:
        fit, trained["net"] = fit_neural(p, net, features, "beta", period, epochs, lr, free_lr)
        return fit

    def values(fit: Fit) -> dict[str, Any]:
        out = problem.split(fit.theta)
        with torch.no_grad():
            weekly = trained["net"](features.to(problem.dtype))
        from populace.engine import Schedule

        out["beta"] = Schedule.every(weekly, period)
        return out

    return first_wave(problem, fitter, values)


def seed_intervals(
    waves: Sequence[FirstWave], level: float = 0.9
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Intervals over fits with different member seeds.

    Returns:
        (nd, params): ``(borough, window, mean, lo, hi, fits)`` of ND, and
        :func:`~populace.calibration.uncertainty.intervals` of the fitted values.
    """
    from populace.calibration.uncertainty import intervals

    if len(waves) < 2:
        raise ValueError(f"intervals need at least 2 fits, got {len(waves)}")
    nd = pl.concat([w.errors for w in waves])
    q = ((1 - level) / 2, (1 + level) / 2)
    table = (
        nd.group_by(["borough", "window"], maintain_order=True)
        .agg(
            pl.col("nd").mean().alias("mean"),
            pl.col("nd").quantile(q[0], "linear").alias("lo"),
            pl.col("nd").quantile(q[1], "linear").alias("hi"),
            pl.len().alias("fits"),
        )
        .sort(["window", "borough"])
    )
    return table, intervals([w.fit for w in waves], level)


def calibrate_nyc(
    *,
    agents: int = 2000,
    members: int = 2,
    epochs: int = 100,
    lr: float = 0.05,
    beta: str = "borough",
    seeds: Sequence[int] = (0, 1, 2),
    period: int = 7,
    days: int | None = None,
    out: str | Path | None = None,
    network_lr: float | None = None,
) -> dict[str, Any]:
    """The first-wave study: one fit per member seed, ND of fit and forecast with intervals.

    Writes (when ``out``) ``nd.csv`` (per seed), ``nd_intervals.csv``, ``params.csv``,
    ``param_intervals.csv``, ``fit.png`` (fit and forecast of the first seed vs data) and
    ``calibration.json`` (the returned record).

    Args:
        lr: Adam learning rate of the free parameters (unconstrained units).
        network_lr: ``beta="neural"`` only: Adam learning rate of the calibrator network's
            weights (default ``lr / 5``).

    Returns:
        JSON-friendly record: settings, ND per borough (mean, lo, hi over seeds) for the fit and
        the forecast, epochs per second, the fitted values of each seed, versions and date.
    """
    from populace.engine.provenance import device_name, now, versions

    if not seeds:
        raise ValueError("calibrate_nyc needs at least one seed")
    if network_lr is not None and beta != "neural":
        raise ValueError(f"network_lr is for beta='neural', not beta={beta!r}")
    net_lr = (lr / 5 if network_lr is None else network_lr) if beta == "neural" else None
    start = time.perf_counter()
    model = nyc_model(agents)
    build_seconds = time.perf_counter() - start
    waves = []
    for seed in seeds:
        problem = nyc_problem(
            model, beta=beta, period=period, members=members, seed=seed, days=days
        )
        if beta == "neural":
            waves.append(neural_first_wave(problem, epochs, net_lr, period, free_lr=lr))
        else:
            waves.append(first_wave(problem, adam_fitter(epochs, lr)))
    seconds = sum(w.fit.seconds for w in waves)
    nd = pl.concat([w.errors.with_columns(pl.lit(w.seed).alias("seed")) for w in waves])
    record: dict[str, Any] = {
        "name": "calibration-nyc",
        "device": "cpu",
        "device_name": device_name(torch.device("cpu")),
        "agents": model.options["agents"],
        "members": members,
        "epochs": epochs,
        "lr": lr,
        "network_lr": net_lr,
        "beta": beta,
        "period": period,
        "days": problem.rows,
        "seeds": list(seeds),
        "fit_window": list(FIT_WINDOW),
        "forecast_window": list(forecast_window(problem.rows)),
        "population_seconds": build_seconds,
        "fit_seconds": seconds,
        "epochs_per_s": epochs * len(waves) / seconds,
        "nd": nd.to_dicts(),
        "loss": [w.fit.loss for w in waves],
        "loss_start": [w.fit.history[0] for w in waves],
        "values": [w.fit.values for w in waves],
        "versions": versions(),
        "date": now(),
    }
    tables = {"nd": nd, "params": params_table([w.fit for w in waves])}
    if len(waves) >= 2:
        nd_iv, params_iv = seed_intervals(waves)
        record["nd_intervals"] = nd_iv.to_dicts()
        tables |= {"nd_intervals": nd_iv, "param_intervals": params_iv}
    if out is not None:
        out = Path(out)
        write_report(out, tables, record)
        first = waves[0]
        ahead = observed_cases(*forecast_window(problem.rows))
        both = {k: torch.cat([v, ahead[k]]) for k, v in first.fit_observed.items()}
        pred = {k: torch.cat([first.fitted[k], first.forecast[k]], dim=1) for k in both}
        plot_fit(both, pred, out / "fit.png", split=problem.rows, title="NYC first wave")
    return record
