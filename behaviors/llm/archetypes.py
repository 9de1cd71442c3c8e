"""Archetypes: groups of agents that share one LLM answer.

An :class:`Archetypes` holds, for K groups of N agents, the group of each agent (``index``), the
size of each group and human-readable labels (filled into prompts). Build them from categorical
attributes (:func:`group_by`, e.g. age band × borough) or by clustering continuous ones
(:func:`kmeans`). The population's attributes are the same for every ensemble member, so they
are ``[N]`` tensors without the ``B`` axis.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import torch


@dataclasses.dataclass(frozen=True)
class Archetypes:
    """Attributes:
    index: ``[N]`` int64, the archetype of each agent (in ``[0, K)``).
    sizes: ``[K]`` int64, agents per archetype (all > 0).
    labels: K dicts attribute name → value text, for prompts.
    """

    index: torch.Tensor
    sizes: torch.Tensor
    labels: tuple[dict[str, str], ...]

    def __post_init__(self) -> None:
        k = len(self.labels)
        if self.index.dim() != 1 or self.index.dtype != torch.int64:
            raise ValueError(f"index must be [N] int64, got {self.index.dtype} {self.index.shape}")
        if self.sizes.shape != (k,):
            raise ValueError(f"sizes has shape {tuple(self.sizes.shape)}, expected [K]=[{k}]")
        if k == 0 or (self.sizes <= 0).any():
            raise ValueError("every archetype needs at least one agent")

    @property
    def count(self) -> int:
        """K, the number of archetypes."""
        return len(self.labels)

    @property
    def agents(self) -> int:
        """N, the number of agents."""
        return self.index.shape[0]

    def members(self, k: int) -> torch.Tensor:
        """``[sizes[k]]`` agent indices of archetype ``k``."""
        return (self.index == k).nonzero().flatten()


def group_by(
    attributes: Mapping[str, torch.Tensor], names: Mapping[str, Sequence[str]]
) -> Archetypes:
    """One archetype per attribute combination that occurs (empty combinations are dropped).

    Args:
        attributes: attribute name → ``[N]`` int codes.
        names: attribute name → the text of each code (``names[a][code]``).

    Returns:
        Archetypes ordered by combination (first attribute slowest).
    """
    if not attributes:
        raise ValueError("group_by needs at least one attribute")
    missing = sorted(set(attributes) - set(names))
    if missing:
        raise ValueError(f"no value names for attribute(s) {missing}")
    keys = list(attributes)
    n = attributes[keys[0]].shape[0]
    code = torch.zeros(n, dtype=torch.int64, device=attributes[keys[0]].device)
    radix = []
    for key in keys:
        a = attributes[key]
        levels = len(names[key])
        if a.shape != (n,) or a.is_floating_point():
            raise ValueError(f"attribute {key!r} must be [N]=[{n}] integer codes, got {a.dtype}")
        if n and (a.min() < 0 or a.max() >= levels):
            raise ValueError(f"attribute {key!r} has codes outside [0, {levels}) of its names")
        code = code * levels + a.to(torch.int64)
        radix.append(levels)
    present, index = torch.unique(code, sorted=True, return_inverse=True)
    labels = []
    for c in present.tolist():
        label = {}
        for key, levels in zip(reversed(keys), reversed(radix), strict=True):
            label[key] = str(names[key][c % levels])
            c //= levels
        labels.append({key: label[key] for key in keys})
    sizes = torch.bincount(index, minlength=len(labels))
    return Archetypes(index=index, sizes=sizes, labels=tuple(labels))


def kmeans(
    features: torch.Tensor,
    k: int,
    *,
    names: Sequence[str] | None = None,
    iterations: int = 25,
    generator: torch.Generator | None = None,
) -> Archetypes:
    """Cluster continuous attributes with Lloyd's k-means (k-means++ start) in torch.

    Args:
        features: ``[N, D]`` floating attributes (standardise them first if scales differ).
        k: clusters; empty clusters are dropped, so K may come out smaller.
        names: D feature names for the labels (default ``x0, x1, ...``).
        iterations: Lloyd iterations.
        generator: for the k-means++ start (reproducible clusters).

    Returns:
        Archetypes labelled with each cluster's centroid (``{"age": "41.2", ...}``).
    """
    if features.dim() != 2 or not features.is_floating_point():
        raise ValueError(f"features must be [N, D] floating, got {features.dtype} {features.shape}")
    n, d = features.shape
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be in [1, N={n}]")
    if torch.isnan(features).any():
        raise ValueError("features contain NaN")
    names = list(names) if names is not None else [f"x{j}" for j in range(d)]
    if len(names) != d:
        raise ValueError(f"{len(names)} names for {d} features")
    first = torch.randint(n, (1,), generator=generator, device="cpu").item()
    centers = features[first : first + 1]
    for _ in range(1, k):  # k-means++: next center with probability ~ squared distance
        dist = torch.cdist(features, centers).min(dim=1).values.pow(2)
        if dist.sum() <= 0:
            break
        pick = torch.multinomial(dist.cpu(), 1, generator=generator).item()
        centers = torch.cat([centers, features[pick : pick + 1]])
    for _ in range(iterations):
        assign = torch.cdist(features, centers).argmin(dim=1)
        counts = torch.bincount(assign, minlength=centers.shape[0]).to(features.dtype)
        sums = torch.zeros_like(centers).index_add_(0, assign, features)
        new = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centers)
        if torch.allclose(new, centers):
            break
        centers = new
    assign = torch.cdist(features, centers).argmin(dim=1)
    used, index = torch.unique(assign, sorted=True, return_inverse=True)
    labels = tuple(
        {name: f"{float(v):.3g}" for name, v in zip(names, centers[c], strict=True)}
        for c in used.tolist()
    )
    return Archetypes(index=index, sizes=torch.bincount(index), labels=labels)
