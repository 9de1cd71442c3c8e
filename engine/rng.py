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

A population sharded over ranks gives each rank a *view* of the agents it holds,
``Streams(seeds, agents=(start, stop))``: a draw whose leading dim is the rank's agent count
``stop - start`` is a draw for agents ``start..stop-1`` of the whole population (element
``(i, k)`` of a ``(n, K)`` draw has the counter ``(start + i) * K + k``, as in the unsharded
draw); any other draw is the same on every rank (replicated). Agents that move between ranks
(swarms on slabs) draw by their global ids with :meth:`Streams.uniform_at`. A permutation of
all agents cannot be drawn from a view: :meth:`Streams.permutation` refuses.
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


class ShardedDrawError(ValueError):
    """A draw that needs the whole population was asked of a rank's view of its agents."""


class Streams:
    """Per-member counter-based random numbers producing ``[B, *shape]`` draws.

    Args:
        seeds: one stream seed per member (see :func:`member_seed`).
        device: where the draws are made.
        agents: ``(start, stop)``, the global indices of the agents this rank holds in a
            population-sharded run (None: all of them).
    """

    def __init__(
        self,
        seeds: Sequence[int],
        device: torch.device | str = "cpu",
        agents: tuple[int, int] | None = None,
    ) -> None:
        if len(seeds) == 0:
            raise ValueError("Streams needs at least one member seed")
        if agents is not None:
            start, stop = (int(a) for a in agents)
            if not 0 <= start < stop:
                raise ValueError(f"agents must be (start, stop) with 0 <= start < stop: {agents}")
            agents = (start, stop)
        self.seeds = [int(s) for s in seeds]
        self.device = torch.device(device)
        self.agents = agents
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

    def _first(self, shape: Sequence[int]) -> int:
        """Counter of the draw's element 0: ``start * K`` for a ``(n_local, K...)`` draw of a
        view, else 0."""
        if self.agents is None:
            return 0
        start, stop = self.agents
        if shape and shape[0] == stop - start:
            return start * math.prod(shape[1:])
        if stop - start in tuple(shape)[1:]:
            raise ShardedDrawError(
                f"a draw of shape {tuple(shape)} on a rank holding {stop - start} agents: put "
                f"the agent axis first, so each agent gets its own numbers on any rank"
            )
        return 0

    def _site(self) -> int:
        c = site_constant(self.step, self.site)
        self.site += 1
        return c

    def _uniform(self, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        n = math.prod(shape)
        first = self._first(shape)
        return counter.uniform(self.keys, self._site(), first, n, dtype).view(self.members, *shape)

    def claim(self, *shape: int) -> tuple[torch.Tensor, int, int]:
        """Take the next draw site for a ``[B, *shape]`` uniform draw that a kernel computes
        itself (or that is not needed: the sites after it keep their numbers): the ``[B]``
        member keys, the site constant (an int64 bit pattern) and the counter of element 0,
        what :meth:`uniform` passes to :func:`populace.kernels.random.uniform`."""
        first = self._first(shape)
        return self.keys, counter.signed(self._site()), first

    def uniform_at(self, index: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``[B, n]`` uniforms of the agents with global ids ``index`` (``[n]``, or ``[B, n]``
        when each member holds other agents), one draw site: agent ``g`` gets the number it
        gets at position ``g`` of ``uniform(N)`` in an unsharded run."""
        return counter.uniform_at(self.keys, self._site(), index.to(self.device), dtype)

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
        """``[B, n]`` int64, an independent random permutation per member.

        Raises:
            ShardedDrawError: on a rank's view of ``n`` agents (a permutation of the agents is
                a global sort, which a population-sharded run does not do).
        """
        if self.agents is not None and n == self.agents[1] - self.agents[0]:
            raise ShardedDrawError(
                f"a random permutation of the {n} agents of this rank was asked for in a "
                f"population-sharded run (random_rank, sequential, activate, claim or an "
                f"initial count of infected drawn in a step); it needs the whole population on "
                f"one rank: shard this model's members instead"
            )
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
        sub = Streams([self.seeds[b] for b in members], self.device, self.agents)
        sub.set_state(self.get_state())
        return sub

    def view(self, agents: tuple[int, int] | None) -> Streams:
        """The same members' streams as seen by the rank holding ``agents`` (None: all)."""
        out = Streams(self.seeds, self.device, agents)
        out.set_state(self.get_state())
        return out
