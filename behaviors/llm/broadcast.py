"""From archetype values to agents: gather by index, optional per-agent heterogeneity."""

from __future__ import annotations

import torch

from populace.behaviors.llm.archetypes import Archetypes


def broadcast(values: torch.Tensor, archetypes: Archetypes) -> torch.Tensor:
    """Each agent gets its archetype's value.

    Args:
        values: ``[B, K]`` one value per member and archetype.
        archetypes: K archetypes of N agents.

    Returns:
        ``[B, N]`` (differentiable w.r.t. ``values``).
    """
    if values.dim() != 2 or values.shape[1] != archetypes.count:
        raise ValueError(f"values of shape {tuple(values.shape)} must be [B, K={archetypes.count}]")
    return values[:, archetypes.index.to(values.device)]


def heterogeneous(probs: torch.Tensor, offsets: torch.Tensor, scale: float) -> torch.Tensor:
    """Spread agents around their archetype's probability on the logit scale.

    ``p_i = sigmoid(logit(p_k) + scale * z_i)``: an agent's fixed offset ``z_i`` (e.g. standard
    normal, drawn once) makes some agents of an archetype more cautious than others while
    ``scale = 0`` gives back the archetype value exactly.

    Args:
        probs: ``[B, N]`` archetype probabilities per agent.
        offsets: ``[N]`` or ``[B, N]`` per-agent offsets.
        scale: spread on the logit scale (>= 0).
    """
    if scale < 0:
        raise ValueError(f"heterogeneity scale must be >= 0, got {scale}")
    if scale == 0:
        return probs
    return torch.sigmoid(torch.logit(probs, eps=1e-6) + scale * offsets.to(probs))
