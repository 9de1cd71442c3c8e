"""Contact networks as CSR layers: networkx converters and fast tensor graph generators.

A contact layer is a ``torch.sparse_csr_tensor`` of size ``[N, N]`` with float weights; row ``i``
lists the contacts ``j`` of agent ``i`` (crow/col indices int64, columns sorted within a row).
Undirected graphs store each edge in both directions. networkx is for small graphs and for
checking; the tensor generators build graphs of millions of nodes in seconds (on CPU or GPU).
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from populace.kernels.graph import check_layer, edge_rows

if TYPE_CHECKING:  # networkx (about 12 MB resident) is imported by the converters that use it
    import networkx as nx


def _generator(seed: int | torch.Generator | None, device: torch.device) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    if seed is None:
        raise ValueError("a graph generator needs a seed (int) or a torch.Generator")
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def csr_layer(
    crow: torch.Tensor,
    col: torch.Tensor,
    values: torch.Tensor,
    agents: int,
    check_invariants: bool = False,
) -> torch.Tensor:
    """A ``[N, N]`` sparse CSR layer from its arrays, without torch's "sparse CSR support is in
    beta" warning (it fires on every first use and cannot be filtered by users' code in time)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            crow, col, values, size=(agents, agents), check_invariants=check_invariants
        )


def csr_from_edges(
    src: torch.Tensor,
    dst: torch.Tensor,
    agents: int,
    weight: torch.Tensor | float = 1.0,
    *,
    symmetric: bool = True,
    dedupe: bool = True,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Build a CSR contact layer from an edge list.

    Args:
        src, dst: ``[E]`` int64 endpoints in ``[0, agents)``.
        agents: N.
        weight: ``[E]`` weights or one number for all edges.
        symmetric: store each edge in both directions (undirected contacts).
        dedupe: drop self-loops and repeated edges (the first weight of a repeated edge is kept;
            with ``symmetric``, (i, j) and (j, i) are the same edge).
        dtype: weight dtype.

    Returns:
        ``[N, N]`` sparse CSR tensor, rows sorted by column.

    Memory: with one number as weight (on CPU) the build sorts one int64 key per stored edge
    in place, about 8 bytes per stored edge beyond the inputs and the layer; per-edge weights
    are carried through torch stable sorts, about 100 bytes per stored edge at peak.
    """
    if src.shape != dst.shape or src.dim() != 1:
        raise ValueError(
            f"src and dst must be [E] tensors of one shape, got {src.shape}/{dst.shape}"
        )
    if src.dtype != torch.int64 or dst.dtype != torch.int64:
        raise TypeError(f"edge endpoints must be int64, got {src.dtype}/{dst.dtype}")
    if src.numel() and (
        int(torch.minimum(src.min(), dst.min())) < 0
        or int(torch.maximum(src.max(), dst.max())) >= agents
    ):
        raise ValueError(f"edge endpoints outside [0, {agents})")
    w = torch.as_tensor(weight, dtype=dtype, device=src.device)
    if w.dim() == 0 and src.device.type == "cpu" and not w.requires_grad:  # sort keys only
        if not torch.isfinite(w):
            raise ValueError("edge weights contain NaN/Inf")
        crow, cols = _unit_csr(src.numpy(), dst.numpy(), agents, symmetric, dedupe)
        return csr_layer(crow, cols, torch.full(cols.shape, float(w), dtype=dtype), agents)
    return _reference_csr(src, dst, agents, w, symmetric, dedupe)


def _reference_csr(
    src: torch.Tensor,
    dst: torch.Tensor,
    agents: int,
    w: torch.Tensor,
    symmetric: bool,
    dedupe: bool,
) -> torch.Tensor:
    """:func:`csr_from_edges` for per-edge weights (or on a GPU, or a weight needing a
    gradient): torch stable sorts of the ``row * N + col`` keys carry each weight along (about
    100 bytes per stored edge at peak)."""
    w = w.expand(src.shape).clone()
    if not torch.isfinite(w).all():
        raise ValueError("edge weights contain NaN/Inf")
    if dedupe:
        if symmetric:  # one undirected edge per pair, so both directions get the same weight
            src, dst = torch.minimum(src, dst), torch.maximum(src, dst)
        key, order = torch.sort(src * agents + dst, stable=True)
        keep = src[order] != dst[order]
        keep[1:] &= key[1:] != key[:-1]  # the first weight of a repeated edge is kept
        src, dst, w = src[order][keep], dst[order][keep], w[order][keep]
        del key, order, keep
    if symmetric:
        src, dst, w = torch.cat([src, dst]), torch.cat([dst, src]), torch.cat([w, w])
    key, order = torch.sort(src * agents + dst, stable=True)
    del src, dst
    w = w[order]
    del order
    rows, cols = key // agents, key % agents
    del key
    crow = torch.zeros(agents + 1, dtype=torch.int64, device=w.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=agents), 0)
    return csr_layer(crow, cols, w, agents)


def _unit_csr(
    src: np.ndarray, dst: np.ndarray, agents: int, symmetric: bool, dedupe: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR ``(crow [N + 1], col [E'])`` int64 of an edge list whose edges all weigh the same.

    The same arrays as :func:`_reference_csr`: with equal weights, which of two repeated
    edges comes first does not matter, so one int64 ``row * N + col`` key per stored edge is
    sorted in place (no permutation carried) and turned into the columns in place; the rows'
    offsets come from binary searches. Peak: 8 bytes per stored edge plus 16 per input edge
    while the keys are formed (about a fifth of the reference's).
    """
    n = np.int64(agents)
    if dedupe:
        key = np.minimum(src, dst) if symmetric else src.copy()
        key *= n
        key += np.maximum(src, dst) if symmetric else dst
        key.sort()
        keep = key // n != key % n  # no self-loops
        keep[1:] &= key[1:] != key[:-1]  # one of each repeated edge
        key = key[keep]
        del keep
        src, dst = key // n, key % n
        del key
    m = src.shape[0]
    keys = np.empty(2 * m if symmetric else m, dtype=np.int64)
    np.multiply(src, n, out=keys[:m])
    keys[:m] += dst
    if symmetric:
        np.multiply(dst, n, out=keys[m:])
        keys[m:] += src
    del src, dst
    keys.sort()
    crow = np.searchsorted(keys, np.arange(agents + 1, dtype=np.int64) * n)
    np.remainder(keys, n, out=keys)
    return torch.from_numpy(crow), torch.from_numpy(keys)


def erdos_renyi(
    agents: int,
    mean_degree: float,
    seed: int | torch.Generator | None = 0,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """An Erdős–Rényi-like random graph: ``round(N k / 2)`` edges with uniform random endpoints,
    self-loops and repeats dropped (``O(k^2)`` of them), so degrees are Poisson(k) as N grows.

    Args:
        agents: N.
        mean_degree: k >= 0.
        seed: int seed or a ``torch.Generator`` on ``device``.

    Returns:
        ``[N, N]`` symmetric CSR layer with unit weights.
    """
    if agents < 1 or not mean_degree >= 0:
        raise ValueError(
            f"erdos_renyi needs agents >= 1 and mean_degree >= 0, got {agents}, {mean_degree}"
        )
    device = torch.device(device)
    g = _generator(seed, device)
    m = round(agents * mean_degree / 2)
    ends = torch.randint(0, agents, (2, m), generator=g, device=device)
    return csr_from_edges(ends[0], ends[1], agents, dtype=dtype)


def configuration_model(
    degrees: torch.Tensor,
    seed: int | torch.Generator | None = 0,
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The erased configuration model: stubs paired at random, self-loops and repeats dropped.

    Args:
        degrees: ``[N]`` int64 wanted degrees (an odd total drops one stub).
        seed: int seed or a ``torch.Generator`` on ``degrees.device``.

    Returns:
        ``[N, N]`` symmetric CSR layer with unit weights; degrees are at most the wanted ones.
    """
    if degrees.dim() != 1 or degrees.dtype != torch.int64:
        raise ValueError(
            f"degrees must be an [N] int64 tensor, got {degrees.dtype} {tuple(degrees.shape)}"
        )
    if degrees.numel() and int(degrees.min()) < 0:
        raise ValueError("degrees must be >= 0")
    n = degrees.shape[0]
    g = _generator(seed, degrees.device)
    stubs = torch.repeat_interleave(torch.arange(n, device=degrees.device), degrees)
    stubs = stubs[torch.randperm(stubs.numel(), generator=g, device=degrees.device)]
    pairs = stubs[: stubs.numel() // 2 * 2].view(-1, 2)
    return csr_from_edges(pairs[:, 0], pairs[:, 1], n, dtype=dtype)


def from_networkx(
    graph: nx.Graph,
    *,
    weight: str | None = "weight",
    nodelist: Sequence[Hashable] | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """A networkx graph as a CSR contact layer.

    Args:
        graph: undirected (each edge stored both ways) or directed (``u -> v`` means row u
            lists contact v).
        weight: edge attribute holding the weight (missing → 1), or None for unit weights.
        nodelist: node order (row i is ``nodelist[i]``); default ``list(graph.nodes)``.

    Returns:
        ``[N, N]`` sparse CSR tensor.
    """
    if graph.is_multigraph():
        raise TypeError("from_networkx: multigraphs are not supported; collapse parallel edges")
    nodes = list(graph.nodes) if nodelist is None else list(nodelist)
    index = {node: i for i, node in enumerate(nodes)}
    if len(index) != graph.number_of_nodes() or any(n not in index for n in graph.nodes):
        raise ValueError("nodelist must list every node of the graph exactly once")
    src, dst, w = [], [], []
    for u, v, data in graph.edges(data=True):
        src.append(index[u])
        dst.append(index[v])
        w.append(float(data.get(weight, 1.0)) if weight is not None else 1.0)
    n = len(nodes)
    return csr_from_edges(
        torch.tensor(src, dtype=torch.int64, device=device),
        torch.tensor(dst, dtype=torch.int64, device=device),
        n,
        torch.tensor(w, dtype=dtype, device=device),
        symmetric=not graph.is_directed(),
        dtype=dtype,
    )


def to_networkx(layer: torch.Tensor, *, directed: bool = False, weight: str = "weight") -> nx.Graph:
    """A CSR contact layer as a networkx graph with nodes ``0..N-1`` (for small graphs).

    With ``directed=False`` each stored edge ``(i, j)`` becomes one undirected edge (a
    symmetric layer round-trips exactly).
    """
    import networkx as nx

    check_layer(layer)
    crow = layer.crow_indices().cpu()
    rows = edge_rows(crow).tolist()
    cols = layer.col_indices().cpu().tolist()
    ws = layer.values().detach().cpu().tolist()
    graph = nx.DiGraph() if directed else nx.Graph()
    graph.add_nodes_from(range(layer.shape[0]))
    graph.add_weighted_edges_from(zip(rows, cols, ws, strict=True), weight=weight)
    return graph


def degrees(layer: torch.Tensor) -> torch.Tensor:
    """``[N]`` int64: the number of contacts of each agent (stored entries per row)."""
    check_layer(layer)
    return layer.crow_indices().diff()


def grid(width: int, height: int, moore: bool = True, torus: bool = False) -> torch.Tensor:
    """The cell graph of a ``width x height`` grid as a CSR layer (cell ``x * height + y``):
    each cell's 8 Moore (or 4 von Neumann) neighbours, wrapped on a ``torus`` or cut at the
    edges; a cell is not its own neighbour. With
    :func:`populace.engine.activation.random_neighbour` (``rows=`` the agents' cells) it draws
    moves to a uniformly random neighbouring cell, as Mesa's ``select_random_cell`` does."""
    if width < 1 or height < 1:
        raise ValueError(f"grid needs width, height >= 1, got {width} x {height}")
    steps = [(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if (dx, dy) != (0, 0)]
    if not moore:
        steps = [(dx, dy) for dx, dy in steps if dx == 0 or dy == 0]
    x = torch.arange(width).repeat_interleave(height)
    y = torch.arange(height).repeat(width)
    src, dst = [], []
    for dx, dy in steps:
        nx, ny = x + dx, y + dy
        if torus:
            nx, ny, ok = nx % width, ny % height, torch.ones_like(nx, dtype=torch.bool)
        else:
            ok = (nx >= 0) & (nx < width) & (ny >= 0) & (ny < height)
        src.append((x * height + y)[ok])
        dst.append((nx * height + ny)[ok])
    return csr_from_edges(torch.cat(src), torch.cat(dst), width * height, symmetric=False)
