"""The staged course: one-hot conservation, exact stage times, branch probabilities, final
size with non-geometric durations, gradients through the choices."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from populace.engine import Context, Model, Params, Simulation, param
from populace.engine.rng import Streams
from populace.epi.contact import well_mixed
from populace.epi.course import Course, CourseState, Stage, seir
from populace.epi.durations import fixed, geometric, lognormal
from populace.epi.observation import compartment, entries
from populace.models.sir import final_size


@dataclasses.dataclass(frozen=True)
class BranchParams(Params):
    beta: float | torch.Tensor = param(0.5, low=0)
    p_alt: float | torch.Tensor = param(0.3, low=0, high=1)


def branch_course(**kw) -> Course:
    return Course(
        (
            Stage("S", next="E"),
            Stage("E", fixed(2), next="I", infectious=0.0),
            Stage(
                "I",
                fixed(3),
                next="R",
                branch="p_alt",
                alt="D",
                alt_duration=fixed(5),
                infectious=1.0,
            ),
            Stage("R"),
            Stage("D"),
        ),
        **kw,
    )


def ctx(members: int = 2, seed: int = 0) -> Context:
    return Context(
        0, Streams([seed + b for b in range(members)]), torch.device("cpu"), torch.float64
    )


def test_every_agent_is_in_exactly_one_stage_and_times_are_exact():
    course = branch_course()
    c = ctx()
    params = BranchParams().to("cpu", torch.float64)
    state = CourseState(**course.initial(params, c, 2000, count=2000))  # all exposed at day 0
    arrivals = {}
    for t in range(12):
        state = CourseState(
            **course.advance(state, torch.zeros(2, 1, dtype=torch.float64), params, c.at(t))
        )
        assert torch.equal(state.health.sum(dim=1), torch.ones(2, 2000, dtype=torch.float64))
        for name in ("I", "R", "D"):
            got = int((state.entered == course.index(name)).sum())
            if got:
                arrivals.setdefault(name, set()).add(t)
    # E lasts 2 days, I 3 days (to R) or 5 days (to D)
    assert arrivals == {"I": {1}, "R": {4}, "D": {6}}
    dead = float(course.share(state, "D").mean())
    assert abs(dead - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 4000)


def test_branch_probability_per_agent_is_used():
    course = branch_course()
    c = ctx(members=1)
    params = BranchParams().to("cpu", torch.float64)
    state = CourseState(**course.initial(params, c, 4000, count=4000))
    probs = {"I": torch.linspace(0, 1, 4000, dtype=torch.float64).unsqueeze(0)}
    for t in range(8):
        moves = course.move(state, torch.zeros(1, 1, dtype=torch.float64), c.at(t))
        state = CourseState(**course.settle(moves, probs, c.at(t)))
    dead = course.share(state, "D")[0]
    assert float(dead[:400].mean()) < 0.15 and float(dead[-400:].mean()) > 0.85


@pytest.mark.parametrize(
    ("latent", "infectious"),
    [
        (geometric(2.0), geometric(4.0)),
        (lognormal(3.0, 1.0), lognormal(4.0, 1.5)),
        (fixed(2), fixed(4)),
    ],
)
def test_seir_final_size_depends_only_on_r0(latent, infectious):
    """z = 1 - exp(-R0 z) with R0 = beta E[infectious days], whatever the duration laws."""
    course = seir(latent, infectious)

    @dataclasses.dataclass(frozen=True)
    class P(Params):
        beta: float | torch.Tensor = param(0.5, low=0)

    n = 20_000

    def init(params, c):
        return CourseState(**course.initial(params, c, n, count=40))

    def step(state, params, c):
        hazard = well_mixed(course.infectiousness(state, params), params.beta)
        return state.replace(**course.advance(state, hazard, params, c))

    model = Model("seir", P(), init, (step,), {"S": compartment(course, "S")}, agents=n)
    r0 = 0.5 * course.infectious_days(P()).item()
    assert abs(r0 - 0.5 * infectious.expected()) < 1e-12
    res = Simulation(model, members=4, seed=2).run(200)
    attack = 1 - res.series("S")[:, -1] / n
    want = final_size(r0)
    assert abs(float(attack.mean()) - want) < 0.015, (float(attack.mean()), want)


def test_straight_through_gradients_reach_beta_and_branch_params():
    course = branch_course(estimator="straight_through", temperature=0.5)
    beta = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    p_alt = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    params = BranchParams(beta=beta, p_alt=p_alt).to("cpu", torch.float64)
    c = ctx(members=2)
    state = CourseState(**course.initial(params, c, 500, count=20))
    for t in range(15):
        hazard = well_mixed(course.infectiousness(state, params), params.beta)
        state = CourseState(**course.advance(state, hazard, params, c.at(t)))
    dead = course.share(state, "D").sum()
    dead.backward()
    assert beta.grad is not None and beta.grad != 0
    assert p_alt.grad is not None and p_alt.grad > 0


def test_entries_metric_counts_arrivals():
    course = branch_course()
    c = ctx(members=1)
    params = BranchParams().to("cpu", torch.float64)
    state = CourseState(**course.initial(params, c, 300, count=300))
    metric = entries(course, "I")
    state = CourseState(**course.advance(state, torch.zeros(1, 1, dtype=torch.float64), params, c))
    state = CourseState(
        **course.advance(state, torch.zeros(1, 1, dtype=torch.float64), params, c.at(1))
    )
    assert metric(state, params, c).tolist() == [300.0]


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ((Stage("S", next="X"), Stage("E", fixed(1), next="S")), "unknown stage 'X'"),
        ((Stage("S", next="E"), Stage("E", fixed(1))), "needs next="),
        ((Stage("S", next="E"), Stage("E", fixed(1), next="S", branch="p")), "go together"),
        ((Stage("S", fixed(2), next="E"), Stage("E")), "susceptible one"),
        ((Stage("S", next="S"),), "two or more stages"),
    ],
)
def test_malformed_courses_are_refused(stages, message):
    with pytest.raises(ValueError, match=message):
        Course(stages)


def test_a_course_names_params_its_model_lacks():
    with pytest.raises(ValueError, match=r"\['p_alt'\]"):
        branch_course().check_params(Params())


def test_the_infection_is_given_by_a_hazard_or_a_probability_exactly_once():
    from populace.epi.course import infection_probability

    hazard = torch.tensor([[0.0, 0.5, 2.0]], dtype=torch.float64)
    assert torch.equal(infection_probability(hazard, None), -torch.expm1(-hazard))
    p = torch.tensor([[0.1, 0.2, 0.3]])
    assert infection_probability(None, p) is p
    for both in ((None, None), (hazard, p)):
        with pytest.raises(ValueError, match="exactly one of the infection hazard"):
            infection_probability(*both)
