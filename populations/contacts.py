"""Contact layers as CSR tensors, built with vectorised torch ops.

A layer is a ``torch.sparse_csr_tensor`` of size [N, N] (crow_indices/col_indices int64, float32
values = contact weights); row i lists the contacts j of agent i, columns sorted and unique, no
self-contacts. Layers are symmetric (i meets j ⇔ j meets i).
"""

from __future__ import annotations

import torch

from populace.populations.graphs import csr_layer


def clique_layer(group: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """Everyone meets everyone else in the same group (households, classes, work teams).

    Built without sorting the edges: each agent's row is its group's members minus itself,
    written straight into place, so cost is O(N + E) with E = Σ_g s_g (s_g − 1).

    Args:
        group: [N] int64 group id per agent, or -1 for agents in no group.

    Returns:
        sparse CSR [N, N] float32.
    """
    n = group.numel()
    device = group.device
    group = group.to(torch.long)
    member = group >= 0
    # members ordered by (group, agent id): stable sort of group ids keeps ids ascending
    ids = torch.nonzero(member).squeeze(1)
    g_sorted, perm = torch.sort(group[ids], stable=True)
    ids = ids[perm]
    _, inverse, size = torch.unique_consecutive(g_sorted, return_inverse=True, return_counts=True)
    start = torch.cumsum(size, 0) - size
    degree = torch.zeros(n, dtype=torch.long, device=device)
    degree[ids] = size[inverse] - 1
    crow = torch.zeros(n + 1, dtype=torch.long, device=device)
    crow[1:] = torch.cumsum(degree, 0)
    # member k (sorted order, position p_k in its group) gets the s_k - 1 other members: the
    # j-th is member start + j + (j >= p_k); generated straight into place, skipping itself
    pos = torch.arange(ids.numel(), device=device) - start[inverse]
    d_k = size[inverse] - 1
    first = torch.cumsum(d_k, 0) - d_k  # where member k's entries begin in generation order
    block = torch.repeat_interleave(torch.arange(ids.numel(), device=device), d_k)
    ar = torch.arange(block.numel(), device=device)
    j = ar - first[block]
    cols = ids[start[inverse][block] + j + (j >= pos[block]).long()]
    # rows come in group order, not agent order: move each block to its row's CSR offset
    out = torch.empty_like(cols)
    out[(crow[ids] - first)[block] + ar] = cols
    values = torch.full((out.numel(),), weight, dtype=torch.float32, device=device)
    return csr_layer(crow, out, values, n)


def chunk_groups(
    key: torch.Tensor, sizes: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Split agents sharing a key into consecutive groups of the given sizes, shuffled.

    Agents with key -1 get group -1. Within each key the agents are shuffled and cut into groups
    whose sizes cycle through ``sizes`` (the last group of a key may be smaller).

    Args:
        key: [N] int64 (e.g. area × school level), -1 for no group.
        sizes: [S] int64 > 0 group sizes to cycle through.

    Returns:
        [N] int64 group id, unique across keys, -1 where key is -1.
    """
    n = key.numel()
    key = key.to(torch.long)
    if (sizes <= 0).any():
        raise ValueError("chunk_groups: sizes must be > 0")
    # one sort of (key, random): agents grouped by key, shuffled within it
    noise = torch.randint(0, 2**31, (n,), generator=generator, device=key.device)
    order = torch.sort((key + 1) * 2**31 + noise, stable=True).indices
    ks = key[order]
    _, counts = torch.unique_consecutive(ks, return_counts=True)
    rank = torch.arange(n, device=key.device) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts
    )
    # group boundaries along the rank axis: cumulative sizes, cycled long enough for any key
    bounds = torch.cumsum(sizes.repeat(int(counts.max()) // int(sizes.sum()) + 1), 0).to(key.device)
    local = torch.searchsorted(bounds, rank, right=True)
    groups_per_key = torch.searchsorted(bounds, counts - 1, right=True) + 1
    base = torch.cumsum(groups_per_key, 0) - groups_per_key
    key_index = torch.repeat_interleave(torch.arange(counts.numel(), device=key.device), counts)
    gid = base[key_index] + local
    gid = torch.where(ks >= 0, gid, torch.full_like(gid, -1))
    out = torch.empty(n, dtype=torch.long, device=key.device)
    out[order] = gid
    return out


def layer_stats(layer: torch.Tensor) -> dict[str, float]:
    """Edges, mean degree and bytes of one CSR layer."""
    crow, col, val = layer.crow_indices(), layer.col_indices(), layer.values()
    n = crow.numel() - 1
    return {
        "edges": int(col.numel()),
        "mean_degree": float(col.numel() / max(n, 1)),
        "bytes": int(crow.numel() * crow.element_size() + col.numel() * col.element_size())
        + int(val.numel() * val.element_size()),
    }
