"""Schelling segregation in Mesa 3: sequential random activation on a torus ``SingleGrid``."""

from __future__ import annotations

import mesa
from mesa.space import SingleGrid


class Resident(mesa.Agent):
    """An agent of ``group`` 1 or 2; moves to a random empty cell when unhappy."""

    def __init__(self, model: Schelling, group: int) -> None:
        super().__init__(model)
        self.group = group

    def similar_neighbours(self) -> tuple[int, int]:
        """(same-group neighbours, occupied neighbours) in the Moore window of the radius."""
        grid, radius = self.model.grid, self.model.radius
        same = total = 0
        for other in grid.iter_neighbors(self.pos, moore=True, include_center=False, radius=radius):
            total += 1
            same += other.group == self.group
        return same, total

    def step(self) -> None:
        same, _ = self.similar_neighbours()
        if same < self.model.min_similar:
            self.model.grid.move_to_empty(self)
            self.model.moved += 1


class Schelling(mesa.Model):
    """``agents`` residents (first half group 1) on random cells of a ``width x width`` torus."""

    def __init__(
        self,
        agents: int = 8_000,
        width: int = 100,
        radius: int = 2,
        min_similar: int = 8,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed=seed)
        self.radius, self.min_similar, self.moved = radius, min_similar, 0
        self.grid = SingleGrid(width, width, torus=True)
        cells = [(x, y) for x in range(width) for y in range(width)]
        self.random.shuffle(cells)
        for i, cell in enumerate(cells[:agents]):
            self.grid.place_agent(Resident(self, 1 if i < agents // 2 else 2), cell)

    def step(self) -> None:
        self.moved = 0
        self.agents.shuffle_do("step")

    def similarity(self) -> float:
        """Mean over agents of the same-group share of occupied neighbours (1 if none)."""
        shares = []
        for agent in self.agents:
            same, total = agent.similar_neighbours()
            shares.append(same / total if total else 1.0)
        return sum(shares) / max(len(shares), 1)

    def happy(self) -> float:
        """Fraction of agents with at least ``min_similar`` same-group neighbours."""
        ok = sum(a.similar_neighbours()[0] >= self.min_similar for a in self.agents)
        return ok / max(len(self.agents), 1)
