"""Mean-field reductions: sums, means and counts of agent values per group, and the gather back.

Agents carry a group id (household, region, age band); a mean-field model reduces agent values
to ``[B, G, (C)]`` per-group totals, mixes the groups, and gathers the result back to agents.
The Kuramoto order parameter ``r e^{i psi} = mean_j e^{i theta_j}`` is the same reduction applied
to ``(cos theta, sin theta)``.

On CUDA the sums use atomic adds, so float results may differ in the last bits from run to run
(the order of additions is not fixed); the torch reference on CPU is deterministic.
"""

from __future__ import annotations

import torch

from populace.kernels._backend import HAS_TRITON, pick

if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _group_sum_kernel(
        values_ptr,  # [B, N, C] contiguous, the agent values
        group_ptr,  # [B, N] or [N] int64, group id of each agent
        out_ptr,  # [B, G, C] zero-initialised, float32/float64 accumulators
        N,
        G,
        C,
        group_stride_b,  # 0 when one grouping serves every member
        BLOCK: tl.constexpr,
    ):
        pid = tl.program_id(0)
        b = tl.program_id(1).to(tl.int64)
        offs = pid * BLOCK + tl.arange(0, BLOCK)  # flat index over N * C
        mask = offs < N * C
        agent = offs // C
        chan = offs % C
        v = tl.load(values_ptr + b * N * C + offs, mask=mask, other=0.0)
        g = tl.load(group_ptr + b * group_stride_b + agent, mask=mask, other=0)
        tl.atomic_add(out_ptr + b * G * C + g * C + chan, v, mask=mask)

    @triton.jit
    def _group_gather_kernel(
        table_ptr,  # [B, G, C] contiguous, per-group values
        group_ptr,  # [B, N] or [N] int64
        out_ptr,  # [B, N, C] the gathered agent values
        N,
        G,
        C,
        group_stride_b,
        BLOCK: tl.constexpr,
    ):
        pid = tl.program_id(0)
        b = tl.program_id(1).to(tl.int64)
        offs = pid * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N * C
        agent = offs // C
        chan = offs % C
        g = tl.load(group_ptr + b * group_stride_b + agent, mask=mask, other=0)
        v = tl.load(table_ptr + b * G * C + g * C + chan, mask=mask, other=0.0)
        tl.store(out_ptr + b * N * C + offs, v, mask=mask)

    @triton.jit
    def _phase_sum_kernel(
        theta_ptr,  # [B, N] contiguous phases
        out_ptr,  # [B, 2] zero-initialised: (sum cos, sum sin)
        N,
        BLOCK: tl.constexpr,
    ):
        # one reduction per block, then one atomic per block: all agents share one group
        pid = tl.program_id(0)
        b = tl.program_id(1).to(tl.int64)
        offs = pid * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        th = tl.load(theta_ptr + b * N + offs, mask=mask, other=0.0)
        c = tl.sum(tl.where(mask, tl.cos(th), 0.0), axis=0)
        s = tl.sum(tl.where(mask, tl.sin(th), 0.0), axis=0)
        tl.atomic_add(out_ptr + b * 2, c)
        tl.atomic_add(out_ptr + b * 2 + 1, s)


_BLOCK = 512


# -- checks ------------------------------------------------------------------------------------
def _check_values(values: torch.Tensor, name: str = "values") -> None:
    if not isinstance(values, torch.Tensor) or values.dim() not in (2, 3):
        shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise ValueError(f"{name} must be a [B, N] or [B, N, C] tensor, got {shape}")
    if not values.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {values.dtype}")


def _check_group(group: torch.Tensor, members: int, agents: int, groups: int) -> None:
    if not isinstance(group, torch.Tensor) or group.dtype != torch.int64:
        what = group.dtype if isinstance(group, torch.Tensor) else type(group).__name__
        raise TypeError(f"group must be an int64 tensor, got {what}")
    if group.shape not in ((agents,), (members, agents)):
        raise ValueError(
            f"group has shape {tuple(group.shape)}; expected [N]=[{agents}] or "
            f"[B, N]=[{members}, {agents}]"
        )
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive integer, got {groups!r}")
    if group.numel():  # one host sync; an id out of range would write out of bounds on GPU
        lo, hi = torch.stack(torch.aminmax(group)).tolist()
        if lo < 0 or hi >= groups:
            raise ValueError(f"group ids must lie in [0, {groups}), got range [{lo}, {hi}]")


def _as_bnc(values: torch.Tensor) -> torch.Tensor:
    return values if values.dim() == 3 else values.unsqueeze(-1)


def _expand_group(group: torch.Tensor, members: int) -> torch.Tensor:
    return group.expand(members, -1) if group.dim() == 1 else group


# -- references ----------------------------------------------------------------------------------
def group_sum_reference(values: torch.Tensor, group: torch.Tensor, groups: int) -> torch.Tensor:
    """Pure-torch :func:`group_sum` (``index_add`` along the agent axis); differentiable."""
    v = _as_bnc(values)
    b, n, c = v.shape
    g = _expand_group(group, b)
    flat = (g + groups * torch.arange(b, device=v.device).unsqueeze(1)).reshape(-1)
    out = v.new_zeros(b * groups, c).index_add(0, flat, v.reshape(b * n, c))
    out = out.view(b, groups, c)
    return out if values.dim() == 3 else out.squeeze(-1)


def group_gather_reference(table: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Pure-torch :func:`group_gather`; differentiable w.r.t. ``table``."""
    t = _as_bnc(table)
    b = t.shape[0]
    g = _expand_group(group, b)
    out = torch.gather(t, 1, g.unsqueeze(-1).expand(-1, -1, t.shape[2]))
    return out if table.dim() == 3 else out.squeeze(-1)


def phase_sum_reference(theta: torch.Tensor) -> torch.Tensor:
    """``[B, 2]``: ``(sum_j cos theta_j, sum_j sin theta_j)`` per member."""
    return torch.stack([torch.cos(theta).sum(dim=1), torch.sin(theta).sum(dim=1)], dim=1)


# -- Triton launchers ----------------------------------------------------------------------------
def _group_sum_triton(values: torch.Tensor, group: torch.Tensor, groups: int) -> torch.Tensor:
    v = _as_bnc(values).contiguous()
    b, n, c = v.shape
    g = group.contiguous()
    out = v.new_zeros(b, groups, c)
    grid = (triton.cdiv(n * c, _BLOCK), b)
    _group_sum_kernel[grid](v, g, out, n, groups, c, n if g.dim() == 2 else 0, BLOCK=_BLOCK)
    return out if values.dim() == 3 else out.squeeze(-1)


def _group_gather_triton(table: torch.Tensor, group: torch.Tensor, agents: int) -> torch.Tensor:
    t = _as_bnc(table).contiguous()
    b, groups, c = t.shape
    g = group.contiguous()
    out = t.new_empty(b, agents, c)
    grid = (triton.cdiv(agents * c, _BLOCK), b)
    _group_gather_kernel[grid](
        t, g, out, agents, groups, c, agents if g.dim() == 2 else 0, BLOCK=_BLOCK
    )
    return out if table.dim() == 3 else out.squeeze(-1)


class _GroupSum(torch.autograd.Function):
    """Triton forward; the gradient w.r.t. values is the gather of the output gradient."""

    @staticmethod
    def forward(ctx, values, group, groups):
        ctx.save_for_backward(group)
        return _group_sum_triton(values, group, groups)

    @staticmethod
    def backward(ctx, grad_out):
        (group,) = ctx.saved_tensors
        return _group_gather_triton(grad_out, group, group.shape[-1]), None, None


class _GroupGather(torch.autograd.Function):
    """Triton forward; the gradient w.r.t. the table is the group sum of the output gradient."""

    @staticmethod
    def forward(ctx, table, group, agents):
        ctx.save_for_backward(group)
        ctx.groups = table.shape[1]
        return _group_gather_triton(table, group, agents)

    @staticmethod
    def backward(ctx, grad_out):
        (group,) = ctx.saved_tensors
        return _group_sum_triton(grad_out, group, ctx.groups), None, None


# -- public dispatchers --------------------------------------------------------------------------
def group_sum(
    values: torch.Tensor, group: torch.Tensor, groups: int, backend: str = "auto"
) -> torch.Tensor:
    """Sum agent values per group.

    Args:
        values: ``[B, N]`` or ``[B, N, C]`` floating.
        group: ``[N]`` (shared by all members) or ``[B, N]`` int64 ids in ``[0, groups)``.
        groups: number of groups G.
        backend: ``"auto"`` (Triton on CUDA), ``"triton"`` or ``"torch"``.

    Returns:
        ``[B, G]`` or ``[B, G, C]``; differentiable w.r.t. ``values``. Empty groups sum to 0.
    """
    _check_values(values)
    _check_group(group, values.shape[0], values.shape[1], groups)
    if pick(backend, values, group):
        return _GroupSum.apply(values, group, groups)
    return group_sum_reference(values, group, groups)


def group_count(group: torch.Tensor, groups: int, members: int = 1) -> torch.Tensor:
    """``[B, G]`` float: agents per group (``members`` = B when ``group`` is ``[N]``)."""
    b = group.shape[0] if group.dim() == 2 else members
    n = group.shape[-1]
    _check_group(group, b, n, groups)
    ones = torch.ones(1, 1, device=group.device).expand(b, n)
    return group_sum_reference(ones, group, groups)  # bincount-like, no gradient needed


def group_mean(
    values: torch.Tensor, group: torch.Tensor, groups: int, backend: str = "auto"
) -> torch.Tensor:
    """Mean of agent values per group: ``[B, G, (C)]``; empty groups give 0 (as
    ``scatter_reduce(..., "mean", include_self=False)`` on zeros does)."""
    total = group_sum(values, group, groups, backend)
    count = group_count(group, groups, values.shape[0]).to(total.dtype)
    count = count.clamp(min=1)
    return total / (count if values.dim() == 2 else count.unsqueeze(-1))


def group_gather(table: torch.Tensor, group: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """Give each agent its group's value.

    Args:
        table: ``[B, G]`` or ``[B, G, C]`` per-group values.
        group: ``[N]`` or ``[B, N]`` int64 ids in ``[0, G)``.
        backend: ``"auto" | "triton" | "torch"``.

    Returns:
        ``[B, N]`` or ``[B, N, C]``; differentiable w.r.t. ``table``.
    """
    _check_values(table, "table")
    _check_group(group, table.shape[0], group.shape[-1], table.shape[1])
    if pick(backend, table, group):
        return _GroupGather.apply(table, group, group.shape[-1])
    return group_gather_reference(table, group)


def kuramoto_order(
    theta: torch.Tensor,
    group: torch.Tensor | None = None,
    groups: int | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Kuramoto order parameter ``r e^{i psi} = mean_j e^{i theta_j}``, overall or per group.

    Args:
        theta: ``[B, N]`` phases (radians).
        group: optional ``[N]`` or ``[B, N]`` int64 group ids; ``groups`` is then required.
        backend: ``"auto" | "triton" | "torch"``.

    Returns:
        ``(r, psi)``: each ``[B]``, or ``[B, G]`` per group (empty groups give r = 0).
        Differentiable w.r.t. ``theta`` (through the torch path).
    """
    if not isinstance(theta, torch.Tensor) or theta.dim() != 2:
        raise ValueError(
            f"theta must be a [B, N] tensor, got "
            f"{tuple(theta.shape) if isinstance(theta, torch.Tensor) else type(theta).__name__}"
        )
    if not theta.is_floating_point():
        raise TypeError(f"theta must be floating point, got {theta.dtype}")
    if group is not None:
        if groups is None:
            raise ValueError("kuramoto_order: `groups` is required with `group`")
        phasor = torch.stack([torch.cos(theta), torch.sin(theta)], dim=-1)  # [B, N, 2]
        mean = group_mean(phasor, group, groups, backend)  # [B, G, 2]
    else:
        if pick(backend, theta) and not theta.requires_grad:
            total = theta.new_zeros(theta.shape[0], 2)
            t = theta.contiguous()
            grid = (triton.cdiv(t.shape[1], _BLOCK), t.shape[0])
            _phase_sum_kernel[grid](t, total, t.shape[1], BLOCK=_BLOCK)
        else:
            total = phase_sum_reference(theta)
        mean = total / theta.shape[1]
    re, im = mean[..., 0], mean[..., 1]
    return torch.hypot(re, im), torch.atan2(im, re)
