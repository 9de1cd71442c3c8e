"""Boltzmann wealth in populace: each step every agent, in a random order, moves to a random
Moore neighbour cell (bounded grid) and gives one unit, if it has one, to a random cellmate."""

import dataclasses

import torch

from populace.engine import Model, Params, Simulation, State, tensor_field
from populace.engine.activation import random_cellmate, random_neighbour, sequential
from populace.populations.graphs import grid


@dataclasses.dataclass(frozen=True)
class Economy(State):
    cell: torch.Tensor = tensor_field("B", "N", dtype=torch.int64)  # x * height + y
    wealth: torch.Tensor = tensor_field("B", "N", dtype=torch.int64)


def gini(state, params, ctx):
    x = state.wealth.sort(dim=1).values.double()
    n = x.shape[1]
    b = (x * torch.arange(n, 0, -1, device=x.device)).sum(1) / (n * x.sum(1))
    return 1 + 1 / n - 2 * b


def boltzmann(agents=100, width=10, height=10):
    moore = grid(width, height)  # each cell's on-grid Moore neighbours

    def step(state, params, ctx):
        dest = random_neighbour(moore, ctx, rows=state.cell)  # a uniformly random one

        def act(s, p, c, ready):  # the agents that act now touch disjoint cells
            cell = torch.where(ready, dest, s.cell)
            mate = random_cellmate(cell, width * height, c)
            give = (ready & (s.wealth > 0) & (mate >= 0)).long()
            got = torch.zeros_like(give).scatter_add(1, mate.clamp_min(0), give)
            return s.replace(cell=cell, wealth=s.wealth - give + got)

        cells = torch.stack([state.cell, dest], -1)  # each agent touches its old and new cell
        return sequential(state, params, ctx, act, cells, width * height)

    def init(params, ctx):
        wealth = torch.ones(ctx.members, agents, dtype=torch.int64, device=ctx.device)
        return Economy(cell=ctx.rng.integers(0, width * height, agents), wealth=wealth)

    return Model("boltzmann", Params(), init, (step,), {"gini": gini}, agents=agents)


if __name__ == "__main__":
    result = Simulation(boltzmann(), members=8, seed=0).run(100)
    print("final Gini, mean of 8 runs:", result.series("gini")[:, -1].mean().item())
