"""Mesa 3's official examples (``mesa.examples``, unchanged) at the comparison suite's sizes.

Each function builds the official model from a suite size (the keyword arguments of
``compare.SUITE[...].sizes``), times ``steps`` of its own ``step()`` (DataCollector included, as
the example ships) after ``warmup`` steps, stopping after ``limit`` seconds (``status:
stopped``), and returns the side record of :mod:`populace.benchmarks.peers.side`. The
official models are not the suite's models: where their rules differ, the mapping is the
closest one and is stated here.

- **Schelling** (``basic.schelling``): ``OrthogonalMooreGrid`` with capacity 1 (no wrap),
  cells filled with probability ``agents / width**2``, two groups half and half; an agent is happy
  when the *fraction* of similar agents among its occupied neighbours (radius ``radius``) is
  >= ``homophily``. The suite's "at least ``min_similar`` similar" becomes ``homophily =
  min_similar / (density * neighbourhood cells)``: 8 / (0.8 * 24) = 0.42. Outcome: ``happy``
  fraction.
- **WolfSheep** (``advanced.wolf_sheep``, stepped by its ``ABMSimulator``): a third of the agents
  wolves, the suite's regrowth time, reproduction 0.4 / 0.2 and food gains 5 / 13. Outcomes:
  ``sheep``, ``wolves``.
- **Flocking** (``basic.boid_flockers``): ``population_size = agents``, a torus of side
  ``extent``, ``vision = visual_distance``, the example's own weights. Outcome: polarisation
  ``order`` = ``|mean unit heading|``.
- **Boltzmann** (``basic.boltzmann_wealth_model``): :mod:`populace.benchmarks.peers.boltzmann`.
"""

from __future__ import annotations

import time
from importlib import metadata
from typing import Any

from populace.benchmarks.peers.boltzmann import run_official as boltzmann
from populace.benchmarks.peers.side import timed_loop

__all__ = ["boltzmann", "flocking", "schelling", "wolfsheep"]


def _stepper(step):
    def advance(n: int) -> None:
        for _ in range(n):
            step()

    return advance


def _record(
    example: str, build_seconds: float, timing: dict[str, Any], steps: int, warmup: int, **out
) -> dict[str, Any]:
    return {
        "framework": "mesa",
        "version": metadata.version("mesa"),
        "model": f"mesa.examples.{example}",
        "steps": steps,
        "warmup": warmup,
        "setup_seconds": build_seconds,
        **timing,
        "outcomes": out if timing["status"] == "ok" else {},
    }


def schelling(
    agents: int,
    width: int,
    radius: int,
    min_similar: int,
    steps: int,
    seed: int = 0,
    warmup: int = 1,
    limit: float | None = None,
) -> dict[str, Any]:
    """The official Schelling at the suite size (see the module docstring for the mapping)."""
    from mesa.examples.basic.schelling.model import Schelling

    density = agents / width**2
    cells = (2 * radius + 1) ** 2 - 1
    start = time.perf_counter()
    model = Schelling(
        height=width,
        width=width,
        density=density,
        minority_pc=0.5,
        homophily=min_similar / (density * cells),
        radius=radius,
        seed=seed,
    )
    setup = time.perf_counter() - start
    timing = timed_loop(_stepper(model.step), steps, warmup, limit)
    happy = model.happy / len(model.agents)
    return _record("basic.schelling", setup, timing, steps, warmup, happy=happy)


def wolfsheep(
    agents: int,
    width: int,
    regrowth: int,
    steps: int,
    seed: int = 0,
    warmup: int = 1,
    limit: float | None = None,
) -> dict[str, Any]:
    """The official WolfSheep at the suite size, stepped by its event simulator."""
    from mesa.examples.advanced.wolf_sheep.agents import Sheep, Wolf
    from mesa.examples.advanced.wolf_sheep.model import WolfSheep
    from mesa.experimental.devs import ABMSimulator

    start = time.perf_counter()
    simulator = ABMSimulator()
    model = WolfSheep(
        width=width,
        height=width,
        initial_sheep=agents - agents // 3,
        initial_wolves=agents // 3,
        sheep_reproduce=0.4,
        wolf_reproduce=0.2,
        wolf_gain_from_food=13,
        sheep_gain_from_food=5,
        grass=True,
        grass_regrowth_time=regrowth,
        seed=seed,
        simulator=simulator,
    )
    setup = time.perf_counter() - start
    timing = timed_loop(_stepper(lambda: simulator.run_for(1)), steps, warmup, limit)
    sheep, wolves = len(model.agents_by_type[Sheep]), len(model.agents_by_type[Wolf])
    return _record("advanced.wolf_sheep", setup, timing, steps, warmup, sheep=sheep, wolves=wolves)


def flocking(
    agents: int,
    extent: float,
    visual_distance: float,
    steps: int,
    seed: int = 0,
    warmup: int = 1,
    limit: float | None = None,
) -> dict[str, Any]:
    """The official boid flockers at the suite size."""
    import numpy as np
    from mesa.examples.basic.boid_flockers.model import BoidFlockers

    start = time.perf_counter()
    model = BoidFlockers(
        population_size=agents, width=extent, height=extent, vision=visual_distance, seed=seed
    )
    setup = time.perf_counter() - start
    timing = timed_loop(_stepper(model.step), steps, warmup, limit)
    d = np.array([a.direction for a in model.agents], dtype=float)
    unit = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    order = float(np.hypot(*unit.mean(axis=0)))
    return _record("basic.boid_flockers", setup, timing, steps, warmup, order=order)
