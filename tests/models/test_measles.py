"""Measles SEIR: routine doses at an age, campaigns by age, endemic measles with births."""

from __future__ import annotations

import math

import pytest

from populace.engine import ParamError, Simulation
from populace.engine.intervention import SetParam
from populace.engine.study import Scenario, study
from populace.models import measles


def test_routine_doses_reach_the_coverage_among_children_past_the_age():
    model = measles.build(
        agents=6000,
        initial_infected=0,
        birth_rate=200.0,
        death_rate=20.0,
        routine_coverage=0.7,
        routine_age=60.0,
    )
    state = Simulation(model, members=2, seed=0).run(200).final_state
    born_here = state.alive & (state.age_days < 200)
    past = born_here & (state.age_days >= 60)
    before = born_here & (state.age_days < 60)
    vaccinated = state.vaccinated_at >= 0
    n = int(past.sum())
    share = float(vaccinated[past].double().mean())
    assert n > 500
    assert abs(share - 0.7) < 3 * math.sqrt(0.7 * 0.3 / n), share
    assert not bool(vaccinated[before].any())


def test_a_campaign_vaccinates_the_eligible_ages_at_its_daily_rate():
    model = measles.build(
        agents=6000, initial_infected=0, campaign_min_age=365.0, campaign_max_age=3650.0
    )
    sia = Scenario("sia", (SetParam("campaign_rate", 0.1, start=5, end=15),))
    res = study(model, [sia], steps=30, seeds=1, seed=0)
    state = res.result.final_state
    age = state.age_days[1]
    vaccinated = state.vaccinated_at[1] >= 0
    # ages counted at the end: agents are 30 days older than on the campaign's days
    eligible = (age >= 365 + 30) & (age <= 3650) & state.alive[1]
    outside = ((age < 365) | (age > 3650 + 30)) & state.alive[1]
    want = 1 - 0.9**10
    n = int(eligible.sum())
    assert abs(float(vaccinated[eligible].double().mean()) - want) < 3 * math.sqrt(
        want * (1 - want) / n
    )
    assert not bool(vaccinated[outside].any())
    assert not bool((res.result.final_state.vaccinated_at[0] >= 0).any())  # the baseline


@pytest.mark.slow
def test_routine_vaccination_protects_a_growing_population_from_endemic_measles():
    model = measles.build(
        agents=4000,
        initial_infected=5,
        birth_rate=40.0,
        death_rate=10.0,
        initial_immune=0.93,
        importations=0.05,
        routine_age=270.0,
        mean_age_years=25.0,
    )
    routine = Scenario("routine 90 %", (SetParam("routine_coverage", 0.9, start=0),))
    res = study(model, [routine], steps=2 * 365, seeds=2, seed=0)
    infections = res.difference("new_infections", "sum")
    assert float(infections["hi"][0]) < 0


def test_r0_and_bad_params():
    model = measles.build(agents=100, beta=1.5)
    assert measles.basic_reproduction(model) == pytest.approx(1.5 * 8.0, rel=0.01)
    with pytest.raises(ParamError, match="'campaign_min_age'.*exceeds 'campaign_max_age'"):
        Simulation(model.with_params(campaign_min_age=4000.0, campaign_max_age=100.0), members=1)
    with pytest.raises(ParamError, match=r"'ve_infection' must lie in \[0, 1\]"):
        Simulation(model.with_params(ve_infection=1.5), members=1)
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        measles.build(agents=100, capacity=0.5)
    with pytest.raises(ValueError, match="unknown vaccine 'nasal'"):
        measles.build(agents=100, vaccine="nasal")


def test_cli_help_lists_the_measles_params():
    from populace import models

    text = models.describe("measles")
    for name in ("routine_coverage", "campaign_rate", "birth_rate", "ve_infection", "capacity"):
        assert name in text


def test_a_day_without_doses_skips_its_draw_exactly():
    """No routine or campaign doses: the day's draw is skipped (its site claimed), giving the
    numbers of a run whose rates are too small to give a dose."""
    import torch

    runs = [
        Simulation(
            measles.build(agents=3000, initial_infected=20, routine_coverage=r, campaign_rate=r),
            members=2,
            seed=1,
        ).run(60)
        for r in (0.0, 1e-30)
    ]
    assert runs[0].metrics.equals(runs[1].metrics)
    assert torch.equal(runs[0].final_state.health, runs[1].final_state.health)
    assert float(runs[0].series("doses").sum()) == 0
