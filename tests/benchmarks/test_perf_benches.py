"""The issue-19 benchmarks run end to end at tiny sizes; the scipy peer has the zoo's rule."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from populace.benchmarks import contagion, swarm, threads
from populace.benchmarks.peers import vicsek_scipy
from populace.kernels.neighbors import cell_grid
from populace.kernels.swarm import vicsek_align_reference


def last_record(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_scipy_peer_aligns_like_the_zoo_model():
    n, density = 300, 4.0
    rng = np.random.default_rng(3)
    box = math.sqrt(n / density)
    pos, theta = rng.uniform(0, box, (n, 2)), rng.uniform(-np.pi, np.pi, n)
    _, got = vicsek_scipy.vicsek(n, 1, density=density, noise=0.0, speed=0.0, start=(pos, theta))
    grid = cell_grid(box, 1.0, periodic=True, dim=2)
    heading = torch.tensor(np.stack([np.cos(theta), np.sin(theta)], 1))[None]
    total, _ = vicsek_align_reference(torch.tensor(pos)[None], heading, grid)
    want = torch.atan2(total[0, :, 1], total[0, :, 0]).numpy()
    np.testing.assert_allclose(got, want, atol=1e-9)


def test_swarm_versus_scipy_and_clustering_records(capsys):
    assert swarm.main(["--versus-scipy", "--sizes", "200", "--repeats", "1"]) == 0  # 200 steps
    row = last_record(capsys)["rows"][0]
    assert row["agents"] == 200 and row["speedup_vs_scipy"] > 0
    args = ["--clustering", "--agents", "200", "--steps", "5", "--repeats", "1"]
    assert swarm.main([*args, "--backends", "torch"]) == 0
    summary = last_record(capsys)["summary"]["torch"]
    assert summary["wall_ratio"] > 0 and summary["ordered_mean_neighbours"] >= 1


@pytest.mark.slow  # three subprocesses
def test_contagion_crossover_and_model_records(capsys, tmp_path):
    args = ["--crossover", "--agents", "3000", "--degree", "4", "--repeats", "1"]
    assert contagion.main([*args, "--fractions", "0.01", "1.0"]) == 0
    rows = last_record(capsys)["rows"]
    assert [r["fraction"] for r in rows] == [0.01, 1.0] and rows[0]["torch_push_ms"] > 0
    args = ["--model", "--agents", "3000", "--degree", "4", "--steps", "4", "--repeats", "1"]
    assert contagion.main([*args, "--save", str(tmp_path)]) == 0
    record = last_record(capsys)
    runs = record["runs"]
    # every variant runs the same epidemic: the frontier changes the cost, not the law
    assert len({r[0]["final_recovered"] for r in runs.values()}) == 1
    assert record["summary"]["today"]["peak_rss_mib_max"] > 0
    assert len(list(tmp_path.glob("network_sir-frontier-cpu-*.json"))) == 1


@pytest.mark.slow  # three subprocesses
def test_threads_load_record(capsys):
    args = ["--models", "sir", "--agents", "1000", "--steps", "2", "--repeats", "1", "--idle"]
    assert threads.main(args) == 0
    summary = last_record(capsys)["summary"]["sir"]
    assert summary["one_threads"] == 1 and summary["default_over_one"] > 0


def test_roofline_record_has_every_kernel_and_a_bound(capsys):
    from populace.benchmarks import roofline

    assert roofline.main(["--agents", "2000", "--repeats", "1"]) == 0
    record = last_record(capsys)
    assert record["stream_bytes_per_s"] > 1e8
    kernels = {r["kernel"] for r in record["rows"]}
    assert kernels == {
        "vicsek_align",
        "boids_steer",
        "circles_force",
        "pressure_push",
        "pressure_pull",
    }
    assert all(0 < r["percent_of_bound"] and r["h200_floor_us"] > 0 for r in record["rows"])
