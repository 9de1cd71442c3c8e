"""Boltzmann wealth: Mesa's introductory model, ported faithfully with sequential activation.

N agents start with one unit of wealth each at random cells of a ``width x height`` grid
(bounded, not a torus). Each step every agent, in a random order, moves to a uniformly random
cell of its Moore neighbourhood (the 3-8 cells around it that lie on the grid) and then, if it
has wealth, gives one unit to a uniformly random other agent in its new cell. The Gini
coefficient of wealth rises from 0 towards about 0.65 (at one agent per cell).

**Faithful activation.** Mesa activates agents one at a time (``agents.shuffle_do``): a later
agent sees earlier moves and gifts. A synchronous port (everyone moves, then everyone gives from
the start-of-step wealth) ends near Gini 0.40 instead — ``activation="synchronous"`` shows it.
The default ``"sequential"`` has exactly the law of Mesa's one-at-a-time loop (tested against
that loop): who meets whom follows from the random order for everyone at once
(:func:`populace.engine.activation.arrival_cellmates`), and whether each agent has a unit to
give at its turn is a short forward recursion in the order, solved in a few passes.
"""

from __future__ import annotations

import dataclasses

import torch

from populace.engine import Context, Model, Params, State, static_field, tensor_field
from populace.engine.activation import arrival_cellmates, random_cellmate, random_rank
from populace.kernels import exchange

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
    """One step of Mesa's random-order loop, for everyone at once.

    Who meets whom follows from the random order
    (:func:`~populace.engine.activation.arrival_cellmates`). Whether an agent gives needs its
    wealth at its turn, which only grows before then (only its own gift takes a unit away): an
    agent with wealth gives; one without gives if someone earlier in the order gave to it. That
    recursion runs forward in rank, so it is solved by a few passes that add givers until none
    is added (as many as the longest chain of such gifts, about 3).

    On the CPU with numba, the loop itself runs instead
    (:func:`populace.kernels.exchange.step`: the same draws and numbers).
    """
    if ctx.rng.agents is None:  # (a rank's view of the agents refuses the random order)
        fused = exchange.step(state.cell, state.wealth, state.width, state.height, ctx.rng.claim)
        if fused is not None:
            return state.replace(cell=fused[0], wealth=fused[1])
    b, n = state.cell.shape
    dest = random_neighbour_cell(state.cell, state.width, state.height, ctx)
    rank = random_rank(ctx, n)
    mate = arrival_cellmates(state.cell, dest, rank, state.width * state.height, ctx)
    flat_mate = (mate + torch.arange(b, device=mate.device).view(b, 1) * n).reshape(-1)
    can = mate >= 0
    gives = can & (state.wealth > 0)
    never = torch.iinfo(torch.int64).max
    while True:
        # the earliest rank of a gift each agent receives
        first = torch.full((b * n,), never, dtype=torch.int64, device=mate.device)
        first.scatter_reduce_(0, flat_mate[gives.reshape(-1)], rank[gives], reduce="amin")
        more = can & (gives | (first.view(b, n) < rank))
        if torch.equal(more, gives):
            break
        gives = more
    received = torch.zeros(b * n, dtype=torch.int64, device=mate.device)
    received.index_add_(0, flat_mate[gives.reshape(-1)], torch.ones_like(rank[gives]))
    wealth = state.wealth - gives.long() + received.view(b, n)
    return state.replace(cell=dest, wealth=wealth)


def sequential_leap(state: BoltzmannState, params: BoltzmannParams, ctx: Context, count: int):
    """``count`` calls of :func:`sequential_step` from ``ctx.step`` in one numba call
    (:func:`populace.kernels.exchange.steps`), the same numbers; None where the kernel cannot
    run (the simulation then steps)."""
    if ctx.rng.agents is not None:
        return None
    out = exchange.steps(
        state.cell, state.wealth, state.width, state.height, ctx.rng, ctx.step, count
    )
    return None if out is None else state.replace(cell=out[0], wealth=out[1])


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

    sequential = activation == "sequential"
    return Model(
        name=NAME,
        params=BoltzmannParams(),
        init=init,
        steps=(sequential_step if sequential else synchronous_step,),
        metrics={"gini": gini, "wealth": total_wealth},
        agents=agents,
        options={"agents": agents, "width": width, "height": height, "activation": activation},
        leap=sequential_leap if sequential else None,
    )
