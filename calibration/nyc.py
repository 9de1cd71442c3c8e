"""NYC: the first wave fitted per borough (cases, hospitalisations, deaths), then rolling-origin
forecasts through the second wave, scored against two baselines.

The model is :mod:`populace.models.covid_nyc_seir` on the synthetic NYC population (1 %: 83 k
agents by default), ``beta`` = 1 so the weekly ``beta_borough`` pieces are the transmission rates
themselves. Its daily onsets per borough (``cases_<b>``) are observed three ways
(:class:`~populace.calibration.observation.Series`):

- ``cases_<b>``: x ``ascertainment``, a Schedule with a knot every 14 days (time-varying testing,
  smooth, penalised for roughness), after a gamma ``delay`` (mean fitted);
- ``hosp_<b>``: x ``hospitalised`` after ``hosp_delay``;
- ``deaths_<b>``: x ``fatality`` after ``death_delay``;

each with its own negative-binomial dispersion, all scaled to the 8.33 M residents.

A fit alternates (``passes`` times) a sequential filter of the weekly rates per borough on the
cases (:func:`~populace.calibration.sequential.filter_schedule`: each week from a warm start, a
simulation of 19 days only, matched on the week 12 days later: latency plus reporting delay)
with an observation-only Adam fit of the observation params on all three series (the model rows
fixed: no simulation). Cases alone cannot tell more infections from a lower ascertainment, so
(``anchors``) every pass but the last also fits the hospitalisation and fatality ratios over
time and moves the ascertainment by their drift (:func:`anchored`): the next pass's infections
then follow the hospitalisations and deaths, and the last pass fits those ratios constant.

:func:`rolling_forecasts` then walks the filter forward week by week, each week now matched on
the cases as many days later as the first wave's fit puts between infection and report
(:func:`report_lag`: latency plus the fitted mean delay, 15-16 days). At each origin (every 28
days from 2020-07-01) it refits the observation params on the data up to the origin, holds the
reproduction number of the last two weekly rates (their geometric mean at the last week's
susceptibles, :func:`held_rate`, moved each week by the susceptibles depleted since,
:func:`susceptible_ratio`) for the weeks not yet fitted and the next 28 days, starts the
forecast from the last week's observed level, and scores the weekly totals 1-4 weeks ahead per
borough against persistence and a log-linear trend (MAE of the predictive median, and the
weighted interval score of the predictive quantiles: members x negative-binomial draws). The
members are first brought toward their mean, their deviations x ``sqrt(agents / residents)``
(:func:`predictive_weeks`): they are replicates of the 1 % population, whose demographic noise
is ten times the city's. The forecast's growth from the last week's level is damped (0.9 a
week, :func:`damped`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import torch

from populace.calibration.data import NYC_BOROUGHS, nyc_series
from populace.calibration.fit import Free, Problem, plain_values
from populace.calibration.forecast import (
    QUANTILES,
    log_linear,
    negbin_samples,
    persistence,
    sample_quantiles,
    weekly,
    weighted_interval_score,
)
from populace.calibration.observation import Series, ratio_rows
from populace.calibration.optimize import adam
from populace.calibration.report import error_table, plot_fit, write_report
from populace.calibration.sequential import filter_schedule, hold, nowcast, nowcasts
from populace.engine import Model, Schedule

FIT_WINDOW = ("2020-03-01", "2020-06-30")
FIRST_ORIGIN = "2020-07-01"
KINDS = ("cases", "hosp", "deaths")
HORIZON = 28
#: starting values of the observation params (fatality and hospitalisation per onset, days).
START = {
    "rate": 0.6,
    "ascertainment": 0.1,
    "delay": 5.0,
    "hospitalised": 0.02,
    "hosp_delay": 8.0,
    "fatality": 0.008,
    "death_delay": 16.0,
    "dispersion": 10.0,
}
KNOT_DAYS = 14
#: per week, the factor on the log growth a forecast keeps (:func:`damped`): its growth from the
#: last week's level relaxes toward flat with a time constant of ``-1 / log(0.3)`` = 0.83 weeks,
#: so the four weeks carry about five days of the model's growth at the origin (chosen on the
#: rolling origins from four start dates; README, "NYC: first wave and rolling forecasts").
DAMPING = 0.3
#: the model's weight in the forecast's log-linear pool with persistence (:func:`damped`): the
#: forecast's log change from the last week's level is this share of the damped model's, the
#: rest persistence's (none). 1: the model alone. Equal weights (0.5, the forecast-combination
#: default) tie the start dates closer to persistence but lose the model's skill on the large
#: winter counts (pooled MAE and WIS, the log-linear ratio), so they are an option (README).
WEIGHT = 1.0
#: observation ratios held at their first-wave values to pin the infections after it (the
#: ascertainment is re-anchored on them, see :func:`anchored`), and their rows per knot.
ANCHORS = ("fatality", "hospitalised")
ANCHOR_DAYS = 28
#: what a forecast holds after the last filtered week: the reproduction number (the rate times
#: the susceptible fraction, :func:`susceptible_ratio`) or the rate itself.
HOLDS = ("reproduction", "rate")


def check_anchors(anchors: Sequence[str], passes: int | None = None) -> None:
    """Refuse anchor ratios outside :data:`ANCHORS`, and anchors on a one-pass fit (only a
    pass followed by another is re-anchored: with one pass they would do nothing)."""
    unknown = sorted(set(anchors) - set(ANCHORS))
    if unknown:
        raise ValueError(f"unknown anchor ratio(s) {unknown}; valid: {', '.join(ANCHORS)}")
    if anchors and passes is not None and passes < 2:
        raise ValueError(f"anchors {list(anchors)} need passes >= 2, got {passes}")


def check_hold(held: str) -> None:
    if held not in HOLDS:
        raise ValueError(f"unknown hold {held!r}; valid: {', '.join(HOLDS)}")


def susceptible_ratio(
    model: Model, since: int
) -> Callable[[Mapping[str, torch.Tensor], int], torch.Tensor]:
    """``(history, row) -> [5]`` per borough ``S(since) / S(row)``, the susceptible fraction at
    the start of row ``since`` over that at row ``row``: the factor that holds the reproduction
    number ``beta_borough * S`` of a rate fitted around ``since`` (a ``rescale`` of
    :func:`~populace.calibration.sequential.hold`).

    ``S(r) = 1 - onsets before r / residents`` per borough, from the member mean of the
    ``cases_<borough>`` history (``[B, r]``, model agents); the agents exposed but not yet
    infectious and those infectious at step 0 are left out (a few days of onsets).
    """
    residents = torch.bincount(model.data["borough"].long(), minlength=len(NYC_BOROUGHS))
    residents = residents.to(torch.float64)

    def fraction(history: Mapping[str, torch.Tensor], row: int) -> torch.Tensor:
        onsets = [
            history[f"cases_{b}"][:, :row].to(torch.float64).sum(1).mean() for b in NYC_BOROUGHS
        ]
        return 1 - torch.stack(onsets) / residents

    def ratio(history: Mapping[str, torch.Tensor], row: int) -> torch.Tensor:
        return fraction(history, since) / fraction(history, row)

    return ratio


def check_weeks(weeks: int, filtered: int | None = None) -> None:
    """Refuse a held-weeks count that is not a positive integer, or more than the ``filtered``
    weeks there are."""
    if isinstance(weeks, bool) or not isinstance(weeks, int) or weeks < 1:
        raise ValueError(f"held weeks must be a positive integer, got {weeks!r}")
    if filtered is not None and weeks > filtered:
        raise ValueError(f"held weeks {weeks} exceed the {filtered} weeks filtered")


def held_rate(
    model: Model,
    pieces: torch.Tensor,
    history: Mapping[str, torch.Tensor],
    row: int,
    weeks: int,
    held: str,
) -> tuple[torch.Tensor, int]:
    """``([5] rate, its day)``: the rate a forecast holds from the end ``row`` of a weekly
    filter, the geometric mean of its last ``weeks`` pieces (``pieces`` ``[K, 5]``), standing
    for the last week's middle day ``row - 4``.

    With ``held="reproduction"`` each piece is first brought to that day's susceptibles (x
    ``S(its middle day) / S(row - 4)``, :func:`susceptible_ratio` over the filter's metric
    ``history``), so the mean is one of reproduction numbers: a week whose cases jumped or
    dipped moves the held one by half as much with two weeks."""
    check_weeks(weeks, len(pieces))
    since = row - 4  # the last week's middle day
    if weeks == 1:
        return pieces[-1], since
    logs = []
    for j in range(1, weeks + 1):
        rate = pieces[-j].to(torch.float64)
        if held == "reproduction" and j > 1:
            rate = rate * susceptible_ratio(model, since - 7 * (j - 1))(history, since)
        logs.append(rate.log())
    return torch.stack(logs).mean(0).exp(), since


def report_lag(model: Model, values: Mapping[str, Any]) -> int:
    """Days from infection to report under a fit: the mean latent period ``1 / sigma`` plus the
    fitted mean reporting delay ``values["delay"]`` (a Schedule: its knots' geometric mean),
    rounded. The rolling filter matches each week on the cases this many days later."""
    sigma = model.params.sigma
    sigma = float(torch.as_tensor(sigma.values if isinstance(sigma, Schedule) else sigma).mean())
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0 for a report lag, got {sigma}")
    return round(1 / sigma + level(values["delay"]))


def row_of(date: str) -> int:
    """Data row of an ISO ``date`` (row 0: the fit window's first day)."""
    return (dt.date.fromisoformat(date) - dt.date.fromisoformat(FIT_WINDOW[0])).days


def date_of(row: int) -> str:
    return (dt.date.fromisoformat(FIT_WINDOW[0]) + dt.timedelta(days=row)).isoformat()


def observed(end: str = FIT_WINDOW[1], kinds: Sequence[str] = KINDS) -> dict[str, torch.Tensor]:
    """``<kind>_<borough>`` → ``[T]`` float64 daily counts from 2020-03-01 to ``end``."""
    out = {}
    for kind in kinds:
        frame = nyc_series(kind, FIT_WINDOW[0], end)
        out |= {f"{kind}_{b}": frame[b].to_torch().to(torch.float64) for b in NYC_BOROUGHS}
    return out


def nyc_model(agents: int = 83_000, population_seed: int = 0, **options: Any) -> Model:
    """The SEIR on the synthetic NYC population of about ``agents`` agents (``beta`` = 1: the
    borough rates are the rates; plain draws unless ``estimator`` is given)."""
    from populace.models import covid_nyc_seir

    options.setdefault("estimator", "none")
    model = covid_nyc_seir.build(
        agents=agents, population="nyc", population_seed=population_seed, **options
    )
    return model.with_params(beta=1.0)


def series_specs(kinds: Sequence[str] = KINDS) -> dict[str, Series]:
    """How each ``<kind>_<borough>`` series comes from the borough's onsets."""
    how = {
        "cases": ("ascertainment", "delay", 0.6, "dispersion"),
        "hosp": ("hospitalised", "hosp_delay", 0.5, "dispersion_hosp"),
        "deaths": ("fatality", "death_delay", 0.4, "dispersion_deaths"),
    }
    unknown = sorted(set(kinds) - set(how))
    if unknown:
        raise ValueError(f"unknown NYC series {unknown}; valid: {', '.join(how)}")
    return {
        f"{kind}_{b}": Series(
            f"cases_{b}",
            ratio=how[kind][0],
            delay=how[kind][1],
            cv=how[kind][2],
            dispersion=how[kind][3],
        )
        for kind in kinds
        for b in NYC_BOROUGHS
    }


def nyc_problem(
    model: Model,
    end: str = FIT_WINDOW[1],
    *,
    members: int = 2,
    seed: int = 0,
    kinds: Sequence[str] = KINDS,
) -> Problem:
    """The calibration problem on ``model`` with the data from 2020-03-01 to ``end``."""
    from populace.models.covid_nyc_seir import NYC_RESIDENTS

    return Problem(
        model,
        observed(end, kinds),
        [],
        series=series_specs(kinds),
        members=members,
        seed=seed,
        multiplier=NYC_RESIDENTS / model.options["agents"],
        fixed=initial_observation(row_of(end) + 1, kinds),
    )


def initial_observation(rows: int, kinds: Sequence[str] = KINDS) -> dict[str, Any]:
    """Starting observation values: a flat ascertainment Schedule (a knot every 14 days)."""
    knots = max(1, -(-rows // KNOT_DAYS))
    out: dict[str, Any] = {
        "ascertainment": Schedule.every(torch.full((knots,), START["ascertainment"]), KNOT_DAYS),
        "delay": START["delay"],
        "dispersion": START["dispersion"],
    }
    if "hosp" in kinds:
        out |= {"hospitalised": START["hospitalised"], "hosp_delay": START["hosp_delay"]}
        out["dispersion_hosp"] = START["dispersion"]
    if "deaths" in kinds:
        out |= {"fatality": START["fatality"], "death_delay": START["death_delay"]}
        out["dispersion_deaths"] = START["dispersion"]
    return out


def observation_fit(
    problem: Problem,
    metrics: Mapping[str, torch.Tensor],
    values: Mapping[str, Any],
    rows: int | None = None,
    max_epochs: int = 400,
    fixed: Mapping[str, Any] | None = None,
    varying: Mapping[str, int] | None = None,
) -> tuple[dict[str, Any], Any]:
    """Fit the observation params with Adam on fixed model rows (no simulation).

    Args:
        metrics: metric → ``[B, >= rows]`` model rows.
        values: the current observation values (starting points; a Schedule is regrown to
            its knots over ``rows``, a constant repeated on them).
        rows: data rows to fit (default all of the problem's).
        fixed: observation params held at these values (the others are fitted).
        varying: observation params fitted as smooth Schedules besides the ascertainment,
            with their rows per knot (e.g. ``{"fatality": 28}``).

    Returns:
        (the fitted observation values, the varying ones Schedules; the Adam fit).
    """
    rows = problem.rows if rows is None else rows
    fixed = dict(fixed or {})
    periods = {"ascertainment": KNOT_DAYS, **(varying or {})}
    names = ["ascertainment", *(n for n in problem.observation if n != "ascertainment")]
    free = [
        _knots(n, values[n], rows, periods[n]) if n in periods else Free(n, float(values[n]))
        for n in names
        if n not in fixed
    ]
    sub = dataclasses.replace(
        problem,
        observed={n: s[:rows] for n, s in problem.observed.items()},
        free=free,
        fixed=fixed,
        metrics={m: r[:, :rows] for m, r in metrics.items()},
        warm=None,
    )
    fit = adam(sub, lr=0.05, patience=20, max_epochs=max_epochs)
    return {**fixed, **sub.split(fit.theta.to(sub.dtype))}, fit


def _knots(name: str, value: Any, rows: int, period: int) -> Free:
    """``name`` free as a Schedule of a knot every ``period`` of ``rows`` rows, from ``value``
    (a Schedule's knots, the last repeated; or a constant)."""
    knots = max(1, -(-rows // period))
    old = value.values if isinstance(value, Schedule) else torch.as_tensor([float(value)])
    start = [float(old[min(k, old.numel() - 1)]) for k in range(knots)]
    return Free(name, start, period=period) if knots > 1 else Free(name, start[0])


@dataclasses.dataclass
class Wave:
    """A fit of the data up to some row.

    Attributes:
        values: observation values.
        pieces: ``[K, 5]`` weekly rates per borough.
        metrics: metric → ``[B, rows]`` model rows of the fit.
        predicted: series → ``[B, rows]`` expected observations.
        filtered: the last filter (its warm start, evaluations, seconds, mismatch per piece).
        evaluations, seconds: totals over the passes.
        observation: the last observation-only Adam fit (its convergence report).
    """

    values: dict[str, Any]
    pieces: torch.Tensor
    metrics: dict[str, torch.Tensor]
    predicted: dict[str, torch.Tensor]
    filtered: Any
    evaluations: int
    seconds: float
    observation: Any = None

    def converged(self, tol: float = 0.1) -> bool:
        """The observation fit converged and every filtered week matched its data within
        ``tol`` (log ratio)."""
        worst = max(self.filtered.mismatch, default=0.0)
        return bool(self.observation is not None and self.observation.converged and worst <= tol)


def fit_wave(
    problem: Problem,
    *,
    passes: int = 2,
    lag: int = 12,
    max_updates: int = 4,
    max_epochs: int = 400,
    anchors: Sequence[str] = (),
) -> Wave:
    """Fit the first wave: ``passes`` x (filter the weekly rates on cases, then fit the
    observation params on all series).

    With ``anchors`` (ratios such as ``fatality``), every pass but the last fits those ratios
    as Schedules too and re-anchors the ascertainment on their geometric-mean levels
    (:func:`anchored`): the next filter's infections then follow the hospitalisations' and
    deaths' shape, the cases setting the ascertainment only. The last pass fits them constant.
    """
    check_anchors(anchors, passes)
    values = dict(problem.fixed)
    targets = {k: [f"cases_{b}"] for k, b in enumerate(NYC_BOROUGHS)}
    evaluations, began = 0, time.perf_counter()
    for done in range(passes):
        filt = filter_schedule(
            problem,
            "beta_borough",
            7,
            values=values,
            start=START["rate"],
            lag=lag,
            max_updates=max_updates,
            targets=targets,
        )
        evaluations += filt.evaluations
        metrics = _complete(problem, filt, values, problem.rows)
        varying = {n: ANCHOR_DAYS for n in anchors} if done < passes - 1 else {}
        values, obs_fit = observation_fit(
            problem, metrics, values, max_epochs=max_epochs, varying=varying
        )
        if varying:
            levels = {n: level(values[n]) for n in anchors}
            values = anchored(values, levels, 0, problem.rows) | levels
    seen = dataclasses.replace(problem, fixed={}, metrics=metrics, free=[])
    with torch.no_grad():
        predicted, _ = seen.predict(values)
    return Wave(
        values,
        filt.pieces,
        metrics,
        predicted,
        filt,
        evaluations,
        time.perf_counter() - began,
        obs_fit,
    )


def _complete(problem: Problem, filt, values, rows: int) -> dict[str, torch.Tensor]:
    """The filter's rows, continued with its last rate held to ``rows``."""
    if filt.warm is not None and filt.warm.row >= rows:
        return {m: r[:, :rows] for m, r in filt.metrics.items()}
    last = filt.pieces[-1] if filt.pieces.numel() else torch.full((5,), START["rate"])
    return hold(problem, "beta_borough", last, filt.warm, rows, values)


def nd_rows(
    predicted: Mapping[str, torch.Tensor],
    observed_: Mapping[str, torch.Tensor],
    window: str,
    kind: str = "cases",
) -> list[dict[str, Any]]:
    """ND of the member-mean prediction per borough and for the city sum (``NYC``)."""
    pred = {b: predicted[f"{kind}_{b}"] for b in NYC_BOROUGHS}
    obs = {b: torch.as_tensor(observed_[f"{kind}_{b}"]) for b in NYC_BOROUGHS}
    pred["NYC"] = sum(pred[b] for b in NYC_BOROUGHS)
    obs["NYC"] = sum(obs[b] for b in NYC_BOROUGHS)
    table = error_table(pred, obs, window)
    return [
        {"borough": r["series"], "series": kind, "window": window, "nd": r["nd"]}
        for r in table.to_dicts()
    ]


def predictive_weeks(
    problem: Problem,
    metrics: Mapping[str, torch.Tensor],
    values: Mapping[str, Any],
    origin: int,
    draws: int = 50,
    seed: int = 0,
    anchor: int = 7,
    spread: float | None = None,
    damping: float = DAMPING,
    weight: float = WEIGHT,
) -> dict[str, torch.Tensor]:
    """``cases_<b>`` → ``[S, 4]`` predictive samples of the weekly totals after ``origin``
    (members x negative-binomial draws of each day, summed per week).

    The forecast starts from the data's level: each borough's expected cases ahead are scaled
    by ``(observed + 1) / (expected + 1)`` over the ``anchor`` days before the origin (a jump-off
    correction from data up to the origin only), so the model contributes the trend.

    Each member's expected cases ahead are then brought toward the members' mean, their
    deviations times ``spread`` (None: ``1 / sqrt(problem.multiplier)``, 0.1 for the 1 %
    population). The members are replicates of a population ``multiplier`` times smaller than
    the city, so their spread is its demographic noise (relative size ``~ 1 / sqrt(agents)``),
    not the city's: at 1 % a borough's members differ up to fourfold in the summer of 2020
    (tens of onsets a week each), and the median of the unshrunk mixture sits far below the
    members' mean (the members whose outbreak died down outnumber those it grew in).

    Last, the members' growth from the last week's level is damped (``damping`` per week,
    :func:`damped`; 1: as simulated) and pooled with persistence (``weight`` on the model;
    1: the model alone).

    Raises:
        ValueError: ``spread`` negative or not finite, ``damping`` outside (0, 1], ``weight``
            outside [0, 1]."""
    horizon_rows = origin + HORIZON
    cases = {f"cases_{b}": problem.series[f"cases_{b}"] for b in NYC_BOROUGHS}
    sub = dataclasses.replace(
        problem,
        observed={n: problem.observed[n][:origin] for n in cases},
        series=cases,
        free=[],
        fixed={},
        metrics={m: r[:, :horizon_rows] for m, r in metrics.items()},
        warm=None,
    )
    spread = member_spread(problem, spread)
    with torch.no_grad():
        mean, _ = sub.predict(values, horizon=HORIZON)
    out = {}
    for k, name in enumerate(cases):
        ahead = expected_ahead(
            problem.observed[name][:origin],
            mean[name][:, :horizon_rows],
            anchor,
            spread,
            damping,
            weight,
        )
        r = float(torch.as_tensor(sub.dispersion_of(name, values)))
        s = negbin_samples(ahead, r, draws, seed + k)  # [draws, B, 28]
        out[name] = weekly(s.reshape(-1, HORIZON))
    return out


def expected_ahead(
    seen: torch.Tensor,
    expected: torch.Tensor,
    anchor: int = 7,
    spread: float = 1.0,
    damping: float = DAMPING,
    weight: float = WEIGHT,
) -> torch.Tensor:
    """``[B, 28]`` the members' expected daily cases after the origin, as forecast.

    Args:
        seen: ``[origin]`` observed daily counts up to the origin.
        expected: ``[B, origin + 28]`` the members' expected daily counts (the model's).
        anchor, spread, damping, weight: as :func:`predictive_weeks` (``spread`` a number).

    In turn: the level anchored on the last ``anchor`` days' (jump-off), the members brought
    toward their mean (:func:`toward_mean`), the growth damped and pooled with persistence
    (:func:`damped`)."""
    origin = seen.shape[0]
    if expected.shape[1] != origin + HORIZON:
        raise ValueError(
            f"expected must have {origin + HORIZON} rows (the origin's + {HORIZON}), "
            f"got {tuple(expected.shape)}"
        )
    check_spread(spread)
    ahead = expected[:, origin:]  # [B, 28]
    scale = 1.0
    if anchor:
        observed_sum = float(seen[origin - anchor :].sum())
        expected_sum = float(expected[:, origin - anchor : origin].mean(dim=0).sum())
        scale = (observed_sum + 1) / (expected_sum + 1)
    ahead = toward_mean(ahead * scale, spread)
    if damping != 1 or weight != 1:
        last = float(expected[:, origin - 7 : origin].mean()) * scale  # a day, last week
        ahead = damped(ahead, last, damping, weight)
    return ahead


def check_spread(spread: float) -> None:
    if not (math.isfinite(spread) and spread >= 0):
        raise ValueError(f"member spread must be finite and >= 0, got {spread}")


def member_spread(problem: Problem, spread: float | None = None) -> float:
    """The factor on the members' deviations a forecast of ``problem`` uses: ``spread``
    (checked), or None: ``1 / sqrt(problem.multiplier)``, the city's demographic noise over
    the simulated population's."""
    spread = problem.multiplier**-0.5 if spread is None else float(spread)
    check_spread(spread)
    return spread


def check_damping(damping: float) -> None:
    if not (math.isfinite(damping) and 0 < damping <= 1):
        raise ValueError(f"damping must lie in (0, 1], got {damping}")


def damped(
    ahead: torch.Tensor, last: float, damping: float, weight: float = WEIGHT
) -> torch.Tensor:
    """``[B, T]`` daily forecasts after an origin with the log growth of their members' mean
    damped and pooled: its change into day ``d`` (from ``last``, the level of the week before
    the origin, for day 0) times ``weight * damping ** ((d + 1) / 7)``, the same factor on every
    member.

    A reproduction number held constant grows or shrinks the incidence exponentially; real
    epidemics bend toward flat (behaviour and testing answer the counts), so the forecast's
    growth relaxes toward none: at 0.9 a week a day's log change keeps 90 % of itself by the end
    of the first week and 66 % by the end of the fourth; at 0.3 (the default) 30 % and 1 %.

    ``weight`` pools the damped forecast with persistence (``last`` held flat) on the log scale:
    its log change from ``last`` is ``weight`` times the damped one (1: the model alone, 0:
    persistence). ``damping`` and ``weight`` 1 return ``ahead``.

    Raises:
        ValueError: ``damping`` outside (0, 1], ``weight`` outside [0, 1]."""
    check_damping(damping)
    check_weight(weight)
    centre = ahead.to(torch.float64).mean(dim=0).clamp_min(1e-9)  # [T]
    logs = torch.cat([centre.new_tensor([max(last, 1e-9)]).log(), centre.log()])
    days = torch.arange(1, centre.numel() + 1, dtype=torch.float64)
    keep = weight * damping ** (days / 7)
    shift = ((keep - 1) * logs.diff()).cumsum(0)
    return ahead * shift.exp().to(ahead.dtype)


def check_weight(weight: float) -> None:
    if not (math.isfinite(weight) and 0 <= weight <= 1):
        raise ValueError(f"model weight must lie in [0, 1], got {weight}")


def toward_mean(members: torch.Tensor, spread: float) -> torch.Tensor:
    """``[B, ...]`` member values with their deviations from the members' mean times ``spread``
    (the mean kept; 0: every member the mean, 1: as they were)."""
    centre = members.mean(dim=0, keepdim=True)
    return centre + (members - centre) * spread


def score_origin(
    problem: Problem,
    metrics: Mapping[str, torch.Tensor],
    values: Mapping[str, Any],
    origin: int,
    spread: float | None = None,
    damping: float = DAMPING,
    weight: float = WEIGHT,
) -> list[dict[str, Any]]:
    """Rows ``(origin, borough, week, observed, model, persistence, log_linear, *_wis,
    model_extinct)`` (``spread``, ``damping``, ``weight``: as :func:`predictive_weeks`).

    ``model_extinct``: every predictive sample of the borough is 0 in all four weeks although
    the week before the origin had cases, so the model's epidemic there has died out (its
    susceptibles used up, with no waning, vaccination or new variants in ``covid_nyc_seir``) and
    its forecast is 0; the rows are scored as they are, and :func:`rolling_forecasts` warns."""
    levels = torch.tensor(QUANTILES, dtype=torch.float64)
    samples = predictive_weeks(
        problem, metrics, values, origin, spread=spread, damping=damping, weight=weight
    )
    rows = []
    for b in NYC_BOROUGHS:
        series = problem.observed[f"cases_{b}"]
        truth = weekly(series[origin : origin + HORIZON])
        history = series[:origin]
        q = {
            "model": sample_quantiles(samples[f"cases_{b}"], levels),
            "persistence": persistence(history, 4, levels),
            "log_linear": log_linear(history, 4, levels),
        }
        mid = QUANTILES.index(0.5)
        wis = {k: weighted_interval_score(v, truth, levels) for k, v in q.items()}
        extinct = bool(samples[f"cases_{b}"].amax() == 0 and history[-7:].sum() > 0)
        for w in range(4):
            row = {
                "origin": date_of(origin),
                "borough": b,
                "week": w + 1,
                "observed": float(truth[w]),
            }
            for k in q:
                row[k] = float(q[k][mid, w])
                row[f"{k}_wis"] = float(wis[k][w])
            row["model_extinct"] = extinct
            rows.append(row)
    return rows


def origins_of(first: str, count: int, every: int = 28) -> list[int]:
    """Rows of ``count`` origins every ``every`` days from ``first``."""
    return [row_of(first) + every * k for k in range(count)]


def rolling_forecasts(
    model: Model,
    wave: Wave,
    *,
    origins: Sequence[int],
    members: int = 2,
    seed: int = 0,
    lag: int | None = None,
    max_updates: int = 4,
    max_epochs: int = 300,
    anchors: Sequence[str] = (),
    nowcast_rows: int | None = None,
    held: str = "reproduction",
    held_weeks: int = 2,
    spread: float | None = None,
    damping: float = DAMPING,
    weight: float = WEIGHT,
    log: Callable[[str], None] | None = None,
) -> pl.DataFrame:
    """Walk the filter on from the end of the first-wave fit through every origin; score each.

    At each origin the weekly rates are filtered on to it with the data up to it (each week once,
    when its window is complete), the rate of the last weeks (:func:`held_rate`) is held for the
    weeks not yet fitted and the 28 days ahead, and the observation params are refitted on the
    data up to the origin.

    Args:
        wave: the first-wave fit (its filter's warm start and pieces continue).
        origins: data rows of the forecast origins, increasing, after the first-wave fit.
        lag: days from a week's infections to the cases it is matched on; None: the first
            wave's infection-to-report lag (:func:`report_lag`, 15-16 days for NYC's fit, where the
            first wave's filter, its delay not yet known, takes 12).
        anchors: ratios (of :data:`ANCHORS`) fitted over time at each origin, the
            ascertainment after the first wave then re-anchored on their first-wave values
            (:func:`anchored`) for the weeks filtered next; () fits them constant.
        nowcast_rows: hold the rate :func:`~populace.calibration.sequential.nowcast` fits on
            the next week's incomplete window when it has at least this many rows (None: hold
            the last filtered week's).
        held: ``"reproduction"`` holds the reproduction number of the rate held (the rate
            times the susceptible fraction of its days, :func:`susceptible_ratio`): each week
            after the origin takes the held rate times ``S(then) / S(now)``, so the depletion
            of susceptibles in the model since those days no longer turns a flat epidemic
            into a falling forecast; ``"rate"`` holds the rate itself.
        held_weeks: filtered weeks whose rates (reproduction numbers, with
            ``"reproduction"``) the held one averages (:func:`held_rate`; a nowcast rate is
            held alone).
        spread: the factor on the members' deviations from their mean in the predictive
            samples (:func:`predictive_weeks`; None: ``sqrt(agents / residents)``).
        damping: per week, the factor on the forecast's log growth (:func:`damped`).
        weight: the model's weight in the forecast's log-linear pool with persistence
            (:func:`damped`; 1: the model alone).

    Warns:
        RuntimeWarning: at an origin where the model's epidemic has died out in a borough
            (its forecast 0 there; the rows' ``model_extinct``, :func:`score_origin`).

    Raises:
        ValueError: origins not increasing, before the first wave's end, or whose 28 days of
            forecast run past the data; ``held_weeks`` not a positive integer or more than
            the first wave's weeks.
    """
    check_anchors(anchors)
    check_hold(held)
    check_weeks(held_weeks, len(wave.pieces))
    check_damping(damping)
    check_weight(weight)
    lag = report_lag(model, wave.values) if lag is None else lag
    origins = list(origins)
    start = wave.filtered.warm.row
    if not origins or origins != sorted(set(origins)) or origins[0] <= start:
        raise ValueError(
            f"origins must increase and begin after row {start} ({date_of(start)}), got {origins}"
        )
    last = origins[-1] + HORIZON - 1
    try:
        problem = nyc_problem(model, date_of(last), members=members, seed=seed)
    except ValueError as err:
        raise ValueError(f"forecast origins {[date_of(o) for o in origins]}: {err}") from None
    targets = {k: [f"cases_{b}"] for k, b in enumerate(NYC_BOROUGHS)}
    values = dict(wave.values)
    warm, pieces = wave.filtered.warm, wave.pieces
    first_rows = next(iter(wave.metrics.values())).shape[1]
    varying = {n: ANCHOR_DAYS for n in anchors}
    scores = []
    for origin in origins:
        filt = filter_schedule(
            problem,
            "beta_borough",
            7,
            values=values,
            start=pieces[-1],
            warm=warm,
            prefix=pieces,
            until=origin,
            lag=lag,
            max_updates=max_updates,
            targets=targets,
        )
        warm, pieces = filt.warm, filt.pieces
        rate, since = held_rate(model, pieces, filt.metrics, warm.row, held_weeks, held)
        if nowcast_rows is not None and nowcasts(filt, origin, lag, nowcast_rows):
            since = (warm.row + origin) // 2
            rate = nowcast(
                problem,
                "beta_borough",
                filt,
                origin,
                values=values,
                lag=lag,
                min_rows=nowcast_rows,
                max_updates=max_updates,
                targets=targets,
            )
        rescale = susceptible_ratio(model, since) if held == "reproduction" else None
        metrics = hold(
            problem, "beta_borough", rate, warm, origin + HORIZON, values, rescale=rescale
        )
        values, _ = observation_fit(
            problem, metrics, values, rows=origin, max_epochs=max_epochs, varying=varying
        )
        rows = score_origin(problem, metrics, values, origin, spread, damping, weight)
        scores += rows
        extinct = sorted({r["borough"] for r in rows if r["model_extinct"]})
        if extinct:
            warnings.warn(
                f"origin {date_of(origin)}: the model's epidemic has died out in "
                f"{', '.join(extinct)} (every forecast sample 0 after a week with cases); "
                "its forecast there is 0 and is scored as such",
                RuntimeWarning,
                stacklevel=2,
            )
        if anchors:
            values = anchored(values, {n: wave.values[n] for n in anchors}, first_rows, origin)
        if log is not None:
            log(f"origin {date_of(origin)}: {filt.evaluations} window runs, {filt.seconds:.0f} s")
    return pl.DataFrame(scores)


def level(ratio: Schedule | Any) -> float:
    """The geometric mean of a Schedule's knots (a constant: itself)."""
    if not isinstance(ratio, Schedule):
        return float(ratio)
    return float(ratio.values.to(torch.float64).log().mean().exp())


def anchored(
    values: Mapping[str, Any], constants: Mapping[str, Any], after: int, rows: int
) -> dict[str, Any]:
    """``values`` with the ascertainment's knots from row ``after`` on re-anchored on the
    ``constants`` of other ratios.

    A ratio fitted as a Schedule ``r(t)`` on fixed model onsets says how far those onsets are
    from the ones the ratio's first-wave constant ``c`` implies (``r(t) / c``: 2 means the model
    infects half as many as the deaths say). Each ascertainment knot at ``t >= after`` is
    multiplied by the geometric mean over the ratios of ``c / r(t)``: the share of onsets
    confirmed if the infections were the ones the hospitalisations and deaths imply. The
    filter then lowers or raises the rates to match the cases with them, so the model's
    susceptibles are depleted by the infections the data imply, not by those a first-wave
    ascertainment held on implies.

    Args:
        values: fitted observation values (``ascertainment`` and the ratios of ``constants``
            Schedules or constants).
        constants: ratio name → its first-wave value.
        after: first row re-anchored.
        rows: rows the ratios were fitted on (knots are evaluated within them).
    """
    asc = values["ascertainment"]
    if not isinstance(asc, Schedule) or not constants:
        return dict(values)
    knots = torch.tensor(asc.starts, dtype=torch.long).clamp(max=rows - 1)
    log_shift = torch.zeros(len(asc.starts), dtype=torch.float64)
    for name, constant in constants.items():
        r = ratio_rows(values[name], rows, torch.float64, "cpu").expand(rows)
        log_shift += (float(constant) / r[knots]).log() / len(constants)
    log_shift = torch.where(knots >= after, log_shift, torch.zeros_like(log_shift))
    shifted = asc.values.to(torch.float64) * log_shift.exp()
    return {**values, "ascertainment": Schedule(shifted.clamp(1e-4, 1.0), asc.starts)}


def summarize(scores: pl.DataFrame) -> dict[str, Any]:
    """Per origin and overall: MAE and mean WIS of model and baselines, and their ratios.

    ``mean`` averages the per-origin ratios (every origin weighs the same: the floor of issue
    16); ``pooled`` divides the model's score summed over origins by the baseline's (the
    Forecast Hub's relative score: origins with large counts weigh more). Each origin also
    counts its ``extinct_boroughs`` (:func:`score_origin`'s ``model_extinct``)."""
    per = (
        scores.with_columns(
            *[
                (pl.col(k) - pl.col("observed")).abs().alias(f"{k}_ae")
                for k in ("model", "persistence", "log_linear")
            ]
        )
        .group_by("origin", maintain_order=True)
        .agg(
            *[
                pl.col(f"{k}_ae").mean().alias(f"{k}_mae")
                for k in ("model", "persistence", "log_linear")
            ],
            *[pl.col(f"{k}_wis").mean() for k in ("model", "persistence", "log_linear")],
            pl.col("borough").filter(pl.col("model_extinct")).n_unique().alias("extinct_boroughs"),
        )
        .with_columns(
            (pl.col("model_mae") / pl.col("persistence_mae")).alias("relative_mae"),
            (pl.col("model_mae") / pl.col("log_linear_mae")).alias("relative_mae_log_linear"),
            (pl.col("model_wis") / pl.col("persistence_wis")).alias("relative_wis"),
            (pl.col("model_wis") / pl.col("log_linear_wis")).alias("relative_wis_log_linear"),
        )
    )
    mean = {c: float(per[c].mean()) for c in per.columns if c not in ("origin", "extinct_boroughs")}
    pooled = {
        f"relative_{score}{suffix}": float(
            per[f"model_{score}"].sum() / per[f"{base}_{score}"].sum()
        )
        for score in ("mae", "wis")
        for base, suffix in (("persistence", ""), ("log_linear", "_log_linear"))
    }
    return {"per_origin": per.to_dicts(), "mean": mean, "pooled": pooled}


def calibrate_nyc(
    *,
    agents: int = 83_000,
    members: int = 2,
    seed: int = 0,
    passes: int = 2,
    origins: int = 9,
    first_origin: str = FIRST_ORIGIN,
    fit_end: str = FIT_WINDOW[1],
    max_updates: int = 3,
    anchors: Sequence[str] = (),
    rolling_anchors: Sequence[str] = (),
    nowcast_rows: int | None = None,
    held: str = "reproduction",
    held_weeks: int = 2,
    rolling_lag: int | None = None,
    spread: float | None = None,
    damping: float = DAMPING,
    weight: float = WEIGHT,
    out: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The NYC study: first-wave fit (ND per borough), then ``origins`` rolling forecasts.

    Writes (when ``out``) ``nd.csv``, ``forecasts.csv`` (every origin, borough, week),
    ``origins.csv`` (MAE and WIS per origin vs both baselines), ``fit.png`` and
    ``calibration.json`` (the returned record).

    Args:
        anchors: ratios the first-wave fit re-anchors the ascertainment on (see
            :func:`fit_wave`; needs ``passes`` >= 2, e.g. :data:`ANCHORS`); () (the default)
            fits the three series with constant ratios on the infections the cases imply.
        rolling_anchors, nowcast_rows, held, held_weeks, spread, damping, weight: as
            :func:`rolling_forecasts`.
        rolling_lag: its ``lag`` (None: the fit's :func:`report_lag`).

    Raises:
        ValueError: a fit window or forecast origins outside the data, an unknown anchor or
            anchors on one pass.
    """
    from populace.engine.provenance import device_name, now, versions

    if origins < 0:
        raise ValueError(f"origins must be >= 0, got {origins}")
    check_anchors(anchors, passes)  # before any work
    check_anchors(rolling_anchors)
    check_hold(held)
    check_weeks(held_weeks)
    if rolling_lag is not None and (
        isinstance(rolling_lag, bool) or not isinstance(rolling_lag, int) or rolling_lag < 0
    ):
        raise ValueError(f"rolling_lag must be a non-negative integer, got {rolling_lag!r}")
    if spread is not None:
        check_spread(spread)
    check_damping(damping)
    check_weight(weight)
    began = time.perf_counter()
    model = nyc_model(agents)
    build_seconds = time.perf_counter() - began
    problem = nyc_problem(model, fit_end, members=members, seed=seed)
    wave = fit_wave(problem, passes=passes, max_updates=max_updates, anchors=anchors)
    if log is not None:
        log(f"first wave: {wave.evaluations} window runs, {wave.seconds:.0f} s")
    errors = pl.DataFrame(
        [r for kind in KINDS for r in nd_rows(wave.predicted, problem.observed, "fit", kind)]
    )
    cases_nd = errors.filter(pl.col("series") == "cases")
    nd_by_borough = {r["borough"]: r["nd"] for r in cases_nd.to_dicts()}
    record: dict[str, Any] = {
        "name": "calibration-nyc",
        "device": "cpu",
        "device_name": device_name(torch.device("cpu")),
        "agents": model.options["agents"],
        "members": members,
        "seed": seed,
        "passes": passes,
        "max_updates": max_updates,
        "fit_window": [FIT_WINDOW[0], fit_end],
        "method": "sequential filter (weekly beta_borough) + Adam (observation params)",
        "anchors": list(anchors),
        "rolling_anchors": list(rolling_anchors),
        "nowcast_rows": nowcast_rows,
        "held": held,
        "held_weeks": held_weeks,
        "member_spread": member_spread(problem, spread),
        "damping": damping,
        "model_weight": weight,
        "nd": nd_by_borough["NYC"],
        "nd_by_borough": {b: nd_by_borough[b] for b in NYC_BOROUGHS},
        "nd_all": errors.to_dicts(),
        "converged": wave.converged(),
        "convergence": {
            "observation_fit": wave.observation.convergence(),
            "filter_mismatch": wave.filtered.mismatch,
            "filter_tolerance": 0.1,
        },
        "params": plain_values(wave.values) | {"beta_borough": wave.pieces.tolist()},
        "fit_evaluations": wave.evaluations,
        "fit_seconds": wave.seconds,
        "population_seconds": build_seconds,
    }
    tables: dict[str, pl.DataFrame] = {"nd": errors}
    if origins:
        rows = origins_of(first_origin, origins)
        t0 = time.perf_counter()
        lag = report_lag(model, wave.values) if rolling_lag is None else rolling_lag
        scores = rolling_forecasts(
            model,
            wave,
            origins=rows,
            members=members,
            seed=seed,
            max_updates=max_updates,
            anchors=rolling_anchors,
            nowcast_rows=nowcast_rows,
            held=held,
            held_weeks=held_weeks,
            lag=lag,
            spread=spread,
            damping=damping,
            weight=weight,
            log=log,
        )
        summary = summarize(scores)
        record |= {
            "rolling_lag": lag,
            "forecast_origins": [date_of(o) for o in rows],
            "forecast_relative_mae": summary["mean"]["relative_mae"],
            "forecast_relative_mae_log_linear": summary["mean"]["relative_mae_log_linear"],
            "forecast_relative_wis": summary["mean"]["relative_wis"],
            "forecast_relative_wis_log_linear": summary["mean"]["relative_wis_log_linear"],
            "forecast_pooled": summary["pooled"],
            "forecast_per_origin": summary["per_origin"],
            "forecast_extinct": sorted(
                f"{origin} {borough}"
                for origin, borough in scores.filter(pl.col("model_extinct"))
                .select("origin", "borough")
                .unique()
                .iter_rows()
            ),
            "forecast_seconds": time.perf_counter() - t0,
        }
        tables |= {"forecasts": scores, "origins": pl.DataFrame(summary["per_origin"])}
    record |= {"versions": versions(), "date": now()}
    if out is not None:
        out = Path(out)
        write_report(out, tables, record)
        plot_fit(
            {n: problem.observed[n] for n in problem.observed if n.startswith("cases")},
            {n: wave.predicted[n] for n in wave.predicted if n.startswith("cases")},
            out / "fit.png",
            title="NYC first wave: cases per borough",
        )
    return record
