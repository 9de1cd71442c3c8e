"""Births, deaths and ageing at fixed capacity."""

from __future__ import annotations

import math

import pytest
import torch

from populace.engine import Simulation
from populace.models import measles


def test_population_grows_as_births_minus_deaths():
    model = measles.build(
        agents=5000, capacity=1.5, initial_infected=0, birth_rate=200.0, death_rate=50.0
    )
    res = Simulation(model, members=6, seed=0).run(365)
    alive = res.series("alive")[:, -1].double()
    daily = 1 + (200.0 - 50.0) / 365_000
    want = 5000 * daily**365
    se = float(alive.std()) / math.sqrt(alive.numel())
    assert abs(float(alive.mean()) - want) < max(4 * se, 0.005 * want), (float(alive.mean()), want)
    births, deaths = res.series("births")[:, 1:].sum(), res.series("deaths")[:, 1:].sum()
    assert float(births - deaths) == pytest.approx(float((alive - 5000).sum()))
    assert float(res.series("births_dropped").sum()) == 0


def test_births_beyond_capacity_are_dropped_and_counted():
    model = measles.build(agents=1000, capacity=1.0, initial_infected=0, birth_rate=5000.0)
    res = Simulation(model, members=1, seed=0).run(30)
    assert float(res.series("alive").max()) == 1000
    assert float(res.series("births").sum()) == 0
    assert float(res.series("births_dropped").sum()) > 100


def test_newborns_are_susceptible_unvaccinated_and_age():
    model = measles.build(
        agents=2000, initial_infected=0, birth_rate=500.0, death_rate=100.0, initial_immune=1.0
    )
    sim = Simulation(model, members=1, seed=1)
    state = sim.run(40).final_state
    young = state.alive & (state.age_days < 40)
    assert int(young.sum()) > 50
    s = state.health[:, 0]
    assert bool((s[young] == 1).all())  # everyone else started immune
    assert bool((state.vaccinated_at[young] < 0).all())
    dead_slots = ~state.alive
    assert bool((state.health.sum(dim=1)[dead_slots] == 0).all())
    assert torch.equal(state.health.sum(dim=1)[state.alive], torch.ones(int(state.alive.sum())))


def test_a_day_without_births_or_deaths_skips_its_draws_exactly():
    """Rates 0 skip the two draws (their sites are claimed): the same state and later numbers
    as rates so small that nobody dies or is born."""
    runs = {}
    for rate in (0.0, 1e-30):
        model = measles.build(
            agents=3000, capacity=1.2, initial_infected=20, birth_rate=rate, death_rate=rate
        )
        res = Simulation(model, members=2, seed=4).run(60)
        runs[rate] = res
    a, b = runs[0.0], runs[1e-30]
    assert a.metrics.equals(b.metrics)
    for name in ("health", "age_days", "alive", "timer", "vaccine_draw"):
        assert torch.equal(getattr(a.final_state, name), getattr(b.final_state, name)), name
    assert float(a.series("E")[:, 1:].sum()) > 0  # the draws after them mattered
