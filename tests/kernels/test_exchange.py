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


def test_a_cell_off_the_grid_is_refused():
    pytest.importorskip("numba")
    import torch

    from populace.engine import Streams
    from populace.kernels import exchange

    cell = torch.tensor([[0, 3, 4]])  # a 2 x 2 grid has cells 0..3
    with pytest.raises(ValueError, match="off the 2 x 2 grid"):
        exchange.step(cell, torch.ones_like(cell), 2, 2, Streams([0]).claim)
