"""Reports of a fit: a polars table of fitted params and errors, a plot of fit vs data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import torch

from populace.calibration.fit import Fit
from populace.calibration.losses import normalized_deviation
from populace.engine.storage import dumps


def params_table(fits: Sequence[Fit]) -> pl.DataFrame:
    """One row per (method, param, piece): ``value``; plus each fit's loss, seconds, runs."""
    rows = []
    for f in fits:
        for name, v in f.values.items():
            for k, x in enumerate(v if isinstance(v, list) else [v]):
                rows.append((f.method, name, k, float(x), f.loss, f.seconds, f.evaluations))
    return pl.DataFrame(
        rows,
        schema=["method", "param", "piece", "value", "loss", "seconds", "runs"],
        orient="row",
    )


def error_table(
    predicted: Mapping[str, torch.Tensor], observed: Mapping[str, torch.Tensor], window: str
) -> pl.DataFrame:
    """ND per series of the member-mean prediction: ``(series, window, nd, observed, predicted)``.

    ``observed`` and ``predicted`` are the series' totals. ND is undefined for an all-zero
    observed series: its ``nd`` is null (``None``), the other columns are still filled.

    Args:
        predicted: name → ``[B, T]`` or ``[T]``.
        observed: name → ``[T]``.
        window: a label such as ``"fit"`` or ``"forecast"``.
    """
    rows = []
    for name, obs in observed.items():
        pred = predicted[name].detach().to(torch.float64)
        pred = pred.mean(dim=0) if pred.dim() == 2 else pred
        obs = torch.as_tensor(obs, dtype=torch.float64)
        nd = float(normalized_deviation(pred, obs)) if bool(obs.abs().sum() > 0) else None
        rows.append((name, window, nd, float(obs.sum()), float(pred.sum())))
    schema = {
        "series": pl.String,
        "window": pl.String,
        "nd": pl.Float64,
        "observed": pl.Float64,
        "predicted": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


def plot_fit(
    observed: Mapping[str, torch.Tensor],
    predicted: Mapping[str, torch.Tensor],
    path: str | Path,
    *,
    split: int | None = None,
    title: str = "",
) -> Path:
    """Save a figure with one panel per series: data points, member-mean fit and its 5-95 % band.

    Args:
        observed: name → ``[T]``.
        predicted: name → ``[B, T]``.
        split: index where the forecast starts (a vertical line), if any.
    """
    from matplotlib.figure import Figure  # no pyplot: the user's backend is left alone

    names = list(observed)
    fig = Figure(figsize=(8, 2.2 * len(names)))
    axes = fig.subplots(len(names), 1, squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        obs = torch.as_tensor(observed[name], dtype=torch.float64)
        pred = predicted[name].detach().to(torch.float64)
        t = torch.arange(obs.numel())
        ax.plot(t, obs, ".", ms=3, color="k", label="data")
        ax.plot(t, pred.mean(dim=0), color="C0", label="model (mean)")
        if pred.shape[0] > 1:
            lo, hi = torch.quantile(pred, torch.tensor([0.05, 0.95], dtype=pred.dtype), dim=0)
            ax.fill_between(t, lo, hi, color="C0", alpha=0.25, lw=0, label="5-95 %")
        if split is not None:
            ax.axvline(split, color="C3", ls="--", lw=1, label="forecast start")
        ax.set_ylabel(name)
    axes[0, 0].legend(loc="upper right", fontsize=7)
    axes[-1, 0].set_xlabel("day")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


def write_report(
    folder: str | Path,
    tables: Mapping[str, pl.DataFrame],
    record: Mapping[str, Any],
) -> Path:
    """Write each table as CSV and ``record`` as ``calibration.json`` (standard JSON: NaN/Inf
    become null, listed under ``non_finite``) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        table.write_csv(folder / f"{name}.csv")
    (folder / "calibration.json").write_text(dumps(record, indent=2) + "\n")
    return folder
