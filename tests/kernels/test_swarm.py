"""Swarm neighbour sums: Triton kernel vs torch references, cell walk vs brute force, invariants."""

from __future__ import annotations

import math

import pytest
import torch

from populace.kernels import HAS_TRITON, INTERPRET
from populace.kernels._backend import HAS_NUMBA
from populace.kernels.neighbors import cell_grid, pairs_brute_force
from populace.kernels.swarm import (
    boids_steer,
    boids_steer_reference,
    circles_force,
    circles_force_reference,
    vicsek_align,
    vicsek_align_reference,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
TRITON_OK = HAS_TRITON and (INTERPRET or torch.cuda.is_available())
needs_triton = pytest.mark.skipif(
    not TRITON_OK, reason="Triton path needs CUDA or TRITON_INTERPRET=1 (make test sets it)"
)

# (dim, box, radius, periodic): small enough for the interpreter, dense enough for neighbours
GEOMETRIES = [
    (2, 6.0, 1.0, True),
    (2, 6.0, 1.0, False),
    (2, (5.0, 2.5), 1.0, True),  # a periodic axis collapsed to one cell
    (3, 4.0, 1.0, True),
    (3, 4.0, 1.0, False),
]


def swarm(b, n, grid, seed, dtype, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    box = torch.tensor(grid.box, dtype=dtype)
    pos = torch.rand(b, n, grid.dim, generator=g, dtype=dtype) * box
    vel = torch.nn.functional.normalize(
        torch.randn(b, n, grid.dim, generator=g, dtype=dtype), dim=-1
    )
    return pos.to(device), vel.to(device)


def tol(dtype):
    return {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 1e-9, "atol": 1e-9}


def assert_all_close(got, want, dtype):
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g.cpu(), w.cpu(), **tol(dtype))


# -- torch cell walk vs brute force ---------------------------------------------------------


@pytest.mark.parametrize("dim,box,radius,periodic", GEOMETRIES)
def test_cell_references_equal_brute_force(dim, box, radius, periodic):
    grid = cell_grid(box, radius, periodic=periodic, dim=dim)
    pos, vel = swarm(2, 90, grid, seed=1, dtype=torch.float64)
    for fn, args in (
        (vicsek_align_reference, (pos, vel, grid)),
        (boids_steer_reference, (pos, vel, grid, 0.5)),
        (circles_force_reference, (pos, grid)),
    ):
        assert_all_close(fn(*args, method="cells"), fn(*args, method="brute"), torch.float64)


# -- Triton vs reference ----------------------------------------------------------------------


RULES = {
    "vicsek": (
        lambda pos, vel, grid, backend: vicsek_align(pos, vel, grid, backend=backend),
        lambda pos, vel, grid: vicsek_align_reference(pos, vel, grid),
    ),
    "boids": (
        lambda pos, vel, grid, backend: boids_steer(pos, vel, grid, 0.5, backend=backend),
        lambda pos, vel, grid: boids_steer_reference(pos, vel, grid, 0.5),
    ),
    "circles": (
        lambda pos, vel, grid, backend: circles_force(pos, grid, backend=backend),
        lambda pos, vel, grid: circles_force_reference(pos, grid),
    ),
}
# the interpreter runs every program, stencil cell and slot in Python: keep N, B and the cell
# occupancy small; float64 on two geometries, float32 on all
TRITON_CASES = [(g, torch.float32) for g in GEOMETRIES] + [
    (GEOMETRIES[0], torch.float64),
    (GEOMETRIES[4], torch.float64),
]


@needs_triton
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize("geometry,dtype", TRITON_CASES)
def test_triton_matches_reference(device, rule, geometry, dtype):
    if device == "cpu" and not INTERPRET:
        pytest.skip("Triton on CPU tensors needs TRITON_INTERPRET=1")
    dim, box, radius, periodic = geometry
    grid = cell_grid(box, radius, periodic=periodic, dim=dim)
    members = 2 if dim == 2 else 1
    pos, vel = swarm(members, 60, grid, seed=dim + periodic, dtype=dtype, device=device)
    kernel, reference = RULES[rule]
    got = kernel(pos, vel, grid, "triton")
    assert got[-1].sum() > 0  # neighbours were found
    assert_all_close(got, reference(pos.cpu(), vel.cpu(), grid), dtype)


@needs_triton
@pytest.mark.parametrize("n", [1, 3])
def test_triton_handles_tiny_populations(n):
    if not torch.cuda.is_available() and not INTERPRET:
        pytest.skip("Triton on CPU tensors needs TRITON_INTERPRET=1")
    grid = cell_grid(6.0, 1.0, periodic=True, dim=2)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pos, vel = swarm(1, n, grid, seed=n, dtype=torch.float32, device=device)
    for kernel, reference in RULES.values():
        want = reference(pos.cpu(), vel.cpu(), grid)
        assert_all_close(kernel(pos, vel, grid, "triton"), want, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dispatcher_torch_backend_matches_brute_force(dtype):
    grid = cell_grid(6.0, 1.0, periodic=True, dim=2)
    pos, vel = swarm(3, 120, grid, seed=4, dtype=dtype)
    assert_all_close(
        vicsek_align(pos, vel, grid, backend="torch"), vicsek_align_reference(pos, vel, grid), dtype
    )
    assert_all_close(
        circles_force(pos, grid, backend="torch"), circles_force_reference(pos, grid), dtype
    )


# -- numba CPU kernel vs reference ------------------------------------------------------------

needs_numba = pytest.mark.skipif(not HAS_NUMBA, reason="the optional numba extra is not installed")


def clustered_swarm(b, n, grid, seed, dtype):
    """Most agents packed into a corner cell, the rest spread out: occupancies far apart."""
    pos, vel = swarm(b, n, grid, seed, dtype)
    side = torch.tensor(grid.cell_size, dtype=dtype)
    pos[:, : 2 * n // 3] = pos[:, : 2 * n // 3] / torch.tensor(grid.box, dtype=dtype) * side
    return pos, vel


@needs_numba
@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize("dim,box,radius,periodic", GEOMETRIES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", [swarm, clustered_swarm])
def test_numba_matches_reference(rule, dim, box, radius, periodic, dtype, layout):
    grid = cell_grid(box, radius, periodic=periodic, dim=dim)
    pos, vel = layout(2, 150, grid, seed=dim + periodic, dtype=dtype)
    if not periodic:
        pos[:, :5] -= 0.7  # strays outside a bounded box keep their clamped cells
    kernel, reference = RULES[rule]
    got = kernel(pos, vel, grid, "numba")
    assert got[-1].sum() > 0
    assert_all_close(got, reference(pos, vel, grid), dtype)
    # same candidates in the same order as the torch cell walk: sums equal bit for bit,
    # but for circles' sin (a different libm)
    cells = kernel(pos, vel, grid, "torch")
    if rule != "circles":
        for g, w in zip(got, cells, strict=True):
            assert torch.equal(g, w)


@needs_numba
def test_numba_is_what_auto_runs_on_cpu_and_checks_values():
    grid = cell_grid(6.0, 1.0, periodic=True, dim=2)
    pos, vel = swarm(1, 50, grid, seed=3, dtype=torch.float32)
    assert torch.equal(
        vicsek_align(pos, vel, grid)[0], vicsek_align(pos, vel, grid, backend="numba")[0]
    )
    with pytest.raises(ValueError, match="NaN"):
        vicsek_align(pos, vel * float("nan"), grid, backend="numba")
    bad = pos.clone()
    bad[0, 7, 1] = float("inf")
    with pytest.raises(ValueError, match="NaN"):
        circles_force(bad, grid, backend="numba")


def test_auto_keeps_gradients_through_the_reference():
    grid = cell_grid(6.0, 1.0, periodic=False, dim=2)
    pos, _ = swarm(1, 40, grid, seed=5, dtype=torch.float64)
    pos.requires_grad_(True)
    force, _ = circles_force(pos, grid)
    force.sum().backward()
    assert pos.grad is not None and torch.isfinite(pos.grad).all()


@needs_triton
@pytest.mark.parametrize("rule", sorted(RULES))
def test_triton_on_clustered_agents_matches_reference(rule):
    """Blocks loop to the occupancy of the cells they visit: a packed cell beside sparse ones."""
    if not torch.cuda.is_available() and not INTERPRET:
        pytest.skip("Triton on CPU tensors needs TRITON_INTERPRET=1")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    grid = cell_grid(6.0, 1.0, periodic=True, dim=2)
    pos, vel = clustered_swarm(1, 300, grid, seed=8, dtype=torch.float32)
    kernel, reference = RULES[rule]
    got = kernel(pos.to(device), vel.to(device), grid, "triton")
    assert_all_close(got, reference(pos, vel, grid), torch.float32)


# -- invariants, independent of the implementation -------------------------------------------


def test_vicsek_count_is_pair_count_plus_self():
    grid = cell_grid(6.0, 1.0, periodic=True, dim=2)
    pos, vel = swarm(2, 120, grid, seed=2, dtype=torch.float64)
    _, count = vicsek_align(pos, vel, grid)
    pairs = pairs_brute_force(pos, grid)
    per_agent = torch.zeros(2, 120, dtype=torch.float64).index_put_(
        (pairs[:, 0], pairs[:, 1]), torch.ones(len(pairs), dtype=torch.float64), accumulate=True
    )
    assert torch.equal(count, per_agent + 1)


def test_vicsek_total_of_isolated_agent_is_its_own_velocity():
    grid = cell_grid(10.0, 1.0, periodic=True, dim=2)
    pos = torch.tensor([[[1.0, 1.0], [5.0, 5.0], [5.5, 5.0]]], dtype=torch.float64)
    vel = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]], dtype=torch.float64)
    total, count = vicsek_align(pos, vel, grid)
    assert torch.equal(count, torch.tensor([[1.0, 2.0, 2.0]], dtype=torch.float64))
    assert torch.equal(total[0, 0], vel[0, 0])
    assert torch.equal(total[0, 1], torch.tensor([1.0, 1.0], dtype=torch.float64))


@pytest.mark.parametrize("periodic", [True, False])
def test_pair_forces_cancel_in_sum(periodic):
    """Circles forces and boids cohere/separate terms are antisymmetric in (i, j): sums vanish."""
    grid = cell_grid(4.0, 1.0, periodic=periodic, dim=3)
    pos, vel = swarm(2, 120, grid, seed=9, dtype=torch.float64)
    force, count = circles_force(pos, grid)
    assert count.sum() > 0
    torch.testing.assert_close(
        force.sum(1), torch.zeros(2, 3, dtype=torch.float64), atol=1e-10, rtol=0
    )
    cohere, separate, match, n = boids_steer(pos, vel, grid, 0.5)
    torch.testing.assert_close(
        cohere.sum(1), torch.zeros(2, 3, dtype=torch.float64), atol=1e-10, rtol=0
    )
    torch.testing.assert_close(
        separate.sum(1), torch.zeros(2, 3, dtype=torch.float64), atol=1e-10, rtol=0
    )


def test_circles_pair_force_has_the_flame_gpu_shape():
    """Two agents: repelled below R/2, attracted above, zero at R/2 and beyond R."""
    grid = cell_grid(10.0, 2.0, periodic=False, dim=3)
    for d, sign in ((0.5, -1.0), (1.5, 1.0), (2.5, 0.0)):
        pos = torch.tensor([[[3.0, 3.0, 3.0], [3.0 + d, 3.0, 3.0]]], dtype=torch.float64)
        force, _ = circles_force(pos, grid)
        want = math.sin(-2 * math.pi * d / 2.0) if d < 2.0 else 0.0
        torch.testing.assert_close(force[0, 0, 0].item(), want)  # along +x, towards agent 1
        assert math.copysign(1.0, force[0, 0, 0].item()) == sign or sign == 0.0
        torch.testing.assert_close(force[0, 1], -force[0, 0])


def test_boids_sums_on_a_hand_checked_case():
    grid = cell_grid(20.0, 5.0, periodic=True, dim=2)
    pos = torch.tensor([[[1.0, 1.0], [1.5, 1.0], [19.0, 1.0], [10.0, 10.0]]], dtype=torch.float64)
    vel = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [1.0, 0.0]]], dtype=torch.float64)
    cohere, separate, match, count = boids_steer(pos, vel, grid, 1.0)
    # agent 0 sees agent 1 at +0.5 (within separation) and agent 2 at -2.0 across the edge
    torch.testing.assert_close(cohere[0, 0], torch.tensor([-1.5, 0.0], dtype=torch.float64))
    torch.testing.assert_close(separate[0, 0], torch.tensor([-0.5, 0.0], dtype=torch.float64))
    torch.testing.assert_close(match[0, 0], torch.tensor([0.0, 0.0], dtype=torch.float64))
    assert count[0].tolist() == [2.0, 2.0, 2.0, 0.0]


def test_bad_inputs_raise_clear_errors():
    grid = cell_grid(6.0, 1.0, periodic=True, dim=2)
    pos, vel = swarm(1, 10, grid, seed=0, dtype=torch.float32)
    with pytest.raises(ValueError, match="shape of pos"):
        vicsek_align(pos, vel[:, :5], grid)
    with pytest.raises(ValueError, match="must match pos"):
        vicsek_align(pos, vel.double(), grid)
    with pytest.raises(ValueError, match="NaN"):
        vicsek_align(pos, vel * float("nan"), grid)
    with pytest.raises(ValueError, match="unknown backend"):
        circles_force(pos, grid, backend="cuda")
    with pytest.raises(ValueError, match="separation"):
        boids_steer(pos, vel, grid, -1.0)
    with pytest.raises(ValueError, match="unknown reference method"):
        circles_force_reference(pos, grid, method="fast")
