"""Mesa's official Boltzmann wealth example (``mesa.examples``), timed for the comparison suite.

    python benchmarks/peers/side.py '{"target": "boltzmann:official", "kwargs": {"agents": 10000,
        "width": 100, "height": 100, "steps": 100, "seed": 0}, "isolated": true}'

or :func:`run_official` from Python (one process per call: see
:func:`populace.benchmarks.peers.side.spawn`). The model is Mesa's own, unchanged
(``mesa.examples.basic.boltzmann_wealth_model``, installed with Mesa); its semantics, read from
that source (Mesa 3.3):

- **Space.** ``OrthogonalMooreGrid((width, height), torus=False)``; many agents per cell.
  Agents start on cells drawn uniformly with replacement, each with wealth 1.
- **Activation.** ``model.step()`` is ``agents.shuffle_do("step")``: every agent once per step,
  in a fresh uniformly random order, sequentially; each sees the moves and gifts of the agents
  before it in that order (no synchronous update).
- **Agent step.** Move to a uniformly random cell of the Moore neighbourhood (radius 1, centre
  excluded; no wrap, so 3 or 5 choices at corners and edges; the agent never stays). Then, if
  its wealth is > 0, give 1 unit to one agent drawn uniformly from the *other* agents in its new
  cell (itself excluded; agents that have not moved yet this step and agents that moved in both
  count); nothing if it is alone. A unit received before the agent's own turn can be given on.
- **Gini**, collected after every step (and at step 0) by a ``DataCollector`` that also records
  every agent's wealth: with wealth sorted ascending ``x_0 .. x_{n-1}``,
  ``G = 1 + 1/n - 2 sum_i x_i (n - i) / (n sum x)``.

Defaults of the example: 100 agents on 10 x 10. ``collect=False`` times the agents' steps only
(``agents.shuffle_do("step")`` without the DataCollector) and computes the Gini every
``record_every`` steps outside the timed loop.
"""

from __future__ import annotations

import time
from importlib import metadata
from typing import Any

from populace.benchmarks.peers.side import timed_loop


def run_official(
    agents: int = 10_000,
    width: int = 100,
    height: int = 100,
    steps: int = 100,
    seed: int = 0,
    warmup: int = 1,
    collect: bool = True,
    record_every: int = 1,
    limit: float | None = None,
) -> dict[str, Any]:
    """Run Mesa's ``BoltzmannWealth(n=agents, width, height, seed)`` for ``steps`` steps.

    Returns the side record: ``s_per_step`` (after ``warmup`` steps), ``setup_seconds``,
    ``gini`` (the trajectory, ``[steps + 1]`` with ``collect``, else every ``record_every``
    steps and the last, with ``gini_steps``), and ``outcomes`` (final Gini). ``limit``: stop
    after that many seconds of timed steps (``status: stopped``).
    """
    from mesa.examples.basic.boltzmann_wealth_model.model import BoltzmannWealth

    if agents < 1 or width < 1 or height < 1 or steps < 1 or record_every < 1:
        raise ValueError(
            f"agents, width, height, steps and record_every must be >= 1, got "
            f"{agents}, {width}, {height}, {steps}, {record_every}"
        )
    start = time.perf_counter()
    model = BoltzmannWealth(n=agents, width=width, height=height, seed=seed)
    setup = time.perf_counter() - start
    gini, gini_steps, done = [model.compute_gini()], [0], [0]
    paused = [0.0]  # seconds spent on the Gini after the warm-up: not part of the steps' time

    def advance(n: int) -> None:
        for _ in range(n):
            if collect:
                model.step()
            else:
                model.agents.shuffle_do("step")
            done[0] += 1
            if not collect and (done[0] % record_every == 0 or done[0] == steps):
                t = time.perf_counter()
                gini.append(model.compute_gini())
                gini_steps.append(done[0])
                if done[0] > warmup:
                    paused[0] += time.perf_counter() - t

    timing = timed_loop(advance, steps, warmup, limit)
    timing["seconds"] -= paused[0]
    timing["s_per_step"] = timing["seconds"] / (timing["steps_done"] - warmup)
    if collect:
        gini = [float(g) for g in model.datacollector.get_model_vars_dataframe()["Gini"]]
        gini_steps = list(range(len(gini)))
    return {
        "framework": "mesa",
        "version": metadata.version("mesa"),
        "model": "mesa.examples.basic.boltzmann_wealth_model",
        "agents": agents,
        "width": width,
        "height": height,
        "steps": steps,
        "warmup": warmup,
        "collect": collect,
        "setup_seconds": setup,
        **timing,
        "gini": gini,
        "gini_steps": gini_steps,
        "outcomes": {"gini": gini[-1]} if timing["status"] == "ok" else {},
    }
