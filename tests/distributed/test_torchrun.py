"""``torchrun --nproc-per-node 2 -m populace run ...`` (and ``calibrate``) works unchanged: rank
0 alone writes the single-process output; a rank killed mid-run makes every rank exit non-zero
within the timeout and no output folder appears."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from populace.cli import main

HERE = Path(__file__).parent
DEADLINE = 400  # seconds for two ranks to start (importing torch on a busy 2-core machine)


def torchrun(*args: str, timeout: float = DEADLINE) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "POPULACE_DIST_TIMEOUT": "60"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["--max-restarts", "0", "-m", "populace", *args]
    start = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    return done, time.monotonic() - start


@pytest.mark.slow
def test_torchrun_run_writes_the_single_process_output_once(tmp_path):
    flags = ["--members", "2", "--agents", "300", "--steps", "12", "--seed", "5", "--device", "cpu"]
    assert main(["run", "network_sir", *flags, "--out", str(tmp_path / "one")]) == 0
    done, _ = torchrun(
        "run", "network_sir", *flags, "--shard", "agents", "--out", str(tmp_path / "two")
    )
    assert done.returncode == 0, done.stderr[-3000:]
    one = pl.read_parquet(tmp_path / "one" / "metrics.parquet")
    two = pl.read_parquet(tmp_path / "two" / "metrics.parquet")
    assert two.equals(one) and two.height == 2 * 13
    assert done.stdout.count("network_sir: 300 agents x 2 member(s)") == 1  # rank 0 prints
    assert main(["verify", str(tmp_path / "two")]) == 0


@pytest.mark.slow
def test_torchrun_calibrate_writes_the_single_process_report_once(tmp_path):
    data = tmp_path / "cases.csv"
    curve = [4, 6, 9, 13, 18, 24, 30, 35, 38, 38, 36, 32]
    data.write_text("I\n" + "\n".join(map(str, curve)) + "\n")
    flags = ["sir", "--data", str(data), "--target", "I", "--population", "150"]
    flags += ["--set", "initial=0.05"]  # the default 0 leaves nothing to fit but dispersion
    flags += ["--members", "4", "--starts", "1", "--method", "adam", "--epochs", "4"]
    assert main(["calibrate", *flags, "--out", str(tmp_path / "one")]) == 0
    done, _ = torchrun("calibrate", *flags, "--out", str(tmp_path / "two"))
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = (json.loads((tmp_path / k / "calibration.json").read_text()) for k in ("one", "two"))
    fitted = {"beta", "gamma", "initial", "dispersion"}
    assert two["params"].keys() == one["params"].keys() == fitted
    for name, value in one["params"].items():
        assert two["params"][name] == pytest.approx(value, rel=1e-6), name
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-6)
    assert one["convergence"][0]["iterations"] == 4  # the fit ran its epochs
    assert one["params"]["initial"] != 0.05  # and moved the params from their start
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cases.csv", "one", "two"]
    assert done.stdout.count("wrote the report to") == 1  # rank 0 writes and prints
    assert json.loads(done.stdout.strip().splitlines()[-1])["params"] == two["params"]
    assert main(["verify", str(tmp_path / "two")]) == 0


def test_commands_that_do_not_shard_refuse_torchrun(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(["population", "nyc", "--scale", "0.001", "--out", "nowhere"]) == 2
    assert "does not run under torchrun; sharded commands: run" in capsys.readouterr().err


@pytest.mark.slow
def test_a_killed_rank_stops_every_rank_and_nothing_is_written(tmp_path):
    out = tmp_path / "out"
    model = f"{HERE / 'killer.py'}:build"
    done, seconds = torchrun(
        "run",
        model,
        "--members",
        "2",
        "--steps",
        "40",
        "--set",
        "kill_at=3",
        "--device",
        "cpu",
        "--out",
        str(out),
    )
    assert done.returncode != 0
    assert seconds < DEADLINE
    assert not out.exists()
    assert not [p.name for p in tmp_path.iterdir()]  # no staged temporary left either
    text = done.stderr
    assert "exitcode  : -9" in text or "Signals.SIGKILL" in text, text[-3000:]
    # the surviving rank says what happened in one line (a lost peer, or torchrun's SIGTERM)
    assert "populace: error: rank 0 of 2" in text or "populace: interrupted (SIGTERM)" in text
