"""The stigmergy benchmark runs at a tiny size, on both backends, and reports its figures."""

from __future__ import annotations

import json

import pytest

from populace.benchmarks import stigmergy
from populace.kernels._backend import HAS_TRITON, INTERPRET


def test_trail_step_backends_agree():
    if not (HAS_TRITON and INTERPRET):
        pytest.skip("the Triton path on CPU needs TRITON_INTERPRET=1")
    rec = stigmergy.bench(
        agents=64, grid=16, steps=2, warmup=1, device="cpu", backends=("torch", "triton")
    )
    torch_mass = rec["backends"]["torch"]["trail_mass"]
    assert rec["backends"]["triton"]["trail_mass"] == pytest.approx(torch_mass, rel=1e-5)
    assert rec["triton_speedup"] > 0


def test_cli_prints_a_json_record(capsys):
    assert (
        stigmergy.main(["--agents", "100", "--grid", "16", "--steps", "3", "--device", "cpu"]) == 0
    )
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rec["agents"] == 100 and rec["grid"] == 16 and rec["device"] == "cpu"
    # every agent deposits 1 per step, evaporation 0.1: M(t+1) = 0.9 (M(t) + N)
    mass = 0.0
    for _ in range(2 + 3):
        mass = 0.9 * (mass + 100)
    assert rec["backends"]["torch"]["trail_mass"] == pytest.approx(mass, rel=1e-5)
    assert rec["backends"]["torch"]["agent_steps_per_s"] > 0
