"""Live charts: metric bands over members (per scenario in a study) and the paired difference so
far, written as SVG for the browser to draw."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np
import polars as pl

from populace.engine.study import StudyResult

#: most points drawn per line: longer histories are thinned evenly (the last step always kept).
MAX_POINTS = 400


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


#: line colours (matplotlib's tab10), one per scenario.
COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
#: chart geometry in px: width, panel height, margins (left, right, top, bottom).
WIDTH, PANEL, MARGIN = 640, 150, (64, 12, 20, 24)


def chart(
    steps: np.ndarray,
    columns: dict[str, np.ndarray],
    metrics: Sequence[str],
    *,
    scenarios: Sequence[str] = (),
    seeds: int = 1,
    difference: str | None = None,
    level: float = 0.9,
) -> str:
    """SVG of one panel per metric (mean line and ``level`` band over members, one line per
    scenario of a study), plus one panel of the paired difference of ``difference`` vs the
    baseline (study only). The browser draws it: writing it costs the simulation's process a
    few milliseconds, where a matplotlib figure costs hundreds.

    Args:
        steps: ``[T]`` recorded steps.
        columns: metric → ``[T, B]`` (members ``s * seeds + k`` in a study).
    """
    idx = thinned(len(steps))
    x = steps[idx].astype(np.float64)
    groups = list(scenarios) or [""]
    panels: list[tuple[str, list[tuple[str, str, np.ndarray]]]] = []
    for name in metrics:
        values = columns[name][idx]
        lines = []
        for s, group in enumerate(groups):
            part = values[:, s * seeds : (s + 1) * seeds] if scenarios else values
            lines.append((group, COLOURS[s % len(COLOURS)], part))
        panels.append((name, lines))
    if difference:
        values = columns[difference][idx]
        lines = [
            (groups[s], COLOURS[s % len(COLOURS)], paired_difference(values, seeds, s))
            for s in range(1, len(groups))
        ]
        panels.append((f"Δ {difference} vs {groups[0]} (paired)", lines))
    height = PANEL * len(panels)
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height}' "
        f"viewBox='0 0 {WIDTH} {height}' font-family='sans-serif' font-size='10'>"
    ]
    for i, (title, lines) in enumerate(panels):
        parts.append(_panel(i * PANEL, title, x, lines, level, zero=title.startswith("Δ")))
    if scenarios:
        for s, group in enumerate(groups):
            parts.append(
                f"<text x='{MARGIN[0] + 8 + 90 * s}' y='14' fill='{COLOURS[s % len(COLOURS)]}'>"
                f"{html.escape(group)}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _panel(top: float, title: str, x: np.ndarray, lines, level: float, zero: bool) -> str:
    left, right, pad_top, pad_bottom = MARGIN
    x0, x1, y0, y1 = left, WIDTH - right, top + pad_top, top + PANEL - pad_bottom
    bands = [(label, colour, *band(values, level)) for label, colour, values in lines]
    lo = min((float(b[3].min()) for b in bands if len(x)), default=0.0)
    hi = max((float(b[4].max()) for b in bands if len(x)), default=1.0)
    if zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 1.0, hi + 1.0
    lo, hi = lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)
    xa, xb = (float(x[0]), float(x[-1])) if len(x) else (0.0, 1.0)
    if xb <= xa:
        xb = xa + 1.0

    def px(v):
        return x0 + (np.asarray(v, dtype=np.float64) - xa) / (xb - xa) * (x1 - x0)

    def py(v):
        return y1 - (np.asarray(v, dtype=np.float64) - lo) / (hi - lo) * (y1 - y0)

    out = [
        f"<rect x='{x0}' y='{y0}' width='{x1 - x0}' height='{y1 - y0}' fill='none' stroke='#999'/>"
    ]
    for t in ticks(lo, hi):
        y = float(py(t))
        out.append(f"<line x1='{x0}' x2='{x1}' y1='{y:.1f}' y2='{y:.1f}' stroke='#eee'/>")
        out.append(f"<text x='{x0 - 4}' y='{y + 3:.1f}' text-anchor='end'>{t:.4g}</text>")
    for t in ticks(xa, xb):
        xv = float(px(t))
        out.append(f"<text x='{xv:.1f}' y='{y1 + 12}' text-anchor='middle'>{t:.4g}</text>")
    if zero:
        y = float(py(0.0))
        out.append(f"<line x1='{x0}' x2='{x1}' y1='{y:.1f}' y2='{y:.1f}' stroke='#888'/>")
    for _, colour, mean, b_lo, b_hi in bands:
        if not len(x):
            continue
        xs = px(x)
        if not np.array_equal(b_lo, b_hi):
            ring = np.concatenate([xs, xs[::-1]]), py(np.concatenate([b_hi, b_lo[::-1]]))
            out.append(
                f"<polygon points='{_points(*ring)}' fill='{colour}' fill-opacity='0.2' "
                "stroke='none'/>"
            )
        out.append(
            f"<polyline points='{_points(xs, py(mean))}' fill='none' stroke='{colour}' "
            "stroke-width='1.5'/>"
        )
    out.append(f"<text x='{x0 + 4}' y='{y0 + 12}' font-weight='bold'>{html.escape(title)}</text>")
    return "".join(out)


def _points(xs: np.ndarray, ys: np.ndarray) -> str:
    return " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(xs.tolist(), ys.tolist(), strict=True))


def ticks(lo: float, hi: float, most: int = 5) -> list[float]:
    """Round values (1, 2 or 5 × 10^k apart) inside ``[lo, hi]``, at most ``most`` + 1."""
    span = hi - lo
    if not span > 0:
        return [lo]
    raw = span / most
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step) * step
    return [first + k * step for k in range(int((hi - first) / step) + 1)]


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
