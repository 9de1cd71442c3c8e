"""Contagion on contact networks: batched sparse matrix-vector products over CSR contact layers.

A contact layer is a ``torch.sparse_csr_tensor`` of size ``[N, N]``: row ``i`` lists the contacts
``j`` of agent ``i`` with float weights ``w_ij`` (crow/col indices int64). The infection pressure
on agent ``i`` of ensemble member ``b`` is

    lambda[b, i] = susceptibility[b, i] * sum_l scale_l[b] * sum_j w^l_ij * infectious[b, j]

where ``scale_l`` (``[]`` or ``[B]``) switches layer ``l`` on/off or weakens it (interventions).

Frontier contagion: only infectious agents' edges can transmit, so while they are few the
pressure is *pushed* from their rows of the transposed layer (work proportional to their edges);
once their edges pass a measured fraction of all edges (:data:`PUSH_FRACTION`) it is *pulled* over
every row. Both give every agent the same terms in the same order for a layer with sorted columns.
Pushing needs no gradient: whenever the node values or the layer weights require one, the pull
paths run (the torch reference is the autograd oracle).

The Triton pull kernel gives one row to each lane and loops over the longest row of its block, so
each row is summed in a fixed order: results are the same from run to run on a GPU (no atomics).
The Triton push kernel adds with atomics: exact (so deterministic) for 0/1 infectiousness and
integer weights, else the float rounding may vary between GPU runs. On CPU the numba kernel (the
optional ``numba`` extra) does push and pull; without it the torch reference pushes with
``index_add`` and pulls with ``torch.sparse.mm``.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Sequence

import torch

from populace.kernels._backend import HAS_TRITON, choose

if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _spmv_kernel(
        crow_ptr,  # [N + 1] int64 row offsets
        col_ptr,  # [E] int64 column (contact) of each edge
        weight_ptr,  # [E] edge weights
        x_ptr,  # [B, N] contiguous node values
        scale_ptr,  # [B] per-member layer scale
        out_ptr,  # [B, N] accumulated in place: out += scale * (A @ x)
        N,
        BLOCK: tl.constexpr,
    ):
        pid = tl.program_id(0)
        b = tl.program_id(1).to(tl.int64)
        rows = pid * BLOCK + tl.arange(0, BLOCK)
        rmask = rows < N
        start = tl.load(crow_ptr + rows, mask=rmask, other=0)
        end = tl.load(crow_ptr + rows + 1, mask=rmask, other=0)
        length = end - start
        longest = tl.max(length, axis=0)
        # accumulate in the output's dtype, so float64 runs stay float64
        acc = tl.zeros([BLOCK], dtype=out_ptr.dtype.element_ty)
        for k in range(0, longest):
            emask = rmask & (k < length)
            e = start + k
            j = tl.load(col_ptr + e, mask=emask, other=0)
            w = tl.load(weight_ptr + e, mask=emask, other=0.0)
            xj = tl.load(x_ptr + b * N + j, mask=emask, other=0.0)
            acc += w * xj
        s = tl.load(scale_ptr + b)
        prev = tl.load(out_ptr + b * N + rows, mask=rmask, other=0.0)
        tl.store(out_ptr + b * N + rows, prev + s * acc, mask=rmask)

    @triton.jit
    def _push_kernel(
        crow_ptr,  # [N + 1] int64 row offsets of the transposed layer A^T
        col_ptr,  # [E] int64 column of each edge of A^T (the receiving agent)
        weight_ptr,  # [E] edge weights of A^T
        x_ptr,  # [B, N] contiguous node values
        member_ptr,  # [F] int64 member of each frontier entry
        agent_ptr,  # [F] int64 agent of each frontier entry (x != 0)
        out_ptr,  # [B, N] zeroed, accumulated by atomics: out[b] = A @ x[b]
        F,
        N,
        BLOCK: tl.constexpr,
    ):
        pid = tl.program_id(0)
        f = pid * BLOCK + tl.arange(0, BLOCK)
        fmask = f < F
        b = tl.load(member_ptr + f, mask=fmask, other=0)
        j = tl.load(agent_ptr + f, mask=fmask, other=0)
        v = tl.load(x_ptr + b * N + j, mask=fmask, other=0.0)
        start = tl.load(crow_ptr + j, mask=fmask, other=0)
        end = tl.load(crow_ptr + j + 1, mask=fmask, other=0)
        length = end - start
        longest = tl.max(length, axis=0)
        for k in range(0, longest):
            emask = fmask & (k < length)
            e = start + k
            i = tl.load(col_ptr + e, mask=emask, other=0)
            w = tl.load(weight_ptr + e, mask=emask, other=0.0)
            tl.atomic_add(out_ptr + b * N + i, (w * v).to(out_ptr.dtype.element_ty), mask=emask)


_BLOCK = 128

#: Push from the infectious rows while their edges are at most this fraction of all edges, per
#: implementation; above it, pull over all rows. Set where the two cost the same on one layer of
#: 1e6 agents, mean degree 10, one thread (``python -m populace.benchmarks.contagion --crossover``,
#: benchmarks/results/contagion-crossover-*): torch's index_add push overtakes sparse.mm between
#: 0.15 and 0.2; the numba push beat its pull at every fraction up to 1 (its scattered adds do not
#: stall the way the pull's scattered reads do). Triton: not measured yet (no GPU), a guess.
PUSH_FRACTION = {"numba": 1.0, "torch": 0.15, "triton": 0.1}
STRATEGIES = ("auto", "push", "pull")


# -- checks --------------------------------------------------------------------------------------
def check_layer(layer: torch.Tensor, agents: int | None = None, name: str = "layer") -> None:
    """Raise a clear error unless ``layer`` is an ``[N, N]`` sparse CSR contact layer."""
    if not isinstance(layer, torch.Tensor) or layer.layout != torch.sparse_csr:
        what = layer.layout if isinstance(layer, torch.Tensor) else type(layer).__name__
        raise TypeError(f"{name} must be a torch.sparse_csr_tensor, got {what}")
    n, m = layer.shape
    if n != m or (agents is not None and n != agents):
        want = f"[{agents}, {agents}]" if agents is not None else "square"
        raise ValueError(f"{name} has size [{n}, {m}]; expected {want}")
    if layer.crow_indices().dtype != torch.int64 or layer.col_indices().dtype != torch.int64:
        raise TypeError(
            f"{name}: crow/col indices must be int64, got {layer.crow_indices().dtype}/"
            f"{layer.col_indices().dtype}"
        )
    if not layer.values().is_floating_point():
        raise TypeError(f"{name}: weights must be floating point, got {layer.values().dtype}")


def _check_nodes(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a [B, N] tensor, got {shape}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {x.dtype}")


def _scale_vector(scale, members: int, like: torch.Tensor, name: str) -> torch.Tensor:
    """A layer scale (number, ``[]`` or ``[B]``) as a ``[B]`` tensor."""
    s = torch.as_tensor(scale, dtype=like.dtype, device=like.device)
    if s.dim() == 0:
        return s.expand(members)
    if s.shape != (members,):
        raise ValueError(f"{name} has shape {tuple(s.shape)}; expected [] or [B]=[{members}]")
    return s


def edge_rows(crow: torch.Tensor) -> torch.Tensor:
    """``[E]`` int64: the row of each edge of a CSR matrix with row offsets ``crow`` ``[N+1]``."""
    n = crow.shape[0] - 1
    return torch.repeat_interleave(torch.arange(n, device=crow.device), crow.diff())


@dataclasses.dataclass(frozen=True)
class Transposed:
    """A layer's transpose A^T as CSR arrays, for pushing from its columns.

    Attributes:
        crow: ``[N + 1]`` int64; col: ``[E]`` int64; weight: ``[E]``. For a symmetric layer these
            are the layer's own arrays (no copy).
        unit: every weight is 1.
        symmetric: A^T == A.
    """

    crow: torch.Tensor
    col: torch.Tensor
    weight: torch.Tensor
    unit: bool
    symmetric: bool


_TRANSPOSED: dict[int, tuple[weakref.ref, int, Transposed]] = {}


def transposed(layer: torch.Tensor) -> Transposed:
    """The transpose of a CSR layer, computed once per layer (and again if its weights change
    in place) and kept while the layer lives."""
    w = layer.values()
    hit = _TRANSPOSED.get(id(layer))
    if hit is not None and hit[0]() is layer and hit[1] == w._version:
        return hit[2]
    crow, col = layer.crow_indices(), layer.col_indices()
    lean = choose("auto", col) == "numba" and w.dtype in (torch.float32, torch.float64)
    if lean and _own_transpose_numba(crow, col, w):  # no A^T built to find it equals A
        out = Transposed(crow, col, w.detach(), bool((w == 1).all()), True)
    else:
        out = transpose_reference(crow, col, w)
    return _remember(layer, w, out)


def transpose_reference(crow: torch.Tensor, col: torch.Tensor, w: torch.Tensor) -> Transposed:
    """A^T of the CSR arrays of A (``[N + 1]``, ``[E]``, ``[E]``) by a stable sort of the
    columns (torch); A's own arrays when they are equal."""
    n = crow.shape[0] - 1
    with torch.no_grad():
        # stable sort by column: each column's rows come out ascending (sorted columns of A^T)
        by_col = torch.sort(col, stable=True).indices
        col_t = edge_rows(crow).index_select(0, by_col)
        crow_t = torch.zeros(n + 1, dtype=torch.int64, device=col.device)
        crow_t[1:] = torch.cumsum(torch.bincount(col, minlength=n), 0)
        w_t = w.detach().index_select(0, by_col)
        del by_col
        symmetric = bool(torch.equal(crow_t, crow) and torch.equal(col_t, col)) and bool(
            torch.equal(w_t, w.detach())
        )
        unit = bool((w == 1).all())
    if symmetric:
        crow_t, col_t, w_t = crow, col, w.detach()
    return Transposed(crow_t, col_t, w_t, unit, symmetric)


def _own_transpose_numba(crow: torch.Tensor, col: torch.Tensor, w: torch.Tensor) -> bool:
    """A == A^T array for array, checked by the numba kernel without building A^T."""
    from populace.kernels import _numba_graph

    return bool(
        _numba_graph.is_own_transpose(crow.numpy(), col.numpy(), w.detach().contiguous().numpy())
    )


def _remember(layer: torch.Tensor, w: torch.Tensor, out: Transposed) -> Transposed:
    """Cache ``out`` as the transpose of ``layer`` at its weights' version ``w._version``."""
    key = id(layer)
    _TRANSPOSED[key] = (
        weakref.ref(layer, lambda _, k=key: _TRANSPOSED.pop(k, None)),
        w._version,
        out,
    )
    return out


Frontier = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def frontier(t: Transposed, x: torch.Tensor) -> Frontier:
    """The nonzero entries of ``x`` ``[B, N]``: ``(member, agent, edges)``, each ``[F]`` int64,
    member-major then agent ascending; ``edges`` counts each one's edges in A^T."""
    member, agent = x.nonzero(as_tuple=True)
    return member, agent, t.crow.index_select(0, agent + 1) - t.crow.index_select(0, agent)


def push_reference(t: Transposed, x: torch.Tensor, front: Frontier | None = None) -> torch.Tensor:
    """``[B, N]``: ``A @ x[b]`` pushed from the nonzero entries of ``x`` along the rows of A^T
    (torch, ``index_add`` in frontier order; no gradient)."""
    b, n = x.shape
    member, agent, counts = frontier(t, x) if front is None else front
    out = x.new_zeros(b * n)
    total = int(counts.sum()) if counts.numel() else 0
    if total == 0:
        return out.view(b, n)
    first = t.crow.index_select(0, agent)
    # edge of pair p of entry f: first[f] + (p - first pair of f), as neighbors.candidate_pairs
    base = first - (torch.cumsum(counts, 0) - counts)
    edge = torch.repeat_interleave(base, counts, output_size=total)
    edge += torch.arange(total, device=x.device)
    entry = torch.repeat_interleave(
        torch.arange(agent.numel(), device=x.device), counts, output_size=total
    )
    value = x[member, agent].index_select(0, entry)
    if not t.unit:
        value = t.weight.index_select(0, edge).to(x.dtype) * value
    target = t.col.index_select(0, edge) + member.index_select(0, entry) * n
    return out.index_add_(0, target, value).view(b, n)


# -- reference -----------------------------------------------------------------------------------
def spmv_reference(
    crow: torch.Tensor,
    col: torch.Tensor,
    weight: torch.Tensor,
    x: torch.Tensor,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[B, N]``: ``(A @ x[b])`` for every member, A given as CSR arrays; differentiable
    w.r.t. ``weight`` and ``x``. ``rows`` (``[E]``, from :func:`edge_rows`) may be passed to
    skip recomputing it."""
    rows = edge_rows(crow) if rows is None else rows
    contrib = weight.unsqueeze(0) * x[:, col]  # [B, E]
    return x.new_zeros(x.shape).index_add(1, rows, contrib.to(x.dtype))


def contact_pressure_reference(
    layers: Sequence[torch.Tensor],
    infectious: torch.Tensor,
    susceptibility: torch.Tensor | None = None,
    scales: Sequence | None = None,
) -> torch.Tensor:
    """Pure-torch :func:`contact_pressure` (same arguments).

    Layers whose weights need no gradient go through ``torch.sparse.mm`` (about 5x faster on
    CPU than the edge ``index_add``, and differentiable w.r.t. the node values); layers with
    trainable weights use :func:`spmv_reference`.
    """
    b = infectious.shape[0]
    out = infectious.new_zeros(infectious.shape)
    for k, layer in enumerate(layers):
        s = 1.0 if scales is None else scales[k]
        s = _scale_vector(s, b, infectious, f"scales[{k}]").unsqueeze(1)
        w = layer.values()
        if w.requires_grad:
            part = spmv_reference(layer.crow_indices(), layer.col_indices(), w, infectious)
        else:
            part = torch.sparse.mm(layer.to(infectious.dtype), infectious.T).T
        out = out + s * part
    return out if susceptibility is None else out * susceptibility


# -- Triton path ---------------------------------------------------------------------------------
def _spmv_triton(crow, col, weight, x, scale, out) -> None:
    b, n = x.shape
    grid = (triton.cdiv(n, _BLOCK), b)
    _spmv_kernel[grid](crow, col, weight.to(x.dtype), x, scale, out, n, BLOCK=_BLOCK)


class _LayerPressure(torch.autograd.Function):
    """``scale[b] * (A @ x[b])`` by the Triton kernel; gradients by torch edge ops."""

    @staticmethod
    def forward(ctx, crow, col, weight, x, scale):
        x = x.contiguous()
        out = torch.zeros_like(x)
        _spmv_triton(crow, col, weight, x, scale.contiguous(), out)
        ctx.save_for_backward(crow, col, weight, x, scale)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        crow, col, weight, x, scale = ctx.saved_tensors
        rows = edge_rows(crow)
        g = grad_out * scale.unsqueeze(1)  # [B, N]
        grad_w = grad_x = grad_s = None
        if ctx.needs_input_grad[2]:
            grad_w = (g[:, rows] * x[:, col]).sum(dim=0).to(weight.dtype)
        if ctx.needs_input_grad[3]:
            # A^T g: scatter each edge's row gradient to its column
            grad_x = x.new_zeros(x.shape).index_add(1, col, weight.to(x.dtype) * g[:, rows])
        if ctx.needs_input_grad[4]:
            plain = torch.zeros_like(x)
            _spmv_triton(crow, col, weight, x, torch.ones_like(scale), plain)
            grad_s = (grad_out * plain).sum(dim=1)
        return None, None, grad_w, grad_x, grad_s


def _numba_part(layer: torch.Tensor, x: torch.Tensor, strategy: str) -> torch.Tensor:
    """``A @ x[b]`` by the numba kernel (push or pull, chosen inside by :data:`PUSH_FRACTION`)."""
    from populace.kernels import _numba_graph

    t = transposed(layer)
    x = x.detach().contiguous()
    part = torch.empty_like(x)
    fraction = {"auto": PUSH_FRACTION["numba"], "push": float("inf"), "pull": -1.0}[strategy]
    w = layer.values().detach().to(x.dtype)
    w_t = w if t.symmetric else t.weight.to(x.dtype)
    _numba_graph.layer_pressure(
        layer.crow_indices().numpy(),
        layer.col_indices().numpy(),
        w.numpy(),
        t.crow.numpy(),
        t.col.numpy(),
        w_t.numpy(),
        t.unit,
        x.numpy(),
        fraction,
        part.numpy(),
    )
    return part


def _push_triton(t: Transposed, x: torch.Tensor, front: Frontier) -> torch.Tensor:
    x = x.contiguous()
    member, agent, _ = front
    out = torch.zeros_like(x)
    if agent.numel():
        grid = (triton.cdiv(agent.numel(), _BLOCK),)
        w = t.weight.to(x.dtype)
        f, n = agent.numel(), x.shape[1]
        _push_kernel[grid](t.crow, t.col, w, x, member, agent, out, f, n, BLOCK=_BLOCK)
    return out


def _push_frontier(layer, x, where: str, strategy: str) -> Frontier | None:
    """The frontier when pushing wins (or is forced), else None (pull)."""
    if strategy == "pull":
        return None
    t = transposed(layer)
    front = frontier(t, x)
    if strategy == "push":
        return front
    edges = max(int(t.col.numel()) * x.shape[0], 1)
    return front if int(front[2].sum()) <= PUSH_FRACTION[where] * edges else None


# -- public dispatcher ---------------------------------------------------------------------------
def contact_pressure(
    layers: torch.Tensor | Sequence[torch.Tensor],
    infectious: torch.Tensor,
    susceptibility: torch.Tensor | None = None,
    scales: Sequence | None = None,
    backend: str = "auto",
    strategy: str = "auto",
) -> torch.Tensor:
    """Infection pressure on every agent from its infectious contacts, over several layers.

    Args:
        layers: one or several ``[N, N]`` sparse CSR contact layers (household, school, ...).
        infectious: ``[B, N]`` floating, infectiousness of each agent (0/1 or a weight).
        susceptibility: optional ``[B, N]`` (or broadcastable) factor on the receiving agent.
        scales: optional, one per layer: a number, ``[]`` or ``[B]`` tensor (0 turns a layer off).
        backend: ``"auto"`` (Triton on CUDA, numba on CPU when installed), ``"triton"``,
            ``"numba"`` or ``"torch"``.
        strategy: ``"auto"`` (push while the infectious agents' edges are few, else pull),
            ``"push"`` or ``"pull"``; where a gradient is needed the pull paths always run.

    Returns:
        ``[B, N]`` pressure ``lambda``; differentiable w.r.t. ``infectious``, ``susceptibility``,
        layer weights (``layer.values()``) and ``scales``.
    """
    if isinstance(layers, torch.Tensor):
        layers = [layers]
    if not layers:
        raise ValueError("contact_pressure needs at least one layer")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
    _check_nodes(infectious, "infectious")
    n = infectious.shape[1]
    for k, layer in enumerate(layers):
        check_layer(layer, n, f"layers[{k}]")
    if scales is not None and len(scales) != len(layers):
        raise ValueError(f"{len(scales)} scales for {len(layers)} layers")
    where = choose(backend, infectious, *layers)
    b = infectious.shape[0]
    grad = torch.is_grad_enabled() and (
        infectious.requires_grad or any(layer.values().requires_grad for layer in layers)
    )
    if grad and where == "numba":
        where = "torch" if backend == "auto" else where
    if grad and where == "numba":
        raise RuntimeError("backend 'numba' gives no gradient; use 'torch' or 'auto'")
    if where == "torch" and (grad or strategy == "pull"):
        return contact_pressure_reference(layers, infectious, susceptibility, scales)
    out = None
    for k, layer in enumerate(layers):
        s = _scale_vector(1.0 if scales is None else scales[k], b, infectious, f"scales[{k}]")
        front = (
            None if where == "numba" or grad else _push_frontier(layer, infectious, where, strategy)
        )
        if where == "numba":
            part = _numba_part(layer, infectious, strategy)
        elif front is not None:
            push = push_reference if where == "torch" else _push_triton
            part = push(transposed(layer), infectious, front)
        elif where == "torch":
            part = contact_pressure_reference([layer], infectious)
        else:
            crow, col, w = layer.crow_indices(), layer.col_indices(), layer.values()
            part = _LayerPressure.apply(crow, col, w, infectious, torch.ones_like(s))
        # numba's part is this call's own buffer: scaled in place (autograd keeps s's gradient)
        term = part.mul_(s.unsqueeze(1)) if where == "numba" else s.unsqueeze(1) * part
        out = term if out is None else out + term
    return out if susceptibility is None else out * susceptibility
