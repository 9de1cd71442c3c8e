"""Testing and isolation of positives.

Each day, from the state at the start of the day, an agent that is not waiting for a result,
not isolating and not dead is tested with a probability by its status: ``test_symptomatic``
(symptoms), ``test_quarantined`` (in quarantine, no symptoms) or ``test_other``. At most
``tests_per_100k`` tests a day are done, symptomatic agents first (then the others), at random
within each group. A test finds an infection in a detectable stage with probability
``test_sensitivity`` (no false positives); the positive result comes ``test_delay`` days later
(0: the same day), and the agent is diagnosed — counted as a reported case — and isolates for
``isolation_days``. While isolating, its contacts on each layer are multiplied by
``isolation[layer]`` (0: none kept), on both ends of each contact.

State (:class:`DiagnosisState`): ``result_at: [B, N]`` the day a pending positive result comes
(-1: none); ``isolated_until: [B, N]`` the first day no longer isolating (-1: never isolated);
``diagnosed: [B, N]`` 0/1 diagnosed today; ``tests: [B]`` tests done today.
"""

from __future__ import annotations

import dataclasses

import torch

from populace.engine import Context, Params, State, member_view, param, tensor_field
from populace.epi.rationing import ration


@dataclasses.dataclass(frozen=True, kw_only=True)
class DiagnosisState(State):
    """State fields of testing (mix into a model's state); see the module docstring."""

    result_at: torch.Tensor = tensor_field("B", "N")
    isolated_until: torch.Tensor = tensor_field("B", "N")
    diagnosed: torch.Tensor = tensor_field("B", "N", domain=(0, 1))
    tests: torch.Tensor = tensor_field("B")


@dataclasses.dataclass(frozen=True)
class DiagnosisParams(Params):
    """Testing and isolation params (mix into a model's params; its data has a ``layer`` axis)."""

    test_symptomatic: float | torch.Tensor = param(
        0.0, low=0, high=1, unit="probability/day", doc="an agent with symptoms is tested"
    )
    test_other: float | torch.Tensor = param(
        0.0, low=0, high=1, unit="probability/day", doc="an agent without symptoms is tested"
    )
    test_quarantined: float | torch.Tensor = param(
        0.0,
        low=0,
        high=1,
        unit="probability/day",
        doc="a quarantined agent without symptoms is tested",
    )
    test_sensitivity: float | torch.Tensor = param(
        1.0, low=0, high=1, unit="probability", doc="a test of a detectable infection is positive"
    )
    test_delay: float | torch.Tensor = param(
        0.0, low=0, unit="days", doc="from test to result (rounded to whole days)"
    )
    tests_per_100k: float | torch.Tensor = param(
        1e5, low=0, unit="tests/day per 100k agents", doc="daily testing capacity (1e5: none)"
    )
    isolation: float | torch.Tensor = param(
        0.2,
        low=0,
        high=1,
        unit="x contacts",
        axes=("layer",),
        doc="contacts a diagnosed agent keeps on the layer while isolating",
    )
    isolation_days: float | torch.Tensor = param(
        10.0, low=0, unit="days", doc="isolation after diagnosis"
    )


def initial(ctx: Context, agents: int) -> dict[str, torch.Tensor]:
    """:class:`DiagnosisState` fields before any test."""
    none = torch.full((ctx.members, agents), -1.0, dtype=ctx.dtype, device=ctx.device)
    return {
        "result_at": none,
        "isolated_until": none,
        "diagnosed": torch.zeros_like(none),
        "tests": torch.zeros(ctx.members, dtype=ctx.dtype, device=ctx.device),
    }


def isolating(state: DiagnosisState, ctx: Context) -> torch.Tensor:
    """``[B, N]`` bool: agents isolating today."""
    return state.isolated_until > ctx.step


def diagnose(
    state: DiagnosisState,
    params: Params,
    ctx: Context,
    *,
    symptomatic: torch.Tensor,
    detectable: torch.Tensor,
    quarantined: torch.Tensor,
    alive: torch.Tensor,
    order: torch.Tensor,
    agents: int,
) -> dict[str, torch.Tensor]:
    """Today's tests, results and isolations; returns the new :class:`DiagnosisState` fields.

    Args:
        symptomatic, detectable, quarantined, alive: ``[B, N]`` bool, from the state at the
            start of the day.
        order: ``[B, N]`` random order of agents (who is tested when tests run short).
        agents: the population size the capacity refers to.
    """
    t = ctx.step
    n = symptomatic.shape[1]
    u_test = ctx.rng.uniform(n, dtype=ctx.dtype)
    u_positive = ctx.rng.uniform(n, dtype=ctx.dtype)
    rates = (params.test_symptomatic, params.test_quarantined, params.test_other)
    result_at = state.result_at
    tested = torch.zeros_like(alive)
    if any(bool((r > 0).any()) for r in rates):  # (the uniforms are drawn either way)
        free = (state.result_at < 0) & ~isolating(state, ctx) & alive
        p = torch.where(
            symptomatic,
            member_view(params.test_symptomatic, 2),
            torch.where(quarantined, member_view(rates[1], 2), member_view(rates[2], 2)),
        )
        tested = free & (u_test < p)
        cap = torch.floor(member_view(params.tests_per_100k, 1) * agents / 1e5)
        if bool((cap < n).any()):  # tests may run short: symptomatic agents first
            cap = cap.expand(ctx.members)
            first = ration(tested & symptomatic, order, cap)
            tested = first | ration(tested & ~symptomatic, order, cap - first.sum(dim=1))
        positive = tested & detectable & (u_positive < member_view(params.test_sensitivity, 2))
        delay = torch.round(member_view(params.test_delay, 2))
        result_at = torch.where(positive, t + delay, result_at)
    due = (result_at >= 0) & (result_at <= t)
    days = member_view(params.isolation_days, 2)
    return {
        "result_at": torch.where(due, torch.full_like(result_at, -1.0), result_at),
        "isolated_until": torch.where(due, t + days, state.isolated_until),
        "diagnosed": due.to(ctx.dtype),
        "tests": tested.sum(dim=1).to(ctx.dtype),
    }
