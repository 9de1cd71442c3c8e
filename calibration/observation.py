"""Observation model: from a model's metric (e.g. daily onsets) to the expected observed series.

Each observed series is a :class:`Series`: a model metric column, scaled by a **ratio** (the
fraction of onsets reported as cases, or that end as deaths) and spread by a **delay
distribution** (onset to report), then multiplied by the population ``multiplier``::

    expected[t] = multiplier * ratio[t] * sum_k w_k(delay) metric[t - k]

``w`` is a discretised gamma distribution of mean ``delay`` and coefficient of variation ``cv``
(its density at the day midpoints, normalised over ``0..max_delay``), differentiable in the mean.
A ratio may be a :class:`~populace.engine.Schedule` over data rows (a time-varying ascertainment):
its values are knots at the pieces' starts, linearly interpolated in between (the last holds on),
so the ratio changes smoothly (the problem's smoothness penalty keeps successive knots close).

The observation params (ratios, delays, the negative-binomial ``dispersion``) are not fields of
the model: :func:`observation_declarations` declares them, with bounds, like model params.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from populace.engine import Schedule
from populace.engine.params import Declaration

#: the longest delay considered (days); mass beyond it is dropped before normalising.
MAX_DELAY = 42


@dataclasses.dataclass(frozen=True)
class Series:
    """How one observed series comes from the model.

    Attributes:
        metric: model metric column (e.g. ``cases_BX``).
        ratio: observation param scaling it (e.g. ``ascertainment``, ``fatality``); None: 1.
        delay: observation param of the mean delay in days; None: no delay.
        cv: coefficient of variation of the delay distribution.
        dispersion: observation param of the negative-binomial size; None: the problem's.
        weight: weight of this series' loss in the objective.
    """

    metric: str
    ratio: str | None = None
    delay: str | None = None
    cv: float = 0.5
    dispersion: str | None = None
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.cv) and self.cv > 0):
            raise ValueError(f"series of {self.metric!r}: cv must be finite and > 0, got {self.cv}")
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(
                f"series of {self.metric!r}: weight must be finite and > 0, got {self.weight}"
            )

    def params(self) -> list[tuple[str, str]]:
        """(observation param name, kind: ``ratio``, ``delay`` or ``dispersion``) pairs."""
        kinds = {"ratio": self.ratio, "delay": self.delay, "dispersion": self.dispersion}
        return [(name, kind) for kind, name in kinds.items() if name is not None]


#: declarations of the observation params by kind: default, bounds, unit, doc.
KINDS = {
    "ratio": Declaration(0.2, 0.0, 1.0, "fraction", "share of the metric that is observed"),
    "delay": Declaration(5.0, 0.0, 30.0, "days", "mean delay from the metric to the report"),
    "dispersion": Declaration(
        10.0, 0.0, None, "size", "negative-binomial size r (variance mu + mu^2 / r)"
    ),
}


def observation_declarations(series: dict[str, Series], loss: str) -> dict[str, Declaration]:
    """Name → Declaration of every observation param the ``series`` (and a ``negbin`` loss's
    shared ``dispersion``) use.

    Raises:
        ValueError: one name used for two kinds (e.g. a ratio and a delay).
    """
    out: dict[str, tuple[str, Declaration]] = {}
    named = [pair for s in series.values() for pair in s.params()]
    if loss == "negbin" and any(s.dispersion is None for s in series.values()):
        named.append(("dispersion", "dispersion"))
    for name, kind in named:
        if name in out and out[name][0] != kind:
            raise ValueError(f"observation param {name!r} is both a {out[name][0]} and a {kind}")
        out[name] = (kind, KINDS[kind])
    return {name: decl for name, (_, decl) in out.items()}


def delay_weights(
    delay: torch.Tensor | float, cv: float = 0.5, max_delay: int = MAX_DELAY
) -> torch.Tensor:
    """Discretised gamma delay distribution of mean ``delay`` (``[]`` or ``[B]``).

    Returns:
        ``[max_delay + 1]`` (or ``[B, max_delay + 1]``), rows summing to 1; a mean of 0 puts all
        mass on day 0.
    """
    if not cv > 0 or max_delay < 0:
        raise ValueError(f"cv must be > 0 and max_delay >= 0, got {cv}, {max_delay}")
    d = delay if isinstance(delay, torch.Tensor) else torch.tensor(float(delay))
    if not d.is_floating_point():
        d = d.to(torch.get_default_dtype())
    if d.dim() > 1:
        raise ValueError(f"delay must be [] or [B], got shape {tuple(d.shape)}")
    shape = 1.0 / cv**2
    k = torch.arange(max_delay + 1, dtype=d.dtype, device=d.device) + 0.5
    scale = (d.unsqueeze(-1) * cv**2).clamp_min(1e-3)  # a mean near 0: all mass on day 0
    logits = (shape - 1) * torch.log(k) - k / scale
    return torch.softmax(logits, dim=-1)


def ratio_rows(ratio: torch.Tensor | Schedule | float, rows: int, dtype, device) -> torch.Tensor:
    """A ratio as ``[]``/``[B]`` (constant) or ``[T]``/``[B, T]`` per row.

    A Schedule's values ``[K]`` (or ``[K, B]``) are knots at its starts, linearly interpolated
    in between; the last knot holds to the end.
    """
    if not isinstance(ratio, Schedule):
        return torch.as_tensor(ratio, dtype=dtype, device=device)
    values = ratio.values.to(dtype=dtype, device=device)
    starts = torch.tensor(ratio.starts, dtype=dtype, device=device)
    t = torch.arange(rows, dtype=dtype, device=device)
    right = torch.searchsorted(starts, t, right=True).clamp(max=len(ratio.starts) - 1)
    left = (right - 1).clamp(min=0)
    span = (starts[right] - starts[left]).clamp_min(1.0)
    frac = ((t - starts[left]) / span).clamp(0.0, 1.0)
    frac = torch.where(right == left, torch.zeros_like(frac), frac)  # past the last knot
    frac = frac.reshape(-1, *([1] * (values.dim() - 1)))
    out = values[left] * (1 - frac) + values[right] * frac  # [T, ...]
    return out if out.dim() == 1 else out.movedim(0, -1)  # [B, T]


def expected_series(
    metric: torch.Tensor,
    ratio: torch.Tensor | Schedule | float = 1.0,
    delay: torch.Tensor | float | None = None,
    *,
    cv: float = 0.5,
    multiplier: float = 1.0,
    max_delay: int = MAX_DELAY,
) -> torch.Tensor:
    """Expected observed series from a model metric.

    Args:
        metric: ``[B, T]`` per-row model metric (may carry gradients).
        ratio: ``[]``, ``[B]`` or a Schedule over rows (see :func:`ratio_rows`).
        delay: ``[]`` or ``[B]`` mean delay in days; None: no delay.
        multiplier: e.g. ``real population / simulated agents``.

    Returns:
        ``[B, T]``: row t sums the metric up to ``max_delay`` rows earlier (earlier rows are 0).
    """
    if metric.dim() != 2:
        raise ValueError(f"metric must be [B, T], got shape {tuple(metric.shape)}")
    b, t = metric.shape
    out = metric
    if delay is not None:
        d = torch.as_tensor(delay, dtype=metric.dtype, device=metric.device)
        w = delay_weights(d, cv, max_delay).to(metric)  # [K] or [B, K]
        w = w.expand(b, -1) if w.dim() == 1 else w
        k = w.shape[-1]
        padded = torch.nn.functional.pad(metric, (k - 1, 0))  # [B, T + K - 1]
        windows = padded.unfold(1, k, 1)  # [B, T, K]: windows[b, t, j] = metric[b, t - (K-1) + j]
        out = (windows * w.flip(-1).unsqueeze(1)).sum(dim=-1)
    scale = ratio_rows(ratio, t, metric.dtype, metric.device)
    scale = scale.reshape(-1, 1) if scale.dim() == 1 and not isinstance(ratio, Schedule) else scale
    return multiplier * scale * out
