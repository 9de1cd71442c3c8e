"""LiveRun: the simulation on its own thread, steered by commands, read by frames."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch

from populace.engine import ParamError, Simulation
from populace.engine.intervention import ScaleParam
from populace.engine.study import Scenario, study
from populace.models import sir
from populace.view import LiveRun
from populace.view.charts import difference_table


def small_sir(**params):
    return sir.build(agents=2000, initial_infected=20, **params)


def test_chunks_stepped_and_played_equal_one_batch_run(live, wait_for):
    model = small_sir()
    run = live(model, members=3, seed=5, steps_per_frame=4, until=30)
    run.step(7)
    wait_for(run, lambda f: f.step == 7 and f.status == "paused")
    run.play()
    frame = wait_for(run, lambda f: f.status == "finished")
    assert frame.step == 30
    steps, columns = frame.history.read()
    assert steps.tolist() == list(range(31))
    ref = Simulation(model, members=3, seed=5, progress=False).run(30)
    for name in model.metric_columns():
        np.testing.assert_array_equal(columns[name], ref.series(name).T.double().numpy())


def test_an_out_of_bounds_param_is_refused_and_nothing_changes(live):
    run = live(small_sir(), members=2)
    before = run.frame()
    with pytest.raises(ParamError, match=r"'gamma' must lie in \[0, 1\]"):
        run.set_params(gamma=1.5)
    with pytest.raises(ParamError, match="unknown parameter"):
        run.set_params(gama=0.5)
    time.sleep(0.2)
    after = run.frame()
    assert after.version == before.version
    assert float(after.applied.gamma) == pytest.approx(0.25)
    assert after.params.gamma == 0.25


def test_a_param_change_reaches_the_simulation_at_the_next_chunk(live, wait_for):
    run = live(small_sir(beta=1.0), members=2, until=40)
    run.step(10)
    wait_for(run, lambda f: f.step == 10)
    run.set_params(beta=0.0)
    frame = wait_for(run, lambda f: float(f.applied.beta) == 0.0)
    assert frame.params.beta == 0.0
    run.play()
    frame = wait_for(run, lambda f: f.status == "finished")
    steps, columns = frame.history.read()
    infected = columns["infected"]
    assert infected[steps <= 10].sum() > 0  # the epidemic grew before the change
    # from step 10 on, beta = 0: nobody is infected any more
    assert infected[steps > 10].sum() == 0


def failing_at(step: int):
    model = small_sir()
    original = model.steps[0]

    def unlucky_step(state, params, ctx):
        if ctx.step == step:
            raise RuntimeError("the user's step failed")
        return original(state, params, ctx)

    return dataclasses.replace(model, steps=(unlucky_step,))


def test_a_model_raising_stops_the_run_and_names_the_step(live, wait_for):
    run = live(failing_at(5), steps_per_frame=3)
    run.play()
    frame = wait_for(run, lambda f: f.status == "error")
    assert "stopped at step 5" in frame.error
    assert "the user's step failed" in frame.error and "unlucky_step" in frame.error
    assert frame.step == 5  # the state before the failing step
    steps, _ = frame.history.read()
    assert steps.tolist() == list(range(6))
    with pytest.raises(RuntimeError, match="reset it first"):
        run.play()
    run.reset()
    frame = wait_for(run, lambda f: f.status == "paused" and f.step == 0)
    assert len(frame.history) == 1 and run.alive


def test_an_engine_model_error_keeps_its_own_step_message(live, wait_for):
    model = small_sir()

    def forgets_return(state, params, ctx):
        return None if ctx.step == 3 else state

    run = live(dataclasses.replace(model, steps=(forgets_return,)))
    run.play()
    frame = wait_for(run, lambda f: f.status == "error")
    assert "ModelError" in frame.error and "at step 3" in frame.error
    assert "stopped at step" not in frame.error


def test_reset_with_the_same_seed_repeats_and_a_new_seed_differs(live, wait_for):
    run = live(small_sir(), members=2, until=25)
    run.play()
    first = wait_for(run, lambda f: f.status == "finished").history.read()[1]["I"].copy()
    run.reset()
    wait_for(run, lambda f: f.step == 0)
    run.play()
    again = wait_for(run, lambda f: f.status == "finished").history.read()[1]["I"]
    np.testing.assert_array_equal(first, again)
    run.reset(seed=11)
    wait_for(run, lambda f: f.step == 0 and f.seed == 11)
    run.play()
    other = wait_for(run, lambda f: f.status == "finished").history.read()[1]["I"]
    assert not np.array_equal(first, other)


def test_stop_ends_the_thread(live, wait_for):
    run = live(small_sir())
    run.play()
    wait_for(run, lambda f: f.step > 2)
    run.stop()
    assert not run.alive
    assert run.frame().status == "stopped"


def test_bad_commands_are_refused():
    with pytest.raises(ValueError, match="members must be a positive integer"):
        LiveRun(small_sir(), members=0)
    run = LiveRun(small_sir())
    try:
        with pytest.raises(ValueError, match="steps must be a positive integer"):
            run.step(0)
        with pytest.raises(ValueError, match="steps_per_frame"):
            run.set_steps_per_frame(-1)
    finally:
        run.stop()


SCENARIOS = (
    Scenario("half", (ScaleParam("beta", 0.5, start=5),)),
    Scenario("quarter", (ScaleParam("beta", 0.25, start=5),)),
)


def test_a_live_study_equals_the_engine_study_and_its_paired_difference(live, wait_for):
    model = small_sir()
    run = live(model, scenarios=SCENARIOS, seeds=3, seed=2, steps_per_frame=5, until=20)
    assert run.layout.names == ["baseline", "half", "quarter"]
    run.play()
    frame = wait_for(run, lambda f: f.status == "finished")
    steps, columns = frame.history.read()
    ref = study(model, list(SCENARIOS), steps=20, seeds=3, seed=2, progress=False)
    for name in model.metric_columns():
        np.testing.assert_array_equal(columns[name], ref.result.series(name).T.double().numpy())
    live_diff = difference_table(steps, columns["R"], "R", run.layout.names, 3)
    want = ref.difference("R", "final")
    assert live_diff["scenario"].to_list() == want["scenario"].to_list()
    np.testing.assert_allclose(live_diff["mean"].to_numpy(), want["mean"].to_numpy())
    np.testing.assert_allclose(live_diff["lo"].to_numpy(), want["lo"].to_numpy())


def test_a_param_change_in_a_study_keeps_each_scenarios_interventions(live, wait_for):
    run = live(small_sir(), scenarios=SCENARIOS, seeds=2)
    run.set_params(beta=0.8)
    frame = wait_for(run, lambda f: f.params.beta == 0.8 and f.version > 1)
    beta = frame.applied.beta  # a schedule: [pieces, members]
    assert beta.starts == (0, 5)
    torch.testing.assert_close(beta.values[0], torch.full((6,), 0.8))
    want = torch.tensor([0.8, 0.8, 0.4, 0.4, 0.2, 0.2])
    torch.testing.assert_close(beta.values[1], want)


def test_compute_runs_on_the_simulation_thread_between_chunks(live, wait_for):
    import threading

    run = live(small_sir(), members=2)
    run.play()
    wait_for(run, lambda f: f.step > 2)
    where, value = run.compute(lambda: (threading.current_thread().name, 6 * 7))
    assert (where, value) == ("populace-live", 42)
    with pytest.raises(ZeroDivisionError):
        run.compute(lambda: 1 / 0)
    assert run.alive  # a failed computation does not end the run
    run.stop()
    assert run.compute(lambda: threading.current_thread().name) == threading.current_thread().name
