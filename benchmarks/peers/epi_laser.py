"""The LASER (``laser-generic``) side of the well-mixed SIR comparison (needs the peers venv:
``make setup-peers``).

One patch of ``agents`` people, LASER's SIR components in the order Susceptible, Infectious,
Recovered, Transmission. Matching populace's ``sir`` (``dt`` = 1 tick = 1 day):

- **Transmission** is LASER's own: force ``beta * I/N`` on the counts at the start of the tick,
  probability ``1 - exp(-force)`` per susceptible, exactly populace's law.
- **Infectious period.** LASER counts an infectious timer down once per tick (Infectious runs
  before Transmission, so a timer set at tick t is first decremented at t+1) and the agent is in
  the tick's I count on ``timer`` ticks. populace's per-step recovery ``gamma`` gives
  K ~ Geometric(gamma) ticks (K >= 1), so the timer is drawn from Geometric(gamma) by a numba
  function of LASER's distribution signature ``(tick, node)``; LASER's built-in
  distributions are continuous and rounded (``max(round(x), 1)``), which would not be geometric.
- **Seeds.** ``scenario.I = initial`` agents start infectious, timers from the same law.

The step loop is LASER's ``Model.run`` body without its tqdm bar and timing contexts, so the
warm-up steps (numba compilation) can be timed apart.
"""

from __future__ import annotations

import time
from importlib import metadata
from typing import Any

import numpy as np

from populace.benchmarks.peers.side import timed_loop


def geometric(gamma: float):
    """A LASER duration distribution: ``(tick, node) -> Geometric(gamma)`` ticks (>= 1)."""
    import numba as nb

    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must lie in (0, 1], got {gamma}")

    @nb.njit(nogil=True)
    def draw(_tick: int, _node: int) -> np.float32:
        # numba has only the legacy API; LASER seeds numba's per-thread generators itself
        return np.float32(np.random.geometric(gamma))  # noqa: NPY002

    return draw


def sir(
    agents: int, steps: int, warmup: int, seed: int, beta: float, gamma: float, initial: int
) -> dict[str, Any]:
    """LASER's SIR in one patch; returns the record of :mod:`populace.benchmarks.peers.side`."""
    import geopandas as gpd
    from laser.core import PropertySet
    from laser.generic import SIR
    from laser.generic.model import Model
    from shapely.geometry import Point

    start = time.perf_counter()
    scenario = gpd.GeoDataFrame(
        {
            "nodeid": [0],
            "population": [agents],
            "S": [agents - initial],
            "I": [initial],
            "R": [0],
        },
        geometry=[Point(0.0, 0.0)],
        crs="EPSG:4326",
    )
    params = PropertySet({"nticks": steps, "beta": beta, "seed": seed})
    model = Model(scenario, params, states=["S", "I", "R"])
    duration = geometric(gamma)
    model.components = [
        SIR.Susceptible(model),
        SIR.Infectious(model, duration),
        SIR.Recovered(model),
        SIR.Transmission(model, duration),
    ]
    setup = time.perf_counter() - start
    clock = {"tick": 0}

    def advance(n: int) -> None:
        for _ in range(n):
            tick = clock["tick"]
            model._initialize_flows(tick)
            for component in model.components:
                component.step(tick)
            clock["tick"] = tick + 1

    timing = timed_loop(advance, steps, warmup)
    state = model.people.state[: model.people.count]
    susceptible = int(np.count_nonzero(state == SIR.State.SUSCEPTIBLE.value))
    active = int(np.count_nonzero(state == SIR.State.INFECTIOUS.value))
    return {
        "framework": "laser-generic",
        "version": metadata.version("laser-generic"),
        "steps": steps,
        "warmup": warmup,
        "setup_seconds": setup,
        **timing,
        "outcomes": {"attack_rate": 1 - susceptible / agents, "active": active / agents},
    }
