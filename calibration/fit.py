"""The calibration problem: a model, observed series, free parameters and a loss.

A :class:`Problem` names the model (any :class:`~populace.engine.Model` with declared params and
metric columns), the observed series and how each comes from a model metric
(:class:`~populace.calibration.observation.Series`: ratio, delay distribution), the free
parameters (:class:`Free`: scalar, along a model-data axis, or a piecewise Schedule such as a
weekly transmission rate) and the loss. Bounds come from the declarations: a model param's
``param(low=, high=)``, an observation param's kind
(:data:`~populace.calibration.observation.KINDS`). Free parameters live in an unconstrained
space (``logit`` between two bounds, ``log`` above a lower one), so no optimiser steps outside
their valid range.

The objective is the expected loss over ``members`` ensemble members, estimated with common random
numbers (the same member seeds at every evaluation: a sample-average approximation), plus a
smoothness penalty on every free Schedule (``smoothness`` x the squared differences of successive
pieces in unconstrained units). With a model built with the ``"score_function"`` estimator, the
per-member costs are combined with the trajectories' log-probabilities (leave-one-out mean
baseline, so at least 2 members); with ``"straight_through"`` the gradient flows through the
counts. The optimisers are in :mod:`populace.calibration.optimize`.

Under torchrun (a ``torch.distributed`` process group) the members are split over the ranks,
as :class:`~populace.engine.Simulation` splits them: each rank simulates its block, the metric
rows are gathered (:func:`~populace.engine.distributed.gather_members`), so every rank computes
the whole ensemble's loss, the one-process value; after ``backward()``,
:func:`~populace.engine.distributed.average_grads` gives every rank the one-process gradient,
so every rank takes the same optimiser step and the same convergence decisions.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from populace.behaviors.choice import score_function_surrogate
from populace.calibration.losses import loss_function
from populace.calibration.observation import Series, expected_series, observation_declarations
from populace.engine import Declaration, Model, Schedule, Simulation, State, distributed

#: metric names recorded as flows: a data row sums its steps (others: the row's last value).
FLOW_PREFIXES = ("cases", "infected", "new_", "onset", "deaths", "hosp")


class CalibrationError(ValueError):
    """A calibration problem is ill-posed (unknown name, no gradient, bad shape, too few data)."""


@dataclasses.dataclass(frozen=True)
class Free:
    """A parameter to fit.

    Attributes:
        name: a param of the model, or an observation param of the problem's series.
        init: starting value (default: the model's current value, or the observation param's
            declared default); a sequence gives one value per piece of a Schedule.
        lower, upper: bounds (default: the declaration's; they may only narrow it).
        period: steps per piece of a Schedule of a model param (e.g. 7 with daily steps: weekly
            values); rows per knot for an observation param.
        pieces: number of Schedule pieces when ``init`` is one value (default: as many whole
            periods as the data hold, at least 1; the last piece absorbs a partial one).
        shared: a param along an axis gets one value for every label (e.g. one initial
            probability for all boroughs, when the data are city totals).

    A param declared along a model-data axis (``param(..., axes=("borough",))``) gets one free
    value per label (per piece), all starting at the piece's ``init``, unless ``shared``.
    """

    name: str
    init: float | Sequence[float] | None = None
    lower: float | None = None
    upper: float | None = None
    period: int | None = None
    pieces: int | None = None
    shared: bool = False
    width: int = dataclasses.field(default=1, repr=False)

    def __post_init__(self) -> None:
        values = [] if self.init is None else self.initial_values()
        if self.init is not None and not values:
            raise CalibrationError(f"free parameter {self.name!r}: empty init")
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            raise CalibrationError(f"free parameter {self.name!r}: init {values} must be finite")
        for what, v in (("period", self.period), ("pieces", self.pieces)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise CalibrationError(f"free parameter {self.name!r}: {what} must be >= 1")
        if self.period is None and (len(values) > 1 or self.pieces not in (None, 1)):
            raise CalibrationError(
                f"free parameter {self.name!r}: {max(len(values), self.pieces or 1)} pieces "
                "need a period"
            )
        if self.pieces is not None and len(values) > 1 and len(values) != self.pieces:
            raise CalibrationError(
                f"free parameter {self.name!r}: {len(values)} initial values for "
                f"{self.pieces} pieces"
            )
        for what, v in (("lower", self.lower), ("upper", self.upper)):
            if v is not None and not math.isfinite(v):
                raise CalibrationError(f"free parameter {self.name!r}: {what} must be finite")
        lo = -math.inf if self.lower is None else self.lower
        hi = math.inf if self.upper is None else self.upper
        if not lo < hi:
            raise CalibrationError(f"free parameter {self.name!r}: lower {lo} >= upper {hi}")
        if values and not all(lo < v < hi for v in values):
            raise CalibrationError(
                f"free parameter {self.name!r}: init {values} must lie strictly inside "
                f"({self.lower}, {self.upper})"
            )

    def initial_values(self) -> list[float]:
        if self.init is None:
            return []
        if isinstance(self.init, (int, float)):
            return [float(self.init)]
        return [float(v) for v in self.init]

    def resolve(self, decl: Declaration, current: Any, width: int, steps: int) -> Free:
        """This parameter with bounds, init, pieces and width filled in from its declaration.

        Args:
            decl: the param's declaration.
            current: its current value in the model (the default init).
            width: entries along its axis (1 without one).
            steps: simulated steps (Schedule pieces: whole periods of them).

        Raises:
            CalibrationError: bounds outside the declared ones.
        """
        lower = decl.low if self.lower is None else self.lower
        upper = decl.high if self.upper is None else self.upper
        for mine, theirs, side in (
            (self.lower, decl.low, "lower"),
            (self.upper, decl.high, "upper"),
        ):
            if mine is None or theirs is None:
                continue
            if (side == "lower" and mine < theirs) or (side == "upper" and mine > theirs):
                raise CalibrationError(
                    f"free parameter {self.name!r}: {side} bound {mine} lies outside the "
                    f"declared bounds {decl.bounds_text()}"
                )
        init = self.init
        if init is None:
            value = current.values[0] if isinstance(current, Schedule) else current
            t = torch.as_tensor(value, dtype=torch.float64).detach().reshape(-1)
            init = float(t.mean())  # a value along an axis: its mean starts every label
            lo = -math.inf if lower is None else lower
            hi = math.inf if upper is None else upper
            if not lo < init < hi:  # a default on its bound (e.g. a probability 0): move inside
                span = (hi - lo) if math.isfinite(hi - lo) else max(abs(init), 1.0)
                init = min(max(init, lo + 1e-3 * span), hi - 1e-3 * span)
        pieces = self.pieces
        if self.period is not None and pieces is None:
            n = len(init) if not isinstance(init, (int, float)) else 0
            pieces = n if n > 1 else max(1, steps // self.period)
        if self.period is not None and isinstance(init, (int, float)):
            init = [float(init)] * pieces
        return dataclasses.replace(
            self, init=init, lower=lower, upper=upper, pieces=pieces, width=width
        )

    @property
    def count(self) -> int:
        """Schedule pieces (1 for a constant)."""
        return self.pieces or 1

    @property
    def size(self) -> int:
        """Free coordinates: pieces x width."""
        return self.count * self.width

    def to_unconstrained(self, value: torch.Tensor) -> torch.Tensor:
        lo, hi = self.lower, self.upper
        if lo is not None and hi is not None:
            return torch.logit((value - lo) / (hi - lo))
        if lo is not None:
            return torch.log(value - lo)
        if hi is not None:
            return torch.log(hi - value)
        return value

    def from_unconstrained(self, theta: torch.Tensor) -> torch.Tensor:
        lo, hi = self.lower, self.upper
        if lo is not None and hi is not None:
            return lo + (hi - lo) * torch.sigmoid(theta)
        if lo is not None:
            return lo + torch.exp(theta)
        if hi is not None:
            return hi - torch.exp(theta)
        return theta

    def start(self) -> torch.Tensor:
        """``[size]`` float64 unconstrained starting point."""
        start = torch.tensor(self.initial_values(), dtype=torch.float64)
        return self.to_unconstrained(start.repeat_interleave(self.width))

    def value(self, theta: torch.Tensor) -> torch.Tensor | Schedule:
        """The parameter value from its ``[size]`` unconstrained coordinates: ``[]`` (or
        ``[A]`` along an axis), or a Schedule of ``[K]`` (``[K, A]``) pieces."""
        v = self.from_unconstrained(theta)
        if self.width > 1:
            v = v.view(self.count, self.width)
        return Schedule.every(v, self.period) if self.period is not None else v[0]


@dataclasses.dataclass(frozen=True)
class WarmStart:
    """A simulation carried to data row ``row`` with values fixed before it (rolling fits).

    Attributes:
        row: the first row the problem still simulates.
        state: the model state after ``row * steps_per_row`` steps.
        rng: the member generators' states then.
        history: metric → ``[B, row]`` its rows before ``row``.
        seed: the member seed it was made with.
    """

    row: int
    state: State
    rng: list[torch.Tensor]
    history: dict[str, torch.Tensor]
    seed: int


@dataclasses.dataclass
class Problem:
    """What to fit.

    Attributes:
        model: any Model whose metric columns include the series' metrics.
        observed: series name → ``[T]`` observed values (one row per ``steps_per_row`` steps).
        free: the parameters to fit; every Schedule piece of a model param must begin at a
            simulated step.
        series: series name → how it comes from the model (default: each observed name is a
            metric, observed as it is).
        loss: ``"negbin"`` (dispersion fitted unless fixed) | ``"poisson"`` | ``"mse_log1p"``.
        steps_per_row: model steps per data row.
        members: ensemble members per evaluation.
        seed: seed of the member streams.
        multiplier: scales the model metric to the data (e.g. real / simulated population).
        fixed: values of observation params that are not free.
        aggregate: ``"sum"`` (flows) or ``"last"`` (stocks) for every metric; default: ``"sum"``
            for metric names starting with one of :data:`FLOW_PREFIXES`, else ``"last"``.
        smoothness: weight of the squared differences of successive Schedule pieces.
        warm: continue from a :class:`WarmStart` instead of simulating from step 0.
        metrics: fixed model metric rows (metric → ``[B, rows (+ horizon)]``) instead of a
            simulation: an observation-only fit (no free model params), which costs no run
            (under torchrun: the whole ensemble's rows, the same on every rank).
        average: compare the members' mean expected observations with the data (the
            likelihood of the model's mean: unbiased when the data are one realisation or a
            mean of many); False: the mean over members of each member's loss, which favours
            params whose runs vary less. A score-function model always uses per-member losses
            (its gradient estimator needs them).
        dtype: floating dtype of the runs.
        device: run device.
    """

    model: Model
    observed: Mapping[str, torch.Tensor]
    free: Sequence[Free] = ()
    series: Mapping[str, Series] | None = None
    loss: str = "negbin"
    steps_per_row: int = 1
    members: int = 4
    seed: int = 0
    multiplier: float = 1.0
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    aggregate: str | None = None
    smoothness: float = 1.0
    warm: WarmStart | None = None
    metrics: Mapping[str, torch.Tensor] | None = None
    average: bool = True
    dtype: torch.dtype = torch.float32
    device: str = "cpu"

    def __post_init__(self) -> None:
        self.loss_fn = loss_function(self.loss)
        if not self.observed:
            raise CalibrationError("no observed series")
        self.observed = {n: self._checked_series(n, s) for n, s in self.observed.items()}
        lengths = {name: int(s.numel()) for name, s in self.observed.items()}
        if len(set(lengths.values())) != 1:
            raise CalibrationError(f"observed series have different lengths: {lengths}")
        self.rows = next(iter(lengths.values()))
        if self.steps_per_row < 1 or self.members < 1:
            raise CalibrationError("steps_per_row and members must be >= 1")
        if not (math.isfinite(self.multiplier) and self.multiplier > 0):
            raise CalibrationError(f"multiplier must be finite and > 0, got {self.multiplier}")
        if not (math.isfinite(self.smoothness) and self.smoothness >= 0):
            raise CalibrationError(f"smoothness must be finite and >= 0, got {self.smoothness}")
        if self.aggregate not in (None, "sum", "last"):
            raise CalibrationError(f"aggregate must be 'sum' or 'last', got {self.aggregate!r}")
        if self.series is None:
            self.series = {name: Series(name) for name in self.observed}
        missing = [n for n in self.observed if n not in self.series]
        extra = [n for n in self.series if n not in self.observed]
        if missing or extra:
            raise CalibrationError(
                f"series specs and observed series differ: no spec for {missing}, no data for "
                f"{extra}"
            )
        columns = self.model.metric_columns()
        unknown = sorted({s.metric for s in self.series.values()} - set(columns))
        if unknown:
            raise CalibrationError(
                f"model {self.model.name!r} has no metric(s) {unknown}; valid: {columns}"
            )
        try:
            self.observation = observation_declarations(dict(self.series), self.loss)
        except ValueError as err:
            raise CalibrationError(str(err)) from None
        clash = sorted(set(self.observation) & set(self.model.params.names()))
        if clash:
            raise CalibrationError(f"observation param(s) {clash} are also model params")
        self.free = self._resolved_free()
        if self.metrics is not None:
            model_free = [f.name for f in self.free if f.name not in self.observation]
            if model_free:
                raise CalibrationError(
                    f"fixed metric rows leave no room for free model params {model_free}"
                )
            short = [m for m, r in self.metrics.items() if r.shape[-1] < self.rows]
            missing = {s.metric for s in self.series.values()} - set(self.metrics)
            if short or missing:
                raise CalibrationError(
                    f"fixed metric rows: {sorted(missing)} missing, {short} shorter than "
                    f"{self.rows} rows"
                )
        self._check_fixed()
        self._check_information()

    def _checked_series(self, name: str, series: Any) -> torch.Tensor:
        s = torch.as_tensor(series, dtype=torch.float64)
        if s.dim() != 1:
            raise CalibrationError(f"observed series {name!r}: shape {tuple(s.shape)}, need [T]")
        bad = (~torch.isfinite(s)).nonzero().flatten().tolist()
        if bad:
            raise CalibrationError(
                f"observed series {name!r} has a gap (NaN/Inf) at row(s) {bad[:10]}; every "
                "series of a fit needs a value on every row"
            )
        if (s < 0).any():
            rows = (s < 0).nonzero().flatten().tolist()
            raise CalibrationError(f"observed series {name!r} is negative at row(s) {rows[:10]}")
        return s

    def declarations(self) -> dict[str, Declaration]:
        """Name → Declaration of every param the problem can fit (model and observation)."""
        return {**self.model.params.declarations(), **self.observation}

    def _resolved_free(self) -> list[Free]:
        decls = self.declarations()
        names = [f.name for f in self.free]
        bad = [n for n in names if n not in decls]
        if bad:
            raise CalibrationError(
                f"unknown parameter(s) {bad} for model {self.model.name!r}; valid: {sorted(decls)}"
            )
        if len(set(names)) != len(names):
            raise CalibrationError(f"free parameters named twice: {names}")
        free = list(self.free)
        if self.loss == "negbin":  # the dispersion is fitted unless fixed
            for name, decl in self.observation.items():
                if decl.unit == "size" and name not in names and name not in self.fixed:
                    free.append(Free(name))
        sizes = self.model.data.axis_sizes()
        out = []
        for f in free:
            decl = decls[f.name]
            if len(decl.axes) > 1:
                raise CalibrationError(
                    f"free parameter {f.name!r} runs along {len(decl.axes)} axes {decl.axes}; "
                    "only params along one axis can be fitted"
                )
            width = sizes[decl.axes[0]] if decl.axes and not f.shared else 1
            current = getattr(self.model.params, f.name, decl.default)
            limit = self.rows if f.name in self.observation else self.steps
            r = f.resolve(decl, current, width, limit)
            if r.period is not None and (r.count - 1) * r.period >= limit:
                late = list(range(-(-limit // r.period), r.count))
                unit = "rows" if f.name in self.observation else "steps"
                raise CalibrationError(
                    f"free parameter {f.name!r}: piece(s) {late} of {r.period} {unit} begin at "
                    f"or after {unit[:-1]} {limit}, past the data, so they can never "
                    f"affect the fit; give at most {-(-limit // r.period)} initial values"
                )
            out.append(r)
        return out

    def _check_fixed(self) -> None:
        unknown = sorted(set(self.fixed) - set(self.observation))
        if unknown:
            raise CalibrationError(
                f"fixed value(s) for {unknown}, which are not observation params of this "
                f"problem ({sorted(self.observation)}); set model params on the model"
            )
        both = sorted(set(self.fixed) & {f.name for f in self.free})
        if both:
            raise CalibrationError(f"parameter(s) {both} are both free and fixed")

    def _check_information(self) -> None:
        """Refuse data with fewer nonzero observations than free coordinates."""
        nonzero = {n: int((s != 0).sum()) for n, s in self.observed.items()}
        dims = sum(f.size for f in self.free)
        if sum(nonzero.values()) < dims:
            raise CalibrationError(
                f"the observed series have {sum(nonzero.values())} nonzero row(s) "
                f"({nonzero}) but the problem has {dims} free coordinate(s) "
                f"({ {f.name: f.size for f in self.free} }): too few data to fit them; fit "
                "fewer parameters or give more data"
            )

    @property
    def averaged(self) -> bool:
        """Whether the loss compares the member-mean prediction (see ``average``)."""
        return self.average and self.model.options.get("estimator") != "score_function"

    @property
    def steps(self) -> int:
        return self.rows * self.steps_per_row

    @property
    def comm(self) -> distributed.Comm | None:
        """The process group the members are split over (torchrun), None in one process."""
        return distributed.current()

    @property
    def dimensions(self) -> int:
        return sum(f.size for f in self.free)

    def start(self) -> torch.Tensor:
        """``[D]`` unconstrained starting vector of all free parameters."""
        if not self.free:
            return torch.zeros(0, dtype=torch.float64)
        return torch.cat([f.start() for f in self.free])

    def split(self, theta: torch.Tensor) -> dict[str, Any]:
        """Name → value (tensor or Schedule) from the ``[D]`` unconstrained vector."""
        out, i = {}, 0
        if theta.numel() != self.dimensions:
            raise CalibrationError(
                f"theta has {theta.numel()} entries, the problem needs {self.dimensions}"
            )
        for f in self.free:
            out[f.name] = f.value(theta[i : i + f.size])
            i += f.size
        return out

    def rows_of(self, name: str, series: torch.Tensor) -> torch.Tensor:
        """``[B, R * steps_per_row + 1]`` recorded metric → ``[B, R]`` rows like the data's."""
        k = self.steps_per_row
        how = self.aggregate or ("sum" if name.startswith(FLOW_PREFIXES) else "last")
        after = series[:, 1:]  # record s + 1 is the state after step s
        if after.shape[1] % k:
            raise CalibrationError(
                f"{after.shape[1]} recorded steps are not whole rows of {k} steps_per_row"
            )
        if how == "sum":
            return after.reshape(after.shape[0], after.shape[1] // k, k).sum(dim=-1)
        return after[:, k - 1 :: k]

    def simulation(self, values: Mapping[str, Any], seed: int | None = None) -> Simulation:
        """A simulation of the model under ``values`` (model params among them), at step 0 or
        at the warm start's row."""
        model_values = {n: v for n, v in values.items() if n not in self.observation}
        seed = self.seed if seed is None else seed
        sim = Simulation(
            self.model,
            members=self.members,
            seed=seed,
            params=self.model.params.replace(**model_values),
            device=self.device,
            dtype=self.dtype,
            progress=False,
        )
        if self.warm is not None:
            if seed != self.warm.seed:
                raise CalibrationError(
                    f"the warm start was made with seed {self.warm.seed}, not {seed}"
                )
            # continue the carried simulation (as Simulation.resume does from a file)
            sim.state, sim.step = self.warm.state, self.warm.row * self.steps_per_row
            sim.rng.set_state(self.warm.rng)
        return sim

    def metric_rows(self, values: Mapping[str, Any], seed: int | None, rows: int):
        """(metric → ``[B, rows]`` model rows, final state) of one run (or the fixed rows and
        no state)."""
        if self.metrics is not None:
            short = [m for m, r in self.metrics.items() if r.shape[-1] < rows]
            if short:
                raise CalibrationError(f"fixed metric rows {short} end before row {rows}")
            return {m: r[:, :rows].to(self.dtype) for m, r in self.metrics.items()}, None
        out, sim, result = self.carry(values, seed, rows)
        if sim.shard is not None:  # the rank's members: the whole ensemble's rows on every rank
            out = {m: distributed.gather_members(r, sim.shard.comm) for m, r in out.items()}
        return out, result.final_state

    def carry(self, values: Mapping[str, Any], seed: int | None, rows: int):
        """Simulate to row ``rows`` (from the warm start, if any): (metric → ``[B, rows]``
        rows, the simulation, its result)."""
        sim = self.simulation(values, seed)
        first = self.warm.row if self.warm is not None else 0
        result = sim.run((rows - first) * self.steps_per_row)
        out = {}
        for metric in {s.metric for s in self.series.values()}:
            r = self.rows_of(metric, result.series(metric).to(self.dtype))
            if self.warm is not None:
                r = torch.cat([self.warm.history[metric].to(r), r], dim=1)
            out[metric] = r
        return out, sim, result

    def observation_values(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Every observation param's value: free (from ``values``), fixed, or its default."""
        defaults = {n: d.default for n, d in self.observation.items()}
        return {**defaults, **self.fixed, **{n: v for n, v in values.items() if n in defaults}}

    def predict(self, values: Mapping[str, Any], seed: int | None = None, horizon: int = 0):
        """Expected observations under ``values``: (series → ``[B, rows + horizon]``, final state).

        One run of ``(rows + horizon) * steps_per_row`` steps: the first ``rows`` columns match
        the data, the last ``horizon`` continue the same simulation (a forecast; a Schedule's last
        piece holds on).
        """
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 0:
            raise CalibrationError(f"horizon must be a non-negative integer, got {horizon!r}")
        metrics, final = self.metric_rows(values, seed, self.rows + horizon)
        obs = self.observation_values(values)
        preds = {}
        for name, spec in self.series.items():
            ratio = 1.0 if spec.ratio is None else obs[spec.ratio]
            delay = None if spec.delay is None else obs[spec.delay]
            preds[name] = expected_series(
                metrics[spec.metric], ratio, delay, cv=spec.cv, multiplier=self.multiplier
            )
        return preds, final

    def dispersion_of(self, name: str, values: Mapping[str, Any]) -> Any:
        obs = self.observation_values(values)
        spec = self.series[name]
        return obs[spec.dispersion or "dispersion"]

    def member_costs(
        self, preds: Mapping[str, torch.Tensor], values: Mapping[str, Any] | None = None
    ) -> torch.Tensor:
        """``[B]`` weighted sum of the series' losses over the data rows (with ``average``, the
        loss of the member-mean prediction, the same for every member)."""
        values = values or {}
        total = 0
        for name, series in self.observed.items():
            pred = preds[name][:, : self.rows]
            if self.averaged:
                pred = pred.mean(dim=0, keepdim=True).expand_as(pred)
            obs = series.to(dtype=pred.dtype, device=pred.device)
            if self.loss == "negbin":
                cost = self.loss_fn(pred, obs, self.dispersion_of(name, values))
            else:
                cost = self.loss_fn(pred, obs)
            total = total + self.series[name].weight * cost
        return total

    def penalty(self, values: Mapping[str, Any]) -> torch.Tensor:
        """``[]`` smoothness x squared differences of successive free Schedule pieces, in
        unconstrained units (0 without Schedules)."""
        total = torch.zeros((), dtype=self.dtype)
        if self.smoothness == 0:
            return total
        for f in self.free:
            v = values.get(f.name)
            if isinstance(v, Schedule) and v.values.shape[0] > 1:
                theta = f.to_unconstrained(v.values.to(self.dtype))
                total = total + (theta[1:] - theta[:-1]).pow(2).sum()
        return self.smoothness * total

    def objective(self, values: Mapping[str, Any], seed: int | None = None) -> torch.Tensor:
        """``[]`` expected loss plus the smoothness penalty, differentiable with the model's
        estimator.

        Score-function models: the surrogate whose value is the mean cost and whose gradient is
        the REINFORCE estimate with a leave-one-out baseline.

        Raises:
            CalibrationError: a score-function gradient asked of a single member (the only
                baseline is the member's own cost, so the estimate would be exactly 0).
        """
        preds, final = self.predict(values, seed)
        costs = self.member_costs(preds, values)
        if final is not None and self.model.options.get("estimator") == "score_function":
            log_prob = distributed.gather_members(final.log_prob.to(costs.dtype), self.comm)
            b = costs.shape[0]
            if b < 2:
                if log_prob.requires_grad:
                    raise CalibrationError(
                        "the score-function gradient needs members >= 2 (its baseline is the "
                        f"other members' mean cost); got members={b}"
                    )
                return costs.mean() + self.penalty(values)
            baseline = (costs.sum() - costs) / (b - 1)
            costs = score_function_surrogate(costs, log_prob, baseline.detach())
        return costs.mean() + self.penalty(values)

    def warm_start(self, values: Mapping[str, Any], row: int, seed: int | None = None) -> WarmStart:
        """Carry the simulation under ``values`` to data row ``row`` (no gradients; from this
        problem's own warm start if it has one), for a problem that fits only what acts from
        that row on.

        Raises:
            CalibrationError: a row outside ``1..rows``.
        """
        if isinstance(row, bool) or not isinstance(row, int) or not 0 < row <= self.rows:
            raise CalibrationError(f"warm-start row {row} must lie in [1, {self.rows}]")
        seed = self.seed if seed is None else seed
        first = 0 if self.warm is None else self.warm.row
        if row <= first:
            raise CalibrationError(f"warm-start row {row} must lie after the current {first}")
        with torch.no_grad():
            history, sim, result = self.carry(values, seed, row)
        return WarmStart(row, result.final_state, sim.rng.get_state(), history, seed)


@dataclasses.dataclass
class Fit:
    """A fitted problem.

    Attributes:
        method: ``"adam"``, ``"nelder_mead"``, ``"cmaes"`` or ``"neural"``.
        theta: ``[D]`` unconstrained optimum.
        values: name → fitted value (float, or a list per Schedule piece / axis entry).
        history: the objective of each iteration (Adam: before its step; gradient-free: the
            best so far after each evaluation).
        loss: objective at the optimum (fresh evaluation, common seed).
        seconds: wall time of the optimisation.
        evaluations: simulator runs used.
        converged: the stopping tolerance was met (False: the cap stopped it).
        iterations: optimiser iterations (epochs, simplex iterations, trials).
        hit_cap: the iteration/evaluation cap stopped it.
        message: why it stopped.
        gradient_norm: Adam: norm of the unconstrained gradient at the last epoch.
        simplex_size: Nelder-Mead: largest distance of a final vertex from the best one.
        seed: member seed of the objective.
        start: index of the start (0: the free params' init) this fit began from.
        starts: the final loss of every start (multi-start fits).
    """

    method: str
    theta: torch.Tensor
    values: dict[str, Any]
    history: list[float]
    loss: float
    seconds: float
    evaluations: int
    converged: bool = False
    iterations: int = 0
    hit_cap: bool = False
    message: str = ""
    gradient_norm: float | None = None
    simplex_size: float | None = None
    seed: int = 0
    start: int = 0
    starts: list[float] = dataclasses.field(default_factory=list)

    def convergence(self) -> dict[str, Any]:
        """JSON-friendly convergence report."""
        return {
            "method": self.method,
            "converged": self.converged,
            "hit_cap": self.hit_cap,
            "iterations": self.iterations,
            "evaluations": self.evaluations,
            "gradient_norm": self.gradient_norm,
            "simplex_size": self.simplex_size,
            "message": self.message,
            "starts": self.starts,
        }


def plain_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Tensors and schedules → floats and lists (JSON-friendly)."""
    out = {}
    for name, v in values.items():
        t = v.values if isinstance(v, Schedule) else torch.as_tensor(v)
        t = t.detach().cpu()
        out[name] = t.tolist() if t.dim() else float(t)
    return out


def check_lr(lr: float, what: str = "lr") -> None:
    """Raise unless the learning rate ``lr`` is finite and > 0."""
    if not (math.isfinite(lr) and lr > 0):
        raise CalibrationError(f"{what} must be finite and > 0, got {lr}")


def check_loss(problem: Problem, loss: torch.Tensor, theta: torch.Tensor, when: str) -> None:
    """Raise when the objective is NaN/Inf, naming the parameter values that gave it."""
    if not torch.isfinite(loss.detach()).all():
        values = plain_values(problem.split(theta.detach())) if theta.numel() else {}
        raise CalibrationError(f"{when}: the objective is {float(loss.detach())} at {values}")


def retain_grads(values: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Name → the tensor behind each value (a Schedule's ``values``), keeping its ``.grad``.

    After a backward pass, a tensor's ``.grad`` is None when the loss does not depend on it.
    """
    tensors = {n: v.values if isinstance(v, Schedule) else v for n, v in values.items()}
    for t in tensors.values():
        if isinstance(t, torch.Tensor) and t.requires_grad:
            t.retain_grad()
    return tensors


def gradients(problem: Problem, tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Free parameter name → the gradient of its value (None where the loss does not depend
    on it), from :func:`retain_grads` after a backward pass; under torchrun the one-process
    gradient (averaged over the ranks, None only where it is None on every rank), so every
    rank takes the same decisions on it."""
    grads = {f.name: tensors[f.name].grad for f in problem.free}
    comm = problem.comm
    if comm is None or not grads:
        return grads
    names = list(grads)
    local = torch.tensor([grads[n] is not None for n in names])
    reached = comm.all_reduce(local, "max", "which gradients reach the free parameters")
    out: dict[str, Any] = {}
    for name, any_rank in zip(names, reached.tolist(), strict=True):
        g = grads[name]
        if any_rank:
            g = torch.zeros_like(tensors[name]) if g is None else g.detach()
            g = comm.all_reduce(g.reshape(-1), what=f"gradient of {name}") / comm.world
            g = g.reshape(tensors[name].shape)
        out[name] = g if any_rank else None
    return out


def check_gradient(problem: Problem, tensors: Mapping[str, torch.Tensor]) -> None:
    """After the first backward pass, check that the gradient reaches the free parameters.

    Args:
        tensors: :func:`retain_grads` of the values the loss was computed from.

    Raises:
        CalibrationError: naming each free parameter that the loss does not depend on (its
            gradient is None: e.g. transitions that are not differentiable), or when every free
            parameter's gradient is exactly zero (Adam could not move them).

    Warns:
        UserWarning: naming each free parameter or Schedule piece whose gradient is exactly zero
            while others' are not (e.g. a borough without infections at the start point; it may
            get a gradient once the others have moved).
    """
    grads = gradients(problem, tensors)
    unused = [f.name for f in problem.free if grads[f.name] is None]
    if unused:
        raise CalibrationError(
            f"no gradient reaches {unused}: the loss of model {problem.model.name!r} does not "
            "depend on them differentiably (its transitions are not differentiable w.r.t. them: "
            "build it with estimator='straight_through'); or use a gradient-free method "
            "(nelder_mead, cmaes)"
        )
    zero = []
    for f in problem.free:
        g = grads[f.name].detach().reshape(-1)
        dead = [k for k in range(g.numel()) if g[k] == 0]
        if len(dead) == g.numel():
            zero.append(f.name)
        else:
            zero += [f"{f.name}[{k}]" for k in dead]
    if zero and zero == [f.name for f in problem.free]:
        raise CalibrationError(
            f"the gradient of every free parameter {zero} is exactly 0 at the start, so Adam "
            f"cannot move them (model {problem.model.name!r}: e.g. no activity in any of the "
            f"{problem.members} members); use more agents, members or other start values"
        )
    if zero:
        warnings.warn(
            f"the gradient of {zero} is exactly 0 at the start (e.g. no activity there in any "
            f"of the {problem.members} members); Adam moves them only once others give them one",
            stacklevel=3,
        )


def check_ranks(problem: Problem, theta: torch.Tensor, method: str, **facts: Any) -> None:
    """Under torchrun: refuse to start a fit unless every rank has the same problem, start
    point and options (``facts``), with one :class:`~populace.engine.distributed.DistributedError`
    naming what differs; in one process nothing."""
    comm = problem.comm
    if comm is None:
        return
    observed = {n: s.tolist() for n, s in problem.observed.items()}
    distributed.handshake(
        comm,
        {
            "fit method": method,
            "free parameters": [(f.name, f.size) for f in problem.free],
            "observed series": distributed.digest(sorted(observed.items())),
            "start point": distributed.digest(theta.detach().cpu().tolist()),
            "members, seed and loss": (problem.members, problem.seed, problem.loss),
            **facts,
        },
    )


def evaluate(problem: Problem, theta: torch.Tensor, seed: int | None = None) -> float:
    """The objective at ``theta`` without gradients."""
    with torch.no_grad():
        return float(problem.objective(problem.split(theta.to(problem.dtype)), seed))
