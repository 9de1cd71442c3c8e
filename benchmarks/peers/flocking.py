"""Boids flocking in Mesa 3 (the suite's "Flocking"): a torus ``ContinuousSpace``, birds
updated one by one in random order with the rule of ``populace.models.boids``."""

from __future__ import annotations

import math

import mesa
import numpy as np
from mesa.space import ContinuousSpace


class Bird(mesa.Agent):
    def __init__(self, model: Flocking, velocity: np.ndarray) -> None:
        super().__init__(model)
        self.velocity = velocity

    def step(self) -> None:
        model, space = self.model, self.model.space
        neighbours = space.get_neighbors(self.pos, model.visual_distance, include_center=False)
        if neighbours:
            cohere = np.zeros(2)
            separate = np.zeros(2)
            match = np.zeros(2)
            for other in neighbours:
                offset = np.asarray(space.get_heading(self.pos, other.pos))  # torus-aware j - i
                cohere += offset
                if np.hypot(*offset) < model.separation:
                    separate -= offset
                match += other.velocity
            n = len(neighbours)
            steer = (
                model.cohere_factor * cohere
                + model.separate_factor * separate
                + model.match_factor * match
            ) / n
            velocity = self.velocity + steer
            norm = np.hypot(*velocity)
            if norm > 0:
                self.velocity = velocity / norm
        new = np.asarray(self.pos) + model.speed * self.velocity
        space.move_agent(self, space.torus_adj(tuple(new)))


class Flocking(mesa.Model):
    """``agents`` birds in a periodic ``extent x extent`` box with unit random velocities."""

    def __init__(
        self,
        agents: int = 300,
        extent: float = 100.0,
        visual_distance: float = 5.0,
        speed: float = 1.0,
        cohere_factor: float = 0.03,
        separation: float = 1.0,
        separate_factor: float = 0.015,
        match_factor: float = 0.05,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed=seed)
        self.visual_distance, self.speed, self.separation = visual_distance, speed, separation
        self.cohere_factor, self.separate_factor = cohere_factor, separate_factor
        self.match_factor = match_factor
        self.space = ContinuousSpace(extent, extent, torus=True)
        for _ in range(agents):
            angle = self.random.uniform(0, 2 * math.pi)
            bird = Bird(self, np.array([math.cos(angle), math.sin(angle)]))
            pos = (self.random.uniform(0, extent), self.random.uniform(0, extent))
            self.space.place_agent(bird, pos)

    def step(self) -> None:
        self.agents.shuffle_do("step")

    def order(self) -> float:
        """Polarisation ``|mean velocity|`` (1: all birds fly the same way)."""
        v = np.array([b.velocity for b in self.agents])
        return float(np.hypot(*v.mean(axis=0)))
