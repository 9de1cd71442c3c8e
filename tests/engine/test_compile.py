"""Compiled steps (``Simulation(compile=...)``): same results and gradients as eager on CPU, an
observable eager fallback, and the switch checked.

Compilation costs seconds per graph on CPU, so the runs are tiny and shared by the tests (module
fixtures); a graph compiled once is reused by every test in the process.
"""

from __future__ import annotations

import dataclasses
import json
import warnings

import pytest
import torch

from populace.cli import main
from populace.engine import Model, ModelError, Simulation, compiled
from populace.engine.compiled import CompileFallback, StepReport, mismatch
from populace.models import kuramoto, sir
from tests.conftest import DecayState, decay_model


def _run(model: Model, steps: int, compile, **kwargs):
    sim = Simulation(model, device="cpu", progress=False, compile=compile, **kwargs)
    return sim, sim.run(steps)


@pytest.fixture(scope="module")
def sir_runs():
    """Eager and compiled runs of a differentiable SIR (straight-through estimator), float64,
    each with d(sum of I over the steps)/d(beta)."""
    model = sir.build(agents=200, initial_infected=5, estimator="straight_through")
    out = {}
    for side in (False, True):
        beta = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sim, result = _run(
                model,
                5,
                side,
                members=2,
                seed=4,
                dtype=torch.float64,
                params=model.params.replace(beta=beta),
            )
        result.series("I").sum().backward()
        out[side] = (sim, result, beta.grad, [str(w.message) for w in caught])
    return out


def test_compiled_sir_equals_eager_exactly(sir_runs):
    """The SIR law is 0/1-valued (health, infections): compiled and eager agree exactly."""
    (_, eager, _, _), (sim, comp, _, caught) = sir_runs[False], sir_runs[True]
    assert sim.compile_report[0].compiled, sim.compile_report
    # the engine's own helpers trace quietly (no Dynamo warning about a cached function)
    assert not [w for w in caught if "lru_cache" in w], caught
    assert sim.compile_report[0].checks >= 1
    assert comp.metrics.equals(eager.metrics)
    for name, value in eager.final_state.tensors().items():
        assert torch.equal(comp.final_state.tensors()[name], value), name
    assert eager.final_state.health[:, 2].sum() > 0  # something happened


def test_gradients_through_a_compiled_run_equal_eager(sir_runs):
    """The gradient is a float sum over steps and agents; inductor may order it differently,
    so it is held to 1e-12 relative (float64), far below any calibration step."""
    eager, comp = sir_runs[False][2], sir_runs[True][2]
    assert eager is not None and comp is not None and eager != 0
    torch.testing.assert_close(comp, eager, rtol=1e-12, atol=0)


def test_compiled_kuramoto_agrees_with_eager_to_float32_rounding():
    """Kuramoto's phases are float32 sines and sums: inductor vectorises ``sin`` and fuses the
    Heun stages, which changes the last bits, so after 5 steps the phases agree to 64 float32
    epsilons relative to 1 + |theta| (the same bound each compiled graph is checked against);
    the natural frequencies, never recomputed, agree exactly."""
    model = kuramoto.build(agents=64)
    _, eager = _run(model, 5, False, seed=1)
    sim, comp = _run(model, 5, True, seed=1)
    assert sim.compile_report[0].compiled, sim.compile_report
    assert mismatch(comp.final_state, eager.final_state) == ""
    assert torch.equal(comp.final_state.omega, eager.final_state.omega)
    theta_e, theta_c = eager.final_state.theta, comp.final_state.theta
    eps = torch.finfo(theta_e.dtype).eps
    assert ((theta_c - theta_e).abs() <= 64 * eps * (1 + theta_e.abs())).all()
    assert not torch.equal(theta_e, Simulation(model, device="cpu", seed=1).state.theta)


def _with_step(step) -> Model:
    model = decay_model(8)
    return dataclasses.replace(model, name="decay", steps=(*model.steps, step))


def halve_but_add_one_when_compiled(state: DecayState, params, ctx) -> DecayState:
    x = state.x * 0.5
    if torch.compiler.is_compiling():  # a compiled graph that differs from its eager step
        x = x + 1
    return state.replace(x=x)


def refuse_compilation(state: DecayState, params, ctx) -> DecayState:
    if torch.compiler.is_compiling():  # torch.compile gives up on the frame, runs it eagerly
        raise RuntimeError("this step cannot be traced")
    return state.replace(x=state.x * 0.5)


def break_the_compiler(state: DecayState, params, ctx) -> DecayState:
    if torch.compiler.is_compiling():  # the compiled step fails when it runs
        return state.replace(x=torch.ops.aten.add(state.x, "not a number"))
    return state.replace(x=state.x * 0.5)


@pytest.mark.parametrize(
    ("step", "words"),
    [
        (halve_but_add_one_when_compiled, "differs from eager"),
        (refuse_compilation, "torch.compile made no graph of it"),
        (break_the_compiler, "the compiled step raised"),
    ],
)
def test_a_step_that_cannot_be_compiled_runs_eagerly_and_is_reported(step, words):
    model = _with_step(step)
    _, eager = _run(model, 3, False, seed=2)
    with pytest.warns(CompileFallback, match=f"{step.__name__}.*{words}"):
        sim, comp = _run(model, 3, True, seed=2)
    first, last = sim.compile_report
    assert first.compiled and not last.compiled and words in last.reason
    assert comp.metrics.equals(eager.metrics)
    assert torch.equal(comp.final_state.x, eager.final_state.x)


def scale_by_step(state: DecayState, params, ctx) -> DecayState:
    return state.replace(x=state.x * (1 - 0.01 * ctx.step))  # ctx.step frozen into each graph


def test_a_step_recompiling_every_step_falls_back(monkeypatch):
    monkeypatch.setattr(compiled, "MAX_RECOMPILES", 1)
    model = dataclasses.replace(decay_model(8), steps=(scale_by_step,))
    _, eager = _run(model, 5, False)
    with pytest.warns(CompileFallback, match="scale_by_step.*recompiled 2 times"):
        sim, comp = _run(model, 5, True)
    assert not sim.compile_report[0].compiled
    assert sim.compile_report[0].graphs == 3
    assert comp.metrics.equals(eager.metrics)


def test_mismatch_names_the_field():
    x = torch.ones(2, 4)
    a = DecayState(x=x, alive=x > 0, label=torch.zeros(2, 4, dtype=torch.int64), size=4)
    assert mismatch(a, a.replace(x=x + 1e-7)) == ""
    assert "field 'x' differs from eager by up to 0.001" in mismatch(a.replace(x=x + 1e-3), a)
    label = a.label.clone()
    label[0, 1] = 3
    assert "field 'label' differs from eager in 1 entries" in mismatch(a.replace(label=label), a)


def test_auto_compiles_only_on_the_models_compile_on_devices():
    model = decay_model(4)
    on_cpu = Simulation(dataclasses.replace(model, compile_on=("cpu",)), device="cpu")
    assert on_cpu.compiled and [r.step for r in on_cpu.compile_report] == [
        "decay_model.<locals>.decay"
    ]
    elsewhere = Simulation(dataclasses.replace(model, compile_on=("cuda",)), device="cpu")
    assert not elsewhere.compiled and elsewhere.compile_report == []
    assert not Simulation(model, device="cpu", compile=False).compiled
    assert isinstance(on_cpu.compile_report[0], StepReport)


@pytest.mark.parametrize("value", ["yes", "on", 1, None])
def test_a_bad_switch_is_refused_naming_it(value):
    with pytest.raises(ValueError, match=f"compile must be 'auto', True or False, got {value!r}"):
        Simulation(decay_model(4), device="cpu", compile=value)
    with pytest.raises(ModelError, match=r"compile_on names unknown device type\(s\) \['tpu'\]"):
        dataclasses.replace(decay_model(4), compile_on=("tpu",))


def test_cli_compile_switch(tmp_path, capsys):
    argv = ["run", "kuramoto", "--agents", "64", "--steps", "2", "--seed", "1"]
    assert main([*argv, "--compile", "on", "--out", str(tmp_path / "on")]) == 0
    record = json.loads((tmp_path / "on" / "run.json").read_text())
    assert record["compiled"] == {"advance_phases": "compiled"}
    assert main([*argv, "--compile", "off", "--out", str(tmp_path / "off")]) == 0
    assert json.loads((tmp_path / "off" / "run.json").read_text())["compiled"] == {}
    with pytest.raises(SystemExit):
        main([*argv, "--compile", "maybe"])
    assert "invalid choice: 'maybe'" in capsys.readouterr().err
