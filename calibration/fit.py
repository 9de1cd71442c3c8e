"""Fitting model parameters to observed series with Adam, through the simulator.

A :class:`Problem` names the model, the observed series (one per model metric), the free
parameters (:class:`Free`: scalar or a piecewise-constant Schedule such as a weekly transmission
rate) and the loss. Free parameters live in an unconstrained space (``log`` for positive values,
``logit`` for bounded ones), so Adam never steps outside their valid range.

Two observation parameters are not model fields and may be free or fixed: ``ascertainment``
(fraction of onsets reported) and ``delay`` (mean reporting delay, days); see
:mod:`populace.calibration.observation`.

The objective is the expected loss over ``members`` ensemble members, estimated with common random
numbers (the same member seeds every epoch, a sample-average approximation) unless ``resample``.
With a model built with the ``"score_function"`` estimator, the per-member costs are combined with
the trajectories' log-probabilities (leave-one-out mean baseline, so at least 2 members) so the
gradient is the unbiased REINFORCE estimate; with ``"straight_through"`` the gradient flows through
the counts. :func:`fit_adam` refuses a problem whose gradient does not reach every free parameter
(:func:`check_gradient`).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from populace.behaviors.choice import score_function_surrogate
from populace.calibration.losses import loss_function
from populace.calibration.observation import reported_cases
from populace.engine import Model, Schedule, Simulation

OBSERVATION_PARAMS = ("ascertainment", "delay")


class CalibrationError(ValueError):
    """A calibration problem is ill-posed (unknown name, no gradient, bad shape)."""


@dataclasses.dataclass(frozen=True)
class Free:
    """A parameter to fit.

    Attributes:
        name: a field of the model's params, or ``ascertainment`` / ``delay``.
        init: starting value; a sequence gives one value per piece of a Schedule.
        lower, upper: bounds (``upper=None``: only ``value > lower``).
        period: steps per piece of a Schedule (e.g. 7 with daily steps: weekly values).
        width: for a param along an axis of A entries (``param(..., axes=("borough",))``), A:
            every piece then holds A free values, all starting at the piece's ``init``.
    """

    name: str
    init: float | Sequence[float]
    lower: float = 0.0
    upper: float | None = None
    period: int | None = None
    width: int | None = None

    def __post_init__(self) -> None:
        values = [self.init] if isinstance(self.init, (int, float)) else list(self.init)
        if not values:
            raise CalibrationError(f"free parameter {self.name!r}: empty init")
        if self.period is None and len(values) != 1:
            raise CalibrationError(
                f"free parameter {self.name!r}: {len(values)} initial values need a period"
            )
        if self.period is not None and self.period < 1:
            raise CalibrationError(f"free parameter {self.name!r}: period must be >= 1")
        if self.width is not None and (isinstance(self.width, bool) or self.width < 1):
            raise CalibrationError(f"free parameter {self.name!r}: width must be >= 1")
        hi = math.inf if self.upper is None else self.upper
        if not all(self.lower < v < hi for v in values):
            raise CalibrationError(
                f"free parameter {self.name!r}: init {values} must lie strictly inside "
                f"({self.lower}, {self.upper})"
            )

    @property
    def pieces(self) -> int:
        """Schedule pieces (1 for a constant)."""
        return 1 if isinstance(self.init, (int, float)) else len(self.init)

    @property
    def size(self) -> int:
        """Free coordinates: pieces x width."""
        return self.pieces * (self.width or 1)

    def to_unconstrained(self, value: torch.Tensor) -> torch.Tensor:
        if self.upper is None:
            return torch.log(value - self.lower)
        return torch.logit((value - self.lower) / (self.upper - self.lower))

    def from_unconstrained(self, theta: torch.Tensor) -> torch.Tensor:
        if self.upper is None:
            return self.lower + torch.exp(theta)
        return self.lower + (self.upper - self.lower) * torch.sigmoid(theta)

    def start(self) -> torch.Tensor:
        """``[size]`` float64 unconstrained starting point."""
        init = [self.init] if isinstance(self.init, (int, float)) else list(self.init)
        start = torch.tensor(init, dtype=torch.float64).repeat_interleave(self.width or 1)
        return self.to_unconstrained(start)

    def value(self, theta: torch.Tensor) -> torch.Tensor | Schedule:
        """The parameter value from its ``[size]`` unconstrained coordinates: ``[]`` (or
        ``[A]`` with a width), or a Schedule of ``[K]`` (``[K, A]``) pieces."""
        v = self.from_unconstrained(theta)
        if self.width is not None:
            v = v.view(self.pieces, self.width)
        return Schedule.every(v, self.period) if self.period is not None else v[0]


@dataclasses.dataclass
class Problem:
    """What to fit.

    Attributes:
        model: a zoo model (or any Model) whose metrics include ``metrics``.
        observed: metric name → ``[T]`` observed series (one row per ``steps_per_row`` steps).
        free: the parameters to fit; every Schedule piece must begin at a simulated step
            (``< rows * steps_per_row``): a later piece could never affect the fit.
        loss: ``"mse_log1p" | "poisson" | "negbin"``.
        steps_per_row: model steps per data row.
        members: ensemble members per evaluation.
        seed: seed of the member streams.
        multiplier: scales the model metric to the data (e.g. real / simulated population);
            finite and > 0.
        observe: apply the reporting model (ascertainment, delay) to the metric.
        fixed: values of observation params that are not free.
        aggregate: ``"sum"`` (flows: each row sums its steps' values) or ``"last"`` (stocks);
            default: ``"sum"`` for metrics named ``cases*``, else ``"last"``.
        dtype: floating dtype of the runs.
        device: run device.
    """

    model: Model
    observed: Mapping[str, torch.Tensor]
    free: Sequence[Free]
    loss: str = "mse_log1p"
    steps_per_row: int = 1
    members: int = 4
    seed: int = 0
    multiplier: float = 1.0
    observe: bool = False
    fixed: Mapping[str, float] = dataclasses.field(default_factory=dict)
    aggregate: str | None = None
    dtype: torch.dtype = torch.float32
    device: str = "cpu"

    def __post_init__(self) -> None:
        self.loss_fn = loss_function(self.loss)
        if not self.observed:
            raise CalibrationError("no observed series")
        lengths = {name: int(torch.as_tensor(s).numel()) for name, s in self.observed.items()}
        if len(set(lengths.values())) != 1:
            raise CalibrationError(f"observed series have different lengths: {lengths}")
        self.rows = next(iter(lengths.values()))
        columns = self.model.metric_columns()
        unknown = [m for m in self.observed if m not in columns]
        if unknown:
            raise CalibrationError(
                f"model {self.model.name!r} has no metric(s) {unknown}; valid: {columns}"
            )
        valid = set(self.model.params.names()) | set(OBSERVATION_PARAMS)
        names = [f.name for f in self.free]
        bad = [n for n in names if n not in valid] + [n for n in self.fixed if n not in valid]
        if bad:
            raise CalibrationError(
                f"unknown parameter(s) {bad} for model {self.model.name!r}; valid: {sorted(valid)}"
            )
        if len(set(names)) != len(names):
            raise CalibrationError(f"free parameters named twice: {names}")
        if not self.observe and set(OBSERVATION_PARAMS) & (set(names) | set(self.fixed)):
            raise CalibrationError("ascertainment/delay need observe=True")
        if self.aggregate not in (None, "sum", "last"):
            raise CalibrationError(f"aggregate must be 'sum' or 'last', got {self.aggregate!r}")
        if self.steps_per_row < 1 or self.members < 1:
            raise CalibrationError("steps_per_row and members must be >= 1")
        if not (math.isfinite(self.multiplier) and self.multiplier > 0):
            raise CalibrationError(f"multiplier must be finite and > 0, got {self.multiplier}")
        for f in self.free:
            if f.period is not None and (f.pieces - 1) * f.period >= self.steps:
                late = list(range(-(-self.steps // f.period), f.pieces))
                raise CalibrationError(
                    f"free parameter {f.name!r}: piece(s) {late} of {f.period} steps begin at "
                    f"or after step {self.steps}, past the simulated steps, so they can never "
                    f"affect the fit; give at most {-(-self.steps // f.period)} initial values"
                )

    @property
    def steps(self) -> int:
        return self.rows * self.steps_per_row

    def start(self) -> torch.Tensor:
        """``[D]`` unconstrained starting vector of all free parameters."""
        if not self.free:
            return torch.zeros(0, dtype=torch.float64)
        return torch.cat([f.start() for f in self.free])

    def split(self, theta: torch.Tensor) -> dict[str, Any]:
        """Name → value (tensor or Schedule) from the ``[D]`` unconstrained vector."""
        out, i = {}, 0
        for f in self.free:
            out[f.name] = f.value(theta[i : i + f.size])
            i += f.size
        if i != theta.numel():
            raise CalibrationError(f"theta has {theta.numel()} entries, the problem needs {i}")
        return out

    def rows_of(self, name: str, series: torch.Tensor) -> torch.Tensor:
        """``[B, R * steps_per_row + 1]`` recorded metric → ``[B, R]`` rows like the data's."""
        k = self.steps_per_row
        how = self.aggregate or ("sum" if name.startswith("cases") else "last")
        after = series[:, 1:]  # record s + 1 is the state after step s
        if after.shape[1] % k:
            raise CalibrationError(
                f"{after.shape[1]} recorded steps are not whole rows of {k} steps_per_row"
            )
        if how == "sum":
            return after.reshape(after.shape[0], after.shape[1] // k, k).sum(dim=-1)
        return after[:, k - 1 :: k]

    def predict(self, values: Mapping[str, Any], seed: int | None = None, horizon: int = 0):
        """Expected observations under ``values``: (metric → ``[B, rows + horizon]``, final state).

        One run of ``(rows + horizon) * steps_per_row`` steps: the first ``rows`` columns match
        the data, the last ``horizon`` continue the same simulation (a forecast; a Schedule's last
        piece holds on). Observation params that are neither in ``values`` nor ``fixed`` take
        ascertainment 1 and delay 0.
        """
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 0:
            raise CalibrationError(f"horizon must be a non-negative integer, got {horizon!r}")
        model_values = {n: v for n, v in values.items() if n not in OBSERVATION_PARAMS}
        params = self.model.params.replace(**model_values)
        sim = Simulation(
            self.model,
            members=self.members,
            seed=self.seed if seed is None else seed,
            params=params,
            device=self.device,
            dtype=self.dtype,
            progress=False,
        )
        result = sim.run(self.steps + horizon * self.steps_per_row)
        obs = {**{"ascertainment": 1.0, "delay": 0.0}, **self.fixed, **values}
        preds = {}
        for name in self.observed:
            rows = self.rows_of(name, result.series(name).to(self.dtype))
            if self.observe:
                a = torch.as_tensor(obs["ascertainment"], dtype=rows.dtype, device=rows.device)
                d = torch.as_tensor(obs["delay"], dtype=rows.dtype, device=rows.device)
                rows = reported_cases(rows, a, d, multiplier=self.multiplier)
            else:
                rows = rows * self.multiplier
            preds[name] = rows
        return preds, result.final_state

    def member_costs(self, preds: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``[B]`` summed loss over the observed metrics."""
        total = 0
        for name, series in self.observed.items():
            obs = torch.as_tensor(series, dtype=preds[name].dtype, device=preds[name].device)
            total = total + self.loss_fn(preds[name], obs)
        return total

    def objective(self, values: Mapping[str, Any], seed: int | None = None) -> torch.Tensor:
        """``[]`` expected loss, differentiable with the model's estimator.

        Score-function models: the surrogate whose value is the mean cost and whose gradient is
        the REINFORCE estimate with a leave-one-out baseline.

        Raises:
            CalibrationError: a score-function gradient asked of a single member (the only
                baseline is the member's own cost, so the estimate would be exactly 0).
        """
        preds, final = self.predict(values, seed)
        costs = self.member_costs(preds)
        if self.model.options.get("estimator") == "score_function":
            log_prob = final.log_prob.to(costs.dtype)
            b = costs.shape[0]
            if b < 2:
                if log_prob.requires_grad:
                    raise CalibrationError(
                        "the score-function gradient needs members >= 2 (its baseline is the "
                        f"other members' mean cost); got members={b}"
                    )
                return costs.mean()
            baseline = (costs.sum() - costs) / (b - 1)
            costs = score_function_surrogate(costs, log_prob, baseline.detach())
        return costs.mean()


@dataclasses.dataclass
class Fit:
    """A fitted problem.

    Attributes:
        method: ``"adam"``, ``"nelder_mead"`` or ``"neural"``.
        theta: ``[D]`` unconstrained optimum.
        values: name → fitted value (float, or a list per Schedule piece).
        history: Adam and neural: the objective of each epoch (before its step); Nelder-Mead: the
            best objective so far after each evaluation.
        loss: objective at the optimum (fresh evaluation, common seed).
        seconds: wall time of the optimisation.
        evaluations: simulator runs used.
    """

    method: str
    theta: torch.Tensor
    values: dict[str, Any]
    history: list[float]
    loss: float
    seconds: float
    evaluations: int


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
        raise CalibrationError(f"{when}: the objective is {float(loss)} at {values}")


def retain_grads(values: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Name → the tensor behind each value (a Schedule's ``values``), keeping its ``.grad``.

    After a backward pass, a tensor's ``.grad`` is None when the loss does not depend on it.
    """
    tensors = {n: v.values if isinstance(v, Schedule) else v for n, v in values.items()}
    for t in tensors.values():
        if isinstance(t, torch.Tensor) and t.requires_grad:
            t.retain_grad()
    return tensors


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
    unused = [f.name for f in problem.free if tensors[f.name].grad is None]
    if unused:
        raise CalibrationError(
            f"no gradient reaches {unused}: the loss of model {problem.model.name!r} does not "
            "depend on them differentiably (its transitions are not differentiable w.r.t. them); "
            "use the gradient-free method (nelder_mead)"
        )
    zero = []
    for f in problem.free:
        g = tensors[f.name].grad.detach().reshape(-1)
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


def evaluate(problem: Problem, theta: torch.Tensor, seed: int | None = None) -> float:
    """The objective at ``theta`` without gradients."""
    with torch.no_grad():
        return float(problem.objective(problem.split(theta), seed))


def fit_adam(
    problem: Problem,
    epochs: int = 50,
    lr: float = 0.05,
    *,
    resample: bool = False,
    theta: torch.Tensor | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> Fit:
    """Fit the free parameters with Adam on the unconstrained vector.

    With common random numbers (``resample=False``) the objective is a deterministic function
    of the parameters, so the fit returns the best point evaluated (the start included), as
    Nelder-Mead does; with ``resample`` each epoch's loss is noisy, so it returns the last point.

    Args:
        epochs: gradient steps (one simulator run of ``problem.members`` members each).
        lr: Adam learning rate in unconstrained units.
        resample: fresh member seeds every epoch (else common random numbers).
        theta: ``[D]`` starting point (default: the free parameters' ``init``).
        callback: called as ``callback(epoch, loss)``.

    Raises:
        CalibrationError: ``epochs < 1`` or ``lr`` not finite and > 0; a gradient that does not
            reach a free parameter at the first epoch, or is 0 for all of them (a model whose
            transitions carry no gradient: use :func:`~populace.calibration.baseline.nelder_mead`);
            a NaN/Inf objective or gradient. See :func:`check_gradient`, which also warns about
            free parameters or Schedule pieces whose first gradient is exactly 0.
    """
    if epochs < 1:
        raise CalibrationError(f"epochs must be >= 1, got {epochs}")
    check_lr(lr)
    theta = (problem.start() if theta is None else theta.detach().clone()).to(problem.dtype)
    theta.requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    history = []
    best = (math.inf, theta.detach().clone())
    start = time.perf_counter()
    for epoch in range(epochs):
        opt.zero_grad()
        seed = problem.seed + epoch if resample else None
        values = problem.split(theta)
        tensors = retain_grads(values) if epoch == 0 else {}
        loss = problem.objective(values, seed)
        check_loss(problem, loss, theta, f"epoch {epoch}")
        if not loss.requires_grad:
            raise CalibrationError(
                f"the loss of model {problem.model.name!r} carries no gradient w.r.t. "
                f"{[f.name for f in problem.free]}: its transitions are not differentiable; "
                "use the gradient-free method (nelder_mead)"
            )
        loss.backward()
        if epoch == 0:
            check_gradient(problem, tensors)
        if not torch.isfinite(theta.grad).all():
            raise CalibrationError(f"epoch {epoch}: non-finite gradient {theta.grad.tolist()}")
        history.append(float(loss.detach()))
        if history[-1] < best[0]:
            best = (history[-1], theta.detach().clone())
        opt.step()
        if callback is not None:
            callback(epoch, history[-1])
    seconds = time.perf_counter() - start
    theta = theta.detach()
    final = evaluate(problem, theta)
    if not resample and final > best[0]:  # the last steps went uphill: keep the best point
        theta, final = best[1], best[0]
    return Fit(
        "adam",
        theta,
        plain_values(problem.split(theta)),
        history,
        final,
        seconds,
        epochs + 1,
    )
