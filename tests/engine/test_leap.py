"""A model's leap: several steps in one call between recorded steps, exactly as stepping."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from populace.engine import ModelError, Schedule, Simulation


def looping_leap(decay, calls):
    """A leap that runs the decay step ``count`` times itself, numbering draws as the loop."""
    (step,) = decay.steps

    def leap(state, params, ctx, count):
        calls.append((ctx.step, count))
        for t in range(ctx.step, ctx.step + count):
            ctx.rng.begin(t)
            state = step(state, params, ctx.at(t))
        return state

    return leap


def test_a_leaping_run_equals_a_stepping_one(decay):
    calls = []
    noisy = decay.with_params(noise=0.3)
    leaping = dataclasses.replace(noisy, leap=looping_leap(noisy, calls))
    a = Simulation(leaping, members=2, seed=1, device="cpu", record_every=4).run(10)
    b = Simulation(noisy, members=2, seed=1, device="cpu", record_every=4).run(10)
    assert a.metrics.equals(b.metrics) and torch.equal(a.final_state.x, b.final_state.x)
    assert calls == [(0, 4), (4, 4), (8, 2)]


@pytest.mark.parametrize("why", ["schedule", "check_finite", "record_every=1"])
def test_no_leap_where_a_step_in_between_needs_the_loop(decay, why):
    calls = []
    model = dataclasses.replace(decay, leap=looping_leap(decay, calls))
    kwargs = {"record_every": 1 if why == "record_every=1" else 5}
    if why == "schedule":
        model = model.with_params(rate=Schedule([0.1, 0.2], (0, 3)))
    kwargs["check_finite"] = why == "check_finite"
    Simulation(model, device="cpu", **kwargs).run(10)
    assert calls == []


def test_a_leap_that_cannot_run_falls_back_to_the_steps(decay):
    calls = []
    model = dataclasses.replace(decay, leap=lambda s, p, c, k: calls.append(k))  # None: can't
    a = Simulation(model, seed=2, device="cpu", record_every=5).run(7)
    b = Simulation(decay, seed=2, device="cpu", record_every=5).run(7)
    assert calls == [5] and a.metrics.equals(b.metrics)  # asked once per run


def test_a_leap_returning_no_state_is_named(decay):
    def broken_leap(state, params, ctx, count):
        return state.x

    model = dataclasses.replace(decay, leap=broken_leap)
    sim = Simulation(model, device="cpu", record_every=5)
    with pytest.raises(ModelError, match=r"broken_leap' returned Tensor at step 0"):
        sim.run(5)
    assert sim.step == 0  # nothing half-run
    with pytest.raises(ModelError, match="leap 3 is not callable"):
        dataclasses.replace(decay, leap=3)
