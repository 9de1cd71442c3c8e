"""The behaviour model: heuristic and LLM archetype isolation, call counts independent of N."""

from __future__ import annotations

import pytest
import torch

from populace.engine import Simulation
from populace.epi.observation import case_trend
from populace.models import covid_behavior
from populace.models.covid_behavior import synthetic_population


def test_case_trend():
    cases = torch.zeros(1, covid_behavior.WINDOW, dtype=torch.float64)
    cases[0, -7:] = 10.0  # 70 this week, 70 in four weeks → weekly average 17.5
    assert cases.shape[1] == 28
    per_100k, change = case_trend(cases, agents=1000)
    assert per_100k.item() == pytest.approx(7000.0)
    assert change.item() == pytest.approx(100 * (70 - 17.5) / 17.5)


def test_heuristic_isolation_rises_with_cases_and_cuts_the_epidemic():
    base = covid_behavior.build(agents=3000, initial_infected=30)
    never = base.with_params(isolation_base=0.0, isolation_per_case=0.0)
    cautious = base.with_params(isolation_per_case=0.01)
    r_never = Simulation(never, members=2, seed=1, dtype=torch.float64).run(60)
    r_cautious = Simulation(cautious, members=2, seed=1, dtype=torch.float64).run(60)
    assert r_never.metrics["isolating"].max() == 0
    assert r_cautious.metrics["isolating"].max() > 300
    assert r_cautious.final()["R"] < r_never.final()["R"]
    # heuristic runs make no LLM calls
    assert r_cautious.metrics["llm_calls"].sum() == 0


def test_same_seed_same_run():
    model = covid_behavior.build(agents=500, initial_infected=10)
    a = Simulation(model, seed=3).run(15).metrics
    b = Simulation(model, seed=3).run(15).metrics
    assert a.equals(b)


def llm_run(scripted, rule, agents, steps, tmp_path=None, members=1, **options):
    backend = scripted(rule)
    model = covid_behavior.build(
        agents=agents,
        initial_infected=max(1, agents // 50),
        behavior="llm",
        backend=backend,
        cache=str(tmp_path / "c.sqlite") if tmp_path else False,
        **options,
    )
    result = Simulation(model, members=members, seed=0).run(steps)
    return backend, result


def test_llm_calls_scale_with_archetypes_not_agents(scripted):
    def rule(text, seen):
        return "yes" if "higher" in text else "no"

    counts = []
    for agents in (1_000, 100_000):
        backend, result = llm_run(scripted, rule, agents, steps=15, samples=2, query_every=7)
        k = 4 * 5  # age groups x boroughs, all present at these sizes
        query_steps = 3  # steps 0, 7, 14
        assert backend.calls == k * query_steps * 2
        assert result.metrics["llm_calls"].sum() == backend.calls
        # metrics at step t+1 report the work of step t (here: the query of step 7)
        assert result.metrics.filter(result.metrics["step"] == 8)["llm_calls"].item() == k * 2
        counts.append(backend.calls)
    assert counts[0] == counts[1]


def test_llm_answers_drive_isolation(scripted):
    def always(text, seen):
        return "yes"

    def never(text, seen):
        return "no"

    _, yes = llm_run(scripted, always, 2000, steps=3, heterogeneity=0.0)
    _, no = llm_run(scripted, never, 2000, steps=3, heterogeneity=0.0)
    # p = 1 → everyone isolates; p = 0 → nobody (the 1e-6 logit clamp is not reached at h=0)
    assert yes.metrics["isolating"][-1] == 2000
    assert no.metrics["isolating"][-1] == 0


def test_llm_rerun_hits_the_cache_and_reproduces(scripted, tmp_path):
    def rule(text, seen):
        return ["yes", "no", "no"][seen % 3]

    first_backend, first = llm_run(scripted, rule, 800, steps=9, tmp_path=tmp_path, samples=3)
    again_backend, again = llm_run(scripted, rule, 800, steps=9, tmp_path=tmp_path, samples=3)
    assert first_backend.calls > 0 and again_backend.calls == 0
    assert again.metrics["llm_cache_hits"].sum() == first.metrics["llm_calls"].sum()
    cols = ["S", "I", "R", "isolating", "new_cases"]
    assert first.metrics.select(cols).equals(again.metrics.select(cols))


def test_llm_fallbacks_are_counted_in_metrics(scripted):
    backend, result = llm_run(
        scripted,
        lambda t, s: "banana",
        400,
        steps=2,
        samples=1,
        max_retries=1,
        prior=0.0,
        max_fallback_share=1.0,
    )
    fallbacks = result.metrics["llm_fallbacks"].sum()
    assert fallbacks == backend.calls // 2  # every answer invalid twice, then the prior
    assert fallbacks > 0


def test_population_seam_and_bad_options():
    pop = synthetic_population(100, seed=1)
    assert pop.n == 100 and int(pop.attributes["borough"].max()) < 5
    model = covid_behavior.build(agents=100, population=pop)
    assert model.agents == 100
    # the age groups fold NYC's bands: every agent of band "75+" is in group "65+"
    old = model.data.age == pop.codebook["age"].index("75+")
    assert (model.data.age_group[old] == covid_behavior.AGE_GROUPS.index("65+")).all()
    with pytest.raises(ValueError, match="behavior"):
        covid_behavior.build(agents=100, behavior="psychic")
    with pytest.raises(ValueError, match="population has 100 agents, not 50"):
        covid_behavior.build(agents=50, population=pop)
    with pytest.raises(ValueError, match="unknown LLM backend"):
        covid_behavior.build(agents=100, behavior="llm", backend="telepathy", cache=False)
    with pytest.raises(ValueError, match="population must be a Population"):
        covid_behavior.build(agents=100, population="x")
    with pytest.raises(ValueError, match="prior must be a probability"):
        covid_behavior.build(agents=100, prior=float("nan"))


@pytest.mark.parametrize("behavior", ["heuristic", "llm"])
def test_state_stays_finite_so_check_finite_can_be_on(scripted, behavior):
    options = {"backend": scripted(lambda t, s: "yes"), "cache": False} if behavior == "llm" else {}
    model = covid_behavior.build(agents=300, initial_infected=10, behavior=behavior, **options)
    result = Simulation(model, members=2, device="cpu", check_finite=True).run(9)
    assert torch.isfinite(result.final_state.p_isolate).all()


def test_a_run_where_most_answers_fall_back_stops_with_one_line(scripted):
    from populace.behaviors.llm.query import FallbackShareError

    with pytest.raises(FallbackShareError, match="fell back"):
        llm_run(scripted, lambda t, s: "banana", 400, steps=2, samples=1, max_retries=0, prior=0.0)
