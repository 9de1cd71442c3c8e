"""A wolf-sheep step in one call over the animals (CPU, numba).

The torch reference is ``sheep_phase``, ``wolf_phase`` and ``grass_phase`` of
:mod:`populace.models.wolfsheep` in turn: at the suite's small size (a few hundred animals)
their hundred-odd small ops a step cost far more than the work. :func:`step` draws the same
uniforms (the sites the caller claims, in the reference's order) and returns the same tensors
bit for bit (:mod:`populace.kernels._numba_predation`), or None when it cannot run (no numba,
CUDA tensors, a dtype other than float32/float64, a gradient, parameters in another dtype than
the energy), before claiming any draw: the caller then runs the reference.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from populace.kernels.transition import Site

#: ``claim(n) -> Site``: the next draw site of an ``n``-element uniform draw (``Streams.claim``)
Claim = Callable[[int], Site]


def _sites(claim: Claim, *sizes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One draw site per size, claimed in order: the member keys, the site constants and the
    counters of element 0."""
    sites = [claim(n) for n in sizes]
    consts = np.array([c for _, c, _ in sites], dtype=np.int64)
    return sites[0][0].numpy(), consts, np.array([s for _, _, s in sites], dtype=np.int64)


#: numpy scalar types of the energy dtypes the kernels take
_SCALARS = {torch.float32: np.float32, torch.float64: np.float64}


def _ready(first: torch.Tensor, *tensors: torch.Tensor) -> bool:
    """Whether the kernels take these tensors (as :func:`~populace.kernels.transition.available`:
    CPU, no gradient, outside a ``torch.compile`` trace; and every float in ``first``'s dtype,
    float32 or float64)."""
    if first.dtype not in _SCALARS or torch.compiler.is_compiling():
        return False
    return all(
        t.is_cpu and not t.requires_grad and (t.dtype == first.dtype or not t.is_floating_point())
        for t in (first, *tensors)
    )


def _units(dtype: torch.dtype) -> tuple:
    """1, 0 and 2 as numpy scalars of ``dtype`` (the kernels' arithmetic stays in it)."""
    kind = _SCALARS[dtype]
    return kind(1), kind(0), kind(2)


def _member(t: torch.Tensor, b: int) -> np.ndarray:
    """A per-member value (``[]``, ``[B]`` or ``[B, 1]``) as a ``[1]`` or ``[B]`` numpy array
    (the kernels read entry 0 of a ``[1]`` for every member)."""
    if t.numel() not in (1, b):
        raise ValueError(f"expected one value per member ({b}), got shape {tuple(t.shape)}")
    return t.numpy().reshape(-1)


def step(
    sheep: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    wolves: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    grown: torch.Tensor,
    countdown: torch.Tensor,
    dropped: torch.Tensor,
    params: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    regrowth: torch.Tensor,
    width: int,
    claim: Claim,
) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...], torch.Tensor, ...] | None:
    """One wolf-sheep step (sheep phase, wolf phase, grass phase) of every member.

    Args:
        sheep, wolves: ``(cell, energy, alive)``, ``[B, S]`` / ``[B, W]`` slots (int64 cell,
            float energy, bool alive).
        grown, countdown: ``[B, C]`` grass; dropped: ``[B]`` int64.
        params: sheep gain, wolf gain, sheep and wolf reproduction probability, each per
            member (``[]``, ``[B]`` or ``[B, 1]``); regrowth: one whole number.
        claim: claims, once the kernel can run, the draws of the reference in its order: the
            sheep walk, grazing keys and sheep reproduction (``[S]`` each), the wolf walk and
            wolf keys (``[W]``), the sheep keys (``[S]``), the wolf reproduction (``[W]``).

    Returns:
        New ``(sheep, wolves, grown, countdown, dropped)``, or None (the kernel cannot run).
    """
    energy = sheep[1]
    if not _ready(energy, *sheep, *wolves, grown, countdown, dropped, *params, regrowth):
        return None
    from populace.kernels import _numba_predation

    b, s = sheep[0].shape
    w = wolves[0].shape[1]
    keys, sites, starts = _sites(claim, s, s, s, w, w, s, w)
    sheep, wolves, *grass = _numba_predation.step(
        tuple(t.numpy() for t in sheep),
        tuple(t.numpy() for t in wolves),
        grown.numpy(),
        countdown.numpy(),
        dropped.numpy(),
        tuple(_member(t, b) for t in params),
        int(regrowth),
        width,
        keys,
        sites,
        starts,
        energy.dtype == torch.float64,
        _units(energy.dtype),
    )
    tensor = torch.from_numpy
    return tuple(map(tensor, sheep)), tuple(map(tensor, wolves)), *map(tensor, grass)
