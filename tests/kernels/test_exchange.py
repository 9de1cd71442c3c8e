import numpy as np
import pytest


@pytest.mark.parametrize("n", [1, 7, 1000])
def test_bucket_argsort_is_a_stable_argsort(n):
    """The kernel's linear-time order against numpy's stable sort, ties included (values on a
    coarse grid) and values just below 1."""
    kernel = pytest.importorskip("populace.kernels._numba_exchange")
    rng = np.random.default_rng(n)
    for u in (rng.random(n), np.floor(rng.random(n) * 5) / 5, 1 - rng.random(n) * 1e-12):
        order = np.empty(n, dtype=np.int64)
        kernel._argsort(u, np.empty(n + 1, dtype=np.int64), order)
        assert (order == np.argsort(u, kind="stable")).all()
