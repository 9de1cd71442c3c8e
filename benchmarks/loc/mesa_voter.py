"""The voter model in Mesa 3: agents on a random 4-regular graph hold opinion 0 or 1; each
step every agent, in a random order, adopts the opinion of a uniformly random neighbour."""

import mesa
import networkx as nx
from mesa.discrete_space import CellAgent, Network


class Voter(CellAgent):
    def __init__(self, model, cell):
        super().__init__(model)
        self.cell = cell
        self.opinion = self.random.randrange(2)

    def step(self):
        self.opinion = self.cell.neighborhood.select_random_agent().opinion


def share(model):  # of agents holding opinion 1
    return sum(a.opinion for a in model.agents) / len(model.agents)


class VoterModel(mesa.Model):
    def __init__(self, n=50, degree=4, graph_seed=0, seed=None):
        super().__init__(seed=seed)
        graph = nx.random_regular_graph(degree, n, seed=graph_seed)
        self.grid = Network(graph, random=self.random)
        Voter.create_agents(self, n, list(self.grid.all_cells))
        self.datacollector = mesa.DataCollector(model_reporters={"share": share})

    def step(self):
        self.agents.shuffle_do("step")
        self.datacollector.collect(self)


if __name__ == "__main__":
    consensus = 0
    for seed in range(8):
        model = VoterModel(seed=seed)
        for _ in range(300):
            model.step()
        consensus += share(model) in (0, 1)
    print("runs in consensus after 300 steps:", consensus)
