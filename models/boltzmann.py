"""Boltzmann wealth: Mesa's introductory model, ported faithfully with sequential activation.

N agents start with one unit of wealth each at random cells of a ``width x height`` grid
(bounded, not a torus). Each step every agent, in a random order, moves to a uniformly random
cell of its Moore neighbourhood (the 3-8 cells around it that lie on the grid) and then, if it
has wealth, gives one unit to a uniformly random other agent in its new cell. The Gini
coefficient of wealth rises from 0 towards about 0.65 (at one agent per cell).

**Faithful activation.** Mesa activates agents one at a time (``agents.shuffle_do``): a later
agent sees earlier moves and gifts. A synchronous port (everyone moves, then everyone gives from
the start-of-step wealth) ends near Gini 0.40 instead — ``activation="synchronous"`` shows it.
The default ``"sequential"`` runs :func:`populace.engine.activation.sequential`: an agent
touches only its old and new cell (its gift goes to someone in the new cell), so agents on
disjoint cells commute and the step runs in a few rounds of agents that are first on their
cells, with exactly the law of Mesa's one-at-a-time loop (tested against that loop).
"""

from __future__ import annotations

import dataclasses

import torch

from populace.engine import Context, Model, Params, State, static_field, tensor_field
from populace.engine.activation import random_cellmate, sequential

NAME = "boltzmann"
SUMMARY = "Boltzmann wealth (Mesa's example): move, give a unit to a cellmate; Gini"

ACTIVATIONS = ("sequential", "synchronous")


@dataclasses.dataclass(frozen=True)
class BoltzmannParams(Params):
    pass


PARAMS = BoltzmannParams


@dataclasses.dataclass(frozen=True)
class BoltzmannState(State):
    """Attributes:
    cell: ``[B, N]`` int64, ``x * height + y`` of each agent.
    wealth: ``[B, N]`` int64 units.
    """

    cell: torch.Tensor = tensor_field("B", "N", dtype=torch.int64)
    wealth: torch.Tensor = tensor_field("B", "N", dtype=torch.int64, domain=(0, 2**62))
    width: int = static_field(10)
    height: int = static_field(10)


def random_neighbour_cell(cell: torch.Tensor, width: int, height: int, ctx: Context):
    """``[B, N]`` a uniformly random on-grid Moore neighbour of each agent's cell.

    The neighbourhood is the block of on-grid cells around the agent (2-3 columns x 2-3 rows)
    less its own cell; a uniform draw picks one of them.
    """
    x, y = cell // height, cell % height
    left, down = (x > 0).long(), (y > 0).long()  # offsets -1 exist
    cols = 1 + left + (x < width - 1).long()
    rows = 1 + down + (y < height - 1).long()
    u = ctx.rng.uniform(cell.shape[1], dtype=torch.float64)
    k = torch.minimum((u * (cols * rows - 1)).long(), cols * rows - 2)
    own = left * rows + down  # the agent's own cell in the block, skipped
    k = k + (k >= own).long()
    return (x - left + k // rows) * height + (y - down + k % rows)


def give_to_cellmates(cell, wealth, givers, mate):
    """Each giver (``[B, N]`` bool) with a cellmate (``mate``: index or -1) passes one unit."""
    give = givers & (wealth > 0) & (mate >= 0)
    received = torch.zeros_like(wealth).scatter_add(1, mate.clamp_min(0), give.long())
    return wealth - give.long() + received


def sequential_step(state: BoltzmannState, params: BoltzmannParams, ctx: Context):
    """One step of Mesa's random-order loop, in rounds of agents first on their cells."""
    cells = state.width * state.height
    dest = random_neighbour_cell(state.cell, state.width, state.height, ctx)
    n = state.cell.shape[1]
    index = torch.arange(n, device=state.cell.device)

    def act(s: BoltzmannState, p: BoltzmannParams, c: Context, ready: torch.Tensor):
        cell = torch.where(ready, dest, s.cell)
        # a random other occupant of each ready agent's new cell: the occupant with the
        # highest random key (no other ready agent can be there: their cells are disjoint)
        key = c.rng.integers(0, 2**31, n) * n + index  # [B, N] distinct keys
        slot = torch.where(ready, cells, cell)  # ready agents are nobody's cellmate
        best = torch.full((cell.shape[0], cells + 1), -1, dtype=torch.int64, device=cell.device)
        best = best.scatter_reduce(1, slot, key, reduce="amax")
        found = best.gather(1, cell)
        mate = torch.where(ready & (found >= 0), found % n, -1)
        return s.replace(cell=cell, wealth=give_to_cellmates(cell, s.wealth, ready, mate))

    touched = torch.stack([state.cell, dest], dim=-1)
    return sequential(state, params, ctx, act, touched, cells)


def synchronous_step(state: BoltzmannState, params: BoltzmannParams, ctx: Context):
    """Everyone moves, then everyone with wealth (at the step's start) gives to a cellmate."""
    cell = random_neighbour_cell(state.cell, state.width, state.height, ctx)
    mate = random_cellmate(cell, state.width * state.height, ctx)
    everyone = torch.ones_like(cell, dtype=torch.bool)
    return state.replace(cell=cell, wealth=give_to_cellmates(cell, state.wealth, everyone, mate))


def gini(state: BoltzmannState, params: BoltzmannParams, ctx: Context) -> torch.Tensor:
    """``[B]`` Gini coefficient of wealth (Mesa's formula: ``1 + 1/n - 2 sum x_i (n-i) / (n
    sum x)`` over ascending x)."""
    x = torch.sort(state.wealth.to(torch.float64), dim=1).values
    n = x.shape[1]
    weights = torch.arange(n, 0, -1, dtype=x.dtype, device=x.device)  # n - i, i = 0..n-1
    b = (x * weights).sum(dim=1) / (n * x.sum(dim=1))
    return 1 + 1 / n - 2 * b


def build(
    agents: int = 100, width: int = 10, height: int = 10, activation: str = "sequential"
) -> Model:
    """Boltzmann wealth with ``agents`` agents on a ``width x height`` grid.

    Args:
        activation: ``"sequential"`` (Mesa's random-order loop, exactly) or ``"synchronous"``
            (everyone at once: biased, for comparison).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
    if min(width, height) < 2 or agents < 1:
        raise ValueError(f"need agents >= 1 and a grid of at least 2 x 2, got {width} x {height}")

    def init(params: BoltzmannParams, ctx: Context) -> BoltzmannState:
        cell = ctx.rng.integers(0, width * height, agents)
        wealth = torch.ones(ctx.members, agents, dtype=torch.int64, device=ctx.device)
        return BoltzmannState(cell=cell, wealth=wealth, width=width, height=height)

    def total_wealth(state, params, ctx) -> torch.Tensor:
        return state.wealth.sum(dim=1)

    step = sequential_step if activation == "sequential" else synchronous_step
    return Model(
        name=NAME,
        params=BoltzmannParams(),
        init=init,
        steps=(step,),
        metrics={"gini": gini, "wealth": total_wealth},
        agents=agents,
        options={"agents": agents, "width": width, "height": height, "activation": activation},
    )
