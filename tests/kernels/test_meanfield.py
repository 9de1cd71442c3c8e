"""Grouped reductions and the Kuramoto mean field: Triton vs reference vs torch.scatter_reduce."""

from __future__ import annotations

import math

import pytest
import torch

from populace.kernels import HAS_TRITON, INTERPRET
from populace.kernels.meanfield import (
    group_count,
    group_gather,
    group_gather_reference,
    group_mean,
    group_sum,
    group_sum_reference,
    kuramoto_order,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
triton_ok = pytest.mark.skipif(
    not (HAS_TRITON and (INTERPRET or torch.cuda.is_available())),
    reason="the Triton path needs TRITON_INTERPRET=1 (set by `make test`) or a GPU",
)


def _device_for_triton() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _inputs(b, n, c, g, dtype, shared, device="cpu", seed=0):
    gen = torch.Generator().manual_seed(seed)
    shape = (b, n) if c is None else (b, n, c)
    values = torch.randn(*shape, generator=gen, dtype=dtype).to(device)
    group = torch.randint(0, g, (n,) if shared else (b, n), generator=gen).to(device)
    return values, group


def _scatter_sum(values, group, g, reduce="sum"):
    """torch.scatter_reduce as the independent oracle."""
    b, n = values.shape[:2]
    grp = group.expand(b, n) if group.dim() == 1 else group
    if values.dim() == 3:
        grp = grp.unsqueeze(-1).expand_as(values)
        out = values.new_zeros(b, g, values.shape[2])
    else:
        out = values.new_zeros(b, g)
    return out.scatter_reduce(1, grp, values, reduce=reduce, include_self=False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 37, None, 5), (3, 200, None, 17), (2, 64, 3, 4)])
@pytest.mark.parametrize("shared", [True, False])
def test_reference_matches_scatter_reduce(dtype, shape, shared):
    b, n, c, g = shape
    values, group = _inputs(b, n, c, g, dtype, shared)
    torch.testing.assert_close(
        group_sum_reference(values, group, g), _scatter_sum(values, group, g)
    )
    torch.testing.assert_close(
        group_mean(values, group, g, backend="torch"), _scatter_sum(values, group, g, "mean")
    )


@triton_ok
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 37, None, 5), (3, 300, None, 17), (2, 130, 3, 4)])
@pytest.mark.parametrize("shared", [True, False])
def test_triton_matches_reference(dtype, shape, shared):
    b, n, c, g = shape
    dev = _device_for_triton()
    values, group = _inputs(b, n, c, g, dtype, shared, dev)
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {}
    torch.testing.assert_close(
        group_sum(values, group, g, backend="triton"), group_sum_reference(values, group, g), **tol
    )
    table = torch.randn(b, g, *(() if c is None else (c,)), dtype=dtype).to(dev)
    torch.testing.assert_close(
        group_gather(table, group, backend="triton"), group_gather_reference(table, group)
    )


@triton_ok
def test_triton_gradients_match_reference():
    dev = _device_for_triton()
    values, group = _inputs(2, 150, 2, 6, torch.float64, False, dev)
    weights = torch.randn(2, 6, 2, dtype=torch.float64, device=dev)
    grads = []
    for backend in ("triton", "torch"):
        v = values.clone().requires_grad_(True)
        t = weights.clone().requires_grad_(True)
        out = (group_sum(v, group, 6, backend=backend) * weights).sum()
        out = out + (group_gather(t, group, backend=backend) * values).sum()
        out.backward()
        grads.append((v.grad, t.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])


def test_gradcheck_references():
    values, group = _inputs(2, 12, 2, 4, torch.float64, False)
    values.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: group_sum_reference(v, group, 4), (values,))
    assert torch.autograd.gradcheck(lambda v: group_mean(v, group, 4, backend="torch"), (values,))
    table = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: group_gather_reference(t, group), (table,))
    theta = torch.rand(2, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda th: kuramoto_order(th, backend="torch")[0], (theta,))


def test_sum_conserves_total_and_count_matches_bincount():
    values, group = _inputs(3, 500, None, 7, torch.float64, True)
    torch.testing.assert_close(group_sum(values, group, 7).sum(dim=1), values.sum(dim=1))
    count = group_count(group, 7, members=3)
    assert count.shape == (3, 7)
    torch.testing.assert_close(count[0], torch.bincount(group, minlength=7).float())


def test_gather_of_sum_is_group_total_per_agent():
    values, group = _inputs(2, 100, None, 5, torch.float64, False)
    back = group_gather(group_sum(values, group, 5), group)
    for b in range(2):
        for i in (0, 17, 99):
            assert back[b, i] == pytest.approx(float(values[b][group[b] == group[b, i]].sum()))


@pytest.mark.parametrize("backend", ["torch"] + (["triton"] if HAS_TRITON and INTERPRET else []))
def test_kuramoto_order_known_values(backend):
    # all phases equal → r = 1, psi = that phase; evenly spread phases → r = 0
    theta = torch.stack([torch.full((64,), 0.7), torch.arange(64) * (2 * math.pi / 64)])
    r, psi = kuramoto_order(theta, backend=backend)
    assert r[0] == pytest.approx(1.0, abs=1e-6) and psi[0] == pytest.approx(0.7, abs=1e-6)
    assert r[1] == pytest.approx(0.0, abs=1e-5)
    # per group: group 0 synchronised, group 1 spread out
    group = torch.tensor([0, 1] * 32)
    theta = torch.where(group == 0, 1.2, group.float() * torch.arange(64) * (math.pi / 32))
    rg, psig = kuramoto_order(theta.unsqueeze(0), group, 2, backend=backend)
    assert rg[0, 0] == pytest.approx(1.0, abs=1e-6) and psig[0, 0] == pytest.approx(1.2, abs=1e-6)
    assert rg[0, 1] == pytest.approx(0.0, abs=1e-5)


def test_bad_inputs_raise_naming_the_problem():
    values = torch.randn(2, 10)
    with pytest.raises(TypeError, match="int64"):
        group_sum(values, torch.zeros(10, dtype=torch.int32), 3)
    with pytest.raises(ValueError, match="shape"):
        group_sum(values, torch.zeros(11, dtype=torch.int64), 3)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        group_sum(values, torch.full((10,), 3), 3)
    with pytest.raises(TypeError, match="floating"):
        group_sum(values.long(), torch.zeros(10, dtype=torch.int64), 3)
    with pytest.raises(ValueError, match="groups"):
        kuramoto_order(values, torch.zeros(10, dtype=torch.int64))
    with pytest.raises(ValueError, match="backend"):
        group_sum(values, torch.zeros(10, dtype=torch.int64), 3, backend="cuda")
