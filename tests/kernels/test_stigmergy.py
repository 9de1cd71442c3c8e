"""Stigmergy kernels: Triton (under TRITON_INTERPRET=1 on CPU) vs torch reference, invariants,
gradients of the references and of the Triton autograd paths."""

from __future__ import annotations

import math

import pytest
import torch

from populace.kernels import stigmergy as st
from populace.kernels._backend import HAS_TRITON, INTERPRET

TRITON_OK = HAS_TRITON and (INTERPRET or torch.cuda.is_available())
needs_triton = pytest.mark.skipif(
    not TRITON_OK, reason="the Triton path needs TRITON_INTERPRET=1 or a CUDA GPU"
)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SHAPES = [(1, 7, 9, 5), (3, 16, 12, 40)]  # (B, H, W, N)
DTYPES = [torch.float32, torch.float64]
BOUNDARIES = ["wrap", "closed"]
MODES = ["nearest", "bilinear"]


def world(B, H, W, N, dtype, seed=0, spill=2.0):
    """A random field and agents, some outside the grid (by ``spill`` cells) to test edges."""
    g = torch.Generator().manual_seed(seed)
    field = torch.rand(B, H, W, generator=g, dtype=dtype)
    lo = torch.tensor([-0.5 - spill, -0.5 - spill], dtype=dtype)
    span = torch.tensor([W + 2 * spill, H + 2 * spill], dtype=dtype)
    pos = lo + span * torch.rand(B, N, 2, generator=g, dtype=dtype)
    heading = 2 * math.pi * torch.rand(B, N, generator=g, dtype=dtype)
    amount = torch.rand(B, N, generator=g, dtype=dtype)
    alive = torch.rand(B, N, generator=g) < 0.8
    to = {"device": DEVICE}
    return field.to(**to), pos.to(**to), heading.to(**to), amount.to(**to), alive.to(**to)


def tol(dtype):
    return (
        {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-10}
    )


# -- Triton vs reference -----------------------------------------------------------------------
@needs_triton
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_deposit_triton_matches_reference(shape, dtype, mode, boundary):
    field, pos, _, amount, alive = world(*shape, dtype)
    kw = {"mode": mode, "boundary": boundary}
    fast = st.deposit(field, pos, amount, alive, backend="triton", **kw)
    ref = st.deposit(field, pos, amount, alive, backend="torch", **kw)
    torch.testing.assert_close(fast, ref, **tol(dtype))


@needs_triton
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_diffuse_evaporate_triton_matches_reference(shape, dtype, boundary):
    field = world(*shape, dtype)[0]
    B = field.shape[0]
    d = torch.linspace(0.1, 1.0, B, dtype=dtype, device=DEVICE)  # per-member rates
    fast = st.diffuse_evaporate(field, d, 0.2, boundary=boundary, backend="triton")
    ref = st.diffuse_evaporate(field, d, 0.2, boundary=boundary, backend="torch")
    torch.testing.assert_close(fast, ref, **tol(dtype))


@needs_triton
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_sense_triton_matches_reference(shape, dtype, mode, boundary):
    field, pos, heading, _, _ = world(*shape, dtype)
    angles = st.degrees(-45, 0, 45)
    kw = {"mode": mode, "boundary": boundary}
    fast = st.sense(field, pos, heading, angles, 2.3, backend="triton", **kw)
    ref = st.sense(field, pos, heading, angles, 2.3, backend="torch", **kw)
    assert fast.shape == (shape[0], shape[3], 3)
    torch.testing.assert_close(fast, ref, **tol(dtype))


def test_auto_backend_is_torch_on_cpu():
    field, pos, heading, amount, alive = world(1, 5, 5, 4, torch.float64)
    if DEVICE == "cpu":
        out = st.deposit(field, pos, amount, alive)  # auto → reference: differentiable w.r.t. pos
        assert torch.equal(out, st.deposit(field, pos, amount, alive, backend="torch"))


# -- invariants --------------------------------------------------------------------------------
BACKENDS = ["torch", pytest.param("triton", marks=needs_triton)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_deposit_total_is_exact(backend, mode, boundary):
    """Integer amounts in float32: every partial sum is exact, so the totals match bitwise."""
    field, pos, _, _, alive = world(2, 9, 11, 64, torch.float32, seed=3)
    field = torch.zeros_like(field)
    if mode == "bilinear":  # bilinear weights are fractions; put points on cell corners
        pos = torch.floor(pos) + 0.5
    amount = torch.randint(1, 100, alive.shape, generator=torch.Generator().manual_seed(1))
    amount = amount.to(field)
    out = st.deposit(field, pos, amount, alive, mode=mode, boundary=boundary, backend=backend)
    assert torch.equal(out.sum(dim=(1, 2)), (amount * alive).sum(dim=1))
    assert (out >= 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_deposit_total_matches_amounts(backend, mode, boundary):
    field, pos, _, amount, alive = world(3, 8, 6, 50, torch.float64, seed=5)
    out = st.deposit(field, pos, amount, alive, mode=mode, boundary=boundary, backend=backend)
    torch.testing.assert_close(
        out.sum(dim=(1, 2)) - field.sum(dim=(1, 2)), (amount * alive).sum(dim=1)
    )


def test_deposit_lands_in_the_nearest_cell_and_splats_bilinearly():
    field = torch.zeros(1, 4, 5, dtype=torch.float64)
    pos = torch.tensor([[[2.4, 1.6]]], dtype=torch.float64)  # x=2.4 → col 2, y=1.6 → row 2
    near = st.deposit(field, pos, 1.0, mode="nearest", backend="torch")
    assert near[0, 2, 2] == 1 and near.sum() == 1
    bil = st.deposit(field, pos, 1.0, mode="bilinear", backend="torch")
    expect = {(1, 2): 0.6 * 0.4, (1, 3): 0.4 * 0.4, (2, 2): 0.6 * 0.6, (2, 3): 0.4 * 0.6}
    for (r, c), w in expect.items():
        assert bil[0, r, c].item() == pytest.approx(w)
    assert bil.sum().item() == pytest.approx(1.0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_diffusion_conserves_mass_without_evaporation(backend, boundary):
    field = world(2, 10, 7, 1, torch.float64, seed=2)[0]
    out = field
    for _ in range(5):
        out = st.diffuse_evaporate(out, 0.7, 0.0, boundary=boundary, backend=backend)
    torch.testing.assert_close(out.sum(dim=(1, 2)), field.sum(dim=(1, 2)), rtol=1e-12, atol=0)
    assert not torch.allclose(out, field)  # it did spread


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_evaporation_scales_mass(backend, boundary):
    field = world(2, 6, 6, 1, torch.float64, seed=4)[0]
    e = torch.tensor([0.1, 0.5], dtype=torch.float64)
    out = st.diffuse_evaporate(field, 0.5, e, boundary=boundary, backend=backend)
    torch.testing.assert_close(out.sum(dim=(1, 2)), (1 - e) * field.sum(dim=(1, 2)))


def test_diffusion_of_a_point_follows_netlogo_shares():
    """An interior cell keeps 1 - d and gives d/8 to each neighbour; a corner keeps the shares
    of its 5 missing neighbours when closed, and gives them across the edge when wrapped."""
    field = torch.zeros(1, 5, 5, dtype=torch.float64)
    centre = field.clone()
    centre[0, 2, 2] = 1.0
    out = st.diffuse_evaporate(centre, 0.4, 0.0, boundary="closed", backend="torch")
    assert out[0, 2, 2].item() == pytest.approx(0.6)
    assert out[0, 1:4, 1:4].sum().item() == pytest.approx(1.0)
    assert out[0, 1, 3].item() == pytest.approx(0.05)
    corner = field.clone()
    corner[0, 0, 0] = 1.0
    closed = st.diffuse_evaporate(corner, 0.4, 0.0, boundary="closed", backend="torch")
    assert closed[0, 0, 0].item() == pytest.approx(1 - 0.4 * 3 / 8)
    wrapped = st.diffuse_evaporate(corner, 0.4, 0.0, boundary="wrap", backend="torch")
    assert wrapped[0, 0, 0].item() == pytest.approx(0.6)
    assert wrapped[0, 4, 4].item() == pytest.approx(0.05)


def test_sense_reads_cells_ahead():
    field = torch.arange(36, dtype=torch.float64).view(1, 6, 6)  # value = 6 * row + col
    pos = torch.tensor([[[2.0, 3.0]]], dtype=torch.float64)
    heading = torch.zeros(1, 1, dtype=torch.float64)  # facing +x
    got = st.sense(field, pos, heading, st.degrees(90, 0, -90), 2.0, backend="torch")
    assert got.tolist() == [[[6 * 5 + 2, 6 * 3 + 4, 6 * 1 + 2]]]
    half = st.sense(field, pos, heading, [0.0], 1.5, mode="bilinear", backend="torch")
    assert half.item() == pytest.approx(6 * 3 + 3.5)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_sense_is_the_adjoint_of_deposit(boundary):
    """<sample(f, p), a> == <f, splat(a, p)>: the identity the Triton backward passes rely on."""
    field, pos, heading, amount, _ = world(2, 7, 8, 30, torch.float64, seed=9)
    zero = torch.zeros(2, dtype=torch.float64)
    sampled = st.sense(field, pos, heading, [0.0], zero, mode="bilinear", boundary=boundary)
    splat = st.deposit(torch.zeros_like(field), pos, amount, mode="bilinear", boundary=boundary)
    torch.testing.assert_close((sampled.squeeze(-1) * amount).sum(), (field * splat).sum())


# -- gradients ---------------------------------------------------------------------------------
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_reference_gradcheck(boundary):
    field, pos, heading, amount, alive = world(2, 5, 6, 7, torch.float64, seed=11)
    field.requires_grad_(True)
    amount.requires_grad_(True)
    d = torch.tensor([0.3, 0.8], dtype=torch.float64, requires_grad=True)
    e = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    pos = torch.floor(pos) + 0.3  # bilinear weights are smooth away from cell borders
    kw = {"boundary": boundary, "backend": "torch"}
    for mode in MODES:
        assert torch.autograd.gradcheck(
            lambda f, a, m=mode: st.deposit(f, pos, a, alive, mode=m, **kw), (field, amount)
        )
        assert torch.autograd.gradcheck(
            lambda f, m=mode: st.sense(f, pos, heading, st.degrees(-30, 0, 30), 1.7, mode=m, **kw),
            (field,),
        )
    assert torch.autograd.gradcheck(
        lambda f, dd, ee: st.diffuse_evaporate(f, dd, ee, **kw), (field, d, e)
    )
    p = pos.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda q: st.deposit(field.detach(), q, amount.detach(), mode="bilinear", **kw), (p,)
    )
    h = torch.zeros_like(heading).requires_grad_(True)  # sensors at 0 deg stay off cell borders
    assert torch.autograd.gradcheck(
        lambda q, hh: st.sense(field.detach(), q, hh, [0.0], 0.25, mode="bilinear", **kw), (p, h)
    )


@needs_triton
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_triton_gradients_match_reference(boundary):
    field, pos, heading, amount, alive = world(2, 6, 5, 9, torch.float64, seed=13)
    d = torch.tensor([0.3, 0.8], dtype=torch.float64)
    e = torch.tensor(0.2, dtype=torch.float64)
    angles = st.degrees(-45, 0, 45)

    def grads(backend):
        leaves = [t.clone().requires_grad_(True) for t in (field, amount, d, e)]
        f, a, dd, ee = leaves
        kw = {"boundary": boundary, "backend": backend}
        out = st.deposit(f, pos, a, alive, mode="bilinear", **kw)
        out = st.diffuse_evaporate(out, dd, ee, **kw)
        reading = st.sense(out, pos, heading, angles, 1.5, mode="bilinear", **kw)
        (reading * torch.arange(reading.numel()).view(reading.shape)).sum().backward()
        return [t.grad for t in leaves]

    for fast, ref in zip(grads("triton"), grads("torch"), strict=True):
        torch.testing.assert_close(fast, ref)


# -- bad input ---------------------------------------------------------------------------------
def test_bad_input_is_named():
    field, pos, heading, amount, alive = world(2, 5, 5, 4, torch.float32)
    with pytest.raises(ValueError, match="field must be a \\[B, H, W\\]"):
        st.deposit(field[0], pos, amount)
    with pytest.raises(ValueError, match="pos must be"):
        st.deposit(field, pos[:1], amount)
    with pytest.raises(ValueError, match="dtype"):
        st.deposit(field, pos.double(), amount)
    with pytest.raises(ValueError, match="unknown boundary"):
        st.deposit(field, pos, amount, boundary="reflect")
    with pytest.raises(ValueError, match="unknown mode"):
        st.sense(field, pos, heading, [0.0], 1.0, mode="cubic")
    with pytest.raises(ValueError, match="NaN"):
        st.deposit(field, pos.clone().fill_(float("nan")), amount)
    with pytest.raises(ValueError, match="alive"):
        st.deposit(field, pos, amount, alive.float())
    with pytest.raises(ValueError, match="amount"):
        st.deposit(field, pos, torch.ones(3, 3))
    with pytest.raises(ValueError, match="ambiguous"):  # B == 2 members, N == 4 agents
        st.deposit(field, pos, torch.ones(4))
    with pytest.raises(ValueError, match="diffusion must lie in"):
        st.diffuse_evaporate(field, 1.5, 0.1)
    with pytest.raises(ValueError, match="evaporation must be a scalar or"):
        st.diffuse_evaporate(field, 0.5, torch.zeros(3))
    with pytest.raises(ValueError, match="heading"):
        st.sense(field, pos, heading[:, :2], [0.0], 1.0)
    with pytest.raises(ValueError, match="unknown backend"):
        st.diffuse_evaporate(field, 0.5, 0.1, backend="cuda")
