"""Optimisers of a :class:`~populace.calibration.fit.Problem`: fits that stop when they converge.

All work on the problem's unconstrained vector and its objective (one code path for the problem
definition):

- :func:`adam`: gradient descent through the simulator (a differentiable model: straight-through
  or score-function estimator). Stops when the best objective has not improved by ``rtol``
  (relative) for ``patience`` epochs at the lowest of three learning rates (each plateau divides
  the rate by 3); ``max_epochs`` is a generous cap;
- :func:`nelder_mead`: ``scipy.optimize.minimize(method="Nelder-Mead")`` (adaptive coefficients
  above 2 dimensions), converged when the simplex is smaller than ``xtol`` and its objective
  spread below ``rtol`` x the start's objective;
- :func:`cmaes`: optuna's CMA-ES sampler (``pip install populace[calibration]``), converged when
  ``patience`` trials brought no relative improvement ``rtol``;
- :func:`fit`: any of them from several starts (the free params' init and the best of a screen
  of draws from a prior around it), returning the best fit with every start's loss;
  ``method="auto"`` takes Adam when the gradient reaches every free parameter, else Nelder-Mead.

Each fit reports whether it converged, its iterations, evaluations and final gradient norm or
simplex size, and whether the cap stopped it (:meth:`~populace.calibration.fit.Fit.convergence`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from populace.calibration.fit import (
    CalibrationError,
    Fit,
    Problem,
    check_gradient,
    check_loss,
    check_lr,
    check_ranks,
    evaluate,
    gradients,
    plain_values,
    retain_grads,
)
from populace.engine import distributed

METHODS = ("auto", "adam", "nelder_mead", "cmaes")
#: learning-rate divisions on plateaus before Adam counts as converged.
DECAYS = 2


def _check_tolerances(rtol: float, cap: int, what: str) -> None:
    if not (math.isfinite(rtol) and rtol > 0):
        raise CalibrationError(f"rtol must be finite and > 0, got {rtol}")
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise CalibrationError(f"{what} must be a positive integer, got {cap!r}")


def adam(
    problem: Problem,
    theta: torch.Tensor | None = None,
    *,
    lr: float = 0.1,
    rtol: float = 1e-3,
    patience: int = 15,
    max_epochs: int = 1000,
    resample: bool = False,
    callback: Callable[[int, float], None] | None = None,
) -> Fit:
    """Fit the free parameters with Adam on the unconstrained vector until it converges.

    With common random numbers (``resample=False``) the objective is a deterministic function
    of the parameters, so the fit returns the best point evaluated (the start included); with
    ``resample`` each epoch's loss is noisy, so it returns the last point. Under torchrun the
    members are split over the ranks and every rank takes the same steps (the whole ensemble's
    loss and gradient, see :mod:`populace.calibration.fit`) to the same fit.

    Args:
        theta: ``[D]`` starting point (default: the free parameters' init).
        lr: initial Adam learning rate in unconstrained units.
        rtol: relative improvement of the best objective that counts as progress.
        patience: epochs without progress before the rate is divided (or the fit stops).
        max_epochs: the cap; a fit it stops reports ``hit_cap`` and ``converged=False``.
        resample: fresh member seeds every epoch (else common random numbers).
        callback: called as ``callback(epoch, loss)``.

    Raises:
        CalibrationError: bad ``lr``, ``rtol``, ``patience`` or ``max_epochs``; a gradient that
            does not reach a free parameter at the first epoch, or is 0 for all of them (see
            :func:`~populace.calibration.fit.check_gradient`); a NaN/Inf objective or gradient.
    """
    check_lr(lr)
    _check_tolerances(rtol, max_epochs, "max_epochs")
    _check_tolerances(rtol, patience, "patience")
    theta = (problem.start() if theta is None else theta.detach().clone()).to(problem.dtype)
    check_ranks(problem, theta, "adam", options=(lr, rtol, patience, max_epochs, resample))
    theta.requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    history: list[float] = []
    best = (math.inf, theta.detach().clone())
    last_progress, decays, converged, grad_norm = 0, 0, False, math.nan
    start = time.perf_counter()
    for epoch in range(max_epochs):
        opt.zero_grad()
        seed = problem.seed + epoch if resample else None
        values = problem.split(theta)
        tensors = retain_grads(values) if epoch == 0 else {}
        loss = problem.objective(values, seed)
        check_loss(problem, loss, theta, f"epoch {epoch}")
        if not loss.requires_grad:
            raise CalibrationError(
                f"the loss of model {problem.model.name!r} carries no gradient w.r.t. "
                f"{[f.name for f in problem.free]}: its transitions are not differentiable "
                "(build it with estimator='straight_through'), or use nelder_mead"
            )
        loss.backward()
        distributed.average_grads([theta], problem.comm)  # under torchrun: the whole ensemble's
        if epoch == 0:
            check_gradient(problem, tensors)
        if not torch.isfinite(theta.grad).all():
            raise CalibrationError(f"epoch {epoch}: non-finite gradient {theta.grad.tolist()}")
        grad_norm = float(theta.grad.norm())
        history.append(float(loss.detach()))
        if history[-1] < best[0] - rtol * abs(best[0]) or not math.isfinite(best[0]):
            last_progress = epoch
        if history[-1] < best[0]:
            best = (history[-1], theta.detach().clone())
        if callback is not None:
            callback(epoch, history[-1])
        if epoch - last_progress >= patience:
            if decays == DECAYS:
                converged = True
                break
            decays, last_progress = decays + 1, epoch
            for group in opt.param_groups:
                group["lr"] /= 3
        opt.step()
    seconds = time.perf_counter() - start
    if resample:
        theta_out = theta.detach()
        final = evaluate(problem, theta_out)
    else:
        theta_out, final = best[1], best[0]
    epochs = len(history)
    message = (
        f"no relative improvement {rtol:g} in {patience} epochs at learning rate "
        f"{lr / 3**decays:.3g}"
        if converged
        else f"stopped by the cap of {max_epochs} epochs"
    )
    return Fit(
        "adam",
        theta_out,
        plain_values(problem.split(theta_out)),
        history,
        final,
        seconds,
        epochs,
        converged=converged,
        iterations=epochs,
        hit_cap=not converged,
        message=message,
        gradient_norm=grad_norm,
        seed=problem.seed,
    )


def _start(problem: Problem, theta: torch.Tensor | None, what: str) -> torch.Tensor:
    """The ``[D]`` float64 starting vector of a gradient-free method (D >= 1)."""
    x0 = (problem.start() if theta is None else theta.detach().clone()).to(torch.float64)
    if x0.numel() == 0:
        raise CalibrationError(f"{what} needs at least one free parameter")
    return x0


def _objective(problem: Problem, history: list[float], best: list):
    """``f(x: ndarray) -> float`` evaluating the problem without gradients, recording the best."""

    def f(x) -> float:
        theta = torch.as_tensor(x, dtype=torch.float64)
        value = evaluate(problem, theta)
        if not math.isfinite(value):
            values = plain_values(problem.split(theta.to(problem.dtype)))
            raise CalibrationError(f"the objective is {value} at {values}")
        if value < best[1]:
            best[:] = [theta.clone(), value]
        history.append(best[1])
        return value

    return f


def nelder_mead(
    problem: Problem,
    theta: torch.Tensor | None = None,
    *,
    rtol: float = 1e-4,
    xtol: float = 1e-3,
    step: float = 0.5,
    max_evaluations: int | None = None,
) -> Fit:
    """Minimise the objective with scipy's Nelder-Mead simplex until it converges.

    Args:
        theta: ``[D]`` starting point (default: the free parameters' init).
        rtol: converged when the simplex's objective spread is below ``rtol`` x the start's
            objective ...
        xtol: ... and every vertex lies within ``xtol`` (unconstrained units) of the best.
        step: initial simplex edge in unconstrained units.
        max_evaluations: the cap (default ``200 * D``, at least 200).

    Raises:
        CalibrationError: bad tolerances or cap, no free parameter, or a NaN/Inf objective
            (naming the parameter values).
    """
    try:
        from scipy.optimize import minimize
    except ImportError:
        raise CalibrationError(
            "method 'nelder_mead' needs scipy: pip install 'populace[calibration]'"
        ) from None
    x0 = _start(problem, theta, "Nelder-Mead")
    d = x0.numel()
    cap = max(200, 200 * d) if max_evaluations is None else max_evaluations
    _check_tolerances(rtol, cap, "max_evaluations")
    if cap < d + 1:
        raise CalibrationError(f"Nelder-Mead needs at least {d + 1} evaluations, got {cap}")
    history: list[float] = []
    best: list = [x0, math.inf]
    f = _objective(problem, history, best)
    start = time.perf_counter()
    f0 = f(x0.numpy())
    simplex = torch.cat([x0.unsqueeze(0), x0 + step * torch.eye(d, dtype=x0.dtype)]).numpy()
    res = minimize(
        f,
        x0.numpy(),
        method="Nelder-Mead",
        options={
            "maxfev": cap - 1,
            "xatol": xtol,
            "fatol": rtol * max(abs(f0), 1e-12),
            "initial_simplex": simplex,
            "adaptive": d > 2,
        },
    )
    seconds = time.perf_counter() - start
    vertices = torch.as_tensor(res.final_simplex[0])
    size = float((vertices - vertices[0]).norm(dim=1).max())
    theta_out = best[0].to(problem.dtype)
    hit_cap = len(history) >= cap or res.status == 1
    return Fit(
        "nelder_mead",
        theta_out,
        plain_values(problem.split(theta_out)),
        history,
        best[1],
        seconds,
        len(history),
        converged=bool(res.success),
        iterations=int(res.nit),
        hit_cap=bool(hit_cap and not res.success),
        message=str(res.message),
        simplex_size=size,
        seed=problem.seed,
    )


def cmaes(
    problem: Problem,
    theta: torch.Tensor | None = None,
    *,
    rtol: float = 1e-4,
    patience: int | None = None,
    width: float = 3.0,
    max_evaluations: int | None = None,
) -> Fit:
    """Minimise the objective with optuna's CMA-ES sampler.

    The search box is ``start ± width`` in unconstrained units (the initial step a third of
    ``width``); the first trial is the start itself.

    Args:
        rtol: a trial counts as progress when it improves the best by ``rtol`` (relative).
        patience: trials without progress before it counts as converged (default ``20 * D``,
            at least 50).
        max_evaluations: the cap (default ``300 * D``, at least 300).

    Raises:
        CalibrationError: optuna (or its ``cmaes`` package) not installed, bad tolerances, no
            free parameter, or a NaN/Inf objective.
    """
    try:
        import optuna
    except ImportError:
        raise CalibrationError(
            "method 'cmaes' needs optuna and cmaes: pip install 'populace[calibration]'"
        ) from None
    x0 = _start(problem, theta, "CMA-ES")
    d = x0.numel()
    cap = max(300, 300 * d) if max_evaluations is None else max_evaluations
    patience = max(50, 20 * d) if patience is None else patience
    _check_tolerances(rtol, cap, "max_evaluations")
    _check_tolerances(rtol, patience, "patience")
    history: list[float] = []
    best: list = [x0, math.inf]
    f = _objective(problem, history, best)
    names = [f"x{i}" for i in range(d)]
    state = {"progress": 0, "best": math.inf}

    def objective(trial) -> float:
        x = [
            trial.suggest_float(n, float(x0[i]) - width, float(x0[i]) + width)
            for i, n in enumerate(names)
        ]
        value = f(x)
        if value < state["best"] - rtol * abs(state["best"]) or not math.isfinite(state["best"]):
            state["progress"] = trial.number
        state["best"] = min(state["best"], value)
        if trial.number - state["progress"] >= patience:
            trial.study.stop()
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # the box is centred on the start, so CMA-ES starts there (sigma: a sixth of the box)
    study = optuna.create_study(sampler=optuna.samplers.CmaEsSampler(seed=problem.seed))
    study.enqueue_trial({n: float(x0[i]) for i, n in enumerate(names)})
    start = time.perf_counter()
    study.optimize(objective, n_trials=cap)
    seconds = time.perf_counter() - start
    converged = len(history) < cap
    theta_out = best[0].to(problem.dtype)
    return Fit(
        "cmaes",
        theta_out,
        plain_values(problem.split(theta_out)),
        history,
        best[1],
        seconds,
        len(history),
        converged=converged,
        iterations=len(history),
        hit_cap=not converged,
        message=(
            f"no relative improvement {rtol:g} in {patience} trials"
            if converged
            else f"stopped by the cap of {cap} trials"
        ),
        seed=problem.seed,
    )


def differentiable(problem: Problem) -> bool:
    """Whether the gradient of the objective reaches every free parameter (one run with
    gradients; a model built with ``estimator="none"`` is known not to be, without a run)."""
    if problem.model.options.get("estimator") == "none" or not problem.free:
        return False
    theta = problem.start().to(problem.dtype).requires_grad_(True)
    values = problem.split(theta)
    tensors = retain_grads(values)
    loss = problem.objective(values)
    if not loss.requires_grad:
        return False
    loss.backward()
    return all(g is not None for g in gradients(problem, tensors).values())


def start_points(problem: Problem, starts: int, spread: float, seed: int) -> list[torch.Tensor]:
    """``starts`` unconstrained starting vectors: the free params' init, then draws from the
    prior around it (normal of sd ``spread`` in unconstrained units: log-normal for a positive
    param, logit-normal for a bounded one)."""
    x0 = problem.start()
    g = torch.Generator().manual_seed(seed)
    return [x0] + [
        x0 + spread * torch.randn(x0.shape, generator=g, dtype=x0.dtype) for _ in range(starts - 1)
    ]


def screened_starts(
    problem: Problem, starts: int, screen: int, spread: float, seed: int
) -> list[torch.Tensor]:
    """The ``starts`` best of the init and ``screen`` draws from the prior (:func:`start_points`),
    each scored by one evaluation without gradients (the init always kept first)."""
    points = start_points(problem, screen + 1, spread, seed)
    if screen == 0 or starts >= len(points):
        return points[:starts]
    scores = [evaluate(problem, p) for p in points[1:]]
    order = sorted(range(len(scores)), key=scores.__getitem__)
    return [points[0]] + [points[1 + i] for i in order[: starts - 1]]


def multistart(
    problem: Problem,
    method: str = "auto",
    *,
    starts: int = 3,
    screen: int = 24,
    spread: float = 1.5,
    seed: int = 0,
    **options,
) -> list[Fit]:
    """Fits from ``starts`` starting points, best first: the free params' init and the best
    ``starts - 1`` of ``screen`` draws from the prior (:func:`screened_starts`). A drawn start
    whose fit fails (e.g. a NaN gradient where a probability saturates) is dropped and named in
    the others' ``message``; a failure from the init is raised.

    Args:
        method: ``"auto" | "adam" | "nelder_mead" | "cmaes"``.
        screen: prior draws scored to choose the starts (0: the first draws, unscored).
        spread: sd of the prior around the init, in unconstrained units.
        options: passed to the method (``lr``, ``rtol``, ``patience``, ``max_epochs``,
            ``max_evaluations``, ...).

    Raises:
        CalibrationError: an unknown method, a ``starts`` below 1 or a negative ``screen``.
    """
    if method not in METHODS:
        raise CalibrationError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    if isinstance(starts, bool) or not isinstance(starts, int) or starts < 1:
        raise CalibrationError(f"starts must be a positive integer, got {starts!r}")
    if isinstance(screen, bool) or not isinstance(screen, int) or screen < 0:
        raise CalibrationError(f"screen must be a non-negative integer, got {screen!r}")
    if method == "auto":
        method = "adam" if differentiable(problem) else "nelder_mead"
    run = {"adam": adam, "nelder_mead": nelder_mead, "cmaes": cmaes}[method]
    fits, failed = [], []
    for k, theta in enumerate(screened_starts(problem, starts, screen, spread, seed)):
        try:
            one = run(problem, theta, **options)
        except CalibrationError as err:
            if k == 0:  # the init itself: the user's problem, not an unlucky draw
                raise
            failed.append(f"start {k}: {err}")  # e.g. a draw where the gradient is NaN
            continue
        one.start = k
        fits.append(one)
    fits.sort(key=lambda f: f.loss)
    losses = [f.loss for f in sorted(fits, key=lambda f: f.start)]
    for one in fits:
        one.starts = losses
        if failed:
            one.message += f" ({len(failed)} start(s) failed: {'; '.join(failed)})"
    return fits


def fit(problem: Problem, method: str = "auto", **options) -> Fit:
    """The best of :func:`multistart` (its ``starts`` lists every start's loss)."""
    return multistart(problem, method, **options)[0]
