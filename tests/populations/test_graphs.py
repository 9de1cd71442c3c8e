"""networkx <-> CSR converters and the tensor graph generators."""

from __future__ import annotations

import networkx as nx
import pytest
import torch

from populace.populations.graphs import (
    configuration_model,
    csr_from_edges,
    degrees,
    erdos_renyi,
    from_networkx,
    to_networkx,
)


def test_networkx_round_trip_weighted_undirected():
    g = nx.gnp_random_graph(40, 0.15, seed=3)
    for k, (u, v) in enumerate(g.edges):
        g.edges[u, v]["weight"] = 0.5 + k % 3
    layer = from_networkx(g)
    assert layer.layout == torch.sparse_csr and layer.shape == (40, 40)
    dense = layer.to_dense()
    torch.testing.assert_close(dense, dense.T)  # undirected: stored both ways
    want = torch.as_tensor(nx.to_numpy_array(g, nodelist=range(40)), dtype=torch.float32)
    torch.testing.assert_close(dense, want)
    back = to_networkx(layer)
    assert nx.utils.graphs_equal(back, g)
    assert torch.equal(degrees(layer), torch.tensor([d for _, d in sorted(g.degree)]))


def test_from_networkx_directed_and_nodelist():
    g = nx.DiGraph([("a", "b"), ("b", "c")])
    layer = from_networkx(g, nodelist=["c", "b", "a"], weight=None)
    # row of "a" (2) lists "b" (1); row of "b" (1) lists "c" (0)
    assert layer.to_dense().tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0]]
    with pytest.raises(ValueError, match="nodelist"):
        from_networkx(g, nodelist=["a", "b"])
    with pytest.raises(TypeError, match="multigraph"):
        from_networkx(nx.MultiGraph([(0, 1)]))


def test_csr_from_edges_drops_loops_and_repeats_and_sorts_rows():
    src = torch.tensor([3, 0, 2, 0, 1])
    dst = torch.tensor([0, 3, 2, 1, 0])
    layer = csr_from_edges(src, dst, 4)
    assert layer.to_dense().tolist() == [[0, 1, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]]
    crow, col = layer.crow_indices(), layer.col_indices()
    for i in range(4):
        row = col[crow[i] : crow[i + 1]]
        assert torch.equal(row, row.sort().values)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        csr_from_edges(torch.tensor([0]), torch.tensor([4]), 4)
    with pytest.raises(TypeError, match="int64"):
        csr_from_edges(
            torch.tensor([0], dtype=torch.int32), torch.tensor([1], dtype=torch.int32), 4
        )


def test_erdos_renyi_degrees_are_poisson_and_graph_is_reproducible():
    n, k = 20_000, 6.0
    layer = erdos_renyi(n, k, seed=5)
    deg = degrees(layer).double()
    assert deg.mean() == pytest.approx(k, rel=0.01)
    assert deg.var() == pytest.approx(k, rel=0.05)  # Poisson: variance = mean
    p0 = float((deg == 0).double().mean())
    assert p0 == pytest.approx(torch.exp(torch.tensor(-k)).item(), abs=1e-3)
    dense_check = erdos_renyi(300, 4.0, seed=1).to_dense()
    torch.testing.assert_close(dense_check, dense_check.T)
    assert dense_check.diagonal().abs().sum() == 0
    again = erdos_renyi(n, k, seed=5)
    assert torch.equal(again.col_indices(), layer.col_indices())


def test_configuration_model_keeps_wanted_degrees_up_to_erased_edges():
    gen = torch.Generator().manual_seed(0)
    want = torch.randint(1, 8, (5_000,), generator=gen)
    layer = configuration_model(want, seed=2)
    got = degrees(layer)
    assert (got <= want).all()
    assert float((want - got).sum()) / float(want.sum()) < 0.01  # few loops/repeats erased
    dense = erdos_renyi(50, 3.0, seed=0).to_dense()
    assert torch.equal(dense, dense.T)
    with pytest.raises(ValueError, match="int64"):
        configuration_model(torch.ones(4))


def test_csr_from_edges_symmetric_keeps_one_weight_per_pair():
    src, dst = torch.tensor([0, 1, 2, 2]), torch.tensor([1, 0, 3, 3])
    layer = csr_from_edges(src, dst, 4, torch.tensor([1.0, 5.0, 2.0, 7.0]))
    dense = layer.to_dense()
    torch.testing.assert_close(dense, dense.T)
    assert dense[0, 1] == 1.0 and dense[2, 3] == 2.0  # the first weight given for the pair


def _stored_edges(src, dst, symmetric, dedupe):
    """The sorted (row, col) entries csr_from_edges should store, written out in Python."""
    pairs = list(zip(src.tolist(), dst.tolist(), strict=True))
    if dedupe:
        pairs = {(min(u, v), max(u, v)) if symmetric else (u, v) for u, v in pairs if u != v}
    if symmetric:
        pairs = [*pairs, *((v, u) for u, v in pairs)]
    return sorted(pairs)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("dedupe", [True, False])
def test_one_weight_key_sort_equals_the_weighted_build_and_the_edge_list(symmetric, dedupe):
    """A number as weight takes the in-place key sort (no permutation carried); a weight
    per edge takes the torch stable sorts: the same arrays, the entries written out by hand,
    on graphs with repeats, self-loops and agents without contacts."""
    gen = torch.Generator().manual_seed(7)
    for trial in range(30):
        n = int(torch.randint(1, 25, (1,), generator=gen))
        e = int(torch.randint(0, 60, (1,), generator=gen))
        src, dst = torch.randint(0, n, (2, e), generator=gen)
        one = csr_from_edges(src, dst, n, 2.5, symmetric=symmetric, dedupe=dedupe)
        per_edge = csr_from_edges(
            src, dst, n, torch.full((e,), 2.5), symmetric=symmetric, dedupe=dedupe
        )
        for a, b in [
            (one.crow_indices(), per_edge.crow_indices()),
            (one.col_indices(), per_edge.col_indices()),
            (one.values(), per_edge.values()),
        ]:
            assert a.dtype == b.dtype and torch.equal(a, b), trial
        rows = torch.repeat_interleave(torch.arange(n), one.crow_indices().diff())
        got = list(zip(rows.tolist(), one.col_indices().tolist(), strict=True))
        assert got == _stored_edges(src, dst, symmetric, dedupe), trial
        assert bool((one.values() == 2.5).all())


def test_csr_from_edges_refuses_a_bad_weight_with_one_number_too():
    src, dst = torch.tensor([0, 1]), torch.tensor([1, 2])
    for bad in (float("nan"), float("inf"), torch.tensor(float("nan"))):
        with pytest.raises(ValueError, match="NaN/Inf"):
            csr_from_edges(src, dst, 3, bad)
    with pytest.raises(ValueError, match="NaN/Inf"):
        csr_from_edges(src, dst, 3, torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        csr_from_edges(src, torch.tensor([1, -1]), 3, 1.0)
