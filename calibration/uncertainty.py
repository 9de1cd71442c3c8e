"""Uncertainty over seeds: intervals of the values of fits repeated with other member seeds."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import torch

from populace.calibration.fit import Fit


def intervals(fits: Sequence[Fit], level: float = 0.9) -> pl.DataFrame:
    """Per fitted value (a Schedule piece per row): mean, and the central ``level`` interval.

    Returns:
        DataFrame ``(param, piece, mean, lo, hi, fits)``; ``piece`` is 0 for scalars.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rows = []
    for name in fits[0].values:
        samples = torch.tensor(
            [
                f.values[name] if isinstance(f.values[name], list) else [f.values[name]]
                for f in fits
            ],
            dtype=torch.float64,
        )  # [fits, pieces]
        q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
        lo, hi = torch.quantile(samples, q, dim=0)
        for k in range(samples.shape[1]):
            rows.append(
                (name, k, float(samples[:, k].mean()), float(lo[k]), float(hi[k]), len(fits))
            )
    return pl.DataFrame(rows, schema=["param", "piece", "mean", "lo", "hi", "fits"], orient="row")
