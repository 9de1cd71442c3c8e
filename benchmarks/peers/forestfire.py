"""Forest fire in Mesa 3: trees on a bounded ``SingleGrid``, sequential random activation."""

from __future__ import annotations

from collections.abc import Sequence

import mesa
from mesa.space import SingleGrid

FINE, BURNING, BURNT = "Fine", "On Fire", "Burned Out"


class Tree(mesa.Agent):
    """A tree that, while burning, ignites its von Neumann neighbours and burns out."""

    def __init__(self, model: ForestFire, condition: str) -> None:
        super().__init__(model)
        self.condition = condition

    def step(self) -> None:
        if self.condition == BURNING:
            for other in self.model.grid.iter_neighbors(self.pos, moore=False):
                if other.condition == FINE:
                    other.condition = BURNING
            self.condition = BURNT


class ForestFire(mesa.Model):
    """Trees with probability ``density`` on a square grid of ``agents`` cells; column x=0 burns.

    ``trees``: an optional ``[y][x]`` layout of booleans to plant instead of a random forest
    (used to compare with the populace model from the same forest).
    """

    def __init__(
        self,
        agents: int = 250_000,
        density: float = 0.9,
        seed: int | None = None,
        trees: Sequence[Sequence[bool]] | None = None,
    ) -> None:
        super().__init__(seed=seed)
        width = round(agents**0.5)
        if width * width != agents:
            raise ValueError(f"forestfire peer: agents={agents} cells is not a square grid")
        self.grid = SingleGrid(width, width, torus=False)
        for y in range(width):
            for x in range(width):
                here = trees[y][x] if trees is not None else self.random.random() < density
                if here:
                    tree = Tree(self, BURNING if x == 0 else FINE)
                    self.grid.place_agent(tree, (x, y))

    def step(self) -> None:
        self.agents.shuffle_do("step")

    def count(self, condition: str) -> int:
        return sum(a.condition == condition for a in self.agents)

    def burnt_fraction(self) -> float:
        """Share of the trees that are burning or burnt out."""
        return 1 - self.count(FINE) / max(len(self.agents), 1)

    def burning(self) -> int:
        return self.count(BURNING)
