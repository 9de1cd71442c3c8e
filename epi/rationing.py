"""Rationing a scarce resource (hospital beds, tests, vaccine doses) among eligible agents.

Each member keeps a random order of its agents, drawn once at init (:func:`random_order`, or
:func:`grouped_order` for an order grouped by a static code such as the age band). Rationing
``q`` units among the eligible agents gives them to the first ``q`` eligible agents in that
order — a uniformly random subset, chosen with one cumulative sum (O(N), no sort per step) — so a
hard limit holds exactly and the choice is reproducible and the same in every scenario of a
study (common random numbers).
"""

from __future__ import annotations

import torch

from populace.engine import Context


def random_order(ctx: Context, agents: int) -> torch.Tensor:
    """``[B, N]`` int64: agents in a random order per member (``order[b, r]``: rank r's agent)."""
    return ctx.rng.permutation(agents)


def grouped_order(
    ctx: Context, group: torch.Tensor, first: torch.Tensor | None = None
) -> torch.Tensor:
    """``[B, N]`` int64: agents sorted by ``group`` (``[N]`` int64 codes), random within a group,
    or with ``first`` (``[N]`` numbers) the highest first within a group, ties in random order."""
    order = ctx.rng.permutation(group.numel())
    if first is not None:
        by_key = torch.sort(first[order], dim=1, descending=True, stable=True).indices
        order = order.gather(1, by_key)
    by_group = torch.sort(group[order], dim=1, stable=True).indices
    return order.gather(1, by_group)


def ration(
    eligible: torch.Tensor,
    order: torch.Tensor,
    quota: torch.Tensor,
    group: torch.Tensor | None = None,
) -> torch.Tensor:
    """The eligible agents that get one unit each, at most ``quota`` of them (per group).

    Args:
        eligible: ``[B, N]`` bool.
        order: ``[B, N]`` from :func:`random_order`, or from :func:`grouped_order` of ``group``.
        quota: ``[B]`` units per member, or ``[B, G]`` per group (integer-valued, >= 0).
        group: ``[N]`` int64 codes ``0..G-1`` with a ``[B, G]`` quota (the order must be grouped
            by them).

    Returns:
        ``[B, N]`` bool, a subset of ``eligible``: per member (and group), the first
        ``min(quota, eligible)`` eligible agents in ``order``.
    """
    in_order = eligible.gather(1, order)
    taken = torch.cumsum(in_order, dim=1, dtype=torch.int64)  # 1-based rank among the eligible
    if group is None:
        limit = quota.reshape(-1, 1)
    else:
        where = group[order[0]]  # [N]: the group of each rank (the same in every member)
        size = torch.bincount(group, minlength=quota.shape[1])
        start = torch.cumsum(size, 0) - size
        before = torch.cat([taken.new_zeros(taken.shape[0], 1), taken], dim=1)[:, start]  # [B, G]
        taken = taken - before[:, where]
        limit = quota[:, where]
    give = in_order & (taken <= limit)
    return torch.zeros_like(eligible).scatter(1, order, give)


def priority_quotas(
    counts: torch.Tensor, priority: torch.Tensor, total: torch.Tensor, u: torch.Tensor
) -> torch.Tensor:
    """Split ``total`` units among groups by strict priority: groups of higher priority are
    served first, groups of equal priority in proportion to their counts, priority 0 never.

    Args:
        counts: ``[B, G]`` eligible agents per group.
        priority: ``[G]`` or ``[B, G]`` >= 0.
        total: ``[B]`` units available (may be fractional).
        u: ``[B]`` uniforms: the fractional units are rounded systematically, so each group
            gets the floor or the ceiling of its share, the expected total is exact and the
            total never exceeds ``total`` rounded up.

    Returns:
        ``[B, G]`` integer-valued floats, each <= its count.
    """
    counts = counts.to(torch.float64)
    prio = priority.to(torch.float64).expand_as(counts)
    higher = prio.unsqueeze(1) > prio.unsqueeze(2)  # [B, G, G]: group c outranks group g
    equal = prio.unsqueeze(1) == prio.unsqueeze(2)
    ahead = (higher * counts.unsqueeze(1)).sum(dim=2)  # eligible agents served before g
    tied = (equal * counts.unsqueeze(1)).sum(dim=2)
    left = (total.to(torch.float64).unsqueeze(1) - ahead).clamp_min(0)
    share = counts * (left / tied.clamp_min(1)).clamp(max=1)
    share = torch.where(prio > 0, share, torch.zeros_like(share))
    edges = torch.floor(torch.cumsum(share, dim=1) + u.to(torch.float64).unsqueeze(1))
    out = torch.diff(edges, dim=1, prepend=torch.floor(u.to(torch.float64)).unsqueeze(1))
    return torch.minimum(out, counts)
