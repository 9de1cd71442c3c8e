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
from collections.abc import Callable
from importlib import metadata
from typing import Any

from populace.benchmarks.peers.boltzmann import run_official as boltzmann
from populace.benchmarks.peers.side import timed_loop

__all__ = ["boltzmann", "flocking", "schelling", "wolfsheep"]


def _run(
    example: str,
    build: Callable[[], Any],
    step: Callable[[Any], Callable[[], Any]],
    outcomes: Callable[[Any], dict[str, float]],
    steps: int,
    warmup: int,
    limit: float | None,
) -> dict[str, Any]:
    """Build (timed as setup), step, and the outcomes of a finished run."""
    start = time.perf_counter()
    model = build()
    setup = time.perf_counter() - start
    one = step(model)

    def advance(n: int) -> None:
        for _ in range(n):
            one()

    timing = timed_loop(advance, steps, warmup, limit)
    return {
        "framework": "mesa",
        "version": metadata.version("mesa"),
        "model": f"mesa.examples.{example}",
        "steps": steps,
        "warmup": warmup,
        "setup_seconds": setup,
        **timing,
        "outcomes": outcomes(model) if timing["status"] == "ok" else {},
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
    homophily = min_similar / (density * cells)
    return _run(
        "basic.schelling",
        lambda: Schelling(width, width, density, 0.5, homophily, radius, seed=seed),
        lambda m: m.step,
        lambda m: {"happy": m.happy / len(m.agents)},
        steps,
        warmup,
        limit,
    )


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

    def build() -> WolfSheep:
        return WolfSheep(
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
            simulator=ABMSimulator(),
        )

    return _run(
        "advanced.wolf_sheep",
        build,
        lambda m: lambda: m.simulator.run_for(1),
        lambda m: {"sheep": len(m.agents_by_type[Sheep]), "wolves": len(m.agents_by_type[Wolf])},
        steps,
        warmup,
        limit,
    )


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

    def order(model: BoidFlockers) -> dict[str, float]:
        d = np.array([a.direction for a in model.agents], dtype=float)
        unit = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
        return {"order": float(np.hypot(*unit.mean(axis=0)))}

    return _run(
        "basic.boid_flockers",
        lambda: BoidFlockers(agents, extent, extent, vision=visual_distance, seed=seed),
        lambda m: m.step,
        order,
        steps,
        warmup,
        limit,
    )
