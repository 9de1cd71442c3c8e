"""The starsim and covasim sides of the epidemic comparisons (needs the peers venv:
``make setup-peers``).

Matching populace's per-step laws (``dt`` = 1 day):

- **Infectious period.** populace recovers an infectious agent with probability ``gamma`` per
  step, so it transmits on K ~ Geometric(gamma) steps (K >= 1, mean 1/gamma). starsim
  schedules recovery ``dur`` steps after the infection step and recovers before transmitting,
  so an agent infected at step t transmits at t+1, ..., t+ceil(dur)-1: ceil(dur) - 1 steps.
  ``dur_inf = 1 + Geometric(gamma)`` (scipy's ``geom`` with ``loc=1``) gives exactly K steps.
  (A starsim user's ``expon(scale=1/gamma days)`` would transmit on average 1/(1-exp(-gamma))
  - 1 steps: 3.52 instead of 4 for gamma = 0.25.)
- **Transmission.** A bare float ``beta`` is a rate per *year* in starsim 3; ``probperday(p)``
  is a probability per day. On a network, populace's per-contact transmissibility T is
  starsim's per-edge ``probperday(T)``: the same Bernoulli(T) per infectious contact per step.
  Well-mixed, starsim's ``MixingPool`` infects with probability ``beta * I/N`` (linear), populace's
  ``sir`` with ``1 - exp(-beta I/N)``; the pool gets ``probperday(beta)``, so both have the
  same R0 = beta/gamma, and starsim's larger per-step risk near the peak (0.075 vs 0.072 at
  I/N = 0.15, beta = 0.5) gives a higher attack rate: 0.812 vs 0.797 in the deterministic
  discrete-time recursions (+1.85 %), which is what the runs show.
- **Seeds.** ``choose_n(initial)`` infects exactly that many agents at t = 0.
"""

from __future__ import annotations

import time
from importlib import metadata
from typing import Any

import numpy as np

from populace.benchmarks.peers.side import timed_loop


def _import_starsim():
    import scipy.stats as sps
    import starsim as ss

    return ss, sps


def _geometric_duration(ss, sps, gamma: float):
    """``1 + Geometric(gamma)`` steps: see the module docstring."""
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must lie in (0, 1], got {gamma}")
    return ss.Dist(dist=sps.geom, p=gamma, loc=1)


def _advance(sim, exclusive: bool = False):
    """``advance(n)``: run ``n`` more steps of an initialised starsim Sim. starsim's
    ``run(until=t)`` runs the step at ``t``; covasim's (v3's meaning, ``exclusive``) stops
    before it."""

    def advance(n: int) -> None:
        target = sim.t.ti + n
        if target >= sim.t.npts:  # the last steps: run to the end (finalises results)
            sim.run()
            return
        sim.run(until=sim.t.timevec[target if exclusive else target - 1])
        if sim.t.ti != target:
            raise RuntimeError(f"asked for step {target}, the sim is at {sim.t.ti}")

    return advance


def _record(
    framework: str, sim, disease, agents: int, steps: int, warmup: int, setup: float
) -> dict[str, Any]:
    if sim.t.npts != steps:
        raise RuntimeError(f"{framework} sim has {sim.t.npts} time points, expected {steps}")
    timing = timed_loop(_advance(sim, exclusive=framework == "covasim"), steps, warmup)
    if not sim.complete:
        raise RuntimeError(f"{framework} sim stopped before its last step")
    alive = sim.people.auids
    # covasim's `susceptible` turns back on after recovery (waning immunity); `naive` does not
    never = disease.naive if "naive" in disease.state_dict else disease.susceptible
    naive = float(np.count_nonzero(never.raw[alive]))
    active = float(np.count_nonzero(disease.infected.raw[alive]))
    return {
        "framework": framework,
        "version": metadata.version(framework),
        "steps": steps,
        "warmup": warmup,
        "setup_seconds": setup,
        **timing,
        "outcomes": {"attack_rate": 1 - naive / agents, "active": active / agents},
    }


def _sim(ss, agents: int, steps: int, seed: int, disease, network):
    # steps + 1 time points: ti = 0 .. steps, as populace's state after `steps` steps
    sim = ss.Sim(
        n_agents=agents,
        diseases=disease,
        networks=network,
        start=0,
        dur=ss.days(steps - 1),
        dt=ss.days(1),
        rand_seed=seed,
        verbose=0,
    )
    sim.init()
    return sim


def sir(
    agents: int, steps: int, warmup: int, seed: int, beta: float, gamma: float, initial: int
) -> dict[str, Any]:
    """starsim ``SIR`` on a ``MixingPool`` (everyone mixes with everyone, one contact per day)."""
    ss, sps = _import_starsim()
    start = time.perf_counter()
    disease = ss.SIR(
        beta=ss.probperday(beta),
        init_prev=ss.choose_n(initial),
        dur_inf=_geometric_duration(ss, sps, gamma),
        p_death=0.0,
    )
    pool = ss.MixingPool(beta=1.0, n_contacts=ss.constant(1))
    sim = _sim(ss, agents, steps, seed, disease, pool)
    return _record(
        "starsim", sim, sim.diseases.sir, agents, steps, warmup, time.perf_counter() - start
    )


def network_sir(
    agents: int,
    steps: int,
    warmup: int,
    seed: int,
    graph: str,
    transmissibility: float,
    gamma: float,
    initial: int,
) -> dict[str, Any]:
    """starsim ``SIR`` on a static ``ss.Network`` holding the edge list saved at ``graph``
    (the same graph the populace side runs on)."""
    ss, sps = _import_starsim()
    start = time.perf_counter()
    with np.load(graph) as f:
        p1, p2 = f["p1"].astype(np.int64), f["p2"].astype(np.int64)
    network = ss.Network(edges=dict(p1=p1, p2=p2, beta=np.ones(len(p1))), name="static")
    disease = ss.SIR(
        beta=ss.probperday(transmissibility),
        init_prev=ss.choose_n(initial),
        dur_inf=_geometric_duration(ss, sps, gamma),
        p_death=0.0,
    )
    sim = _sim(ss, agents, steps, seed, disease, network)
    return _record(
        "starsim", sim, sim.diseases.sir, agents, steps, warmup, time.perf_counter() - start
    )


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
    """starsim ``SEIR`` on a ``MixingPool``, a share ``coverage`` vaccinated before the epidemic
    as ``simple_vx`` does it (``rel_sus`` x (1 - efficacy) when leaky, else x 0 for the
    agents whose dose takes, with probability ``efficacy``).

    Timing matched to populace's course: an agent exposed at step t there turns infectious at
    t + K_E (K_E ~ Geometric(sigma)) and transmits from t + K_E + 1 for K_I ~ Geometric(gamma)
    steps; starsim turns it infectious at ``ti_exposed + dur_exp`` before that step's
    transmission and recovers it at ``ti_infectious + dur_inf`` before transmitting, so
    ``dur_exp = 1 + Geometric(sigma)`` and ``dur_inf = Geometric(gamma)``.
    """
    ss, sps = _import_starsim()
    start = time.perf_counter()
    if not 0 < sigma <= 1:
        raise ValueError(f"sigma must lie in (0, 1], got {sigma}")
    disease = ss.SEIR(
        beta=ss.probperday(beta),
        init_prev=ss.choose_n(initial),
        dur_exp=_geometric_duration(ss, sps, sigma),
        dur_inf=ss.Dist(dist=sps.geom, p=gamma),
        p_death=0.0,
    )
    pool = ss.MixingPool(beta=1.0, n_contacts=ss.constant(1))
    sim = _sim(ss, agents, steps, seed, disease, pool)
    rng = np.random.default_rng(seed)
    vaccinated = np.flatnonzero(rng.random(agents) < coverage)
    if leaky:
        factor = np.full(len(vaccinated), 1 - efficacy)
    else:
        factor = (rng.random(len(vaccinated)) >= efficacy).astype(float)
    seir = sim.diseases.seir
    seir.rel_sus[ss.uids(vaccinated)] *= factor
    return _record("starsim", sim, seir, agents, steps, warmup, time.perf_counter() - start)


def covasim(agents: int, steps: int, warmup: int, seed: int, initial: int) -> dict[str, Any]:
    """covasim's defaults (random population: one static layer of Poisson(20) contacts,
    beta 0.016 per contact-day, lognormal latent and infectious periods, per-agent
    overdispersion, viral-load profile, age-dependent severity, waning immunity) with
    ``pop_size = agents`` and ``pop_infected = initial``."""
    import covasim as cv

    start = time.perf_counter()
    sim = cv.Sim(
        pop_size=agents,
        pop_infected=initial,
        n_days=steps - 1,
        rand_seed=seed,
        verbose=0,
    )
    sim.init()
    disease = sim.diseases.covid
    return _record("covasim", sim, disease, agents, steps, warmup, time.perf_counter() - start)
