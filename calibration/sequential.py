"""Sequential calibration of a time-varying rate: fit a Schedule piece by piece, in time order.

For a long series (a year of daily cases) a fit of every weekly piece at once re-simulates the
whole history at every evaluation. :func:`filter_schedule` instead walks forward: piece ``k`` of
the Schedule ``name`` (one value, or one per axis entry, e.g. per borough) is chosen so that the
problem's expected observations match the data over the ``period`` rows it drives, ``lag`` rows
after its start (latency plus reporting delay), simulating only that window from a
:class:`~populace.calibration.fit.WarmStart` carried from the previous piece.
Each piece takes a few multiplicative (secant) updates ``log v += log(obs / pred) / e`` per
entry, where the elasticity ``e = d log pred / d log v`` is measured from the last two updates.
The piece's data are only those up to ``until`` (a forecast origin), so a filtered Schedule has
seen nothing after it. Everything else (observation params, other model params) stays fixed; a
cheap observation-only fit (``Problem(metrics=...)``) can alternate with it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from populace.calibration.fit import CalibrationError, Problem, WarmStart
from populace.engine import distributed


@dataclasses.dataclass
class Filtered:
    """A Schedule filtered piece by piece.

    Attributes:
        pieces: ``[K, A]`` (``[K]`` without an axis) the fitted piece values, from piece 0.
        warm: the simulation carried to the end of the last piece.
        metrics: metric → ``[B, rows]`` model rows up to there (the warm start's history).
        mismatch: per piece, the largest ``|log((obs + 1) / (pred + 1))|`` over entries.
        evaluations: window simulations run.
        seconds: wall time.
    """

    pieces: torch.Tensor
    warm: WarmStart
    metrics: dict[str, torch.Tensor]
    mismatch: list[float]
    evaluations: int
    seconds: float


def entry_targets(problem: Problem, name: str) -> dict[int, list[str]]:
    """Entry → the observed series it drives: along an axis, the series whose metric ends with
    ``_<label>`` (e.g. ``cases_BX`` for BX); without one, every series at entry 0."""
    decl = problem.model.params.declarations()[name]
    if not decl.axes:
        return {0: list(problem.series)}
    labels = problem.model.data.labels(decl.axes[0])
    out = {
        k: [n for n, s in problem.series.items() if s.metric.endswith(f"_{label}")]
        for k, label in enumerate(labels)
    }
    lost = [labels[k] for k, v in out.items() if not v]
    if lost:
        raise CalibrationError(
            f"no observed series for {name!r} entries {lost}: name the series' metrics "
            f"<metric>_<label> or pass targets"
        )
    return out


def filter_schedule(
    problem: Problem,
    name: str,
    period: int,
    *,
    values: Mapping[str, Any] | None = None,
    start: torch.Tensor | float | None = None,
    warm: WarmStart | None = None,
    prefix: torch.Tensor | None = None,
    until: int | None = None,
    lag: int = 0,
    tol: float = 0.03,
    max_updates: int = 4,
    elasticity: float = 2.0,
    targets: Mapping[int, Sequence[str]] | None = None,
) -> Filtered:
    """Fit the pieces of ``name`` (``period`` rows each) in time order.

    Args:
        problem: the model, observed series, their observation and members/seed; its free list
            is ignored.
        name: a model param (scalar, or along one axis).
        values: fixed values of other params (model and observation; observation params not
            given take the problem's fixed values or defaults).
        start: value of the first piece (default: the model's current value).
        warm: continue from this warm start (pieces then begin at its row) ...
        prefix: ... whose pieces so far were these ``[k, A]``.
        until: the last data row (exclusive) any piece may use (default: all rows); a piece is
            fitted only when its whole window (``lag + period`` rows) lies before it, so the
            Filtered ends up to ``lag + period`` rows before ``until`` (the caller holds the last
            value on from there, see :func:`hold`).
        lag: rows between a piece's start and the first row it is matched on (the delay from
            the rate to the observed series: e.g. latency plus reporting delay).
        tol: stop a piece's updates when every entry's log mismatch is below ``tol``.
        max_updates: updates per piece (each one window simulation).
        elasticity: the first update's ``d log pred / d log v``.
        targets: entry → series names matched for it (default :func:`entry_targets`).

    Raises:
        CalibrationError: an unknown or multi-axis ``name``, a warm start at or after
            ``until``, or ``until`` outside the data.
    """
    if isinstance(period, bool) or not isinstance(period, int) or period < 1:
        raise CalibrationError(f"period must be a positive integer, got {period!r}")
    if max_updates < 1 or lag < 0 or not tol > 0:
        raise CalibrationError("max_updates must be >= 1, lag >= 0 and tol > 0")
    until = problem.rows if until is None else until
    if not 0 < until <= problem.rows:
        raise CalibrationError(f"until={until} lies outside the data's {problem.rows} rows")
    base, model_values, targets, (lo, hi) = _setup(problem, name, values, targets)
    first = 0 if warm is None else warm.row
    if first >= until:
        raise CalibrationError(f"the warm start at row {first} is not before until={until}")
    if start is None:
        start = getattr(problem.model.params, name)
    width = len(targets)
    current = torch.as_tensor(start, dtype=torch.float64).reshape(-1).expand(width).clone()
    done = [] if prefix is None else [p.reshape(-1) for p in torch.as_tensor(prefix)]
    mismatch, evaluations, began = [], 0, time.perf_counter()
    history = None if warm is None else warm.history
    r0 = first
    while r0 + lag + period <= until:  # a piece is fitted once its whole window is in
        end = r0 + lag + period
        window = dataclasses.replace(
            base, observed={n: s[:end] for n, s in problem.observed.items()}, warm=warm
        )
        piece = _Piece(window, model_values, name, targets, (lo, hi), r0, period, end, period)
        (worst, value, snap), runs = piece.fit(current, tol, max_updates, elasticity)
        evaluations += runs
        mismatch.append(worst)
        done.append(value)
        current = value
        warm = snap
        history = warm.history
        r0 = warm.row
    pieces = torch.stack(done) if done else torch.zeros(0, width, dtype=torch.float64)
    return Filtered(
        pieces if width > 1 else pieces[:, 0],
        warm,
        dict(history or {}),
        mismatch,
        evaluations,
        time.perf_counter() - began,
    )


def _setup(
    problem: Problem,
    name: str,
    values: Mapping[str, Any] | None,
    targets: Mapping[int, Sequence[str]] | None,
) -> tuple[Problem, dict[str, Any], dict[int, list[str]], tuple[float, float]]:
    """(the problem with every param fixed, the model values, entry → series, ``name``'s
    bounds), refusing an unknown or multi-axis ``name``."""
    decls = problem.model.params.declarations()
    if name not in decls:
        raise CalibrationError(f"model {problem.model.name!r} has no parameter {name!r}")
    if len(decls[name].axes) > 1:
        raise CalibrationError(f"{name!r} runs along several axes; filter one-axis params only")
    values = dict(values or {})
    obs_values = {n: v for n, v in values.items() if n in problem.observation}
    model_values = {n: v for n, v in values.items() if n not in problem.observation}
    targets = {k: list(v) for k, v in (targets or entry_targets(problem, name)).items()}
    lo = decls[name].low if decls[name].low is not None else -math.inf
    hi = decls[name].high if decls[name].high is not None else math.inf
    defaults = {n: d.default for n, d in problem.observation.items()}
    base = dataclasses.replace(problem, free=(), fixed={**defaults, **problem.fixed, **obs_values})
    return base, model_values, targets, (lo, hi)


def nowcast(
    problem: Problem,
    name: str,
    filtered: Filtered,
    until: int,
    *,
    values: Mapping[str, Any] | None = None,
    lag: int = 0,
    min_rows: int = 3,
    tol: float = 0.03,
    max_updates: int = 4,
    elasticity: float = 2.0,
    targets: Mapping[int, Sequence[str]] | None = None,
) -> torch.Tensor:
    """The value of ``name`` in force since the end of ``filtered``: one value from its warm
    start's row ``r0`` on, fitted on the data rows ``r0 + lag .. until`` that are already in
    (the next piece's window, incomplete), or the last filtered piece where fewer than
    ``min_rows`` rows are in (:func:`nowcasts` says which). Holding it (:func:`hold`) rather
    than the last piece forecasts from a rate up to ``period`` rows more recent.

    Args: as :func:`filter_schedule` (``filtered`` its result with at least one piece).

    Returns:
        ``[A]`` (``[]`` without an axis).

    Raises:
        CalibrationError: ``filtered`` without pieces or warm start, ``until`` not after its
            warm start or outside the data, ``min_rows`` < 1.
    """
    if not filtered.pieces.numel() or filtered.warm is None:
        raise CalibrationError("nowcast needs a filter with at least one piece")
    r0 = filtered.warm.row
    if not r0 < until <= problem.rows:
        raise CalibrationError(
            f"until={until} must lie after the filter's warm start (row {r0}) and within the "
            f"data's {problem.rows} rows"
        )
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
        raise CalibrationError(f"min_rows must be a positive integer, got {min_rows!r}")
    last = filtered.pieces[-1]
    if not nowcasts(filtered, until, lag, min_rows):
        return last
    matched = until - (r0 + lag)
    base, model_values, targets, bounds = _setup(problem, name, values, targets)
    window = dataclasses.replace(
        base, observed={n: s[:until] for n, s in problem.observed.items()}, warm=filtered.warm
    )
    period = until - r0
    piece = _Piece(window, model_values, name, targets, bounds, r0, period, until, matched)
    (_, value, _), _ = piece.fit(last.reshape(-1).clone(), tol, max_updates, elasticity)
    return _shaped(value)


def nowcasts(filtered: Filtered, until: int, lag: int, min_rows: int) -> bool:
    """Whether :func:`nowcast` fits a value (at least ``min_rows`` rows of the next piece's
    window, from ``filtered``'s warm start row plus ``lag``, lie before ``until``) rather than
    return the last piece."""
    return until - (filtered.warm.row + lag) >= min_rows


@dataclasses.dataclass
class _Piece:
    """One value of ``name`` in force from row ``r0``, matched on the ``matched`` rows before
    ``end`` of each entry's observed series (a window simulation ``r0..end`` per update; the warm
    start is taken at ``r0 + period``)."""

    window: Problem
    model_values: Mapping[str, Any]
    name: str
    targets: Mapping[int, Sequence[str]]
    bounds: tuple[float, float]
    r0: int
    period: int
    end: int
    matched: int

    def fit(
        self, current: torch.Tensor, tol: float, max_updates: int, elasticity: float
    ) -> tuple[tuple[float, torch.Tensor, WarmStart], int]:
        """Secant updates of ``log v`` from ``current`` ``[A]``: ((the best update's largest
        log mismatch, its value ``[A]``, the warm start at ``r0 + period``), simulations run)."""
        lo, hi = self.bounds
        width = current.numel()
        rows = slice(self.end - self.matched, self.end)
        best, runs = None, 0
        log_v, log_pred_prev, log_v_prev = current.log(), None, None
        slope = torch.full((width,), float(elasticity), dtype=torch.float64)
        for _ in range(max_updates):
            value = log_v.exp().clamp(max(lo, 1e-9), hi)
            values = {**self.model_values, self.name: _shaped(value)}
            preds, snap = _window(self.window, values, self.r0, self.period, self.end)
            runs += 1
            log_ratio, log_pred = _log_ratio(self.window, preds, self.targets, rows)
            worst = float(log_ratio.abs().max())
            if best is None or worst < best[0]:
                best = (worst, value.clone(), snap)
            if worst < tol:
                break
            if log_pred_prev is not None:
                dv = log_v - log_v_prev
                measured = (log_pred - log_pred_prev) / torch.where(dv.abs() > 1e-9, dv, 1.0)
                slope = torch.where(dv.abs() > 1e-9, measured.clamp(0.3, 10.0), slope)
            log_v_prev, log_pred_prev = log_v, log_pred
            log_v = log_v + (log_ratio / slope).clamp(-1.0, 1.0)  # at most a factor e per update
        return best, runs


def _window(
    problem: Problem, values: Mapping[str, Any], r0: int, period: int, end: int
) -> tuple[dict[str, torch.Tensor], WarmStart]:
    """Simulate rows ``r0..end`` from the problem's warm start: (expected observations of rows
    ``0..end``, the warm start at ``r0 + period``)."""
    k = problem.steps_per_row
    step = min(r0 + period, end)
    sim = problem.simulation(values)
    metrics = sorted({s.metric for s in problem.series.values()})
    with torch.no_grad():
        head = sim.run((step - r0) * k)
        snap_state, snap_rng = head.final_state, sim.rng.get_state()
        tail = sim.run((end - step) * k) if end > step else None
    rows, history = {}, {}
    for m in metrics:
        part = problem.rows_of(m, head.series(m).to(problem.dtype))
        if problem.warm is not None:
            part = torch.cat([problem.warm.history[m].to(part), part], dim=1)
        history[m] = part
        if tail is not None:
            part = torch.cat([part, problem.rows_of(m, tail.series(m).to(problem.dtype))], dim=1)
        # under torchrun the whole ensemble's rows (the warm start keeps the rank's members)
        rows[m] = part if sim.shard is None else distributed.gather_members(part, sim.shard.comm)
    snap = WarmStart(step, snap_state, snap_rng, history, problem.seed)
    observed = dataclasses.replace(problem, metrics=rows, warm=None)
    with torch.no_grad():
        preds, _ = observed.predict(values)
    return preds, snap


def _log_ratio(problem, preds, targets, rows) -> tuple[torch.Tensor, torch.Tensor]:
    """Per entry: ``log((obs + 1) / (pred + 1))`` over ``rows`` of its series, and
    ``log(pred + 1)``."""
    ratios, logs = [], []
    for k in sorted(targets):
        obs = sum(float(problem.observed[n][rows].sum()) for n in targets[k])
        pred = sum(float(preds[n][:, rows].mean(dim=0).sum()) for n in targets[k])
        ratios.append(math.log((obs + 1) / (pred + 1)))
        logs.append(math.log(pred + 1))
    return torch.tensor(ratios, dtype=torch.float64), torch.tensor(logs, dtype=torch.float64)


def hold(
    problem: Problem,
    name: str,
    value: torch.Tensor,
    warm: WarmStart | None,
    rows: int,
    values: Mapping[str, Any] | None = None,
    *,
    rescale: Callable[[Mapping[str, torch.Tensor], int], torch.Tensor] | None = None,
    period: int = 7,
) -> dict[str, torch.Tensor]:
    """Metric rows ``0..rows`` (``[B, rows]`` per metric) continuing ``warm`` with ``name`` held
    at ``value`` (the last filtered piece) to ``rows``: the nowcast and forecast of a filter.

    Args:
        rescale: hold ``value * rescale(history, r)`` over each ``period`` rows from row ``r``
            instead, ``history`` the metric rows ``[B, r]`` simulated so far (e.g. the
            susceptible fraction when ``value`` was fitted over the current one, to hold the
            reproduction number rather than the rate: :func:`~populace.calibration.nyc.
            susceptible_ratio`); None holds ``value`` as is, in one run.
        period: rows per rescaled piece.

    Raises:
        CalibrationError: ``rows`` not after the warm start's row, a ``period`` below 1, or a
            ``rescale`` factor not of ``value``'s shape, not finite or not positive.
    """
    first = 0 if warm is None else warm.row
    if rows <= first:
        raise CalibrationError(f"hold to row {rows}: not after the warm start's row {first}")
    if isinstance(period, bool) or not isinstance(period, int) or period < 1:
        raise CalibrationError(f"period must be a positive integer, got {period!r}")
    model_values = {n: v for n, v in (values or {}).items() if n not in problem.observation}
    base = dataclasses.replace(problem, free=(), warm=warm, fixed={}, metrics=None)
    if rescale is None:
        with torch.no_grad():
            metrics, _ = base.metric_rows({**model_values, name: _shaped(value)}, None, rows)
        return metrics
    row, history = first, dict(warm.history) if warm is not None else {}
    while row < rows:
        factor = torch.as_tensor(rescale(history, row), dtype=value.dtype)
        if factor.shape != value.shape or not bool(torch.all(factor > 0) & factor.isfinite().all()):
            raise CalibrationError(
                f"rescale at row {row} gave {factor.tolist()}: need positive finite factors "
                f"of {name!r}'s shape {tuple(value.shape)}"
            )
        end = min(row + period, rows)
        values_now = {**model_values, name: _shaped(value * factor)}
        with torch.no_grad():
            history, sim, result = base.carry(values_now, None, end)
        snap = WarmStart(end, result.final_state, sim.rng.get_state(), history, problem.seed)
        base = dataclasses.replace(base, warm=snap)
        row = end
    if sim.shard is not None:  # the rank's members: the whole ensemble's rows on every rank
        history = {m: distributed.gather_members(r, sim.shard.comm) for m, r in history.items()}
    return history


def _shaped(value: torch.Tensor) -> torch.Tensor:
    """A one-entry value as a scalar tensor, else as is."""
    return value if value.numel() > 1 else value.reshape(())
