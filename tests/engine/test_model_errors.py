"""Errors that name the culprit: the step or metric function, and the step number."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from populace.engine import ModelError, Simulation


def with_step(model, fn):
    return dataclasses.replace(model, steps=(*model.steps, fn))


def test_a_step_returning_none_is_named_with_the_step(decay):
    def forgets_return(state, params, ctx):
        state.replace(x=state.x + 1)

    sim = Simulation(with_step(decay, forgets_return), device="cpu")
    with pytest.raises(
        ModelError,
        match=r"step function .*forgets_return' returned NoneType at "
        r"step 0; a step returns a DecayState",
    ):
        sim.run(3)


def test_a_step_changing_the_agent_count_is_named(decay):
    def drops_one(state, params, ctx):
        return type(state)(**{n: t[:, 1:] for n, t in state.tensors().items()}, size=state.size)

    with pytest.raises(
        ModelError,
        match=r"drops_one' changed the number of agents \(N\) from 16 "
        r"to 15 at step 0",
    ):
        Simulation(with_step(decay, drops_one), device="cpu").run(2)


def test_a_metric_returning_a_float_or_a_wrong_shape_is_named(decay):
    def average(state, params, ctx):
        return float(state.x.mean())

    bad = dataclasses.replace(decay, metrics={"avg": average})
    with pytest.raises(
        ModelError,
        match=r"metric 'avg' \(function .*average'\) at step 0 "
        r"returned float",
    ):
        Simulation(bad, device="cpu").run(1)
    wide = dataclasses.replace(decay, metrics={"x": lambda s, p, ctx: s.x})
    with pytest.raises(ModelError, match=r"metric 'x' .* returned shape \(2, 16\), expected \[2\]"):
        Simulation(wide, members=2, device="cpu").run(1)


@pytest.mark.parametrize("name", ["step", "member", "scenario", "seed"])
def test_a_metric_named_like_an_index_column_is_refused(decay, name):
    with pytest.raises(ModelError, match=f"metric name\\(s\\) \\['{name}'\\] are index columns"):
        dataclasses.replace(decay, metrics={name: lambda s, p, ctx: s.x.mean(1)})


def test_an_init_returning_no_state_is_named(decay):
    with pytest.raises(ModelError, match="init returned dict"):
        Simulation(dataclasses.replace(decay, init=lambda p, ctx: {}), device="cpu")


def test_integer_metrics_stay_exact_beyond_float64(decay):
    big = 2**53 + 1  # float64 would round it to 2**53
    exact = dataclasses.replace(
        decay, metrics={"big": lambda s, p, ctx: torch.full((s.x.shape[0],), big)}
    )
    result = Simulation(exact, device="cpu").run(1)
    assert result.metrics["big"].to_list() == [big, big]
    assert result.series("big")[0, 0].item() == big


def test_record_every_keeps_its_phase_after_a_resume(decay, tmp_path):
    sim = Simulation(decay, device="cpu", record_every=4)
    first = sim.run(6)
    assert first.metrics["step"].to_list() == [0, 4, 6]  # multiples of 4, then the last state
    resumed = Simulation.resume(sim.save(tmp_path / "ck.pt"), decay, device="cpu", record_every=4)
    assert resumed.run(6).metrics["step"].to_list() == [8, 12]
