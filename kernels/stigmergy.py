"""Stigmergic traces: agents write a scalar field, the field spreads and fades, agents read it.

Three operations, each a Triton kernel, a torch reference (the oracle and the CPU path) and a
public dispatcher (``backend="auto" | "triton" | "torch"``):

- :func:`deposit` — agents add an amount to the field at their position (nearest cell or a
  bilinear splat over the four surrounding cells);
- :func:`diffuse_evaporate` — NetLogo-style 8-neighbour diffusion fused with evaporation;
- :func:`sense` — agents sample the field at ``K`` sensors ahead of them.

Coordinates: a field is ``[B, H, W]`` (rows ``y``, columns ``x``). Cell ``(row r, col c)`` has
its centre at ``(x=c, y=r)``, so ``pos[..., 0]`` is x in ``[-0.5, W - 0.5)`` and ``pos[..., 1]``
is y. A heading ``h`` (radians) points along ``(cos h, sin h)``. ``boundary="wrap"`` wraps
indices (torus); ``boundary="closed"`` clamps them to the edge cells, so nothing is lost: a
deposit outside lands on the nearest edge cell and a sensor outside reads the edge value.

Reproducibility: the references are deterministic on CPU. The Triton deposit uses atomic adds,
so on a GPU the order of additions into one cell, and hence the last bits of the result in
float32, can differ between runs; diffusion and sensing are deterministic everywhere.

Gradients: every reference is differentiable (deposit w.r.t. field, amounts and, bilinear,
positions; diffusion w.r.t. field and both rates; sense w.r.t. field and, bilinear, positions
and headings). The Triton paths are ``autograd.Function`` s whose backward passes run Triton
kernels too (the adjoints are the same operations: sampling is the adjoint of splatting, and
the diffusion operator is symmetric); gradients w.r.t. positions, headings, sensor angles or
distances are not implemented there, so the dispatchers use the reference when those require
grad.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from populace.kernels._backend import HAS_TRITON, pick

if HAS_TRITON:
    import triton
    import triton.language as tl

BOUNDARIES = ("wrap", "closed")
MODES = ("nearest", "bilinear")
BLOCK = 256

Number = float | int
Scalar = Number | torch.Tensor


# -- validation ------------------------------------------------------------------------------
def _check_choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")


def _check_field(field: torch.Tensor) -> None:
    if not isinstance(field, torch.Tensor) or field.dim() != 3:
        shape = tuple(field.shape) if isinstance(field, torch.Tensor) else type(field).__name__
        raise ValueError(f"field must be a [B, H, W] tensor, got {shape}")
    if field.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"field must be float32 or float64, got {field.dtype}")


def _check_agents(field: torch.Tensor, pos: torch.Tensor, heading: torch.Tensor | None = None):
    B = field.shape[0]
    if pos.dim() != 3 or pos.shape[0] != B or pos.shape[2] != 2:
        raise ValueError(f"pos must be [B={B}, N, 2], got {tuple(pos.shape)}")
    if pos.dtype != field.dtype:
        raise ValueError(f"pos dtype {pos.dtype} differs from field dtype {field.dtype}")
    if pos.device != field.device:
        raise ValueError(f"pos on {pos.device}, field on {field.device}")
    # A NaN position has no cell; checking needs a host sync, so only off the GPU.
    if not pos.is_cuda and not torch.isfinite(pos.detach()).all():
        raise ValueError("pos has NaN/Inf entries")
    if heading is not None:
        if tuple(heading.shape) != tuple(pos.shape[:2]):
            raise ValueError(
                f"heading must be [B, N]={tuple(pos.shape[:2])}, got {tuple(heading.shape)}"
            )
        if heading.dtype != field.dtype:
            raise ValueError(f"heading dtype {heading.dtype} differs from field {field.dtype}")


def _per_member(name: str, value: Scalar, field: torch.Tensor, low=None, high=None):
    """A scalar or ``[B]`` value as a ``[B]`` tensor of the field's dtype (range-checked)."""
    B = field.shape[0]
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        raise ValueError(f"{name} must be a number or a tensor, got {type(value).__name__}")
    t = torch.as_tensor(value, dtype=field.dtype, device=field.device)
    if t.dim() > 1 or (t.dim() == 1 and t.shape[0] != B):
        raise ValueError(f"{name} must be a scalar or [B={B}], got shape {tuple(t.shape)}")
    if not t.is_cuda:  # range checks need a host sync; skipped on the GPU
        d = t.detach()
        if not torch.isfinite(d).all():
            raise ValueError(f"{name} has NaN/Inf values: {d}")
        if (low is not None and (d < low).any()) or (high is not None and (d > high).any()):
            raise ValueError(f"{name} must lie in [{low}, {high}], got {d}")
    return t.expand(B)


def _amounts(amount: Scalar, pos: torch.Tensor) -> torch.Tensor:
    B, N = pos.shape[:2]
    t = torch.as_tensor(amount, dtype=pos.dtype, device=pos.device)
    if t.dim() == 1:  # [B] per member or [N] per agent? refuse to guess
        raise ValueError(
            f"amount of shape {tuple(t.shape)} is ambiguous: give [B, 1] for one amount per "
            f"member or [B, N] (or [1, N]) for one per agent"
        )
    try:
        return t.expand(B, N)
    except RuntimeError:
        raise ValueError(
            f"amount must be a scalar or broadcast to [B, N]={B, N}, got {tuple(t.shape)}"
        ) from None


def _alive(alive: torch.Tensor | None, pos: torch.Tensor) -> torch.Tensor:
    B, N = pos.shape[:2]
    if alive is None:
        return torch.ones(B, N, dtype=torch.bool, device=pos.device)
    if alive.dtype != torch.bool or tuple(alive.shape) != (B, N):
        raise ValueError(
            f"alive must be a [B, N]={B, N} bool tensor, got {alive.dtype} {tuple(alive.shape)}"
        )
    return alive


# -- torch references ------------------------------------------------------------------------
def _fix(i: torch.Tensor, size: int, wrap: bool) -> torch.Tensor:
    return torch.remainder(i, size) if wrap else i.clamp(0, size - 1)


def cells_and_weights(
    points: torch.Tensor, H: int, W: int, mode: str, boundary: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cells touched by points and their weights (the stencil shared by deposit and sense).

    Args:
        points: ``[B, M, 2]`` (x, y) in cell coordinates.

    Returns:
        index: ``[B, M, C]`` int64 flat cell index ``r * W + c`` (C = 1 nearest, 4 bilinear).
        weight: ``[B, M, C]``, summing to 1 over C (differentiable w.r.t. points, bilinear).
    """
    wrap = boundary == "wrap"
    x, y = points[..., 0], points[..., 1]
    if mode == "nearest":
        c = _fix(torch.floor(x + 0.5).long(), W, wrap)
        r = _fix(torch.floor(y + 0.5).long(), H, wrap)
        return (r * W + c).unsqueeze(-1), torch.ones_like(x).unsqueeze(-1)
    x0, y0 = torch.floor(x.detach()), torch.floor(y.detach())
    fx, fy = x - x0, y - y0
    c0, r0 = x0.long(), y0.long()
    c0, c1 = _fix(c0, W, wrap), _fix(c0 + 1, W, wrap)
    r0, r1 = _fix(r0, H, wrap), _fix(r0 + 1, H, wrap)
    index = torch.stack([r0 * W + c0, r0 * W + c1, r1 * W + c0, r1 * W + c1], dim=-1)
    weight = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], dim=-1)
    return index, weight


def sample_reference(
    field: torch.Tensor, points: torch.Tensor, mode: str = "bilinear", boundary: str = "wrap"
) -> torch.Tensor:
    """Field values at points. ``field [B, H, W]``, ``points [B, M, 2]`` → ``[B, M]``."""
    B, H, W = field.shape
    index, weight = cells_and_weights(points, H, W, mode, boundary)
    values = field.reshape(B, H * W).gather(1, index.reshape(B, -1)).view(index.shape)
    return (values * weight).sum(-1)


def deposit_reference(
    field: torch.Tensor,
    pos: torch.Tensor,
    amount: torch.Tensor,
    alive: torch.Tensor,
    mode: str = "nearest",
    boundary: str = "wrap",
) -> torch.Tensor:
    """``field`` plus every live agent's ``amount`` at its position (out of place).

    Args:
        field: ``[B, H, W]``.
        pos: ``[B, N, 2]``.
        amount: ``[B, N]``.
        alive: ``[B, N]`` bool.

    Returns:
        ``[B, H, W]``.
    """
    B, H, W = field.shape
    index, weight = cells_and_weights(pos, H, W, mode, boundary)
    mass = (amount * alive.to(amount.dtype)).unsqueeze(-1) * weight
    flat = field.reshape(B, H * W).scatter_add(1, index.reshape(B, -1), mass.reshape(B, -1))
    return flat.view(B, H, W)


def _neighbour_sum_and_count(field: torch.Tensor, wrap: bool):
    """Sum of the 8 neighbours ``[B, H, W]`` and their number (8, or ``[1, H, W]`` closed).

    The 3x3 box sum is separable: sum along rows, then along columns, then drop the centre.
    """
    B, H, W = field.shape
    if wrap:
        rows = field + torch.roll(field, 1, 2) + torch.roll(field, -1, 2)
        box = rows + torch.roll(rows, 1, 1) + torch.roll(rows, -1, 1)
        return box - field, 8.0
    p = torch.nn.functional.pad(field, (1, 1, 1, 1))
    rows = p[:, :, :-2] + p[:, :, 1:-1] + p[:, :, 2:]  # [B, H + 2, W]
    box = rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]

    def span(n: int) -> torch.Tensor:  # cells in {i-1, i, i+1} inside [0, n)
        i = torch.arange(n, device=field.device)
        return ((i > 0).to(field.dtype) + 1 + (i < n - 1).to(field.dtype)).view(-1)

    count = span(H).view(1, H, 1) * span(W).view(1, 1, W) - 1
    return box - field, count


def diffuse_evaporate_reference(
    field: torch.Tensor,
    diffusion: torch.Tensor,
    evaporation: torch.Tensor,
    boundary: str = "wrap",
) -> torch.Tensor:
    """One NetLogo ``diffuse`` then multiplication by ``1 - evaporation``.

    Each cell gives ``diffusion / 8`` of its value to each of its 8 neighbours; with a closed
    boundary the shares of missing neighbours stay in the cell, so mass is conserved.

    Args:
        field: ``[B, H, W]``.
        diffusion, evaporation: ``[B]`` rates in [0, 1].

    Returns:
        ``[B, H, W]``.
    """
    total, count = _neighbour_sum_and_count(field, boundary == "wrap")
    d = diffusion.view(-1, 1, 1)
    e = evaporation.view(-1, 1, 1)
    return (field * (1 - d * count / 8) + d / 8 * total) * (1 - e)


def sensor_points(
    pos: torch.Tensor, heading: torch.Tensor, angles: torch.Tensor, distance: torch.Tensor
) -> torch.Tensor:
    """``[B, N, K, 2]`` sensor positions: ``pos + distance * (cos, sin)(heading + angle)``.

    Args:
        pos: ``[B, N, 2]``; heading: ``[B, N]``; angles: ``[K]``; distance: ``[B]``.
    """
    theta = heading.unsqueeze(-1) + angles  # [B, N, K]
    dist = distance.view(-1, 1, 1)
    return torch.stack(
        [pos[..., 0:1] + dist * torch.cos(theta), pos[..., 1:2] + dist * torch.sin(theta)], -1
    )


def sense_reference(
    field: torch.Tensor,
    pos: torch.Tensor,
    heading: torch.Tensor,
    angles: torch.Tensor,
    distance: torch.Tensor,
    mode: str = "nearest",
    boundary: str = "wrap",
) -> torch.Tensor:
    """Field values at ``K`` sensors per agent.

    Args:
        field: ``[B, H, W]``; pos: ``[B, N, 2]``; heading: ``[B, N]``; angles: ``[K]`` radians
        relative to the heading; distance: ``[B]``.

    Returns:
        ``[B, N, K]``.
    """
    B, N = pos.shape[:2]
    pts = sensor_points(pos, heading, angles, distance).reshape(B, -1, 2)
    return sample_reference(field, pts, mode, boundary).view(B, N, -1)


# -- Triton kernels --------------------------------------------------------------------------
if HAS_TRITON:

    @triton.jit
    def _fix_index(i, size, WRAP: tl.constexpr):
        if WRAP:
            out = ((i % size) + size) % size  # positive modulo whatever the sign convention
        else:
            out = tl.minimum(tl.maximum(i, 0), size - 1)
        return out

    @triton.jit
    def _nearest_cell(x, y, H, W, WRAP: tl.constexpr):
        """Row and column of the cell whose centre is nearest to ``(x, y)``."""
        r = _fix_index(tl.floor(y + 0.5).to(tl.int64), H, WRAP)
        c = _fix_index(tl.floor(x + 0.5).to(tl.int64), W, WRAP)
        return r, c

    @triton.jit
    def _bilinear_cells(x, y, H, W, WRAP: tl.constexpr):
        """The four cells around ``(x, y)``: rows r0, r1, columns c0, c1, and fractions fx, fy."""
        x0f = tl.floor(x)
        y0f = tl.floor(y)
        c0 = x0f.to(tl.int64)
        r0 = y0f.to(tl.int64)
        r1 = _fix_index(r0 + 1, H, WRAP)
        c1 = _fix_index(c0 + 1, W, WRAP)
        return _fix_index(r0, H, WRAP), r1, _fix_index(c0, W, WRAP), c1, x - x0f, y - y0f

    @triton.jit
    def _deposit_kernel(
        field_ptr,  # [B, H, W] contiguous, updated in place with atomic adds
        pos_ptr,  # [B, N, 2] contiguous (x, y)
        amount_ptr,  # [B, N] contiguous
        alive_ptr,  # [B, N] uint8 view of the alive mask
        total,  # B * N
        N,
        H,
        W,
        BILINEAR: tl.constexpr,
        WRAP: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        pid = tl.program_id(0)
        offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < total
        live = tl.load(alive_ptr + offs, mask=mask, other=0) != 0
        active = mask & live
        x = tl.load(pos_ptr + 2 * offs, mask=mask, other=0.0)
        y = tl.load(pos_ptr + 2 * offs + 1, mask=mask, other=0.0)
        a = tl.load(amount_ptr + offs, mask=mask, other=0.0)
        base = field_ptr + (offs // N) * H * W
        if BILINEAR:
            r0, r1, c0, c1, fx, fy = _bilinear_cells(x, y, H, W, WRAP)
            tl.atomic_add(base + r0 * W + c0, a * (1 - fx) * (1 - fy), mask=active)
            tl.atomic_add(base + r0 * W + c1, a * fx * (1 - fy), mask=active)
            tl.atomic_add(base + r1 * W + c0, a * (1 - fx) * fy, mask=active)
            tl.atomic_add(base + r1 * W + c1, a * fx * fy, mask=active)
        else:
            r, c = _nearest_cell(x, y, H, W, WRAP)
            tl.atomic_add(base + r * W + c, a, mask=active)

    @triton.jit
    def _diffuse_evaporate_kernel(
        src_ptr,  # [B, H, W] contiguous, read
        dst_ptr,  # [B, H, W] contiguous, written
        diffusion_ptr,  # [B] diffusion rate per member
        evaporation_ptr,  # [B] evaporation rate per member
        total,  # B * H * W
        H,
        W,
        WRAP: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        pid = tl.program_id(0)
        offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < total
        hw = H * W
        b = offs // hw
        rem = offs % hw
        r = rem // W
        c = rem % W
        d = tl.load(diffusion_ptr + b, mask=mask, other=0.0)
        e = tl.load(evaporation_ptr + b, mask=mask, other=0.0)
        centre = tl.load(src_ptr + offs, mask=mask, other=0.0)
        acc = tl.zeros_like(centre)
        count = tl.zeros_like(centre)
        for i in tl.static_range(9):
            if i != 4:
                rr = r + (i // 3 - 1)
                cc = c + (i % 3 - 1)
                if WRAP:
                    rr = (rr + H) % H
                    cc = (cc + W) % W
                    ok = mask
                else:
                    ok = mask & (rr >= 0) & (rr < H) & (cc >= 0) & (cc < W)
                acc += tl.load(src_ptr + b * hw + rr * W + cc, mask=ok, other=0.0)
                count += ok.to(centre.dtype)
        out = (centre * (1 - d * count / 8) + d / 8 * acc) * (1 - e)
        tl.store(dst_ptr + offs, out, mask=mask)

    @triton.jit
    def _sense_kernel(
        field_ptr,  # [B, H, W] contiguous
        pos_ptr,  # [B, N, 2] contiguous
        heading_ptr,  # [B, N] contiguous
        angle_ptr,  # [K] sensor angles relative to the heading
        distance_ptr,  # [B] sensor distance per member
        out_ptr,  # [B, N, K] written
        total,  # B * N * K
        N,
        K,
        H,
        W,
        BILINEAR: tl.constexpr,
        WRAP: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        pid = tl.program_id(0)
        offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < total
        agent = offs // K
        b = agent // N
        theta = tl.load(heading_ptr + agent, mask=mask, other=0.0) + tl.load(
            angle_ptr + offs % K, mask=mask, other=0.0
        )
        dist = tl.load(distance_ptr + b, mask=mask, other=0.0)
        x = tl.load(pos_ptr + 2 * agent, mask=mask, other=0.0) + dist * tl.cos(theta)
        y = tl.load(pos_ptr + 2 * agent + 1, mask=mask, other=0.0) + dist * tl.sin(theta)
        base = field_ptr + b * H * W
        if BILINEAR:
            r0, r1, c0, c1, fx, fy = _bilinear_cells(x, y, H, W, WRAP)
            v = (1 - fx) * (1 - fy) * tl.load(base + r0 * W + c0, mask=mask, other=0.0)
            v += fx * (1 - fy) * tl.load(base + r0 * W + c1, mask=mask, other=0.0)
            v += (1 - fx) * fy * tl.load(base + r1 * W + c0, mask=mask, other=0.0)
            v += fx * fy * tl.load(base + r1 * W + c1, mask=mask, other=0.0)
        else:
            r, c = _nearest_cell(x, y, H, W, WRAP)
            v = tl.load(base + r * W + c, mask=mask, other=0.0)
        tl.store(out_ptr + offs, v, mask=mask)


# -- Triton launchers (no autograd) ----------------------------------------------------------
def _launch_deposit(field, pos, amount, alive, mode, boundary) -> torch.Tensor:
    out = field.detach().contiguous().clone()
    B, N = pos.shape[:2]
    total = B * N
    if total:
        _deposit_kernel[(triton.cdiv(total, BLOCK),)](
            out,
            pos.detach().contiguous(),
            amount.detach().contiguous(),
            alive.contiguous().view(torch.uint8),
            total,
            N,
            out.shape[1],
            out.shape[2],
            BILINEAR=mode == "bilinear",
            WRAP=boundary == "wrap",
            BLOCK=BLOCK,
        )
    return out


def _launch_diffuse(field, diffusion, evaporation, boundary) -> torch.Tensor:
    src = field.detach().contiguous()
    out = torch.empty_like(src)
    total = src.numel()
    if total:
        _diffuse_evaporate_kernel[(triton.cdiv(total, BLOCK),)](
            src,
            out,
            diffusion.detach().contiguous(),
            evaporation.detach().contiguous(),
            total,
            src.shape[1],
            src.shape[2],
            WRAP=boundary == "wrap",
            BLOCK=BLOCK,
        )
    return out


def _launch_sense(field, pos, heading, angles, distance, mode, boundary) -> torch.Tensor:
    B, N = pos.shape[:2]
    K = angles.shape[0]
    out = torch.empty(B, N, K, dtype=field.dtype, device=field.device)
    total = out.numel()
    if total:
        _sense_kernel[(triton.cdiv(total, BLOCK),)](
            field.detach().contiguous(),
            pos.detach().contiguous(),
            heading.detach().contiguous(),
            angles.detach().contiguous(),
            distance.detach().contiguous(),
            out,
            total,
            N,
            K,
            field.shape[1],
            field.shape[2],
            BILINEAR=mode == "bilinear",
            WRAP=boundary == "wrap",
            BLOCK=BLOCK,
        )
    return out


class _DepositTriton(torch.autograd.Function):
    """Triton deposit; backward: identity for the field, sampling at ``pos`` for amounts."""

    @staticmethod
    def forward(ctx, field, amount, pos, alive, mode, boundary):
        ctx.save_for_backward(pos, alive)
        ctx.mode, ctx.boundary = mode, boundary
        return _launch_deposit(field, pos, amount, alive, mode, boundary)

    @staticmethod
    def backward(ctx, grad):
        pos, alive = ctx.saved_tensors
        grad_amount = None
        if ctx.needs_input_grad[1]:
            B = pos.shape[0]
            zero_angle = torch.zeros(1, dtype=pos.dtype, device=pos.device)
            zero_dist = torch.zeros(B, dtype=pos.dtype, device=pos.device)
            heading = torch.zeros(pos.shape[:2], dtype=pos.dtype, device=pos.device)
            sampled = _launch_sense(
                grad, pos, heading, zero_angle, zero_dist, ctx.mode, ctx.boundary
            )
            grad_amount = sampled.squeeze(-1) * alive.to(grad.dtype)
        return grad, grad_amount, None, None, None, None


class _DiffuseTriton(torch.autograd.Function):
    """Triton diffusion; the operator is symmetric, so its backward is the same kernel."""

    @staticmethod
    def forward(ctx, field, diffusion, evaporation, boundary):
        ctx.save_for_backward(field, diffusion, evaporation)
        ctx.boundary = boundary
        return _launch_diffuse(field, diffusion, evaporation, boundary)

    @staticmethod
    def backward(ctx, grad):
        field, d, e = ctx.saved_tensors
        bnd = ctx.boundary
        grad_field = grad_d = grad_e = None
        if ctx.needs_input_grad[0]:
            grad_field = _launch_diffuse(grad, d, e, bnd)
        if ctx.needs_input_grad[1]:
            # out = (1 - e) * (f + d * (L f)), with L f = diffuse(f, 1, 0) - f
            one, zero = torch.ones_like(d), torch.zeros_like(e)
            lap = _launch_diffuse(field, one, zero, bnd) - field
            grad_d = (1 - e) * (grad * lap).sum(dim=(1, 2))
        if ctx.needs_input_grad[2]:
            grad_e = -(grad * _launch_diffuse(field, d, torch.zeros_like(e), bnd)).sum(dim=(1, 2))
        return grad_field, grad_d, grad_e, None


class _SenseTriton(torch.autograd.Function):
    """Triton sensing; backward w.r.t. the field splats the output gradient at the sensors."""

    @staticmethod
    def forward(ctx, field, pos, heading, angles, distance, mode, boundary):
        ctx.save_for_backward(pos, heading, angles, distance)
        ctx.mode, ctx.boundary, ctx.shape = mode, boundary, field.shape
        return _launch_sense(field, pos, heading, angles, distance, mode, boundary)

    @staticmethod
    def backward(ctx, grad):
        pos, heading, angles, distance = ctx.saved_tensors
        grad_field = None
        if ctx.needs_input_grad[0]:
            B = pos.shape[0]
            pts = sensor_points(pos, heading, angles, distance).reshape(B, -1, 2)
            zeros = torch.zeros(ctx.shape, dtype=grad.dtype, device=grad.device)
            alive = torch.ones(pts.shape[:2], dtype=torch.bool, device=grad.device)
            grad_field = _launch_deposit(
                zeros, pts, grad.reshape(B, -1), alive, ctx.mode, ctx.boundary
            )
        return grad_field, None, None, None, None, None, None


# -- public dispatchers ----------------------------------------------------------------------
def deposit(
    field: torch.Tensor,
    pos: torch.Tensor,
    amount: Scalar | torch.Tensor,
    alive: torch.Tensor | None = None,
    *,
    mode: str = "nearest",
    boundary: str = "wrap",
    backend: str = "auto",
) -> torch.Tensor:
    """Add each live agent's ``amount`` to the field at its position; returns a new field.

    The deposited mass is exact: ``out.sum() - field.sum() == (amount * alive).sum()`` up to
    float rounding (bitwise for integer amounts below 2**24 in float32), for either mode and
    either boundary.

    Args:
        field: ``[B, H, W]`` float32/float64.
        pos: ``[B, N, 2]`` (x, y) in cell coordinates, same dtype.
        amount: a scalar, or a 0-d or 2-d tensor broadcasting to ``[B, N]`` (``[B, 1]``: one
            amount per member); a 1-d tensor is refused as ambiguous.
        alive: ``[B, N]`` bool; dead agents deposit nothing (``None``: all alive).
        mode: ``"nearest"`` (the cell containing the point) or ``"bilinear"`` (a splat over
            the four cells around it).
        boundary: ``"wrap"`` or ``"closed"`` (see the module docstring).
        backend: ``"auto"`` (Triton on CUDA, else torch), ``"triton"``, ``"torch"``.

    Returns:
        ``[B, H, W]``. Triton: atomic adds (float order may vary on GPU); gradients w.r.t.
        field and amount by Triton kernels, w.r.t. pos through the reference.
    """
    _check_field(field)
    _check_agents(field, pos)
    _check_choice("mode", mode, MODES)
    _check_choice("boundary", boundary, BOUNDARIES)
    amounts = _amounts(amount, pos)
    alive = _alive(alive, pos)
    if pick(backend, field, pos) and not pos.requires_grad:
        return _DepositTriton.apply(field, amounts, pos, alive, mode, boundary)
    return deposit_reference(field, pos, amounts, alive, mode, boundary)


def diffuse_evaporate(
    field: torch.Tensor,
    diffusion: Scalar,
    evaporation: Scalar,
    *,
    boundary: str = "wrap",
    backend: str = "auto",
) -> torch.Tensor:
    """NetLogo ``diffuse`` (8 neighbours) fused with evaporation, in one pass.

    ``out = (f * (1 - d * n / 8) + d / 8 * sum of the 8 neighbours) * (1 - e)`` where ``n`` is
    the number of neighbours a cell has (8 with wrap; fewer at a closed edge, whose shares stay
    in the cell). With ``evaporation = 0`` the total mass is conserved for both boundaries.

    Args:
        field: ``[B, H, W]`` float32/float64.
        diffusion: in [0, 1], a scalar or ``[B]`` (per member).
        evaporation: in [0, 1], a scalar or ``[B]``.
        boundary: ``"wrap"`` or ``"closed"``.
        backend: ``"auto" | "triton" | "torch"``.

    Returns:
        ``[B, H, W]``; differentiable w.r.t. field and both rates on both paths (the Triton
        backward reuses the forward kernel). Range checks of tensor rates skip CUDA tensors.
    """
    _check_field(field)
    _check_choice("boundary", boundary, BOUNDARIES)
    d = _per_member("diffusion", diffusion, field, 0.0, 1.0)
    e = _per_member("evaporation", evaporation, field, 0.0, 1.0)
    if pick(backend, field):
        return _DiffuseTriton.apply(field, d, e, boundary)
    return diffuse_evaporate_reference(field, d, e, boundary)


def sense(
    field: torch.Tensor,
    pos: torch.Tensor,
    heading: torch.Tensor,
    angles: Sequence[float] | torch.Tensor,
    distance: Scalar,
    *,
    mode: str = "nearest",
    boundary: str = "wrap",
    backend: str = "auto",
) -> torch.Tensor:
    """Sample the field at ``K`` sensors per agent, at ``distance`` along ``heading + angle``.

    Args:
        field: ``[B, H, W]`` float32/float64.
        pos: ``[B, N, 2]``; heading: ``[B, N]`` radians; same dtype as the field.
        angles: ``[K]`` radians relative to the heading (e.g. ``(-pi/4, 0, pi/4)``).
        distance: a scalar or ``[B]``, in cells.
        mode: ``"nearest"`` or ``"bilinear"`` interpolation.
        boundary: ``"wrap"`` or ``"closed"`` (a sensor outside reads the edge cell).
        backend: ``"auto" | "triton" | "torch"``.

    Returns:
        ``[B, N, K]``. Triton: gradient w.r.t. the field by a Triton splat; when pos, heading,
        angles or distance require grad the reference runs instead.
    """
    _check_field(field)
    _check_agents(field, pos, heading)
    _check_choice("mode", mode, MODES)
    _check_choice("boundary", boundary, BOUNDARIES)
    angles = torch.as_tensor(angles, dtype=field.dtype, device=field.device)
    if angles.dim() != 1 or angles.shape[0] == 0:
        raise ValueError(f"angles must be a non-empty [K] sequence, got {tuple(angles.shape)}")
    dist = _per_member("distance", distance, field)
    geometry_grad = any(t.requires_grad for t in (pos, heading, angles, dist))
    if pick(backend, field, pos, heading) and not geometry_grad:
        return _SenseTriton.apply(field, pos, heading, angles, dist, mode, boundary)
    return sense_reference(field, pos, heading, angles, dist, mode, boundary)


def degrees(*values: float) -> tuple[float, ...]:
    """Angles in degrees as radians (for ``sense`` angles)."""
    return tuple(math.radians(v) for v in values)
