import math

import numpy as np
import polars as pl
import pytest
import torch

from populace.engine import Schedule, Simulation
from populace.engine.intervention import Ramp, ScaleParam, SetParam, Trigger, apply_all
from populace.engine.params import ParamError
from populace.engine.study import Scenario, stack_params, study
from populace.models import sir
from tests.conftest import DecayParams


def values_over(params, name, steps):
    p = params.to("cpu", torch.float64)
    return [float(p.at(t).__getattribute__(name)) for t in range(steps)]


def test_set_param_changes_only_its_param_from_its_step():
    base = DecayParams(rate=0.1, noise=0.5)
    new = SetParam("rate", 0.3, start=4).apply(base)
    assert values_over(new, "rate", 7) == pytest.approx([0.1] * 4 + [0.3] * 3)
    assert new.noise == 0.5  # untouched
    win = SetParam("rate", 0.3, start=2, end=4).apply(base)
    assert values_over(win, "rate", 6) == pytest.approx([0.1, 0.1, 0.3, 0.3, 0.1, 0.1])


def test_interventions_compose_with_existing_schedules():
    base = DecayParams(rate=Schedule([0.1, 0.2], (0, 5)))
    new = apply_all(base, [ScaleParam("rate", 0.5, start=3), SetParam("rate", 0.9, start=8)])
    assert values_over(new, "rate", 10) == pytest.approx(
        [0.1, 0.1, 0.1, 0.05, 0.05, 0.1, 0.1, 0.1, 0.9, 0.9]
    )


def test_ramp_is_linear_then_holds():
    new = Ramp("rate", to=0.5, start=2, end=6).apply(DecayParams(rate=0.1))
    assert values_over(new, "rate", 9) == pytest.approx(
        [0.1, 0.1, 0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.5]
    )


def test_unknown_param_is_named():
    with pytest.raises(ParamError, match="unknown parameter 'rte'.*rate"):
        SetParam("rte", 0.3, start=1).apply(DecayParams())
    with pytest.raises(ParamError, match="bad window"):
        SetParam("rate", 0.3, start=5, end=5).apply(DecayParams())


def test_trigger_fires_per_member_with_hysteresis():
    # member 0 has high transmission and crosses the threshold; member 1 never does
    model = sir.build(agents=4_000, initial_infected=40, gamma=0.2)
    beta = torch.tensor([0.8, 0.1])
    rule = Trigger(
        "beta",
        0.0,
        lambda s, p, ctx: s.health[:, 1].sum(1) / 4_000,
        on_above=0.05,
        off_below=0.01,
        label="lockdown",
    )
    sim = Simulation(model.with_params(beta=beta), members=2, device="cpu", triggers=[rule])
    m = sim.run(80).metrics
    on0 = m.filter(pl.col("member") == 0)["lockdown"]
    on1 = m.filter(pl.col("member") == 1)["lockdown"]
    assert on0.any() and not on1.any()
    prev0 = m.filter(pl.col("member") == 0)["I"] / 4_000
    # it turned on only after prevalence exceeded 5 %, and turned off only below 1 %
    first_on = int(on0.arg_max())
    assert prev0[first_on] > 0.05 and (prev0[:first_on] <= 0.05).all()
    # once on, beta = 0: no new infections while the rule holds
    s0 = m.filter(pl.col("member") == 0)["S"]
    on_steps = [t for t in range(1, len(on0)) if on0[t - 1] and on0[t]]
    assert all(s0[t] == s0[t - 1] for t in on_steps)


def test_stack_params_makes_per_member_schedules():
    a = DecayParams(rate=0.1)
    b = SetParam("rate", 0.4, start=3).apply(a)
    p = stack_params([a, b], repeats=2).to("cpu", torch.float64)
    assert p.noise == 0.0
    assert p.at(0).rate.tolist() == pytest.approx([0.1, 0.1, 0.1, 0.1])
    assert p.at(3).rate.tolist() == pytest.approx([0.1, 0.1, 0.4, 0.4])


def test_study_pairs_scenarios_with_common_random_numbers(tmp_path):
    model = sir.build(agents=3_000, initial_infected=15, beta=0.45, gamma=0.25)
    res = study(
        model,
        [Scenario("distancing", (ScaleParam("beta", 0.8, start=5),))],
        steps=120,
        seeds=24,
        seed=1,
        device="cpu",
    )
    assert res.scenarios == ["baseline", "distancing"]
    assert res.metrics.columns[:3] == ["scenario", "seed", "step"]
    paired = res.difference("R", "final").filter(pl.col("scenario") == "distancing")
    unpaired = res.difference("R", "final", paired=False).filter(pl.col("scenario") == "distancing")
    assert paired["mean"][0] < 0  # distancing averts infections
    assert paired["std"][0] < unpaired["std"][0]  # CRN: paired differences vary less
    # the baseline members are exactly a plain run of the model with the same member seeds
    plain = Simulation(model, members=24, seed=1, device="cpu").run(120).metrics
    base = res.metrics.filter(pl.col("scenario") == "baseline")
    assert base["R"].to_list() == plain["R"].to_list()
    summary = res.summary("I")
    assert {"mean", "lo", "hi"} <= set(summary.columns)
    row = summary.filter((pl.col("scenario") == "distancing") & (pl.col("step") == 30))
    values = res.metrics.filter((pl.col("scenario") == "distancing") & (pl.col("step") == 30))["I"]
    assert row["mean"][0] == pytest.approx(values.mean())
    assert row["lo"][0] == pytest.approx(np.quantile(values.to_numpy(), 0.05))
    assert row["hi"][0] == pytest.approx(np.quantile(values.to_numpy(), 0.95))
    path = res.save(tmp_path / "study.parquet")
    assert pl.read_parquet(path).equals(res.metrics)


def test_study_rejects_duplicate_names():
    model = sir.build(agents=100)
    with pytest.raises(ValueError, match="unique"):
        study(model, [Scenario("baseline")], steps=1, device="cpu")


def test_trigger_values_and_thresholds_are_checked_before_the_run():
    model = sir.build(agents=500, initial_infected=5, gamma=0.2)
    prevalence = lambda s, p, ctx: s.health[:, 1].sum(1) / 500.0  # noqa: E731
    with pytest.raises(ParamError, match="NaN/Inf"):
        Simulation(model, device="cpu", triggers=[Trigger("beta", math.nan, prevalence, 0.1, 0.0)])
    with pytest.raises(ParamError, match=r"'gamma' must lie in \[0, 1\]"):  # its declaration
        Simulation(model, device="cpu", triggers=[Trigger("gamma", 5.0, prevalence, 0.1, 0.0)])
    with pytest.raises(ParamError, match="unknown parameter 'bta'"):
        Simulation(model, device="cpu", triggers=[Trigger("bta", 0.0, prevalence, 0.1, 0.0)])
    with pytest.raises(ParamError, match="on_above must be finite"):
        Trigger("beta", 0.0, prevalence, math.nan, 0.0)


def test_outcome_peak_step_is_the_first_step_of_a_plateau():
    from populace.engine.study import StudyResult

    metrics = pl.DataFrame(
        {
            "scenario": ["baseline"] * 6 + ["closure"] * 6,
            "seed": [0, 0, 0, 1, 1, 1] * 2,
            "step": [0, 1, 2] * 4,
            "I": [1.0, 5.0, 5.0, 2.0, 2.0, 1.0, 3.0, 3.0, 3.0, 0.0, 4.0, 4.0],
        }
    )
    res = StudyResult(metrics, ["baseline", "closure"], 2, result=None)
    out = res.outcome("I", "peak_step")
    assert out["scenario"].to_list() == ["baseline", "baseline", "closure", "closure"]
    assert out["I"].to_list() == [1, 0, 0, 1]
    assert res.outcome("I", "peak")["I"].to_list() == [5.0, 2.0, 3.0, 4.0]


def borough_seir(agents=1_000, **params):
    from populace.models import covid_nyc_seir

    return covid_nyc_seir.build(
        agents=agents, population="well_mixed", estimator="none", initial=0.02, **params
    )


def test_targeted_intervention_changes_only_the_selected_entries():
    model = borough_seir(beta=1.2)
    closed = SetParam("beta_borough", 0.0, start=0, where={"borough": "SI"}).apply(
        model.params, model.data
    )
    torch.testing.assert_close(closed.beta_borough.values[0], torch.tensor([1.0, 1, 1, 1, 0]))
    by_code = ScaleParam("beta_borough", 0.5, start=3, where={"borough": [0, "MN"]}).apply(
        model.params, model.data
    )
    torch.testing.assert_close(by_code.beta_borough.at(3), torch.tensor([0.5, 1, 0.5, 1, 1]))
    result = Simulation(
        model.with_params(beta_borough=closed.beta_borough), members=2, seed=1, device="cpu"
    ).run(20)
    assert result.metrics["cases_SI"].sum() == 0  # SI's residents are never exposed
    assert result.metrics["cases_BK"].sum() > 0


def test_targeted_interventions_name_unknown_labels_axes_and_untargetable_params():
    model = borough_seir()
    with pytest.raises(ParamError, match="axis 'borough' has no label 'Bronx'; valid: BX, BK"):
        SetParam("beta_borough", 0.0, 0, where={"borough": "Bronx"}).apply(model.params, model.data)
    with pytest.raises(ParamError, match="where= names axis 'age'; 'beta_borough' runs along"):
        SetParam("beta_borough", 0.0, 0, where={"age": "0-4"}).apply(model.params, model.data)
    with pytest.raises(ParamError, match="'beta' has no axes"):
        SetParam("beta", 0.0, 0, where={"borough": "BX"}).apply(model.params, model.data)


def test_a_per_borough_trigger_switches_each_borough_on_its_own_prevalence():
    model = borough_seir(agents=2_000, beta=1.0)

    def prevalence(state, params, ctx):  # [B, 5] infectious share per borough
        codes = ctx.data.borough
        sick = torch.zeros(state.health.shape[0], 5).index_add(1, codes, state.health[:, 2])
        return sick / torch.bincount(codes, minlength=5)

    rule = Trigger(
        "beta_borough", 0.0, prevalence, on_above=0.04, off_below=0.01, label="shut", axis="borough"
    )
    sim = Simulation(model, members=2, seed=2, device="cpu", triggers=[rule])
    m = sim.run(40).metrics
    assert {f"shut_{b}" for b in ("BX", "BK", "MN", "QN", "SI")} <= set(m.columns)
    shut = m.select([c for c in m.columns if c.startswith("shut_")])
    assert shut.to_numpy().any()
    # boroughs switch on their own prevalence, not together
    assert len({tuple(shut[c].to_list()) for c in shut.columns}) > 1
    with pytest.raises(ParamError, match="the param must run along exactly that axis"):
        Simulation(
            model,
            device="cpu",
            triggers=[Trigger("beta", 0.0, prevalence, 0.1, 0.0, axis="borough")],
        )


def test_study_of_a_targeted_closure_and_its_table():
    model = borough_seir(agents=1_000, beta=1.0)
    res = study(
        model,
        [Scenario("SI closed", (SetParam("beta_borough", 0.0, 0, where={"borough": "SI"}),))],
        steps=15,
        seeds=3,
        device="cpu",
    )
    d = res.difference("cases_SI", "sum")
    assert d["scenario"].to_list() == ["SI closed"]  # no zero baseline row
    assert d["mean"][0] < 0
    assert "StudyResult(2 scenarios ['baseline', 'SI closed'] x 3 seeds" in repr(res)
    with pytest.raises(ValueError, match=r"\['members'\] are set by the study"):
        study(model, [], steps=2, members=5, device="cpu")
