"""Gradient-free baseline: Nelder-Mead on the same unconstrained vector and objective.

The objective is evaluated with common random numbers (the problem's seed every time), so the
simplex sees a deterministic function; each evaluation is one simulator run without gradients.
"""

from __future__ import annotations

import math
import time

import torch

from populace.calibration.fit import CalibrationError, Fit, Problem, evaluate, plain_values


class _OutOfBudget(Exception):
    """Raised by the objective wrapper when the evaluation or time budget is spent."""


def nelder_mead(
    problem: Problem,
    evaluations: int | None = 100,
    *,
    seconds: float | None = None,
    step: float = 0.5,
    tol: float = 1e-6,
    theta: torch.Tensor | None = None,
) -> Fit:
    """Minimise the problem's objective with the Nelder-Mead simplex (standard coefficients:
    reflection 1, expansion 2, contraction 0.5, shrink 0.5).

    The first simplex (D + 1 evaluations) is always evaluated; after it, the search stops before
    an evaluation that would exceed ``evaluations``, or once ``seconds`` have elapsed (so it
    overruns the time budget by at most one evaluation). It returns the best point evaluated.

    Args:
        evaluations: budget of objective evaluations (simulator runs); ``None``: no count limit.
        seconds: wall-time budget; ``None``: no time limit.
        step: initial simplex edge in unconstrained units.
        tol: stop when the simplex's loss spread falls below ``tol``.
        theta: ``[D]`` starting point (default: the free parameters' ``init``).

    Raises:
        CalibrationError: ``evaluations < D + 1``, no budget at all, a ``seconds`` that is not
            finite and > 0, or a NaN/Inf objective (naming the parameter values).
    """
    x0 = (problem.start() if theta is None else theta.detach().clone()).to(torch.float64)
    d = x0.numel()
    if evaluations is not None and evaluations < d + 1:
        raise CalibrationError(f"Nelder-Mead needs at least {d + 1} evaluations, got {evaluations}")
    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        raise CalibrationError(f"seconds must be finite and > 0, got {seconds}")
    if evaluations is None and seconds is None:
        raise CalibrationError("Nelder-Mead needs a budget: evaluations, seconds or both")
    start = time.perf_counter()
    deadline = math.inf if seconds is None else start + seconds
    limit = math.inf if evaluations is None else evaluations
    history: list[float] = []
    best: list = [None, math.inf]  # point, value

    def f(x: torch.Tensor) -> float:
        if len(history) > d and (len(history) >= limit or time.perf_counter() >= deadline):
            raise _OutOfBudget
        value = evaluate(problem, x.to(problem.dtype))
        if not math.isfinite(value):
            values = plain_values(problem.split(x.to(problem.dtype)))
            raise CalibrationError(f"Nelder-Mead: the objective is {value} at {values}")
        if value < best[1]:
            best[:] = [x, value]
        history.append(best[1])
        return value

    simplex = [x0] + [x0 + step * torch.eye(d, dtype=x0.dtype)[i] for i in range(d)]
    values = [f(x) for x in simplex]
    try:
        while True:
            order = sorted(range(d + 1), key=values.__getitem__)
            simplex, values = [simplex[i] for i in order], [values[i] for i in order]
            if values[-1] - values[0] < tol:
                break
            centroid = torch.stack(simplex[:-1]).mean(dim=0)
            worst = simplex[-1]
            xr = centroid + (centroid - worst)
            fr = f(xr)
            if fr < values[0]:
                xe = centroid + 2 * (centroid - worst)
                fe = f(xe)
                simplex[-1], values[-1] = (xe, fe) if fe < fr else (xr, fr)
            elif fr < values[-2]:
                simplex[-1], values[-1] = xr, fr
            else:
                outside = fr < values[-1]
                xc = centroid + 0.5 * ((xr if outside else worst) - centroid)
                fc = f(xc)
                if fc < min(fr, values[-1]):
                    simplex[-1], values[-1] = xc, fc
                else:  # shrink towards the best vertex
                    for i in range(1, d + 1):
                        simplex[i] = simplex[0] + 0.5 * (simplex[i] - simplex[0])
                        values[i] = f(simplex[i])
    except _OutOfBudget:
        pass
    elapsed = time.perf_counter() - start
    theta = best[0].to(problem.dtype)
    return Fit(
        "nelder_mead",
        theta,
        plain_values(problem.split(theta)),
        history,
        best[1],
        elapsed,
        len(history),
    )
