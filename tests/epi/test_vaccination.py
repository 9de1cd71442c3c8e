"""Vaccination against theory: pre-epidemic coverage and final size, leaky vs all-or-nothing,
campaign doses by priority and area, waning; bad input refused before the run."""

from __future__ import annotations

import math

import pytest
import torch

from populace.engine import ParamError, Simulation
from populace.engine.study import Scenario, study
from populace.epi import vaccination
from populace.models import covid, measles, sir

N = 10_000


def covid_attack(mode: str, coverage: float, efficacy: float, beta: float, seed: int = 1):
    model = covid.build(
        agents=N,
        population="well_mixed",
        mixing="well_mixed",
        initial_infected=20,
        vaccine=mode,
        by=(),
        beta=beta,
        vax_coverage0=coverage,
        ve_infection=efficacy,
    )
    res = Simulation(model, members=4, seed=seed).run(220)
    assert float(res.series("I")[:, -1].sum() + res.series("E")[:, -1].sum()) < 10  # over
    attack = 1 - res.series("S")[:, -1] / N
    return float(attack.mean()), covid.basic_reproduction(model)


@pytest.mark.slow
def test_a_perfect_vaccine_of_coverage_v_gives_the_final_size_of_r0_times_1_minus_v():
    v = 0.4
    got, r0 = covid_attack("leaky", v, 1.0, beta=0.35)
    assert 2.5 < r0 < 3.5
    # the unvaccinated face an epidemic of R0 (1 - v): A = (1 - v) z, z = 1 - exp(-R0 (1 - v) z)
    want = (1 - v) * sir.final_size(r0 * (1 - v))
    seeds = 20 / N
    assert abs(got - want - seeds) < 0.015, (got, want)
    assert abs(want - vaccination.final_size(r0, v, 1.0)) < 1e-9


@pytest.mark.slow
def test_leaky_and_all_or_nothing_vaccines_differ_as_theory_says():
    """Same coverage and efficacy: the leaky vaccine's agents stay exposed all epidemic long,
    so more of them are infected in the end than under all-or-nothing."""
    v, e = 0.6, 0.7
    leaky, r0 = covid_attack("leaky", v, e, beta=0.35)
    aon, _ = covid_attack("all_or_nothing", v, e, beta=0.35)
    seeded = 20 / N
    want_leaky = vaccination.final_size(r0, v, e, "leaky", seeded=seeded)
    want_aon = vaccination.final_size(r0, v, e, "all_or_nothing", seeded=seeded)
    assert want_leaky - want_aon > 0.1
    assert abs(leaky - want_leaky) < 0.02, (leaky, want_leaky)
    assert abs(aon - want_aon) < 0.02, (aon, want_aon)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["leaky", "all_or_nothing"])
def test_measles_seir_with_pre_epidemic_vaccination_matches_final_size(mode):
    v, e = 0.5, 0.8
    model = measles.build(
        agents=N, initial_infected=20, vaccine=mode, beta=0.5, initial_vaccinated=v, ve_infection=e
    )
    r0 = measles.basic_reproduction(model)
    res = Simulation(model, members=4, seed=3).run(250)
    attack = float((1 - res.series("S")[:, -1] / N).mean())
    want = vaccination.final_size(r0, v, e, mode, seeded=20 / N)
    assert abs(attack - want) < 0.02, (attack, want)


def test_final_size_formula_limits():
    assert vaccination.final_size(3.0, 0.0, 0.9) == pytest.approx(sir.final_size(3.0))
    assert vaccination.final_size(3.0, 1.0, 1.0) == 0.0
    assert vaccination.final_size(2.0, 0.6, 1.0) == 0.0  # R0 (1 - v) < 1: no epidemic
    # all-or-nothing with efficacy e is a perfect vaccine at coverage v e
    a = vaccination.final_size(3.0, 0.5, 0.6, "all_or_nothing")
    assert a == pytest.approx(vaccination.final_size(3.0, 0.3, 1.0, "leaky"))


def campaign_model(**params):
    return covid.build(agents=4000, population="synthetic", initial_infected=0, by=(), **params)


def test_campaign_doses_follow_priority_and_the_daily_limit():
    model = campaign_model()
    old_first = Scenario(
        "old first",
        vaccination.campaign(500.0, start=2, end=12, ages=["75+", "65-74"], sequential=True),
    )
    res = study(model, [old_first], steps=14, seeds=2, seed=0)
    m = res.metrics.filter(res.metrics["scenario"] == "old first")
    per_day = 500 * 4000 / 1e5  # 20 doses a day
    doses = m["doses"].to_list()
    assert max(doses) <= per_day and sum(doses) == pytest.approx(2 * 10 * per_day)
    state = res.result.final_state
    member = 2  # the first seed of the scenario
    age = model.data.age
    vaccinated = state.vaccinated_at[member] >= 0
    labels = model.data.labels("age")
    old, older = labels.index("65-74"), labels.index("75+")
    n_old = int((age == older).sum())
    assert int(vaccinated.sum()) == 200
    # the 75+ band is served first, entirely if it can be, then 65-74; nobody else
    assert int((vaccinated & (age == older)).sum()) == min(200, n_old)
    assert int((vaccinated & ~((age == older) | (age == old))).sum()) == 0
    base = res.metrics.filter(res.metrics["scenario"] == "baseline")
    assert base["doses"].sum() == 0


def test_campaign_by_area_vaccinates_only_there():
    model = campaign_model()
    sc = Scenario("bronx", vaccination.campaign(1000.0, start=0, end=5, areas=["BX"]))
    res = study(model, [sc], steps=5, seeds=1, seed=0)
    vaccinated = res.result.final_state.vaccinated_at[1] >= 0
    bx = model.data.labels("borough").index("BX")
    assert int(vaccinated.sum()) == 5 * 40
    assert bool((model.data.borough[vaccinated] == bx).all())


def test_waning_lowers_protection_as_exp():
    model = campaign_model(vax_coverage0=1.0, ve_infection=0.8, vax_waning=0.01)
    sim = Simulation(model, members=1, seed=0)
    state = sim.run(30).final_state
    ctx = sim.ctx.at(30)
    factor = vaccination.susceptibility(state, sim.params.at(30), ctx, "leaky")
    assert torch.allclose(factor, torch.full_like(factor, 1 - 0.8 * math.exp(-0.3)))


@pytest.mark.parametrize("mode", ["all_or_nothing", "leaky"])
@pytest.mark.parametrize("waning", [0.0, 0.01])
def test_infection_probability_is_one_minus_exp_of_the_protected_hazard(mode, waning):
    """The probability of infection equals ``1 - exp(-susceptibility x pressure)`` bit for bit,
    also on the all-or-nothing shortcut (0 for the protected, the member's probability else)."""
    model = campaign_model(vax_coverage0=0.5, ve_infection=0.8, vax_waning=waning)
    sim = Simulation(model, members=2, seed=3)
    state = sim.run(10).final_state
    params, ctx = sim.params.at(10), sim.ctx.at(10)
    pressure = torch.tensor([[0.3], [1.7]], dtype=ctx.dtype)
    got = vaccination.infection_probability(state, params, ctx, pressure, mode)
    factor = vaccination.susceptibility(state, params, ctx, mode)
    assert torch.equal(got, -torch.expm1(-factor * pressure))
    assert 0 < float((got == 0).double().mean()) < 1 or mode == "leaky"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"vax_doses_per_100k": -5.0}, r"'vax_doses_per_100k' must lie in \[0, inf\]"),
        ({"ve_infection": 1.2}, r"'ve_infection' must lie in \[0, 1\]"),
        ({"ve_severe": -0.1}, r"'ve_severe' must lie in \[0, 1\]"),
    ],
)
def test_bad_vaccine_params_are_refused_before_the_run(change, message):
    with pytest.raises(ParamError, match=message):
        Simulation(campaign_model(**change), members=1)


def test_campaign_naming_an_unknown_age_band_or_area_lists_the_valid_ones():
    model = campaign_model()
    with pytest.raises(ParamError, match=r"no label '80\+'; valid: 0-4, 5-12"):
        study(
            model, [Scenario("x", vaccination.campaign(100.0, 0, ages=["80+"]))], steps=1, seeds=1
        )
    with pytest.raises(ParamError, match=r"no label 'Bronx'; valid: BX, BK, MN, QN, SI"):
        study(
            model, [Scenario("x", vaccination.campaign(100.0, 0, areas="Bronx"))], steps=1, seeds=1
        )
    with pytest.raises(ValueError, match="doses_per_100k must be finite and >= 0"):
        vaccination.campaign(-1.0, 0)
