"""Gradient-free baseline: Nelder-Mead on the same unconstrained vector and objective.

The objective is evaluated with common random numbers (the problem's seed every time), so the
simplex sees a deterministic function; each evaluation is one simulator run without gradients.
"""

from __future__ import annotations

import time

import torch

from populace.calibration.fit import CalibrationError, Fit, Problem, evaluate, plain_values


def nelder_mead(
    problem: Problem,
    evaluations: int = 100,
    *,
    step: float = 0.5,
    tol: float = 1e-6,
    theta: torch.Tensor | None = None,
) -> Fit:
    """Minimise the problem's objective with the Nelder-Mead simplex (standard coefficients:
    reflection 1, expansion 2, contraction 0.5, shrink 0.5).

    Args:
        evaluations: budget of objective evaluations (simulator runs).
        step: initial simplex edge in unconstrained units.
        tol: stop when the simplex's loss spread falls below ``tol``.
        theta: ``[D]`` starting point (default: the free parameters' ``init``).
    """
    x0 = (problem.start() if theta is None else theta.detach().clone()).to(torch.float64)
    d = x0.numel()
    if evaluations < d + 1:
        raise CalibrationError(f"Nelder-Mead needs at least {d + 1} evaluations, got {evaluations}")
    start = time.perf_counter()
    count = 0
    history: list[float] = []

    def f(x: torch.Tensor) -> float:
        nonlocal count
        count += 1
        value = evaluate(problem, x.to(problem.dtype))
        history.append(min(value, history[-1]) if history else value)
        return value

    simplex = [x0] + [x0 + step * torch.eye(d, dtype=x0.dtype)[i] for i in range(d)]
    values = [f(x) for x in simplex]
    while count < evaluations:
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
    best = min(range(d + 1), key=values.__getitem__)
    theta = simplex[best].to(problem.dtype)
    seconds = time.perf_counter() - start
    return Fit(
        "nelder_mead",
        theta,
        plain_values(problem.split(theta)),
        history,
        values[best],
        seconds,
        count,
    )
