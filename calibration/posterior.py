"""Uncertainty: an ensemble of fits over member seeds (and starts) as an approximate posterior.

Each member seed gives the objective its own common random numbers, so fits over several seeds
(each the best of several starts) spread as the Monte-Carlo and optimisation uncertainty does.
:class:`Ensemble` turns them into credible intervals of the parameters (:meth:`intervals`) and
predictive samples of every observed series, forecasts included (:meth:`samples`): each fit's
ensemble members' expected observations with negative-binomial observation noise of the fitted
dispersion (none for a loss without one), pooled over fits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import polars as pl
import torch

from populace.calibration.fit import Fit, Problem
from populace.calibration.forecast import negbin_samples


def intervals(fits: Sequence[Fit], level: float = 0.9) -> pl.DataFrame:
    """Per fitted value (a Schedule piece or axis entry per row): mean and the central ``level``
    interval over ``fits``.

    Returns:
        DataFrame ``(param, piece, mean, lo, hi, fits)``; ``piece`` is the flat index of the
        entry (0 for scalars).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if not fits:
        raise ValueError("intervals need at least one fit")
    rows = []
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    for name in fits[0].values:
        samples = torch.stack(
            [torch.as_tensor(f.values[name], dtype=torch.float64).reshape(-1) for f in fits]
        )  # [fits, entries]
        lo, hi = torch.quantile(samples, q, dim=0)
        for k in range(samples.shape[1]):
            rows.append(
                (name, k, float(samples[:, k].mean()), float(lo[k]), float(hi[k]), len(fits))
            )
    return pl.DataFrame(rows, schema=["param", "piece", "mean", "lo", "hi", "fits"], orient="row")


@dataclasses.dataclass
class Ensemble:
    """Fits of one problem under several member seeds.

    Attributes:
        problem: the problem (its ``seed`` is replaced by each fit's).
        fits: one fit per seed, each with its ``seed``.
    """

    problem: Problem
    fits: list[Fit]

    def __post_init__(self) -> None:
        if not self.fits:
            raise ValueError("an ensemble needs at least one fit")

    @property
    def best(self) -> Fit:
        return min(self.fits, key=lambda f: f.loss)

    def intervals(self, level: float = 0.9) -> pl.DataFrame:
        """Credible intervals of every fitted value over the fits (:func:`intervals`)."""
        return intervals(self.fits, level)

    def samples(self, horizon: int = 0, draws: int = 10, seed: int = 0) -> dict[str, torch.Tensor]:
        """Predictive samples: series → ``[fits * members * draws, rows + horizon]``.

        Each fit's members' expected observations, with ``draws`` negative-binomial draws each
        under a ``negbin`` loss (the expectation itself otherwise, ``draws`` ignored).
        """
        pooled: dict[str, list[torch.Tensor]] = {}
        for k, fit in enumerate(self.fits):
            problem = dataclasses.replace(self.problem, seed=fit.seed)
            values = problem.split(fit.theta.to(problem.dtype))
            with torch.no_grad():
                preds, _ = problem.predict(values, horizon=horizon)
            for name, mean in preds.items():
                if self.problem.loss == "negbin":
                    r = float(torch.as_tensor(problem.dispersion_of(name, values)).mean())
                    s = negbin_samples(mean, r, draws, seed + k).reshape(-1, mean.shape[-1])
                else:
                    s = mean.detach().to(torch.float64)
                pooled.setdefault(name, []).append(s)
        return {name: torch.cat(parts) for name, parts in pooled.items()}


def fit_ensemble(problem: Problem, seeds: Sequence[int], fitter) -> Ensemble:
    """One fit per member seed: ``fitter(problem with that seed) -> Fit``."""
    if not seeds:
        raise ValueError("fit_ensemble needs at least one seed")
    fits = []
    for s in seeds:
        one = fitter(dataclasses.replace(problem, seed=s))
        one.seed = s
        fits.append(one)
    return Ensemble(problem, fits)
