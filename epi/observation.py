"""Observation: metrics of an epidemic (counts, flows, per axis) and the recent case trend.

Metric factories return ``metric(state, params, ctx) -> [B]``; the ``*_by`` ones return a
:func:`~populace.engine.per` metric with one column per label of a model-data axis (``ctx.data``
holds the agents' codes on that axis, e.g. ``borough: [N]``).
"""

from __future__ import annotations

import torch

from populace.engine import AxisMetric, per
from populace.epi.disease import Disease
from populace.kernels.meanfield import group_sum


def compartment(disease: Disease, name: str):
    """Metric: agents in compartment ``name`` (``[B]``)."""
    c = disease.index(name)

    def metric(state, params, ctx) -> torch.Tensor:
        return state.health[:, c].sum(dim=1, dtype=torch.float64)  # exact counts at any N

    metric.__qualname__ = f"compartment({name!r})"
    return metric


def compartment_by(disease: Disease, name: str, axis: str, prefix: str | None = None) -> AxisMetric:
    """Metric per label of ``axis``: agents in compartment ``name`` (``[B, A]``)."""
    c = disease.index(name)

    def metric(state, params, ctx) -> torch.Tensor:
        values = state.health[:, c].to(torch.float64)
        return group_sum(values, ctx.data[axis], len(ctx.data.labels(axis)))

    metric.__qualname__ = f"compartment_by({name!r}, {axis!r})"
    return per(axis, metric, prefix)


def flow(field: str):
    """Metric: agents flagged in the ``[B, N]`` field ``field`` (e.g. ``onset``), ``[B]``."""

    def metric(state, params, ctx) -> torch.Tensor:
        return getattr(state, field).sum(dim=1, dtype=torch.float64)

    metric.__qualname__ = f"flow({field!r})"
    return metric


def flow_by(field: str, axis: str, prefix: str | None = None) -> AxisMetric:
    """Metric per label of ``axis``: agents flagged in ``field`` (``[B, A]``)."""

    def metric(state, params, ctx) -> torch.Tensor:
        values = getattr(state, field).to(torch.float64)
        return group_sum(values, ctx.data[axis], len(ctx.data.labels(axis)))

    metric.__qualname__ = f"flow_by({field!r}, {axis!r})"
    return per(axis, metric, prefix)


def append_cases(cases: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Roll a window of daily cases: ``cases: [B, W]`` (newest last) + ``new: [B]``."""
    return torch.cat([cases[:, 1:], new.to(cases.dtype).unsqueeze(1)], dim=1)


def case_trend(cases: torch.Tensor, agents: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This week's cases per 100k and their change (%) from the window's weekly average.

    Args:
        cases: ``[B, W]`` daily cases, newest last (W a multiple of 7).

    Returns:
        per_100k ``[B]``, change_pct ``[B]``.
    """
    window = cases.shape[1]
    week = cases[:, -7:].sum(dim=1)
    average = cases.sum(dim=1) / (window / 7)
    change = 100 * (week - average) / average.clamp_min(1.0)
    return week * 1e5 / agents, change


def compartments(disease, names: tuple[str, ...], label: str | None = None):
    """Metric: agents in any of the compartments ``names`` (``[B]``), e.g. every infectious
    stage of a :class:`~populace.epi.course.Course`."""
    rows = [disease.index(n) for n in names]

    def metric(state, params, ctx) -> torch.Tensor:
        return sum(state.health[:, r].sum(dim=1, dtype=torch.float64) for r in rows)

    metric.__qualname__ = f"compartments({label or '+'.join(names)!r})"
    return metric


def entries(disease, name: str):
    """Metric: agents that entered compartment ``name`` in the last step (``[B]``), from the
    ``entered`` codes of a :class:`~populace.epi.course.CourseState` (e.g. new deaths)."""
    c = disease.index(name)

    def metric(state, params, ctx) -> torch.Tensor:
        return (state.entered == c).sum(dim=1, dtype=torch.float64)

    metric.__qualname__ = f"entries({name!r})"
    return metric


def entries_by(disease, name: str, axis: str, prefix: str | None = None) -> AxisMetric:
    """Metric per label of ``axis``: agents that entered ``name`` in the last step."""
    c = disease.index(name)

    def metric(state, params, ctx) -> torch.Tensor:
        values = (state.entered == c).to(torch.float64)
        return group_sum(values, ctx.data[axis], len(ctx.data.labels(axis)))

    metric.__qualname__ = f"entries_by({name!r}, {axis!r})"
    return per(axis, metric, prefix)
