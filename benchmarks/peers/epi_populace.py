"""The populace side of the epidemic comparisons (``benchmarks/epi_compare.py``).

Each function builds a zoo model, runs ``warmup`` steps (timed apart) and then the rest in one
``Simulation.run``, and returns the record :mod:`populace.benchmarks.peers.side` prints:
``s_per_step`` over the steps after warm-up, ``setup_seconds`` and the outcomes
(``attack_rate`` = 1 - S/N at the end, ``active`` = (E + I)/N at the end, to show the epidemic
is over).
"""

from __future__ import annotations

import time
from importlib import metadata
from typing import Any

import numpy as np
import torch

from populace import models
from populace.benchmarks.peers.side import timed_loop
from populace.engine import Simulation
from populace.populations.graphs import csr_from_edges


def load_edges(path: str, agents: int) -> torch.Tensor:
    """The ``[N, N]`` CSR layer of the undirected edge list saved by
    :func:`populace.benchmarks.epi_compare.write_graph` (``p1``, ``p2``; ``p1 < p2``)."""
    with np.load(path) as f:
        p1, p2 = (
            torch.from_numpy(f["p1"].astype(np.int64)),
            torch.from_numpy(f["p2"].astype(np.int64)),
        )
    return csr_from_edges(p1, p2, agents, dedupe=False)


def _run(model, steps: int, warmup: int, seed: int, build_seconds: float) -> dict[str, Any]:
    start = time.perf_counter()
    sim = Simulation(model, seed=seed, device="cpu", progress=False, record_every=steps)
    setup = build_seconds + time.perf_counter() - start
    timing = timed_loop(sim.run, steps, warmup)  # metrics only at each run's ends
    # the outcomes from the model's own S and R metrics (of the living, when agents die)
    got = model.measure(sim.state, sim.params.at(sim.step), sim.ctx.at(sim.step))
    n = float(got["alive"][0]) if "alive" in got else model.agents
    susceptible, recovered = float(got["S"][0]), float(got["R"][0])
    return {
        "framework": "populace",
        "version": metadata.version("populace"),
        "steps": steps,
        "warmup": warmup,
        "setup_seconds": setup,
        **timing,
        "outcomes": {
            "attack_rate": 1 - susceptible / n,
            "active": (n - susceptible - recovered) / n,
        },
    }


def sir(
    agents: int, steps: int, warmup: int, seed: int, beta: float, gamma: float, initial: int
) -> dict[str, Any]:
    """Well-mixed ``sir`` (per-step infection ``1 - exp(-beta I/N)``, recovery ``gamma``)."""
    start = time.perf_counter()
    model = models.module("sir").build(
        agents=agents, initial_infected=initial, beta=beta, gamma=gamma
    )
    return _run(model, steps, warmup, seed, time.perf_counter() - start)


def network_sir(
    agents: int,
    steps: int,
    warmup: int,
    seed: int,
    graph: str,
    transmissibility: float,
    gamma: float,
    initial: int,
    sigma: float = 0.5,
    seir: bool = False,
) -> dict[str, Any]:
    """``network_sir`` (SIR, or SEIR with ``seir``) on the edge list saved at ``graph``."""
    start = time.perf_counter()
    layer = load_edges(graph, agents)
    model = models.module("network_sir").build(
        agents=agents,
        graph=layer,
        initial_infected=initial,
        seir=seir,
        transmissibility=transmissibility,
        gamma=gamma,
        sigma=sigma,
    )
    return _run(model, steps, warmup, seed, time.perf_counter() - start)


def seir_vaccination(
    agents: int,
    steps: int,
    warmup: int,
    seed: int,
    beta: float,
    sigma: float,
    gamma: float,
    initial: int,
    coverage: float,
    efficacy: float,
    leaky: bool,
) -> dict[str, Any]:
    """Well-mixed SEIR with a share ``coverage`` vaccinated before the epidemic: the
    ``measles`` model without births or deaths (infection ``1 - exp(-beta I/N)`` a day,
    exposed Geometric(sigma) and infectious Geometric(gamma) days, each agent vaccinated with
    probability ``coverage``, efficacy ``efficacy`` leaky or all-or-nothing)."""
    from populace.epi.durations import geometric

    start = time.perf_counter()
    model = models.module("measles").build(
        agents=agents,
        capacity=1.0,
        initial_infected=initial,
        latent=geometric(1 / sigma),
        infectious=geometric(1 / gamma),
        vaccine="leaky" if leaky else "all_or_nothing",
        beta=beta,
        initial_vaccinated=coverage,
        ve_infection=efficacy,
    )
    return _run(model, steps, warmup, seed, time.perf_counter() - start)
