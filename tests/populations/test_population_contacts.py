"""CSR contact layers against dense brute force; households; group chunking."""

import pytest
import torch

from populace.populations import chunk_groups, clique_layer, csr_from_edges, form_households


def assert_valid_csr(layer, n):
    """Torch's own invariant check (sorted unique columns per row, bounds), no self-loops."""
    crow, col, val = layer.crow_indices(), layer.col_indices(), layer.values()
    assert crow.dtype == torch.int64 and col.dtype == torch.int64 and val.dtype == torch.float32
    torch.sparse_csr_tensor(crow, col, val, size=(n, n), check_invariants=True)
    rows = torch.repeat_interleave(torch.arange(n), crow.diff())
    assert (rows != col).all()
    if n > 1 and col.numel():
        same_row = rows[1:] == rows[:-1]
        assert (col[1:][same_row] > col[:-1][same_row]).all()


@pytest.mark.parametrize("n, groups", [(1, 1), (7, 3), (60, 9), (300, 40)])
def test_clique_layer_equals_brute_force(n, groups):
    g = torch.Generator().manual_seed(n)
    group = torch.randint(-1, groups, (n,), generator=g)
    layer = clique_layer(group, weight=0.5)
    assert_valid_csr(layer, n)
    same = (group[:, None] == group[None, :]) & (group[:, None] >= 0)
    same.fill_diagonal_(False)
    torch.testing.assert_close(layer.to_dense(), same.float() * 0.5)


def test_csr_from_edges_equals_brute_force_and_is_symmetric():
    g = torch.Generator().manual_seed(1)
    n = 50
    rows, cols = torch.randint(0, n, (400,), generator=g), torch.randint(0, n, (400,), generator=g)
    layer = csr_from_edges(rows, cols, n)
    assert_valid_csr(layer, n)
    dense = torch.zeros(n, n)
    dense[rows, cols] = 1
    dense[cols, rows] = 1
    dense.fill_diagonal_(0)
    torch.testing.assert_close(layer.to_dense(), dense)


def test_csr_from_edges_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        csr_from_edges(torch.tensor([0]), torch.tensor([3]), 3)


def test_chunk_groups_sizes_and_keys():
    g = torch.Generator().manual_seed(0)
    key = torch.randint(-1, 5, (1000,), generator=g)
    group = chunk_groups(key, torch.tensor([7, 3]), generator=g)
    assert torch.equal(group < 0, key < 0)
    ids, counts = torch.unique(group[group >= 0], return_counts=True)
    for gid, c in zip(ids.tolist(), counts.tolist(), strict=True):
        keys = key[group == gid].unique()
        assert keys.numel() == 1  # a group never mixes keys
        assert c in (7, 3) or c < 7  # only each key's last group may be short
    for k in range(5):
        sizes = torch.unique(group[key == k], return_counts=True)[1]
        assert int((~torch.isin(sizes, torch.tensor([7, 3]))).sum()) <= 1


def test_households_partition_areas_with_adult_heads():
    g = torch.Generator().manual_seed(2)
    n = 20000
    area = torch.sort(torch.randint(0, 12, (n,), generator=g)).values
    adult = torch.rand(n, generator=g) < 0.75
    probs = (0.3, 0.3, 0.2, 0.2)
    household = form_households(area, adult, probs, generator=g)
    ids, size = torch.unique(household, return_counts=True)
    assert torch.equal(ids, torch.arange(ids.numel()))
    assert int(size.max()) <= 4
    # no household crosses an area; each has at least one adult (adults are plentiful here)
    areas_per = torch.zeros(ids.numel(), dtype=torch.long).scatter_reduce(
        0, household, area, "amax", include_self=False
    ) - torch.zeros(ids.numel(), dtype=torch.long).scatter_reduce(
        0, household, area, "amin", include_self=False
    )
    assert (areas_per == 0).all()
    adults = torch.zeros(ids.numel(), dtype=torch.long).index_add_(0, household, adult.long())
    assert (adults >= 1).all()
    # household sizes follow the distribution (only the last one per area is truncated)
    freq = torch.bincount(size, minlength=5)[1:].double() / size.numel()
    torch.testing.assert_close(freq, torch.tensor(probs, dtype=torch.float64), atol=0.02, rtol=0)


def test_households_reject_bad_distribution():
    with pytest.raises(ValueError, match="probability vector"):
        form_households(torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.bool), (0.5,))
