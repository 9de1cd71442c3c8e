"""Boltzmann wealth in Mesa 3: each step every agent, in a random order, moves to a random
Moore neighbour cell (bounded grid) and gives one unit, if it has one, to a random cellmate."""

import mesa
from mesa.discrete_space import CellAgent, OrthogonalMooreGrid


class MoneyAgent(CellAgent):
    def __init__(self, model, cell):
        super().__init__(model)
        self.cell = cell
        self.wealth = 1

    def step(self):
        self.cell = self.cell.neighborhood.select_random_cell()
        if self.wealth > 0:
            cellmates = [a for a in self.cell.agents if a is not self]
            if cellmates:
                self.random.choice(cellmates).wealth += 1
                self.wealth -= 1


def gini(model):
    x = sorted(a.wealth for a in model.agents)
    n = len(x)
    b = sum(xi * (n - i) for i, xi in enumerate(x)) / (n * sum(x))
    return 1 + 1 / n - 2 * b


class Boltzmann(mesa.Model):
    def __init__(self, n=100, width=10, height=10, seed=None):
        super().__init__(seed=seed)
        self.grid = OrthogonalMooreGrid((width, height), random=self.random)
        MoneyAgent.create_agents(self, n, self.random.choices(self.grid.all_cells.cells, k=n))
        self.datacollector = mesa.DataCollector(model_reporters={"gini": gini})

    def step(self):
        self.agents.shuffle_do("step")
        self.datacollector.collect(self)


if __name__ == "__main__":
    finals = []
    for seed in range(8):
        model = Boltzmann(seed=seed)
        for _ in range(100):
            model.step()
        finals.append(gini(model))
    print("final Gini, mean of 8 runs:", sum(finals) / len(finals))
