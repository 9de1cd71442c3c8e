"""Birth and death at fixed capacity: an ``alive`` mask keeps tensor shapes static."""

from __future__ import annotations

import torch

from populace.engine.state import S


def claim_slots(alive: torch.Tensor, count: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick free slots for newborn agents, lowest index first.

    Args:
        alive: ``[B, N]`` bool, occupied slots.
        count: ``[B]`` int, newborns wanted per member.

    Returns:
        new: ``[B, N]`` bool, the claimed slots (``new & alive`` is empty).
        overflow: ``[B]`` bool, members that wanted more slots than were free; they get all
        the free slots, and the caller decides (grow capacity, or drop births and say so).
    """
    _check_alive(alive)
    if count.shape != alive.shape[:1] or count.is_floating_point():
        raise ValueError(
            f"count must be a [B={alive.shape[0]}] integer tensor, got {count.dtype} "
            f"{tuple(count.shape)}"
        )
    free = ~alive
    rank = torch.cumsum(free, dim=1)  # 1-based rank of each free slot
    new = free & (rank <= count.view(-1, 1))
    overflow = count > free.sum(dim=1)
    return new, overflow


def _check_alive(alive: torch.Tensor) -> None:
    if alive.dtype != torch.bool or alive.dim() != 2:
        raise ValueError(
            f"alive must be a [B, N] bool tensor, got {alive.dtype} {tuple(alive.shape)}"
        )


def compaction_order(alive: torch.Tensor) -> torch.Tensor:
    """``[B, N]`` int64 permutation putting alive agents (``alive``: ``[B, N]`` bool) first, in
    their current order."""
    _check_alive(alive)
    key = (~alive).to(torch.int8)
    return torch.sort(key, dim=1, stable=True).indices


def compact(state: S, alive: torch.Tensor) -> S:
    """Reorder every agent field so alive agents (``alive``: ``[B, N]`` bool) come first
    (stable)."""
    return state.take_agents(compaction_order(alive))
