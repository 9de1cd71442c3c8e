"""Wolf-sheep predation in Mesa 3: animals on a torus ``MultiGrid``, grass as numpy arrays.

Each step all sheep act in random order, then all wolves in random order, then the grass
regrows (the phases of ``populace.models.wolfsheep``; within a phase Mesa is sequential).
"""

from __future__ import annotations

import mesa
import numpy as np
from mesa.space import MultiGrid


class Animal(mesa.Agent):
    """Moves to a random Moore neighbour, pays one energy, dies below zero, eats, reproduces."""

    gain_name = ""
    reproduce_name = ""

    def __init__(self, model: WolfSheep, energy: float) -> None:
        super().__init__(model)
        self.energy = energy

    def die(self) -> None:
        self.model.grid.remove_agent(self)
        self.remove()

    def step(self) -> None:
        if self.pos is None:  # eaten earlier in this step
            return
        grid = self.model.grid
        grid.move_agent(self, self.random.choice(grid.get_neighborhood(self.pos, moore=True)))
        self.energy -= 1
        if self.energy < 0:
            self.die()
            return
        self.eat()
        if self.random.random() < getattr(self.model, self.reproduce_name):
            self.energy /= 2
            grid.place_agent(type(self)(self.model, self.energy), self.pos)

    def eat(self) -> None:
        raise NotImplementedError


class Sheep(Animal):
    reproduce_name = "sheep_reproduce"

    def eat(self) -> None:
        x, y = self.pos
        model = self.model
        if model.grown[y, x]:
            model.grown[y, x] = False
            model.countdown[y, x] = model.regrowth
            self.energy += model.sheep_gain


class Wolf(Animal):
    reproduce_name = "wolf_reproduce"

    def eat(self) -> None:
        prey = [a for a in self.model.grid.get_cell_list_contents([self.pos]) if type(a) is Sheep]
        if prey:
            self.random.choice(prey).die()
            self.energy += self.model.wolf_gain


class WolfSheep(mesa.Model):
    """``agents`` animals (a third wolves) on a ``width x width`` torus with regrowing grass."""

    def __init__(
        self,
        agents: int = 1_500,
        width: int = 100,
        wolves: int | None = None,
        sheep_gain: float = 5.0,
        wolf_gain: float = 13.0,
        sheep_reproduce: float = 0.4,
        wolf_reproduce: float = 0.2,
        regrowth: int = 10,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed=seed)
        wolves = agents // 3 if wolves is None else wolves
        self.sheep_gain, self.wolf_gain = sheep_gain, wolf_gain
        self.sheep_reproduce, self.wolf_reproduce = sheep_reproduce, wolf_reproduce
        self.regrowth = int(regrowth)
        self.grid = MultiGrid(width, width, torus=True)
        for kind, n, gain in ((Sheep, agents - wolves, sheep_gain), (Wolf, wolves, wolf_gain)):
            for _ in range(n):
                cell = (self.random.randrange(width), self.random.randrange(width))
                self.grid.place_agent(kind(self, self.random.randrange(int(2 * gain))), cell)
        rng = np.random.default_rng(self.random.randrange(2**32))
        self.grown = rng.random((width, width)) < 0.5
        self.countdown = np.where(
            self.grown, self.regrowth, rng.integers(0, max(self.regrowth, 1), (width, width))
        )

    def step(self) -> None:
        self.agents_by_type[Sheep].shuffle_do("step")
        if Wolf in self.agents_by_type:
            self.agents_by_type[Wolf].shuffle_do("step")
        ready = ~self.grown & (self.countdown <= 0)
        self.countdown = np.where(
            ready, self.regrowth, np.where(self.grown, self.countdown, self.countdown - 1)
        )
        self.grown |= ready

    def sheep(self) -> int:
        return len(self.agents_by_type[Sheep]) if Sheep in self.agents_by_type else 0

    def wolves(self) -> int:
        return len(self.agents_by_type[Wolf]) if Wolf in self.agents_by_type else 0

    def grass(self) -> int:
        return int(self.grown.sum())
