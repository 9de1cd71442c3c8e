"""What the fused CPU step kernels (:mod:`~populace.kernels.predation`,
:mod:`~populace.kernels.exchange`, :mod:`~populace.kernels.segregation`) share: the can-it-run
check and the claiming of draw sites."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from populace.kernels.transition import Site, available

#: ``claim(n) -> Site``: the next draw site of an ``n``-element uniform draw (``Streams.claim``)
Claim = Callable[[int], Site]

#: float dtypes the kernels compute in
FLOATS = (torch.float32, torch.float64)


def ready(*tensors: torch.Tensor, floats: torch.dtype | None = None) -> bool:
    """Whether a kernel takes these tensors: :func:`~populace.kernels.transition.available`
    (numba, CPU, no gradient, outside a ``torch.compile`` trace), and every floating tensor in
    ``floats`` (float32 or float64; None: no floating tensor)."""
    if floats is not None and floats not in FLOATS:
        return False
    if not available(*tensors):
        return False
    for t in tensors:  # a loop, not all(...): this runs every step of a 100-agent model
        if t.is_floating_point() and t.dtype != floats:
            return False
    return True


def sites(claim: Claim, *sizes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One draw site per size, claimed in order: the ``[B]`` member keys, the site constants and
    the counters of element 0."""
    consts = np.empty(len(sizes), dtype=np.int64)
    starts = np.empty(len(sizes), dtype=np.int64)
    for i, n in enumerate(sizes):
        keys, consts[i], starts[i] = claim(n)
    return keys.numpy(), consts, starts
