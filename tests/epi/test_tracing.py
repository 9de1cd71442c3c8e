"""Testing, isolation, contact tracing and quarantine, measured on the transmission log."""

from __future__ import annotations

import pytest
import torch

from populace.engine import ParamError, Simulation
from populace.engine.intervention import SetParam
from populace.engine.study import Scenario, study
from populace.epi import testing, tracing, transmission
from populace.epi.durations import fixed
from populace.models import covid
from populace.populations import Population
from populace.populations.contacts import clique_layer
from populace.populations.nyc import AGE_BANDS, BOROUGHS


def household_population(households: int = 1000, size: int = 4) -> Population:
    n = households * size
    g = torch.Generator().manual_seed(0)
    return Population(
        attributes={
            "age": torch.randint(0, len(AGE_BANDS), (n,), generator=g),
            "borough": torch.arange(n) * len(BOROUGHS) // n,
        },
        codebook={"age": AGE_BANDS, "borough": BOROUGHS},
        layers={"household": clique_layer(torch.arange(n) // size)},
    )


#: a course with fixed times: 3 days exposed, 1 day presymptomatic, 5 days symptomatic.
FIXED = {"exp2inf": fixed(3), "inf2sym": fixed(1), "mild2rec": fixed(5), "asym2rec": fixed(5)}


def household_model(**params):
    settings = dict(
        beta=1.0,
        p_symptomatic=1.0,
        p_severe=0.0,
        test_symptomatic=1.0,
        test_delay=0.0,
        isolation=0.0,
        quarantine=0.0,
        quarantine_days=30.0,
    )
    return covid.build(
        population=household_population(),
        initial_infected=100,
        durations=FIXED,
        transmission_log=True,
        by=(),
        **(settings | params),
    )


def test_full_zero_delay_tracing_on_households_stops_transmission_after_the_first_generation():
    model = household_model()
    traced = Scenario("traced", (SetParam("trace_coverage", 1.0, start=0),))
    res = study(model, [traced], steps=40, seeds=2, seed=4)
    state = res.result.final_state
    generation = state.generation
    base, trace = generation[:2], generation[2:]
    # the seeds' presymptomatic day infects housemates (generation 1) ...
    assert int((trace == 1).sum()) > 50
    # ... who are quarantined before they are infectious: nobody of generation 2
    assert int((trace >= 2).sum()) == 0
    # without tracing (isolation of the diagnosed only) generation 1 goes on transmitting
    assert int((base >= 2).sum()) > 20
    # every infection of generation 1 happened on a seed's presymptomatic day (day 3)
    assert set(state.infected_at[2:][trace == 1].tolist()) == {3.0}


def test_tracing_reduces_the_measured_reproduction_number():
    model = covid.build(
        agents=6000,
        population="synthetic",
        initial_infected=40,
        transmission_log=True,
        by=(),
        beta=0.35,
        test_symptomatic=0.6,
        test_delay=1.0,
    )
    traced = Scenario(
        "traced",
        (
            SetParam("trace_coverage", 0.9, start=0),
            SetParam("trace_delay", 1.0, start=0),
            SetParam("quarantine", 0.1, start=0),
        ),
    )
    res = study(model, [traced], steps=60, seeds=3, seed=2)
    r = transmission.reproduction_by_generation(res.result.final_state, 3)
    base, trace = r[:3, 1:].mean(), r[3:, 1:].mean()  # generations 1 and 2
    assert float(base) > 1.2
    assert float(trace) < 0.8 * float(base), (float(trace), float(base))
    averted = res.difference("new_infections", "sum")
    assert float(averted["hi"][0]) < 0


def test_sources_are_infectious_contacts_of_their_cases():
    model = household_model(trace_coverage=0.0)
    sim = Simulation(model, members=2, seed=1)
    state = sim.run(30).final_state
    layer = model.data["household"].to_dense() > 0
    infected = (state.source >= 0).nonzero().tolist()
    assert len(infected) > 100
    for b, i in infected:
        j = int(state.source[b, i])
        assert layer[i, j], "the source is a household contact"
        # after the source's 3 days exposed (seeds count as infected on day 0)
        assert state.infected_at[b, i] - state.infected_at[b, j] >= 3
        assert state.generation[b, i] == state.generation[b, j] + 1
    secondary = transmission.secondary_cases(state)
    assert int(secondary.sum()) == len(infected)
    table = transmission.log_table(state, model.data.labels("layer"))
    assert table.height == int((state.generation[0] >= 0).sum())
    assert set(table["channel"].drop_nulls().to_list()) == {"household"}


def test_age_mixing_sources_come_from_the_bands_the_matrix_allows():
    bands = len(AGE_BANDS)
    matrix = torch.eye(bands) * 2.0  # each band meets only itself
    model = covid.build(
        agents=3000,
        population="well_mixed",
        mixing="age",
        initial_infected=60,
        transmission_log=True,
        by=(),
        beta=0.5,
        contact_matrix=matrix,
    )
    state = Simulation(model, members=2, seed=0).run(40).final_state
    age = model.data.age
    known = state.source >= 0
    assert int(known.sum()) > 200
    src_age = age[state.source.clamp_min(0)]
    assert bool((src_age[known] == age.expand_as(state.source)[known]).all())
    assert bool((state.channel[known] == model.data.labels("layer").index("mixed")).all())


def test_testing_capacity_serves_symptomatic_agents_first():
    model = household_model(tests_per_100k=500.0, test_other=1.0)  # 20 tests a day for 4000
    res = Simulation(model, members=1, seed=0).run(15)
    assert res.metrics["tests"].max() == 20
    state = res.final_state
    assert state.tests.tolist() == [20.0]


def test_delayed_results_come_delay_days_later():
    model = household_model(test_delay=2.0, beta=0.0)
    res = Simulation(model, members=1, seed=0).run(12)
    diagnosed = res.metrics["new_diagnoses"].to_list()
    # seeds: symptomatic from day 4 (3 days E, 1 day presymptomatic), tested that day
    assert diagnosed[:7] == [0.0] * 7 and diagnosed[7] == 100.0


def test_tracing_a_layer_the_model_lacks_is_refused_naming_its_layers():
    model = household_model()
    bad = Scenario("x", (SetParam("trace_coverage", 1.0, start=0, where={"layer": "school"}),))
    with pytest.raises(ParamError, match=r"no label 'school'; valid: household"):
        study(model, [bad], steps=1, seeds=1)
    with pytest.raises(ParamError, match=r"'trace_coverage': shape \(3,\)|trailing shape \(3,\)"):
        Simulation(household_model(trace_coverage=torch.tensor([1.0, 0.5, 0.2])), members=1)


def test_the_well_mixed_channel_cannot_be_traced():
    model = covid.build(agents=500, population="synthetic", mixing="well_mixed", by=())
    bad = Scenario("x", (SetParam("trace_coverage", 0.5, start=3, where={"layer": "mixed"}),))
    with pytest.raises(
        ParamError, match=r"'mixed' is well mixed.*traceable layers: \['household', 'community'\]"
    ):
        study(model, [bad], steps=1, seeds=1)


def test_traced_probability_compounds_over_contacts_and_layers():
    a = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]).to_sparse_csr()
    b = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]).to_sparse_csr()
    diagnosed = torch.tensor([[0.0, 1.0, 1.0]])
    p = tracing.traced_probability(diagnosed, [a, b], [torch.tensor(0.5), torch.tensor(0.1)])
    # agent 0: two diagnosed contacts on a (0.5 each), weight 2 on b (0.1 per unit)
    assert p[0, 0].item() == pytest.approx(1 - 0.5**2 * 0.9**2)
    assert p[0, 1].item() == 0.0
    full = tracing.traced_probability(diagnosed, [a], [torch.tensor(1.0)])
    assert full[0].tolist() == [1.0, 0.0, 0.0]
    assert testing.DiagnosisParams().declarations()["isolation"].axes == ("layer",)
