"""Plotting helpers for notebooks: each returns a matplotlib figure or animation to restyle."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import polars as pl
import torch
from matplotlib import animation


def plot_series(
    metrics: pl.DataFrame,
    metric: str,
    by: str | None = None,
    level: float = 0.9,
    ax: plt.Axes | None = None,
    x: str = "step",
) -> plt.Figure:
    """Mean of ``metric`` over members/seeds with a central ``level`` band, one line per ``by``.

    Args:
        metrics: a long table with columns ``x``, ``metric`` and optionally ``by`` (e.g.
            ``Result.metrics`` or ``StudyResult.metrics`` with ``by="scenario"``).
    """
    if metric not in metrics.columns:
        raise KeyError(f"unknown metric {metric!r}; columns: {metrics.columns}")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    groups = [None] if by is None else metrics[by].unique(maintain_order=True).to_list()
    lo, hi = (1 - level) / 2, (1 + level) / 2
    for g in groups:
        part = metrics if g is None else metrics.filter(pl.col(by) == g)
        s = (
            part.group_by(x)
            .agg(
                pl.col(metric).mean().alias("mean"),
                pl.col(metric).quantile(lo, "linear").alias("lo"),
                pl.col(metric).quantile(hi, "linear").alias("hi"),
            )
            .sort(x)
        )
        (line,) = ax.plot(s[x], s["mean"], label=str(g) if g is not None else metric)
        ax.fill_between(s[x], s["lo"], s["hi"], color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel(x)
    # overlaid calls of several metrics on one axes name them all, not only the last one
    shown = [m for m in ax.get_ylabel().split(", ") if m]
    ax.set_ylabel(", ".join(shown + ([metric] if metric not in shown else [])))
    ax.legend(title=by)
    return ax.figure


def animate_field(
    frames: torch.Tensor | Sequence[torch.Tensor],
    interval: int = 100,
    cmap: str = "magma",
    positions: torch.Tensor | None = None,
) -> animation.FuncAnimation:
    """Animate a 2-D field over time, optionally with agents on top.

    Args:
        frames: ``[T, H, W]`` values (e.g. a pheromone field recorded every k steps).
        positions: ``[T, N, 2]`` agent (x, y) in cell units, or None.

    Returns:
        A FuncAnimation: ``.to_jshtml()`` shows it inline, ``save_animation`` writes GIF/MP4.
    """
    frames = torch.stack(list(frames)) if not isinstance(frames, torch.Tensor) else frames
    if frames.dim() != 3:
        raise ValueError(f"frames must be [T, H, W], got {tuple(frames.shape)}")
    if positions is not None and (positions.dim() != 3 or positions.shape[0] != frames.shape[0]):
        raise ValueError(f"positions must be [T, N, 2] with T={frames.shape[0]}")
    data = frames.detach().cpu().numpy()
    fig, ax = plt.subplots(figsize=(5, 5))
    img = ax.imshow(
        data[0], cmap=cmap, origin="lower", vmin=float(data.min()), vmax=float(data.max())
    )
    dots = None
    if positions is not None:
        pos = positions.detach().cpu().numpy()
        dots = ax.scatter(pos[0, :, 0], pos[0, :, 1], s=2, c="cyan")
    ax.set_axis_off()

    def update(t: int):
        img.set_data(data[t])
        if dots is not None:
            dots.set_offsets(pos[t])
        return (img,) if dots is None else (img, dots)

    anim = animation.FuncAnimation(fig, update, frames=data.shape[0], interval=interval, blit=True)
    plt.close(fig)
    return anim


def save_animation(anim: animation.FuncAnimation, path: str | Path, fps: int = 10) -> Path:
    """Write an animation as GIF (pillow) or MP4 (ffmpeg, if installed) by the file suffix."""
    path = Path(path)
    if path.suffix == ".gif":
        writer = animation.PillowWriter(fps=fps)
    elif path.suffix == ".mp4":
        if not animation.FFMpegWriter.isAvailable():
            raise RuntimeError("writing MP4 needs ffmpeg on PATH; use a .gif path instead")
        writer = animation.FFMpegWriter(fps=fps)
    else:
        raise ValueError(f"unknown animation format {path.suffix!r}; valid: .gif, .mp4")
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")  # the writer needs it
    try:
        anim.save(tmp, writer=writer)
        os.replace(tmp, path)  # a failure leaves no partial file
    finally:
        tmp.unlink(missing_ok=True)
    return path
