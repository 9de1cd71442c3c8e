"""Live charts: metric bands over members (per scenario in a study) and the paired difference so
far, drawn as PNG bytes on a matplotlib Figure (no pyplot, so no backend is switched)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from populace.engine.study import StudyResult

#: most points drawn per line: longer histories are thinned evenly (the last step always kept).
MAX_POINTS = 800


def band(values: np.ndarray, level: float = 0.9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and central ``level`` interval over members.

    Args:
        values: ``[T, B]``.

    Returns:
        mean, lo, hi: each ``[T]``.
    """
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2], axis=1)
    return values.mean(axis=1), lo, hi


def thinned(length: int, most: int = MAX_POINTS) -> np.ndarray:
    """Indices of at most ``most`` evenly spread rows of ``length``, the last one included."""
    if length <= most:
        return np.arange(length)
    return np.unique(np.linspace(0, length - 1, most).round().astype(np.int64))


def paired_difference(values: np.ndarray, seeds: int, scenario: int) -> np.ndarray:
    """``[T, seeds]`` scenario − baseline, seed k against seed k (members ``s * seeds + k``)."""
    return values[:, scenario * seeds : (scenario + 1) * seeds] - values[:, :seeds]


def chart(
    steps: np.ndarray,
    columns: dict[str, np.ndarray],
    metrics: Sequence[str],
    *,
    scenarios: Sequence[str] = (),
    seeds: int = 1,
    difference: str | None = None,
    level: float = 0.9,
    width: float = 6.4,
) -> bytes:
    """PNG of one panel per metric (mean line and ``level`` band over members, one line per
    scenario of a study), plus one panel of the paired difference of ``difference`` vs the
    baseline (study only).

    Args:
        steps: ``[T]`` recorded steps.
        columns: metric → ``[T, B]`` (members ``s * seeds + k`` in a study).
    """
    panels = list(metrics) + ([f"{difference}: scenario − baseline"] if difference else [])
    fig = Figure(figsize=(width, 1.9 * max(len(panels), 1) + 0.3), dpi=80)
    FigureCanvasAgg(fig)
    idx = thinned(len(steps))
    x = steps[idx]
    groups = list(scenarios) or [None]
    for i, name in enumerate(metrics):
        ax = fig.add_subplot(len(panels), 1, i + 1)
        values = columns[name][idx]
        for s, group in enumerate(groups):
            part = values[:, s * seeds : (s + 1) * seeds] if group is not None else values
            _draw_band(ax, x, part, level, label=group)
        ax.set_ylabel(name)
        if scenarios and i == 0:
            ax.legend(fontsize=7, loc="upper left")
    if difference:
        ax = fig.add_subplot(len(panels), 1, len(panels))
        values = columns[difference][idx]
        for s in range(1, len(groups)):
            ax.plot([], [])  # scenario s keeps the colour it has in the panels above
            _draw_band(ax, x, paired_difference(values, seeds, s), level, label=groups[s])
        ax.axhline(0.0, color="0.5", lw=0.8)
        ax.set_ylabel(f"Δ {difference}")
        ax.set_title("paired difference vs baseline (same seeds)", fontsize=8)
    for ax in fig.axes:
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    if fig.axes:
        fig.axes[-1].set_xlabel("step")
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def _draw_band(ax, x: np.ndarray, values: np.ndarray, level: float, label: str | None) -> None:
    mean, lo, hi = band(values, level)
    (line,) = ax.plot(x, mean, lw=1.4, label=label)
    if values.shape[1] > 1:
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, lw=0)


def latest(
    columns: dict[str, np.ndarray], scenarios: Sequence[str] = (), seeds: int = 1
) -> list[tuple[str, str, float]]:
    """(metric, scenario or "", mean over members) at the last recorded step."""
    rows = []
    for name, values in columns.items():
        last = values[-1]
        if scenarios:
            for s, group in enumerate(scenarios):
                rows.append((name, group, float(last[s * seeds : (s + 1) * seeds].mean())))
        else:
            rows.append((name, "", float(last.mean())))
    return rows


def difference_table(
    steps: np.ndarray,
    values: np.ndarray,
    metric: str,
    scenarios: Sequence[str],
    seeds: int,
    reduce: str = "final",
    level: float = 0.9,
) -> pl.DataFrame:
    """The study's paired difference so far, as :meth:`StudyResult.difference` computes it on
    the steps recorded until now (``final``: at the latest step).

    Args:
        steps: ``[T]``; values: ``[T, B]`` of ``metric``.
    """
    t, b = values.shape
    member = np.tile(np.arange(b), t)
    frame = pl.DataFrame(
        {
            "scenario": np.asarray(scenarios, dtype=object)[member // seeds].tolist(),
            "seed": member % seeds,
            "step": np.repeat(steps, b),
            metric: values.reshape(-1),
        }
    )
    partial = StudyResult(frame, list(scenarios), seeds, result=None)
    return partial.difference(metric, reduce, level=level)
