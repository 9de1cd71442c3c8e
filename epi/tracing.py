"""Contact tracing over CSR contact layers, and quarantine of traced contacts.

When an agent is diagnosed, each of its contacts on layer l is traced with probability
``trace_coverage[l]`` per unit of contact weight: an agent with ``n_l`` diagnosed contacts
(weighted) on layer l escapes tracing with probability ``prod_l (1 - coverage_l)^{n_l}``,
counted from the diagnosed agents' rows of each layer only. A traced agent is told
``trace_delay`` days later (0: the same day, before that day's transmission) and quarantines for
``quarantine_days``; in quarantine its contacts on each layer are multiplied by
``quarantine[layer]``, on both ends. Diagnosed, isolating, hospitalised and dead agents are not
quarantined. Only contact layers can be traced: a well-mixed channel has no contact list.

State (:class:`QuarantineState`): ``notified_at: [B, N]`` the day a traced agent is told
(-1: none pending); ``quarantined_until: [B, N]`` the first day out of quarantine (-1: never).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from populace.engine import Context, Params, State, member_view, param, tensor_field
from populace.epi.contact import row_edges


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuarantineState(State):
    """State fields of tracing and quarantine (mix into a model's state)."""

    notified_at: torch.Tensor = tensor_field("B", "N")
    quarantined_until: torch.Tensor = tensor_field("B", "N")


@dataclasses.dataclass(frozen=True)
class TracingParams(Params):
    """Tracing and quarantine params (mix into a model's params; its data has a ``layer``
    axis)."""

    trace_coverage: float | torch.Tensor = param(
        0.0,
        low=0,
        high=1,
        unit="probability",
        axes=("layer",),
        doc="a diagnosed agent's contact on the layer is traced",
    )
    trace_delay: float | torch.Tensor = param(
        0.0, low=0, unit="days", doc="from diagnosis to the contact being told (whole days)"
    )
    quarantine: float | torch.Tensor = param(
        0.3,
        low=0,
        high=1,
        unit="x contacts",
        axes=("layer",),
        doc="contacts a quarantined agent keeps on the layer",
    )
    quarantine_days: float | torch.Tensor = param(
        14.0, low=0, unit="days", doc="quarantine of a traced contact"
    )


def initial(ctx: Context, agents: int) -> dict[str, torch.Tensor]:
    """:class:`QuarantineState` fields before any tracing."""
    none = torch.full((ctx.members, agents), -1.0, dtype=ctx.dtype, device=ctx.device)
    return {"notified_at": none, "quarantined_until": none}


def quarantined(state: QuarantineState, ctx: Context) -> torch.Tensor:
    """``[B, N]`` bool: agents in quarantine today."""
    return state.quarantined_until > ctx.step


def traced_probability(
    diagnosed: torch.Tensor,
    layers: Sequence[torch.Tensor],
    coverage: Sequence[torch.Tensor],
) -> torch.Tensor:
    """``[B, N]``: probability that each agent is traced from today's diagnoses.

    The diagnosed agents' rows of each layer are their contacts: only those rows are read
    (a day diagnoses few agents), one ``nonzero`` finds them.

    Args:
        diagnosed: ``[B, N]`` 0/1, agents diagnosed today.
        layers: CSR ``[N, N]`` contact layers (row j: agent j's contacts and weights).
        coverage: per layer, ``[]`` or ``[B]`` probability a contact (of weight 1) is traced.
    """
    b, n = diagnosed.shape
    log_escape = torch.zeros_like(diagnosed)
    mb, mj = torch.nonzero(diagnosed.detach() > 0.5, as_tuple=True)
    for layer, c in zip(layers, coverage, strict=True):
        owner, i, w = row_edges(layer, mj)
        member = mb[owner]
        per_contact = torch.log1p(-torch.as_tensor(c, dtype=diagnosed.dtype).expand(b))[member]
        w = w.to(diagnosed.dtype)
        term = torch.where(w > 0, w * per_contact, torch.zeros_like(w))  # -inf at coverage 1
        log_escape = log_escape.index_put((member, i), term, accumulate=True)
    return -torch.expm1(log_escape)


def trace_and_quarantine(
    state: QuarantineState,
    params: Params,
    ctx: Context,
    *,
    diagnosed: torch.Tensor,
    layers: Sequence[torch.Tensor],
    layer_codes: Sequence[int],
    exempt: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Today's tracing from ``diagnosed`` and the quarantines that start today.

    Args:
        diagnosed: ``[B, N]`` 0/1 diagnosed today.
        layers: the CSR layers traced, with ``layer_codes`` their codes on the ``layer`` axis.
        exempt: ``[B, N]`` bool, agents never quarantined (diagnosed, isolating, hospitalised,
            dead).

    Returns:
        the new :class:`QuarantineState` fields.
    """
    t = ctx.step
    n = diagnosed.shape[1]
    u = ctx.rng.uniform(n, dtype=diagnosed.dtype)
    coverage = [params.trace_coverage[..., k] for k in layer_codes]
    traced = torch.zeros_like(exempt)
    # nothing to trace without layers, coverage or diagnoses (the uniforms are drawn anyway)
    if layers and bool((params.trace_coverage > 0).any()) and bool((diagnosed > 0).any()):
        traced = (u < traced_probability(diagnosed, layers, coverage)) & ~exempt
    told = t + torch.round(member_view(params.trace_delay, 2))
    pending = state.notified_at >= 0
    notified_at = torch.where(
        traced,
        torch.where(pending, torch.minimum(state.notified_at, told), told),
        state.notified_at,
    )
    start = (notified_at >= 0) & (notified_at <= t) & ~exempt
    until = torch.maximum(state.quarantined_until, t + member_view(params.quarantine_days, 2))
    return {
        "notified_at": torch.where(start | exempt, torch.full_like(notified_at, -1.0), notified_at),
        "quarantined_until": torch.where(start, until, state.quarantined_until),
    }


def layer_factors(
    isolating: torch.Tensor, quarantined: torch.Tensor, params: Params, codes: Sequence[int]
) -> list[torch.Tensor]:
    """Per layer (codes on the ``layer`` axis), ``[B, N]`` contact factor of each agent:
    ``isolation[l]`` while isolating, else ``quarantine[l]`` while quarantined, else 1."""
    out = []
    for k in codes:
        iso = member_view(params.isolation[..., k], 2)
        quar = member_view(params.quarantine[..., k], 2)
        one = torch.ones((), dtype=iso.dtype, device=iso.device)
        out.append(torch.where(isolating, iso, torch.where(quarantined, quar, one)))
    return out
