"""The fused CPU kernels of a day's transitions against their torch references: the same
numbers bit for bit (state, flows, durations, the random streams after the step), in float32
and float64, with per-member and per-agent hazards, branches, empty slots and waning."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from populace.engine import Context, Data, Params, param
from populace.engine.rng import Streams
from populace.epi.contact import well_mixed
from populace.epi.course import Course, CourseState, Stage
from populace.epi.disease import Disease, InfectionState, ProgressionParams
from populace.epi.durations import fixed, gamma, geometric
from populace.kernels import transition

pytestmark = pytest.mark.skipif(not transition.HAS_NUMBA, reason="the kernels need numba")


def contexts(members: int, seed: int = 0, data: Data | None = None) -> tuple[Context, Context]:
    """Two contexts with the same streams (one per backend)."""
    out = []
    for _ in range(2):
        rng = Streams([seed + 7 * b for b in range(members)])
        kw = {} if data is None else {"data": data.to("cpu", torch.float64)}
        out.append(Context(0, rng, torch.device("cpu"), torch.float64, **kw))
    return out[0], out[1]


def same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("latent", [False, True])
@pytest.mark.parametrize("per_agent", [False, True])
def test_markov_step_equals_the_torch_disease(dtype, latent, per_agent):
    fast, slow = Disease(latent=latent), Disease(latent=latent, backend="torch")
    b, n = 3, 5000
    c_fast, c_slow = contexts(b)
    params = ProgressionParams(
        sigma=torch.tensor([0.3, 0.5, 1.0]), gamma=torch.tensor([0.2, 0.0, 0.4])
    ).to("cpu", dtype)
    init = fast.initial(c_fast, n, count=200)
    assert set(init) == set(slow.initial(c_slow, n, count=200))
    s_fast = s_slow = InfectionState(**{k: v.to(dtype) for k, v in init.items()})
    weight = 0.5 + torch.rand(b, n, generator=torch.Generator().manual_seed(1), dtype=dtype)
    for t in range(40):
        for c in (c_fast, c_slow):
            c.rng.begin(t)
        i = fast.share(s_fast, "I")
        hazard = well_mixed(i, 1.5 * torch.ones(b, dtype=dtype), weight if per_agent else None)
        got = fast.advance(s_fast, hazard, params, c_fast)
        want = slow.advance(s_slow, hazard, params, c_slow)
        same(got, want)
        assert c_fast.rng.get_state() == c_slow.rng.get_state()
        s_fast, s_slow = s_fast.replace(**got), s_slow.replace(**want)
    assert float(fast.share(s_fast, "S").sum()) < b * n - 1000  # the epidemic ran


def test_markov_step_equals_the_reference_on_values_that_are_not_one_hot():
    """The Markov kernel repeats the reference's arithmetic, so even a health that a model
    relaxed (not 0/1) gives the same numbers."""
    fast, slow = Disease(), Disease(backend="torch")
    c_fast, c_slow = contexts(2)
    health = torch.rand(2, 3, 1000, generator=torch.Generator().manual_seed(3))
    zeros = torch.zeros(2, 1000)
    state = InfectionState(health=health, infected=zeros, onset=zeros, log_prob=torch.zeros(2))
    params = ProgressionParams().to("cpu", torch.float32)
    hazard = torch.full((2, 1), 0.7)
    same(fast.advance(state, hazard, params, c_fast), slow.advance(state, hazard, params, c_slow))


@dataclasses.dataclass(frozen=True)
class CourseParams(Params):
    beta: float | torch.Tensor = param(0.9, low=0)
    p_die: float | torch.Tensor = param(0.3, low=0, high=1, axes=("age",))
    p_severe: float | torch.Tensor = param(0.4, low=0, high=1)


def branching_course(**kw) -> Course:
    """Every feature the kernel handles: fixed, geometric and gamma durations, two branching
    stages (per-agent and per-member probabilities), an absorbing stage and waning back to S."""
    return Course(
        (
            Stage("S", next="E"),
            Stage("E", geometric(2.0), next="I", branch="p_severe", alt="Is"),
            Stage("I", fixed(3), next="R", infectious=1.0),
            Stage(
                "Is",
                gamma(4.0, 1.5),
                next="R",
                branch="p_die",
                alt="D",
                alt_duration=fixed(2),
                infectious="beta",
            ),
            Stage("R", geometric(10.0), next="S"),
            Stage("D"),
        ),
        **kw,
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_course_step_equals_the_torch_course(dtype):
    fast, slow = branching_course(), branching_course(backend="torch")
    b, n = 2, 6000
    ages = torch.arange(n) % 3
    data = Data({"age": ages}, axes={"age": ["young", "mid", "old"]})
    c_fast, c_slow = contexts(b, seed=5, data=data)
    params = CourseParams(
        p_die=torch.tensor([[0.0, 0.2, 0.9], [0.1, 0.5, 1.0]]), p_severe=torch.tensor([0.3, 0.6])
    ).to("cpu", dtype)
    init = fast.initial(params, c_fast, n, count=300)
    want_init = slow.initial(params, c_slow, n, count=300)
    same(init, want_init)
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in init.items()}
    # empty slots (all-zero columns), as the measles model's free capacity
    empty = torch.zeros(1, 1, n, dtype=dtype)
    empty[..., -500:] = 1
    state["health"] = state["health"] * (1 - empty)
    s_fast = s_slow = CourseState(**state)
    for t in range(60):
        for c in (c_fast, c_slow):
            c.rng.begin(t)
        hazard = well_mixed(fast.infectiousness(s_fast, params), 0.6 * torch.ones(b, dtype=dtype))
        if t % 2:  # per agent
            hazard = hazard * torch.linspace(0, 2, n, dtype=dtype)
        got = fast.advance(s_fast, hazard, params, c_fast)
        want = slow.advance(s_slow, hazard, params, c_slow)
        same(got, want)
        assert c_fast.rng.get_state() == c_slow.rng.get_state()
        s_fast, s_slow = s_fast.replace(**got), s_slow.replace(**want)
    counts = s_fast.health.sum(dim=2)
    assert (counts[:, fast.index("D")] > 0).all() and (counts[:, fast.index("R")] > 0).all()
    assert torch.equal(s_fast.health.sum(dim=(1, 2)), torch.full((b,), n - 500.0, dtype=dtype))


def test_course_falls_back_to_the_reference_when_health_is_not_one_hot():
    fast, slow = branching_course(), branching_course(backend="torch")
    c_fast, c_slow = contexts(1)
    params = CourseParams(p_die=torch.tensor([0.2, 0.2, 0.2])).to("cpu", torch.float64)
    data = Data({"age": torch.zeros(800, dtype=torch.int64)}, axes={"age": ["a", "b", "c"]})
    c_fast = dataclasses.replace(c_fast, data=data.to("cpu", torch.float64))
    c_slow = dataclasses.replace(c_slow, data=data.to("cpu", torch.float64))
    state = CourseState(**fast.initial(params, c_fast, 800, count=100))
    slow.initial(params, c_slow, 800, count=100)
    half = state.replace(health=state.health * 0.5)  # relaxed: not one-hot
    hazard = torch.full((1, 1), 0.3, dtype=torch.float64)
    before = c_fast.rng.get_state()
    got = transition.course(
        half.health,
        half.timer,
        half.fate,
        -torch.expm1(-hazard),
        [],
        fast._kernel_stages,
        fast.index(fast.onset),
        (c_fast.rng.claim(800), c_fast.rng.claim(800), c_fast.rng.claim(800)),
    )
    assert got is None
    c_fast.rng.set_state(before)
    same(fast.advance(half, hazard, params, c_fast), slow.advance(half, hazard, params, c_slow))


def test_gradient_estimators_never_take_the_kernel(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the fused kernel ran with a gradient estimator")

    monkeypatch.setattr(transition, "markov", refuse)
    monkeypatch.setattr(transition, "course", refuse)
    c, _ = contexts(1)
    disease = Disease(estimator="straight_through")
    state = InfectionState(**disease.initial(c, 100, count=5))
    beta = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    hazard = well_mixed(disease.share(state, "I"), beta)
    out = disease.advance(state, hazard, ProgressionParams().to("cpu", torch.float64), c)
    out["health"].sum().backward()
    assert beta.grad is not None
    course = branching_course(estimator="score_function")
    params = CourseParams(p_die=torch.tensor([0.2, 0.2, 0.2])).to("cpu", torch.float64)
    data = Data({"age": torch.zeros(100, dtype=torch.int64)}, axes={"age": ["a", "b", "c"]})
    c = dataclasses.replace(c, data=data.to("cpu", torch.float64))
    cstate = CourseState(**course.initial(params, c, 100, count=5))
    course.advance(cstate, torch.full((1, 1), 0.5, dtype=torch.float64), params, c)


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown backend 'numba'.*auto, torch"):
        Disease(backend="numba")
    with pytest.raises(ValueError, match="unknown backend"):
        branching_course(backend="gpu")


def test_claimed_sites_are_those_uniform_draws():
    a, b = Streams([3, 4]), Streams([3, 4])
    a.begin(2)
    b.begin(2)
    keys, c, start = a.claim(50)
    want = b.uniform(50)
    from populace.kernels.random import uniform

    assert torch.equal(uniform(keys, c, start, 50), want)
    assert torch.equal(a.uniform(10), b.uniform(10))  # the next site is the same


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("sir", {"agents": 4000, "initial_infected": 10, "beta": 0.6}),
        ("network_sir", {"agents": 3000, "seir": True}),
        (
            "measles",
            {
                "agents": 4000,
                "capacity": 1.3,
                "initial_infected": 10,
                "birth_rate": 40.0,
                "death_rate": 20.0,
                "initial_vaccinated": 0.4,
                "beta": 1.2,
            },
        ),
    ],
)
def test_zoo_models_give_the_same_runs_with_and_without_the_kernels(name, kwargs, monkeypatch):
    from populace import models
    from populace.engine import Simulation

    model = models.module(name).build(**kwargs)
    fused = Simulation(model, members=2, seed=3).run(80)
    monkeypatch.setattr(transition, "available", lambda *tensors: False)
    reference = Simulation(model, members=2, seed=3).run(80)
    assert fused.metrics.equals(reference.metrics)
    assert torch.equal(fused.final_state.health, reference.final_state.health)


@pytest.mark.parametrize("shape", [(), (1,), (600,), (2, 1), (1, 600), (2, 600)])
def test_every_hazard_shape_that_broadcasts_gives_the_reference(shape):
    c_fast, c_slow = contexts(2)
    hazard = torch.linspace(0.05, 0.5, max(1, shape[-1] if shape else 1), dtype=torch.float64)
    hazard = hazard.expand(shape) if shape else hazard[0]
    params = ProgressionParams().to("cpu", torch.float64)
    for latent in (False, True):
        fast, slow = Disease(latent=latent), Disease(latent=latent, backend="torch")
        state = InfectionState(**fast.initial(c_fast, 600, count=60))
        slow.initial(c_slow, 600, count=60)
        same(
            fast.advance(state, hazard, params, c_fast), slow.advance(state, hazard, params, c_slow)
        )
    course, ref = branching_course(), branching_course(backend="torch")
    cparams = CourseParams(p_die=torch.tensor([0.5, 0.5, 0.5])).to("cpu", torch.float64)
    data = Data({"age": torch.zeros(600, dtype=torch.int64)}, axes={"age": ["a", "b", "c"]})
    c_fast = dataclasses.replace(c_fast, data=data.to("cpu", torch.float64))
    c_slow = dataclasses.replace(c_slow, data=data.to("cpu", torch.float64))
    cstate = CourseState(**course.initial(cparams, c_fast, 600, count=60))
    ref.initial(cparams, c_slow, 600, count=60)
    same(
        course.advance(cstate, hazard, cparams, c_fast),
        ref.advance(cstate, hazard, cparams, c_slow),
    )
