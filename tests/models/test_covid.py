"""The covid policy model: populations, closures by area, studies, triggers, gradients,
reproducibility, the CLI and bad input."""

from __future__ import annotations

import json

import pytest
import torch

from populace import models
from populace.cli import main
from populace.engine import Simulation, member_seed
from populace.engine.intervention import ScaleParam, SetParam, Trigger
from populace.engine.study import Scenario, study
from populace.epi import vaccination
from populace.epi.durations import fixed
from populace.models import covid
from populace.populations import Population


def test_the_zoo_lists_covid_and_its_params():
    assert "covid" in models.ZOO and "measles" in models.ZOO
    text = models.describe("covid")
    for name in ("p_severe", "beds_per_100k", "trace_coverage", "vax_priority", "household"):
        assert name in text
    assert "per age" in text and "per layer" in text and "per borough" in text


@pytest.mark.parametrize(
    ("population", "mixing", "layers"),
    [
        ("synthetic", "none", ["household", "community"]),
        ("synthetic", "age", ["household", "community"]),
        ("well_mixed", "well_mixed", []),
    ],
)
def test_it_runs_on_each_population(population, mixing, layers):
    model = covid.build(agents=1500, population=population, mixing=mixing, initial_infected=15)
    assert model.options["layers"] == layers
    res = Simulation(model, members=2, seed=0, check_finite=True).run(25)
    total = sum(
        res.series(c)[:, -1] for c in ("S", "E", "I_asym", "I_pre", "I_mild", "H", "ICU", "R", "D")
    )
    assert torch.equal(total, torch.full_like(total, 1500))
    assert float(res.series("new_infections")[:, 1:].sum()) > 0


@pytest.mark.slow
def test_it_runs_on_the_nyc_population_with_its_four_layers():
    model = covid.build(agents=3000, population="nyc", initial_infected=20, area="borough")
    assert model.options["layers"] == ["household", "school", "work", "community"]
    close = Scenario("schools closed", (SetParam("school", 0.0, start=0),))
    res = study(model, [close], steps=30, seeds=2, seed=0)
    assert set(res.metrics["scenario"]) == {"baseline", "schools closed"}
    assert "new_infections_BX" in res.metrics.columns and "D_75+" in res.metrics.columns


def test_the_same_seed_gives_the_same_run_and_a_member_runs_alone_as_in_a_batch():
    model = covid.build(agents=1200, initial_infected=12, test_symptomatic=0.3, trace_coverage=0.5)
    a = Simulation(model, members=3, seed=7).run(20).metrics
    b = Simulation(model, members=3, seed=7).run(20).metrics
    assert a.equals(b)
    alone = Simulation(model, seeds=[member_seed(7, 2)]).run(20).metrics
    batch = a.filter(a["member"] == 2).drop("member")
    assert alone.drop("member").equals(batch)


def test_closing_every_layer_of_a_borough_stops_transmission_there():
    model = covid.build(agents=3000, initial_infected=60, beta=0.4)
    lockdown = tuple(
        SetParam(layer, 0.0, start=0, where={"borough": "BX"})
        for layer in ("household", "community")
    )
    res = study(model, [Scenario("bronx locked down", lockdown)], steps=30, seeds=2, seed=3)
    m = res.metrics.filter(
        (res.metrics["scenario"] == "bronx locked down") & (res.metrics["step"] > 0)
    )
    assert float(m["new_infections_BX"].sum()) == 0
    assert float(m["new_infections_BK"].sum()) > 0


def test_a_per_borough_trigger_closes_the_community_layer_where_prevalence_is_high():
    model = covid.build(agents=2000, initial_infected=40, beta=0.4)

    def prevalence(state, params, ctx):
        from populace.kernels.meanfield import group_sum

        sick = state.health[:, 2:5].sum(dim=1)
        size = torch.bincount(ctx.data.borough, minlength=5).clamp_min(1)
        return group_sum(sick, ctx.data.borough, 5) / size

    rule = Trigger("community", 0.0, prevalence, 0.01, 0.005, label="closed", axis="borough")
    res = study(model, [Scenario("reactive", triggers=(rule,))], steps=30, seeds=2, seed=1)
    m = res.metrics.filter(res.metrics["scenario"] == "reactive")
    assert {f"closed_{b}" for b in ("BX", "BK", "MN", "QN", "SI")} <= set(m.columns)
    assert m["closed_BK"].any()
    averted = res.difference("new_infections", "sum")
    assert float(averted["mean"][0]) < 0


def test_policies_compose_in_one_batched_study():
    model = covid.build(agents=3000, initial_infected=30, beta=0.35)
    scenarios = [
        Scenario("vaccinate old", vaccination.campaign(2000.0, start=0, ages=["65-74", "75+"])),
        Scenario(
            "test and trace",
            (
                SetParam("test_symptomatic", 0.5, start=0),
                SetParam("trace_coverage", 0.8, start=0),
            ),
        ),
        Scenario("distancing", (ScaleParam("community", 0.5, start=0),)),
    ]
    res = study(model, scenarios, steps=40, seeds=2, seed=0)
    assert res.result.final_state.members == 8  # 4 scenarios x 2 seeds, one batch
    m = res.metrics
    assert float(m.filter(m["scenario"] == "vaccinate old")["doses"].sum()) > 0
    traced = m.filter(m["scenario"] == "test and trace")
    assert float(traced["quarantined"].max()) > 0 and float(traced["tests"].sum()) > 0
    averted = res.difference("new_infections", "sum")
    assert (averted["mean"] < 0).all()


def test_waning_natural_immunity_brings_reinfections():
    model = covid.build(
        agents=1500,
        population="well_mixed",
        mixing="well_mixed",
        initial_infected=30,
        immunity=fixed(10),
        beta=0.6,
        durations={"exp2inf": fixed(2), "asym2rec": fixed(4), "mild2rec": fixed(4)},
    )
    res = Simulation(model, members=1, seed=0).run(80)
    infections = float(res.series("new_infections").sum())
    assert infections > 1.5 * 1500  # more infections than agents
    lifelong = covid.build(
        agents=1500, population="well_mixed", mixing="well_mixed", initial_infected=30, beta=0.6
    )
    once = float(Simulation(lifelong, members=1, seed=0).run(80).series("new_infections").sum())
    assert once <= 1500


def test_gradients_reach_beta_and_severity_params():
    beta = torch.tensor(0.4, requires_grad=True)
    p_death = torch.full((10,), 0.5, requires_grad=True)
    model = covid.build(
        agents=800,
        population="well_mixed",
        mixing="well_mixed",
        initial_infected=40,
        estimator="straight_through",
        temperature=0.5,
        beta=beta,
        p_death=p_death,
        p_severe=0.5,
        p_critical=0.5,
        durations={"sym2sev": fixed(1), "sev2crit": fixed(1), "crit2die": fixed(1)},
    )
    res = Simulation(model, members=2, seed=0).run(25)
    res.series("D")[:, -1].sum().backward()
    assert beta.grad is not None and float(beta.grad) != 0
    assert p_death.grad is not None and float(p_death.grad.sum()) > 0


def test_cli_runs_covid(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "run",
            "covid",
            "--agents",
            "600",
            "--steps",
            "5",
            "--set",
            "test_symptomatic=0.5",
            "--set",
            "population=well_mixed",
            "--set",
            "mixing=well_mixed",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    record = json.loads((out / "run.json").read_text())
    assert record["options"]["mixing"] == "well_mixed"
    capsys.readouterr()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"population": "mars"}, ValueError, "unknown population 'mars'; valid: synthetic"),
        ({"mixing": "random"}, ValueError, "unknown mixing 'random'"),
        ({"vaccine": "perfect"}, ValueError, "unknown vaccine 'perfect'"),
        ({"population": "well_mixed"}, ValueError, "no contact layers"),
        ({"area": "zip"}, ValueError, "coded attribute 'zip'"),
        ({"by": ("county",)}, ValueError, "unknown axis 'county'"),
        ({"durations": {"exp2inc": fixed(2)}}, ValueError, "unknown duration"),
        ({"immunity": "long"}, ValueError, "immunity must be None"),
    ],
)
def test_bad_builds_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        covid.build(agents=300, **kwargs)


def test_a_population_whose_age_bands_are_not_years_needs_its_probabilities():
    n = 200
    pop = Population(
        attributes={"age": torch.arange(n) % 2, "borough": torch.zeros(n, dtype=torch.int64)},
        codebook={"age": ("child", "adult"), "borough": ("all",)},
    )
    with pytest.raises(ValueError, match="'child' is not 'a-b'.*give p_symptomatic"):
        covid.build(population=pop, mixing="well_mixed")
    model = covid.build(
        population=pop,
        mixing="well_mixed",
        p_symptomatic=0.5,
        p_severe=torch.tensor([0.01, 0.1]),
        p_critical=0.2,
        p_death=0.3,
        initial_infected=5,
    )
    Simulation(model, members=1).run(3)


def test_a_baseline_member_of_a_study_runs_as_it_does_alone():
    """Scenarios differ in doses, tests and tracing, yet every member draws the same random
    numbers: the baseline of seed k is the model run alone with seed k's stream."""
    model = covid.build(agents=1200, initial_infected=12, by=())
    scenarios = [
        Scenario("campaign", vaccination.campaign(1000.0, start=3, end=9)),
        Scenario(
            "trace",
            (SetParam("test_symptomatic", 0.5, start=2), SetParam("trace_coverage", 0.7, start=2)),
        ),
    ]
    res = study(model, scenarios, steps=15, seeds=2, seed=5)
    for k in range(2):
        alone = Simulation(model, seeds=[member_seed(5, k)]).run(15).metrics
        base = res.metrics.filter(
            (res.metrics["scenario"] == "baseline") & (res.metrics["seed"] == k)
        )
        assert alone.drop("member").equals(base.drop("scenario", "seed"))


def test_only_the_metrics_asked_for_are_recorded_and_unknown_ones_are_named():
    lean = covid.build(agents=800, initial_infected=20, metrics=("new_infections_by_age", "I"))
    full = covid.build(agents=800, initial_infected=20)
    a = Simulation(lean, members=2, seed=4).run(6).metrics
    b = Simulation(full, members=2, seed=4).run(6).metrics
    kept = [c for c in a.columns if c not in ("member", "step")]
    assert "I" in kept and "new_infections_0-4" in kept and "S" not in kept
    assert a.select(kept).equals(b.select(kept))  # the same run, fewer columns
    with pytest.raises(ValueError, match="unknown metric\\(s\\) \\['cases'\\]"):
        covid.build(agents=800, metrics=("cases",))


def test_degree_order_vaccinates_the_most_connected_of_each_band_first():
    model = covid.build(
        agents=2000, initial_infected=0, vaccine_order="degree", vax_doses_per_100k=5000.0
    )
    contacts = covid.contacts_per_agent(model.data, model.options["layers"])
    sim = Simulation(model, members=2, seed=3)
    sim.run(1)
    vaccinated = sim.state.vaccinated_at >= 0  # [B, N]: 100 doses on day 0
    age = model.data.age
    for b in range(2):
        for band in age.unique():
            mine = age == band
            got, not_yet = vaccinated[b] & mine, ~vaccinated[b] & mine
            if got.any() and not_yet.any():
                assert contacts[got].min() >= contacts[not_yet].max()
    with pytest.raises(ValueError, match="unknown vaccine_order 'oldest'"):
        covid.build(agents=100, vaccine_order="oldest")
