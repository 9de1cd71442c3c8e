"""A wolf-sheep step in one call over the animals (CPU, numba).

The torch reference is ``sheep_phase``, ``wolf_phase`` and ``grass_phase`` of
``models/wolfsheep.py`` in turn: at the suite's small size (a few hundred animals)
their hundred-odd small ops a step cost far more than the work. :func:`step` draws the same
uniforms (the sites the caller claims, in the reference's order) and returns the same tensors
bit for bit (:mod:`populace.kernels._numba_predation`), or None when it cannot run (no numba,
CUDA tensors, a dtype other than float32/float64, a gradient, parameters in another dtype than
the energy), before claiming any draw: the caller then runs the reference.
"""

from __future__ import annotations

import numpy as np
import torch

from populace.kernels._fused import Claim, ready, sites


def _units(dtype: torch.dtype) -> tuple:
    """1, 0 and 2 as numpy scalars of ``dtype`` (the kernels' arithmetic stays in it)."""
    kind = {torch.float32: np.float32, torch.float64: np.float64}[dtype]
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
    tensors = (*sheep, *wolves, grown, countdown, dropped, *params, regrowth)
    if not ready(*tensors, floats=energy.dtype):
        return None
    from populace.kernels import _numba_predation

    b, s = sheep[0].shape
    w = wolves[0].shape[1]
    keys, consts, starts = sites(claim, s, s, s, w, w, s, w)
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
        consts,
        starts,
        energy.dtype == torch.float64,
        _units(energy.dtype),
    )
    tensor = torch.from_numpy
    return tuple(map(tensor, sheep)), tuple(map(tensor, wolves)), *map(tensor, grass)
