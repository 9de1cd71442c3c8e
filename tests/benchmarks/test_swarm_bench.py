"""The swarm benchmark script runs end to end at a tiny size and reports what the issue asks."""

from __future__ import annotations

import json

import pytest

from populace.benchmarks import swarm


@pytest.mark.parametrize("model", swarm.MODELS)
def test_swarm_bench_reports_rate_and_bytes(model, capsys, tmp_path):
    assert (
        swarm.main(
            [
                "--model",
                model,
                "--agents",
                "300",
                "--steps",
                "2",
                "--device",
                "cpu",
                "--save",
                str(tmp_path),
            ]
        )
        == 0
    )
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["name"] == model and record["agents"] == 300
    assert record["agent_steps_per_s"] > 0 and record["ms_per_step"] > 0
    assert len(list(tmp_path.glob(f"{model}-cpu-*.json"))) == 1
