"""Severity by age and the hospital: deaths = infections x IFR by age, hard bed limits, worse
care without a bed, the prognoses table."""

from __future__ import annotations

import math

import pytest
import torch

from populace.engine import Simulation
from populace.engine.intervention import SetParam
from populace.engine.study import Scenario, study
from populace.epi import severity
from populace.models import covid

N = 10_000
BANDS = 10


def severe_model(**params):
    ramp = torch.linspace(0, 1, BANDS)
    return covid.build(
        agents=N,
        population="well_mixed",
        mixing="well_mixed",
        initial_infected=30,
        by=("age",),
        beta=0.4,
        # IFR 1.5 % (youngest) to 22 % (oldest): enough deaths per band for 3 SE to mean 3 SE
        p_symptomatic=0.5 + 0.4 * ramp,
        p_severe=0.2 + 0.4 * ramp,
        p_critical=torch.full((BANDS,), 0.5),
        p_death=0.3 + 0.5 * ramp,
        **params,
    )


@pytest.mark.slow
def test_deaths_by_age_are_infections_by_age_times_ifr_within_3_se():
    model = severe_model()
    res = Simulation(model, members=2, seed=5).run(260)
    m = res.metrics
    last = m.filter(m["step"] == m["step"].max())
    active = sum(float(last[c].sum()) for c in ("E", "I", "H", "ICU"))
    assert active == 0, "the epidemic must be over (every infection resolved)"
    labels = model.data.labels("age")
    ifr = severity.ifr(model.params)
    for k, label in enumerate(labels):
        infections = float(m[f"new_infections_{label}"].sum())
        deaths = float(last[f"D_{label}"].sum())
        p = float(ifr[k])
        expected = infections * p
        se = math.sqrt(infections * p * (1 - p))
        assert infections * p > 10
        assert abs(deaths - expected) <= 3 * se, (label, deaths, expected, se)
    # and the total is a real test: a wrong gather (IFR of another band) would miss it
    assert float(last["D"].sum()) > 200


@pytest.mark.slow
def test_hospital_occupancy_never_exceeds_a_hard_capacity_and_care_is_worse_without_beds():
    model = severe_model()
    limited = Scenario("limited", (SetParam("beds_per_100k", 150.0, start=0),))
    res = study(model, [limited], steps=200, seeds=2, seed=1)
    m = res.metrics
    cap = math.floor(150 * N / 1e5)
    lim = m.filter(m["scenario"] == "limited")
    assert lim["hospitalised"].max() <= cap
    assert lim["hospitalised"].max() == cap  # the limit binds
    assert (lim["H"] + lim["ICU"] > lim["hospitalised"]).any()  # patients wait for beds
    base = m.filter(m["scenario"] == "baseline")
    assert (base["hospitalised"] == base["H"] + base["ICU"]).all()  # no limit: a bed each
    assert base["hospitalised"].max() > 3 * cap
    deaths = res.difference("D", "final")
    assert float(deaths["mean"][0]) > 0  # worse care without a bed (paired seeds)


def test_prognoses_by_band_average_the_decade_table():
    got = severity.prognoses(["0-9", "80-89", "90+"])
    table = severity.BY_DECADE
    assert got["p_symptomatic"].tolist() == pytest.approx([0.5, 0.9, 0.9])
    assert got["p_death"][1] == pytest.approx(table["death"][8] / table["critical"][8])
    mixed = severity.prognoses(["5-14"])  # half in each of two decades
    want = (table["severe"][0] + table["severe"][1]) / 2 / ((0.5 + 0.55) / 2)
    assert float(mixed["p_severe"][0]) == pytest.approx(want)
    ifr = severity.prognoses(["60-69"])
    product = 1.0
    for name in severity.SEVERITY_PARAMS:
        product *= float(ifr[name][0])
    assert product == pytest.approx(table["death"][6])
    with pytest.raises(ValueError, match="'toddlers' is not 'a-b' or 'a\\+'"):
        severity.prognoses(["toddlers"])


def test_admission_holds_beds_until_discharge():
    course = severity.course()
    h = torch.zeros(1, len(severity.STAGES), 6)
    h[0, course.index("H"), :4] = 1
    h[0, course.index("R"), 4:] = 1
    in_bed = torch.tensor([[False, True, False, False, True, False]])  # agent 4 was discharged
    order = torch.arange(6).unsqueeze(0)
    got = severity.admit(h, in_bed, course, order, torch.tensor(2.0))
    assert got.tolist() == [[True, True, False, False, False, False]]
