"""The voter model in populace: agents on a random 4-regular graph hold opinion 0 or 1; each
step every agent, in a random order, adopts the opinion of a uniformly random neighbour."""

import dataclasses

import networkx as nx
import torch

from populace.engine import Model, Params, Simulation, State, tensor_field
from populace.engine.activation import random_neighbour, sequential
from populace.populations.graphs import from_networkx


@dataclasses.dataclass(frozen=True)
class Opinions(State):
    opinion: torch.Tensor = tensor_field("B", "N", dtype=torch.int64)


def share(state, params, ctx):  # of agents holding opinion 1
    return state.opinion.double().mean(dim=1)


def voter(n=50, degree=4, graph_seed=0):
    contacts = from_networkx(nx.random_regular_graph(degree, n, seed=graph_seed))

    def step(state, params, ctx):
        other = random_neighbour(ctx.data.contacts, ctx)  # [B, N], drawn before anyone acts
        me = torch.arange(n, device=ctx.device).expand_as(other)

        def act(s, p, c, ready):  # the agents that act now neither read nor write each other
            return s.replace(opinion=torch.where(ready, s.opinion.gather(1, other), s.opinion))

        return sequential(state, params, ctx, act, torch.stack([me, other], -1), n)

    def init(params, ctx):
        return Opinions(opinion=ctx.rng.integers(0, 2, n))

    data = {"contacts": contacts}
    return Model("voter", Params(), init, (step,), {"share": share}, agents=n, data=data)


if __name__ == "__main__":
    s = Simulation(voter(), members=8, seed=0).run(300).series("share")
    print("runs in consensus after 300 steps:", ((s[:, -1] == 0) | (s[:, -1] == 1)).sum().item())
