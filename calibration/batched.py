"""Batched gradient-free search: every candidate of a generation is one member of one run.

An ensemble simulation evaluates B parameter sets for little more than the price of one batched
run, so a population-based search fits the engine: a space-filling design over the box (a Latin
hypercube, scipy.stats.qmc), then generations of CMA-ES (the ``cmaes`` package, as optuna uses
it) started at the design's best point (asked ``popsize`` candidates at a time, told their
losses together). The objective takes
``{name: [P] values}`` and returns ``[P]`` losses; the caller decides how the P candidates share
random numbers (common seeds make their differences smooth).

Params are searched in the unit box: ``[low, high]`` linearly, or in log space with ``log``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence

import torch


@dataclasses.dataclass(frozen=True)
class Bound:
    """A free param and its search box (``log``: searched in log space; needs ``low > 0``)."""

    name: str
    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"bound {self.name!r}: need finite low < high, got {self}")
        if self.log and self.low <= 0:
            raise ValueError(f"bound {self.name!r}: a log box needs low > 0, got {self.low}")

    def value(self, u: torch.Tensor) -> torch.Tensor:
        """Values of unit-box coordinates ``u`` (``[P]`` in [0, 1])."""
        u = u.clamp(0.0, 1.0).double()
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            return torch.exp(lo + u * (hi - lo))
        return self.low + u * (self.high - self.low)


@dataclasses.dataclass
class Found:
    """The search's outcome: ``best`` values, their ``loss``, ``evaluations`` made and the best
    loss after each generation (``history``: the design first)."""

    best: dict[str, float]
    loss: float
    evaluations: int
    history: list[float]


def search(
    objective: Callable[[Mapping[str, torch.Tensor]], torch.Tensor],
    bounds: Sequence[Bound],
    *,
    popsize: int = 8,
    generations: int = 3,
    sigma: float = 0.2,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> Found:
    """Minimise ``objective`` over the box: a Latin-hypercube design of ``popsize`` points, then
    ``generations`` CMA-ES generations of ``popsize`` from its best (step ``sigma`` in unit-box
    coordinates).

    Raises:
        ValueError: no bounds, repeated names, popsize < 2 (< 4 with generations),
            generations < 0, or an objective
            that returns the wrong shape or a NaN.
    """
    from scipy.stats import qmc

    names = [b.name for b in bounds]
    if not bounds or len(set(names)) != len(names):
        raise ValueError(f"search needs distinct bounds, got {names}")
    if isinstance(popsize, bool) or not isinstance(popsize, int) or popsize < 2:
        raise ValueError(f"popsize must be an integer >= 2, got {popsize!r}")
    if isinstance(generations, bool) or not isinstance(generations, int) or generations < 0:
        raise ValueError(f"generations must be an integer >= 0, got {generations!r}")
    if generations and popsize < 4:
        raise ValueError(f"CMA-ES generations need popsize >= 4, got {popsize}")
    d = len(bounds)
    best_u, best_loss, history, evaluations = None, math.inf, [], 0

    def evaluate(u: torch.Tensor) -> torch.Tensor:
        nonlocal best_u, best_loss, evaluations
        values = {b.name: b.value(u[:, j]) for j, b in enumerate(bounds)}
        loss = torch.as_tensor(objective(values), dtype=torch.float64).reshape(-1)
        if loss.numel() != u.shape[0]:
            raise ValueError(f"objective returned {loss.numel()} losses for {u.shape[0]} points")
        if torch.isnan(loss).any():
            k = int(torch.nonzero(torch.isnan(loss))[0])
            raise ValueError(
                f"objective is NaN at { ({n: float(v[k]) for n, v in values.items()}) }"
            )
        evaluations += u.shape[0]
        k = int(torch.argmin(loss))
        if float(loss[k]) < best_loss:
            best_u, best_loss = u[k].clone(), float(loss[k])
        history.append(best_loss)
        return loss

    design = torch.as_tensor(qmc.LatinHypercube(d, seed=seed).random(popsize))
    evaluate(design)
    if log is not None:
        log(f"design of {popsize}: best loss {best_loss:.4f}")
    if generations:
        import numpy as np
        from cmaes import CMA

        es = CMA(
            mean=best_u.numpy().astype(np.float64),
            sigma=sigma,
            bounds=np.array([[0.0, 1.0]] * d),
            seed=seed,
            population_size=popsize,
        )
        for g in range(generations):
            points = [es.ask() for _ in range(popsize)]
            loss = evaluate(torch.as_tensor(np.stack(points)))
            es.tell(list(zip(points, loss.tolist(), strict=True)))
            if log is not None:
                log(f"generation {g + 1}/{generations}: best loss {best_loss:.4f}")
    best = {b.name: float(b.value(best_u[j : j + 1])[0]) for j, b in enumerate(bounds)}
    return Found(best, best_loss, evaluations, history)
