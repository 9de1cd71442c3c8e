"""Random streams: one generator per ensemble member.

Member ``b`` of a run seeded ``s`` draws from a generator seeded with ``member_seed(s, b)``, so
its trajectory is the same whether it runs alone or inside a batch of 64. Draws for all members
are written into one ``[B, ...]`` tensor. On CPU the same seed gives bit-identical results; CUDA
generators differ from CPU ones (same distribution, other numbers).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def member_seed(seed: int, member: int) -> int:
    """The 63-bit stream seed of ensemble member ``member`` in a run seeded ``seed``."""
    if seed < 0 or member < 0:
        raise ValueError(f"seed and member must be non-negative, got seed={seed}, member={member}")
    state = np.random.SeedSequence(seed, spawn_key=(member,)).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


class Streams:
    """Per-member random generators producing ``[B, *shape]`` draws.

    Args:
        seeds: one stream seed per member (see :func:`member_seed`).
        device: where the draws are made.
    """

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu") -> None:
        if len(seeds) == 0:
            raise ValueError("Streams needs at least one member seed")
        self.seeds = [int(s) for s in seeds]
        self.device = torch.device(device)
        self.generators = []
        for s in self.seeds:
            g = torch.Generator(device=self.device)
            g.manual_seed(s)
            self.generators.append(g)

    @property
    def members(self) -> int:
        return len(self.generators)

    def _fill(self, out: torch.Tensor, fill) -> torch.Tensor:
        for b, g in enumerate(self.generators):
            fill(out[b], g)
        return out

    def uniform(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``[B, *shape]`` uniform on [0, 1)."""
        out = torch.empty(self.members, *shape, device=self.device, dtype=dtype)
        return self._fill(out, lambda o, g: o.uniform_(0.0, 1.0, generator=g))

    def normal(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``[B, *shape]`` standard normal."""
        out = torch.empty(self.members, *shape, device=self.device, dtype=dtype)
        return self._fill(out, lambda o, g: o.normal_(0.0, 1.0, generator=g))

    def integers(self, low: int, high: int, *shape: int) -> torch.Tensor:
        """``[B, *shape]`` int64 uniform on [low, high)."""
        out = torch.empty(self.members, *shape, device=self.device, dtype=torch.int64)
        return self._fill(out, lambda o, g: o.random_(low, high, generator=g))

    def permutation(self, n: int) -> torch.Tensor:
        """``[B, n]`` int64, an independent random permutation per member."""
        return torch.stack(
            [torch.randperm(n, generator=g, device=self.device) for g in self.generators]
        )

    def get_state(self) -> list[torch.Tensor]:
        """Generator states (for checkpoints)."""
        return [g.get_state() for g in self.generators]

    def set_state(self, states: Sequence[torch.Tensor]) -> None:
        if len(states) != self.members:
            raise ValueError(f"{len(states)} generator states for {self.members} members")
        for g, s in zip(self.generators, states, strict=True):
            g.set_state(s)

    def select(self, members: Sequence[int]) -> Streams:
        """Streams of a subset of members, continuing from their current states."""
        sub = Streams([self.seeds[b] for b in members], self.device)
        sub.set_state([self.generators[b].get_state() for b in members])
        return sub
