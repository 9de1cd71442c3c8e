"""Contact pressure on CSR layers: Triton vs reference vs torch.sparse.mm; gradients."""

from __future__ import annotations

import pytest
import torch

from populace.kernels import HAS_TRITON, INTERPRET
from populace.kernels._backend import HAS_NUMBA
from populace.kernels.graph import (
    contact_pressure,
    contact_pressure_reference,
    spmv_reference,
    transpose_reference,
    transposed,
)
from populace.populations.graphs import csr_from_edges, erdos_renyi

triton_ok = pytest.mark.skipif(
    not (HAS_TRITON and (INTERPRET or torch.cuda.is_available())),
    reason="the Triton path needs TRITON_INTERPRET=1 (set by `make test`) or a GPU",
)


def random_layer(n, density, dtype=torch.float64, seed=0, device="cpu"):
    """A random sparse [n, n] weighted layer (not symmetric: rows and columns differ)."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(n, n, generator=gen) < density
    dense = torch.where(mask, torch.rand(n, n, generator=gen, dtype=dtype) + 0.1, 0.0)
    dense[0] = 0  # an agent without contacts
    dense[1, :] = torch.rand(n, generator=gen, dtype=dtype)  # a hub row, longer than the rest
    return dense.to_sparse_csr().to(device), dense.to(device)


def _nodes(b, n, dtype, seed=1, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(b, n, generator=gen, dtype=dtype).to(device)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("b,n,density", [(1, 5, 0.5), (3, 90, 0.05), (2, 130, 0.03)])
def test_reference_matches_sparse_mm(dtype, b, n, density):
    layer, _ = random_layer(n, density, dtype)
    x = _nodes(b, n, dtype)
    want = torch.sparse.mm(layer, x.T).T
    got = spmv_reference(layer.crow_indices(), layer.col_indices(), layer.values(), x)
    torch.testing.assert_close(got, want)


@triton_ok
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("b,n,density", [(1, 5, 0.5), (3, 90, 0.05), (2, 130, 0.03)])
def test_triton_matches_sparse_mm_over_layers(dtype, b, n, density):
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    layers = [random_layer(n, density, dtype, seed=s, device=dev)[0] for s in (0, 1)]
    x = _nodes(b, n, dtype, device=dev)
    sus = _nodes(b, n, dtype, seed=2, device=dev)
    scales = [torch.linspace(0, 1, b, dtype=dtype, device=dev), 0.5]
    got = contact_pressure(layers, x, sus, scales, backend="triton")
    want = (
        sum(
            (s if isinstance(s, float) else s.unsqueeze(1)) * torch.sparse.mm(a, x.T).T
            for a, s in zip(layers, scales, strict=True)
        )
        * sus
    )
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {}
    torch.testing.assert_close(got, want, **tol)
    torch.testing.assert_close(got, contact_pressure_reference(layers, x, sus, scales), **tol)


def _pressure_inputs(requires_grad=True):
    layer, dense = random_layer(10, 0.3)
    w = layer.values().clone().requires_grad_(requires_grad)
    x = _nodes(2, 10, torch.float64).requires_grad_(requires_grad)
    sus = _nodes(2, 10, torch.float64, seed=3).requires_grad_(requires_grad)
    s = torch.tensor([0.3, 1.2], dtype=torch.float64, requires_grad=requires_grad)
    return layer, w, x, sus, s


def test_gradcheck_reference_wrt_nodes_weights_and_scales():
    layer, w, x, sus, s = _pressure_inputs()
    crow, col = layer.crow_indices(), layer.col_indices()

    def f(w, x, sus, s):
        lay = torch.sparse_csr_tensor(crow, col, w, size=layer.shape)
        return contact_pressure(lay, x, sus, [s], backend="torch")

    assert torch.autograd.gradcheck(f, (w, x, sus, s))


@triton_ok
def test_triton_gradients_match_reference():
    layer, w, x, sus, s = _pressure_inputs()
    crow, col = layer.crow_indices(), layer.col_indices()
    grads = []
    for backend in ("triton", "torch"):
        inputs = [t.detach().clone().requires_grad_(True) for t in (w, x, sus, s)]
        lay = torch.sparse_csr_tensor(crow, col, inputs[0], size=layer.shape)
        out = contact_pressure(lay, inputs[1], inputs[2], [inputs[3]], backend=backend)
        (out * torch.arange(20, dtype=out.dtype).view(2, 10)).sum().backward()
        grads.append([t.grad for t in inputs])
    for got, want in zip(*grads, strict=True):
        torch.testing.assert_close(got, want)


def test_layer_scale_zero_switches_layer_off_and_pressure_counts_infectious_contacts():
    # a path 0-1-2-3: agent 1 has contacts 0 and 2
    dense = torch.zeros(4, 4)
    for i, j in ((0, 1), (1, 2), (2, 3)):
        dense[i, j] = dense[j, i] = 1.0
    layer = dense.to_sparse_csr()
    infectious = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    assert contact_pressure(layer, infectious).tolist() == [[0.0, 2.0, 0.0, 1.0]]
    off = contact_pressure([layer, layer], infectious, scales=[0.0, torch.tensor(1.0)])
    assert off.tolist() == [[0.0, 2.0, 0.0, 1.0]]


def test_bad_layers_raise_naming_the_problem():
    x = torch.rand(1, 4)
    with pytest.raises(TypeError, match="sparse_csr"):
        contact_pressure(torch.eye(4), x)
    with pytest.raises(ValueError, match=r"\[5, 5\]"):
        contact_pressure(torch.eye(5).to_sparse_csr(), x)
    with pytest.raises(ValueError, match=r"\[B, N\]"):
        contact_pressure(torch.eye(4).to_sparse_csr(), torch.rand(4))
    with pytest.raises(ValueError, match="scales"):
        contact_pressure([torch.eye(4).to_sparse_csr()], x, scales=[1.0, 2.0])
    with pytest.raises(ValueError, match="scales"):
        contact_pressure(torch.eye(4).to_sparse_csr(), x, scales=[torch.ones(3)])


# -- frontier contagion: push from the infectious rows == pull over all rows ------------------

BACKENDS = ["torch"] + (["numba"] if HAS_NUMBA else [])


def sparse_infectious(b, n, fraction, dtype, seed=4, weighted=False):
    gen = torch.Generator().manual_seed(seed)
    on = torch.rand(b, n, generator=gen) < fraction
    value = torch.rand(b, n, generator=gen, dtype=dtype) + 0.5 if weighted else 1.0
    return torch.where(on, value, torch.zeros((), dtype=dtype))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("strategy", ["push", "pull", "auto"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fraction", [0.0, 0.02, 0.5])
def test_push_and_pull_match_the_reference(backend, strategy, dtype, fraction):
    layers = [random_layer(150, 0.04, dtype, seed=s)[0] for s in (0, 1)]  # not symmetric
    x = sparse_infectious(3, 150, fraction, dtype, weighted=True)
    sus = _nodes(3, 150, dtype, seed=2)
    scales = [torch.tensor([0.0, 0.5, 1.0], dtype=dtype), 2.0]
    got = contact_pressure(layers, x, sus, scales, backend=backend, strategy=strategy)
    want = contact_pressure_reference(layers, x, sus, scales)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_push_equals_pull_bit_for_bit_on_a_contact_network(backend):
    """Symmetric unit-weight layer (sorted columns): both visit each agent's infectious contacts
    in the same order, so the sums agree exactly, not just closely."""
    layer = erdos_renyi(2000, 8.0, seed=3)
    x = sparse_infectious(2, 2000, 0.1, torch.float32)
    push = contact_pressure(layer, x, backend=backend, strategy="push")
    pull = contact_pressure(layer, x, backend=backend, strategy="pull")
    assert torch.equal(push, pull)
    assert torch.equal(push, torch.sparse.mm(layer, x.T).T)  # integer counts: exact
    t = transposed(layer)
    assert t.symmetric and t.unit
    assert t.col.data_ptr() == layer.col_indices().data_ptr()  # no copy kept


def test_transpose_is_a_transpose_and_follows_in_place_weight_changes():
    layer, dense = random_layer(40, 0.1)
    t = transposed(layer)
    assert not t.symmetric and not t.unit
    rebuilt = torch.sparse_csr_tensor(t.crow, t.col, t.weight, size=(40, 40)).to_dense()
    assert torch.equal(rebuilt, dense.T)
    assert transposed(layer) is t  # cached while the layer lives
    layer.values().mul_(2.0)
    assert torch.equal(transposed(layer).weight, t.weight * 2)


def _csr(rows, cols, weights, n):
    crow = torch.zeros(n + 1, dtype=torch.int64)
    rows = torch.tensor(rows, dtype=torch.int64)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=n), 0)
    cols = torch.tensor(cols, dtype=torch.int64)
    return crow, cols, torch.tensor(weights, dtype=torch.float32)


@pytest.mark.skipif(not HAS_NUMBA, reason="the numba kernel needs the numba extra")
def test_own_transpose_check_agrees_with_building_the_transpose():
    """The numba one-pass check says "A^T == A" exactly where the torch build finds its arrays
    equal: symmetric graphs (repeats included), asymmetric weights or structure, and repeated
    entries whose weights come in another order in the mirrored row."""
    from populace.kernels import _numba_graph

    gen = torch.Generator().manual_seed(4)
    src, dst = torch.randint(0, 30, (2, 120), generator=gen)
    weights = torch.rand(120, generator=gen)
    cases = {
        "erdos_renyi": erdos_renyi(200, 6.0, seed=1),
        "repeats kept": csr_from_edges(src, dst, 30, dedupe=False),
        "weighted symmetric": csr_from_edges(src, dst, 30, weights),
        # (i, j, w1) and (j, i, w2) both kept: row i holds w1 then w2, row j w2 then w1
        "weighted repeats kept": csr_from_edges(src, dst, 30, weights, dedupe=False),
        "directed": csr_from_edges(src, dst, 30, symmetric=False),
        "weighted directed": random_layer(40, 0.1, torch.float32)[0],
    }
    arrays = {k: (v.crow_indices(), v.col_indices(), v.values()) for k, v in cases.items()}
    # the same entries both ways, but the repeated (0, 1)s' weights in the other order in row 1
    arrays["repeat order"] = _csr([0, 0, 1, 1], [1, 1, 0, 0], [1.0, 2.0, 2.0, 1.0], 2)
    arrays["one-way edge"] = _csr([0, 0, 1], [0, 1, 1], [1.0, 1.0, 1.0], 2)
    arrays["no edges"] = _csr([], [], [], 3)
    want = {"erdos_renyi", "repeats kept", "weighted symmetric", "no edges"}
    for name, (crow, col, w) in arrays.items():
        own = bool(_numba_graph.is_own_transpose(crow.numpy(), col.numpy(), w.numpy()))
        assert own == transpose_reference(crow, col, w).symmetric == (name in want), name
    layer = cases["weighted symmetric"]
    t = transposed(layer)  # the numba check: no copy, weights kept, not unit
    assert t.symmetric and not t.unit and t.col.data_ptr() == layer.col_indices().data_ptr()


def test_auto_keeps_gradients_by_pulling():
    layer, w, x, sus, s = _pressure_inputs()
    xa = x.detach().clone().requires_grad_(True)
    contact_pressure(layer, xa, sus.detach(), [s.detach()]).sum().backward()
    xr = x.detach().clone().requires_grad_(True)
    contact_pressure_reference([layer], xr, sus.detach(), [s.detach()]).sum().backward()
    torch.testing.assert_close(xa.grad, xr.grad)
    with pytest.raises(ValueError, match="unknown strategy"):
        contact_pressure(layer, x.detach(), strategy="frontier")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_scale_keeps_its_gradient_and_a_plain_scale_its_value(backend):
    """Only the layer scale needs a gradient: the kernel paths run (numba scales its own buffer
    in place) and the gradient is the reference's."""
    layer, _, x, _, s = _pressure_inputs(requires_grad=False)
    sa, sr = s.clone().requires_grad_(True), s.clone().requires_grad_(True)
    got = contact_pressure(layer, x, scales=[sa], backend=backend)
    want = contact_pressure_reference([layer], x, scales=[sr])
    torch.testing.assert_close(got, want)
    (got * x).sum().backward()
    (want * x).sum().backward()
    torch.testing.assert_close(sa.grad, sr.grad)
    torch.testing.assert_close(contact_pressure(layer, x, scales=[s], backend=backend), want)


@triton_ok
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("strategy", ["push", "pull"])
def test_triton_push_and_pull_match_the_reference(dtype, strategy):
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    layer = random_layer(90, 0.05, dtype, seed=5)[0]
    x = sparse_infectious(2, 90, 0.1, dtype, weighted=True)
    got = contact_pressure(layer.to(dev), x.to(dev), backend="triton", strategy=strategy)
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {}
    torch.testing.assert_close(got.cpu(), contact_pressure_reference([layer], x), **tol)
