"""What the fused CPU step kernels (:mod:`~populace.kernels.predation`,
:mod:`~populace.kernels.exchange`, :mod:`~populace.kernels.segregation`) share: the can-it-run
check and the claiming of draw sites."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from populace.kernels._backend import HAS_NUMBA
from populace.kernels.transition import Site

#: ``claim(n) -> Site``: the next draw site of an ``n``-element uniform draw (``Streams.claim``)
Claim = Callable[[int], Site]

#: float dtypes the kernels compute in
FLOATS = (torch.float32, torch.float64)


def ready(*tensors: torch.Tensor, floats: torch.dtype | None = None) -> bool:
    """Whether a kernel takes these tensors: numba installed, outside a ``torch.compile`` trace
    (the compiled step takes the torch reference), all on the CPU without a gradient, and every
    floating tensor in ``floats`` (float32 or float64)."""
    if not HAS_NUMBA or torch.compiler.is_compiling():
        return False
    if floats is not None and floats not in FLOATS:
        return False
    return all(
        t.is_cpu and not t.requires_grad and (t.dtype == floats or not t.is_floating_point())
        for t in tensors
    )


def sites(claim: Claim, *sizes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One draw site per size, claimed in order: the ``[B]`` member keys, the site constants and
    the counters of element 0."""
    claimed = [claim(n) for n in sizes]
    consts = np.array([c for _, c, _ in claimed], dtype=np.int64)
    return claimed[0][0].numpy(), consts, np.array([s for _, _, s in claimed], dtype=np.int64)
