"""Random streams: counter-based draws, a pure function of (seed, member, step, site, index).

Member ``b`` of a run seeded ``s`` has the stream seed ``member_seed(s, b)``. Every draw of a
step is numbered in call order (its *site*), and element ``i`` of a draw is
:func:`populace.kernels.random.uniform` of (member key, step, site, i): there is no generator
state to carry, so a member gives the same numbers alone or in a batch of 64, a resumed run
goes on exactly (the checkpoint holds only the step), and numbers do not depend on the device
(CPU, numba and Triton compute the same bits) or, with sharded populations, on which rank holds
an agent. One call draws for all members at once.

The streams changed in this form from the per-member ``torch.Generator`` of earlier versions:
old records are not reproduced draw for draw (the same laws hold).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from populace.kernels import random as counter


def member_seed(seed: int, member: int) -> int:
    """The 63-bit stream seed of ensemble member ``member`` in a run seeded ``seed``."""
    if seed < 0 or member < 0:
        raise ValueError(f"seed and member must be non-negative, got seed={seed}, member={member}")
    state = np.random.SeedSequence(seed, spawn_key=(member,)).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def site_constant(step: int, site: int) -> int:
    """The 64-bit constant of draw ``site`` (0, 1, ... in call order) of ``step`` (-1: init)."""
    return counter.mix_int(((step + 2) << 24) ^ site)


class Streams:
    """Per-member counter-based random numbers producing ``[B, *shape]`` draws.

    Args:
        seeds: one stream seed per member (see :func:`member_seed`).
        device: where the draws are made.
    """

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu") -> None:
        if len(seeds) == 0:
            raise ValueError("Streams needs at least one member seed")
        self.seeds = [int(s) for s in seeds]
        self.device = torch.device(device)
        keys = [counter.signed(counter.mix_int(s)) for s in self.seeds]
        self.keys = torch.tensor(keys, dtype=torch.int64, device=self.device)
        self.step, self.site = 0, 0

    @property
    def members(self) -> int:
        return len(self.seeds)

    def begin(self, step: int) -> None:
        """Number the draws of ``step`` from site 0 (the simulation calls it before each step;
        ``-1`` before the initial state)."""
        self.step, self.site = int(step), 0

    def _uniform(self, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        n = math.prod(shape)
        c = site_constant(self.step, self.site)
        self.site += 1
        return counter.uniform(self.keys, c, 0, n, dtype).view(self.members, *shape)

    def uniform(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``[B, *shape]`` uniform on [0, 1) (24 random bits in float32, 53 in float64)."""
        return self._uniform(shape, dtype)

    def normal(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``[B, *shape]`` standard normal (inverse CDF of a 53-bit uniform, in float64)."""
        u = self._uniform(shape, torch.float64) + 2.0**-54  # (0, 1): finite tails
        return (math.sqrt(2.0) * torch.special.erfinv(2 * u - 1)).to(dtype)

    def integers(self, low: int, high: int, *shape: int) -> torch.Tensor:
        """``[B, *shape]`` int64 uniform on [low, high) (bias below (high - low) / 2^53)."""
        if high <= low:
            raise ValueError(f"integers: need low < high, got [{low}, {high})")
        u = self._uniform(shape, torch.float64)
        return (u * (high - low)).long().clamp_max(high - low - 1) + low

    def permutation(self, n: int) -> torch.Tensor:
        """``[B, n]`` int64, an independent random permutation per member."""
        keys = self._uniform((n,), torch.float64)
        return torch.argsort(keys, dim=1, stable=True)

    def get_state(self) -> list[int]:
        """``[step, site]`` (for rolling back a failed run; checkpoints need only the step)."""
        return [self.step, self.site]

    def set_state(self, state: Sequence[int]) -> None:
        if len(state) != 2:
            raise ValueError(f"stream state must be [step, site], got {state!r}")
        self.step, self.site = int(state[0]), int(state[1])

    def select(self, members: Sequence[int]) -> Streams:
        """Streams of a subset of members, at the same step and site."""
        sub = Streams([self.seeds[b] for b in members], self.device)
        sub.set_state(self.get_state())
        return sub
