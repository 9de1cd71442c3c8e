"""Staying home: the link, the weekly draw, and the contacts an agent at home keeps."""

from __future__ import annotations

import pytest
import torch

from populace.behaviors import stay_home
from populace.behaviors.stay_home import StayHome
from populace.engine import Simulation
from populace.models import covid


def _params(**values):
    return covid.CovidParams().replace(**values)


def test_link_identity_constant_and_monotone():
    p = torch.tensor([0.01, 0.2, 0.5, 0.9], dtype=torch.float64)
    assert torch.allclose(stay_home.link(p, _params()), p)
    flat = stay_home.link(p, _params(link_scale=0.0, link_bias=1.5))
    assert torch.allclose(flat, torch.sigmoid(torch.tensor(1.5, dtype=torch.float64)).expand(4))
    steep = stay_home.link(p, _params(link_scale=2.0, link_bias=0.5))
    assert (steep.diff() > 0).all()
    # per member: [B] scale and bias give [B, K]
    per = stay_home.link(p, _params(link_scale=torch.tensor([1.0, 0.0]), link_bias=0.0))
    assert per.shape == (2, 4) and torch.allclose(per[1], torch.full((4,), 0.5).double())


def test_week_rows_hold_the_table():
    rows = stay_home.week_rows(
        20, 5, _params(stay_home_hold=torch.tensor([0.0, 1.0, 1e9])), members=3
    )
    assert rows.tolist() == [0, 1, 2]  # day 20 is week 2, held at 0 and 1
    assert stay_home.week_rows(70, 5, _params(), members=1).tolist() == [4]  # the last row


@pytest.mark.parametrize(
    "table, codes, message",
    [
        (torch.tensor([[0.5, float("nan")]]), torch.tensor([0, 1]), "not a probability"),
        (torch.tensor([[0.5, 1.5]]), torch.tensor([0, 1]), "not a probability"),
        (torch.tensor([0.5, 0.5]), torch.tensor([0, 1]), "float \\[W, K\\]"),
        (torch.tensor([[0.5, 0.5]]), torch.tensor([0, 2]), "outside the 2 labels"),
        (torch.tensor([[0.5, 0.5]]), torch.tensor([0.0, 1.0]), "int64"),
        (torch.tensor([[0.5]]), torch.tensor([0, 1]), "one column per archetype"),
    ],
)
def test_bad_tables_are_named(table, codes, message):
    with pytest.raises(ValueError, match=message):
        StayHome(table, codes, ("a", "b"))


def _model(behaviour=None, **params):
    return covid.build(
        agents=3000,
        population="synthetic",
        initial_infected=30,
        by=(),
        behaviour=behaviour,
        beta=0.6,
        **params,
    )


def test_share_at_home_follows_the_acted_on_probability():
    n = _model().agents
    table = torch.tensor([[0.3], [0.7]], dtype=torch.float64)
    beh = StayHome(table, torch.zeros(n, dtype=torch.int64), ("everyone",))
    result = Simulation(_model(beh), members=4, seed=2, dtype=torch.float64).run(10)
    m = result.metrics
    week0 = m.filter(m["step"] == 1)["staying_home"].mean() / n
    week1 = m.filter(m["step"] == 8)["staying_home"].mean() / n
    se = (0.25 / (4 * n)) ** 0.5
    assert abs(week0 - 0.3) < 5 * se and abs(week1 - 0.7) < 5 * se
    # the link moves it: bias +1 on the log-odds of 0.3
    shifted = Simulation(_model(beh, link_bias=1.0), members=4, seed=2, dtype=torch.float64)
    m = shifted.run(3).metrics
    expected = float(torch.sigmoid(torch.logit(torch.tensor(0.3)) + 1.0))
    assert abs(m.filter(m["step"] == 1)["staying_home"].mean() / n - expected) < 5 * se


def test_agents_at_home_keep_only_their_household():
    model = _model()
    n = model.agents
    everyone = torch.zeros(n, dtype=torch.int64)
    always = StayHome(torch.ones(1, 1, dtype=torch.float64), everyone, ("all",))
    home = _model(always, stay_home_effect=1.0)
    household = model.data["household_id"]

    def spread(m):
        sim = Simulation(m, members=2, seed=5, dtype=torch.float64)
        s0 = sim.state.health[:, covid.COURSE_INDEX["S"]] < 0.5  # seeded agents
        r = sim.run(40)
        ever = r.final_state.health[:, covid.COURSE_INDEX["S"]] < 0.5
        outside = []
        for b in range(2):
            seeded_homes = torch.unique(household[s0[b]])
            outside.append(int((ever[b] & ~torch.isin(household, seeded_homes)).sum()))
        return outside

    assert spread(home) == [0, 0]  # every infection stayed in a seeded household
    assert min(spread(model)) > 50  # without staying home it leaves them
