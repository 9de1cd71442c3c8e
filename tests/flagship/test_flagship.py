"""The flagship's pieces: what agents know, archetypes, LLM work independent of N, the
profiled-out observation, the fit cache and paired counterfactual differences."""

from __future__ import annotations

import polars as pl
import pytest
import torch

from populace import flagship as fl
from populace.behaviors.llm import Accounting


def test_situations_of_constant_cases():
    people = torch.tensor([1e5, 2e5, 1e5, 1e5, 5e4], dtype=torch.float64)
    cases = torch.full((70, 5), 10.0, dtype=torch.float64)
    known = fl.situations(cases, people, weeks=10)
    assert known["per_100k"][0].tolist() == [0.0] * 5  # nothing known before day 0
    expected = 70 / people * 1e5
    assert torch.allclose(known["per_100k"][1:], expected.expand(9, 5))
    # from week 5 the 4 weeks before are all data: the same level, no change
    assert torch.allclose(known["change"][5:], torch.zeros(5, 5, dtype=torch.float64))
    assert (known["change"][1] > 0).all()  # week 1: up from nothing
    with pytest.raises(ValueError, match="days of cases"):
        fl.situations(cases[:20], people, weeks=10)


class CountingQuery:
    """Stands in for the LLM: answers 0.5, counts the questions asked."""

    def __init__(self):
        self.asked = 0

    def ask(self, questions, previous=None):
        self.asked += len(questions)
        return torch.full((len(questions),), 0.5, dtype=torch.float64), Accounting(
            answers=len(questions), calls=len(questions)
        )


@pytest.mark.slow
def test_llm_questions_scale_with_archetypes_and_weeks_not_agents():
    asked = {}
    for scale in (0.0003, 0.0012):
        query = CountingQuery()
        flag = fl.prepare(fl.Setting(scale=scale), lambda q=query: q, log=lambda m: None)
        weeks = fl.table_weeks()
        assert len(flag.labels) == 20  # 4 age groups x 5 boroughs
        assert query.asked == weeks * len(flag.labels) == flag.llm["questions"]
        asked[flag.population.n] = query.asked
        # every agent of an archetype has its age group and borough
        for k, entry in enumerate(flag.labels):
            members = flag.archetype == k
            boroughs = flag.population.attributes["borough"][members].unique()
            assert boroughs.numel() == 1
            assert fl.borough_of(entry) == int(boroughs[0])
        assert flag.tables["llm"].shape == (weeks, 20)
        # one answer of 0.5 per question, shrunk towards 1/2: stays 0.5
        assert torch.allclose(flag.tables["llm"], torch.full((weeks, 20), 0.5).double())
    assert len(set(asked.values())) == 1 and len(asked) == 2


def test_unknown_archetype_attribute_is_named():
    from populace.models.covid import synthetic_population

    pop = synthetic_population(200)
    with pytest.raises(ValueError, match="unknown archetype attribute 'income'"):
        fl.archetypes(pop, ("income",))
    codes, labels = fl.archetypes(pop, ("borough",))
    assert codes.max() < len(labels) <= 5


def test_the_observation_is_profiled_out_in_closed_form():
    obs = torch.rand(60, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    unit = (obs / 0.2).expand(3, 60, 5)
    asc = fl.ascertainment(unit, obs)
    assert torch.allclose(asc, torch.full((3, 60), 0.2, dtype=torch.float64))
    assert torch.allclose(fl.nd(obs.unsqueeze(0), obs), torch.zeros(1, 5, dtype=torch.float64))
    assert torch.allclose(fl.nd(torch.zeros(1, 60, 5), obs, 7), torch.ones(1, 5).double())
    # deaths: the ratio (data over model) is profiled out within [1, 3]
    data = {"cases": obs, "deaths": obs * 3}
    infections = torch.ones(2, fl.LEAD + 60, 5, dtype=torch.float64)  # model days from 0
    lead = torch.full((2, fl.LEAD, 5), 7.0, dtype=torch.float64)  # before the data: not scored
    for have, ratio in ((1.5, 2.0), (0.6, 3.0), (6.0, 1.0)):  # model deaths x 10 = have x obs
        deaths = torch.cat([lead, obs.expand(2, 60, 5) * have / 10], dim=1)
        pred = fl.fit_predictions(infections, deaths, data, 10.0)
        want = torch.full((2, 60), ratio, dtype=torch.float64)
        assert torch.allclose(pred["death_ratio"], want)
        assert torch.allclose(pred["deaths"], data["deaths"].expand(2, 60, 5) * have * ratio / 3)
    assert (fl.objective(pred, data) >= 0).all()


def test_each_block_of_days_has_its_own_death_ratio():
    """The autumn fit spans two fatality regimes: a ratio per ``DEATH_BLOCK`` days."""
    t = fl.DEATH_BLOCK + 50
    obs = 1 + torch.rand(t, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    deaths = torch.cat([torch.zeros(1, fl.LEAD, 5), obs.unsqueeze(0) / 10], dim=1).double()
    truth = obs.clone()
    truth[: fl.DEATH_BLOCK] *= 2.5  # the model's deaths x 2.5 in the first block, x 1.2 after
    truth[fl.DEATH_BLOCK :] *= 1.2
    data = {"cases": obs, "deaths": truth}
    pred = fl.fit_predictions(torch.ones(1, fl.LEAD + t, 5).double(), deaths, data, 10.0)
    assert torch.allclose(pred["death_ratio"][0, : fl.DEATH_BLOCK], torch.tensor(2.5).double())
    assert torch.allclose(pred["death_ratio"][0, fl.DEATH_BLOCK :], torch.tensor(1.2).double())
    assert torch.allclose(pred["deaths"][0], truth)


def test_an_unknown_wave_is_named():
    with pytest.raises(ValueError, match="unknown wave 'spring'; valid: first, autumn"):
        fl.Setting(wave="spring")
    assert fl.table_weeks("autumn") > fl.table_weeks("first")
    autumn = fl.WAVES["autumn"]
    assert autumn.origins[0] >= autumn.fit_days  # forecasts only from after the fit window
    assert autumn.days <= fl.observed(autumn.days)["cases"].shape[0]  # the data reach


@pytest.mark.slow
def test_the_autumn_wave_scores_after_waning_immunity():
    """The autumn wave's runs carry the first wave's immunity, which wanes: recovered agents
    become susceptible again and are reinfected; its scores read its own window and origins."""
    flag = fl.prepare(fl.Setting(scale=0.0004, seeds=1, wave="autumn"), None, log=lambda m: None)
    assert flag.data["cases"].shape[0] == fl.WAVES["autumn"].days
    model = flag.model("none", metrics=("S", "R", "new_infections"), beta=1.2, initial=3e-3)
    assert model.options["immunity"] is not None
    from populace.engine import Simulation

    got = Simulation(model, seed=0, progress=False).run(fl.LEAD + 200).metrics
    s, infections = got["S"].to_torch(), got["new_infections"].to_torch()
    low = int(s.argmin())
    assert s[-1] > s[low] + 5  # susceptibles come back after the first wave
    assert float(infections.sum()) > model.agents  # more infections than people: reinfections
    params = {"beta": 1.2, "initial": 3e-3}
    sc = fl.score(flag, "none", params)
    origins = sc["forecasts"]["origin"].unique().sort().to_list()
    assert origins == [fl.date_of(o) for o in fl.WAVES["autumn"].origins]
    assert sc["predicted"]["cases"].shape == (fl.WAVES["autumn"].fit_days, 5)
    assert len(sc["death_ratio"]) == 2  # before and after 2020-08-01
    assert 0 <= sc["nd_fit"] and sc["forecast_relative_mae"] > 0


@pytest.fixture(scope="module")
def tiny():
    setting = fl.Setting(scale=0.0004, popsize=4, generations=0, seeds=2)
    return fl.prepare(setting, None, log=lambda m: None)


@pytest.mark.slow
def test_fits_are_cached_by_digest(tiny, tmp_path):
    first = fl.fit(tiny, "heuristic", tmp_path, log=lambda m: None)
    again = fl.fit(tiny, "heuristic", tmp_path, log=lambda m: None)
    assert not first["cached"] and again["cached"]
    assert again["params"] == first["params"] and again["evaluations"] == 4
    assert fl.digest(tiny, "heuristic") != fl.digest(tiny, "none")
    halved = {"heuristic": tiny.tables["heuristic"] * 0.5}
    changed = fl.Flagship(**{**tiny.__dict__, "tables": halved})
    assert fl.digest(changed, "heuristic") != fl.digest(tiny, "heuristic")


@pytest.mark.slow
def test_counterfactual_differences_are_paired_per_seed(tiny):
    params = {
        "beta": 1.0,
        "initial": 3e-3,
        "stay_home_effect": 0.5,
        "link_bias": 0.0,
        "link_scale": 1.0,
    }
    cf = fl.counterfactuals(tiny, "heuristic", params, days=40)
    m = cf["metrics"]
    total = m.group_by("scenario", "seed").agg(pl.col("new_infections").sum()).sort("seed")
    base = total.filter(pl.col("scenario") == "baseline")["new_infections"].to_torch()
    for sc, entry in cf["summary"].items():
        mine = total.filter(pl.col("scenario") == sc)["new_infections"].to_torch()
        expected = float((base - mine).double().mean()) * tiny.multiplier
        assert entry["infections_averted"] == pytest.approx(expected)
    # boroughs add up to the city
    inf = cf["table"].filter(pl.col("outcome") == "infections")
    for sc in cf["summary"]:
        part = inf.filter(pl.col("scenario") == sc)
        by = part.filter(pl.col("borough") != "NYC")["averted"].sum()
        assert by == pytest.approx(part.filter(pl.col("borough") == "NYC")["averted"][0])
    assert cf["attack_rate_by_area"].shape == (len(tiny.population.codebook["area"]),)
    assert 0 <= cf["baseline_attack_rate"] <= 1


def test_prompt_numbers_read_as_people_read_them():
    shown = [fl.rounded(x) for x in (0.4, 5.4, 37.2, 123.0, 1234.0)]
    assert shown == ["0", "5", "37", "120", "1200"]
    assert fl.trend_words(4.0) == "about as many as"
    assert fl.trend_words(45.0) == "45% more than" and fl.trend_words(-15.0) == "15% fewer than"
