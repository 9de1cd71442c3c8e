"""The README's results tables are generated from the JSON records, and kept up to date."""

from __future__ import annotations

import json

from populace.benchmarks import report


def test_committed_readme_matches_the_committed_results():
    assert report.update() == report.README.read_text(), (
        "benchmarks/README.md is stale: run python -m populace.benchmarks.report"
    )


def test_tables_list_every_case_with_ratio_and_skip_tiny_gpu_records(tmp_path):
    compare_rec = {
        "name": "compare",
        "device": "cpu",
        "device_name": "test CPU",
        "threads": 2,
        "versions": {"mesa": "3.3.1", "torch": "2"},
        "date": "2026-01-01T00:00:00+00:00",
        "command": "python -m populace.benchmarks.compare --sizes small",
        "cases": [
            {
                "suite": "schelling",
                "size": "small",
                "agents": 2000,
                "steps": 20,
                "populace": {
                    "status": "ok",
                    "s_per_step": 0.002,
                    "steps": 20,
                    "outcomes": {"similarity": 0.8},
                },
                "mesa": {
                    "status": "ok",
                    "s_per_step": 0.02,
                    "steps": 20,
                    "outcomes": {"similarity": 0.79},
                },
                "ratio": 10.0,
            },
            {
                "suite": "flocking",
                "size": "small",
                "agents": 300,
                "steps": 100,
                "populace": {"status": "missing", "reason": "model 'boids' is not in ZOO"},
                "mesa": {"status": "stopped", "s_per_step": 0.5, "steps": 7, "outcomes": {}},
                "ratio": None,
            },
        ],
    }
    gpu = {
        "name": "gpu_suite",
        "tiny": False,
        "device": "cuda",
        "device_name": "GPU X",
        "versions": {"torch": "2", "triton": "3"},
        "date": "2026-01-02T00:00:00+00:00",
        "entries": [
            {
                "name": "ants_10m",
                "status": "ok",
                "agents": 10_000_000,
                "steps": 50,
                "ms_per_step": 12.5,
                "agent_steps_per_s": 8e8,
                "peak_memory_bytes": 2**31,
                "setup_seconds": 1.0,
            },
            {"name": "vicsek_10m", "status": "skipped", "reason": "not in ZOO"},
        ],
    }
    (tmp_path / "compare-cpu-1.json").write_text(json.dumps(compare_rec))
    (tmp_path / "gpu_suite-cuda-1.json").write_text(json.dumps(gpu))
    (tmp_path / "gpu_suite-tiny-cpu-1.json").write_text(json.dumps({**gpu, "tiny": True}))
    text = report.render(tmp_path)
    assert "| schelling | small | 2,000 | 20 | 2 | 20 | **10×** | similarity 0.8 / 0.79 |" in text
    assert "missing: model 'boids' is not in ZOO" in text and "500 (7 steps, stopped)" in text
    assert "| ants_10m | 10,000,000 | 50 | 12.5 | 8e+08 | 2 |" in text
    assert "skipped: not in ZOO" in text and text.count("From `results/gpu_suite") == 1
    readme = tmp_path / "README.md"
    readme.write_text("# hand\n\nintro\n")
    first = report.update(readme, tmp_path)
    readme.write_text(first + "\nafter\n")
    assert report.update(readme, tmp_path) == first + "\nafter\n"  # regenerating is stable


def test_official_columns_and_epidemic_tables(tmp_path):
    ok = {"status": "ok", "s_per_step": 0.004, "steps": 20, "outcomes": {"happy": 0.9}}
    compare_rec = {
        "name": "compare",
        "device": "cpu",
        "device_name": "test CPU",
        "threads": 1,
        "versions": {"mesa": "3.3.1", "torch": "2"},
        "date": "2026-01-01T00:00:00+00:00",
        "cases": [
            {
                "suite": "schelling",
                "size": "small",
                "agents": 2000,
                "steps": 20,
                "populace": {**ok, "s_per_step": 0.001},
                "mesa": {**ok, "s_per_step": 0.02},
                "mesa_official": {**ok, "s_per_step": 0.04, "outcomes": {"happy": 0.8}},
                "ratio": 20.0,
                "official_ratio": 40.0,
            }
        ],
    }
    side = {
        "status": "ok",
        "s_per_step": 0.002,
        "peak_rss_bytes": 300 * 2**20,
        "attack_rate": 0.80,
        "version": "3.7.2",
    }
    epi = {
        "name": "epi_compare",
        "device_name": "test CPU",
        "date": "2026-01-02T00:00:00+00:00",
        "repeats": 3,
        "versions": {"torch": "2"},
        "load_average": {"before": [4.0, 0, 0], "after": [5.0, 0, 0]},
        "command": "python -m populace.benchmarks.epi_compare --sizes 10000",
        "cases": [
            {
                "scenario": "sir",
                "agents": 10_000,
                "matched": True,
                "sides": {
                    "populace": {"1": {**side, "s_per_step": 0.001, "version": "0.1.0"}},
                    "starsim": {
                        "1": {
                            **side,
                            "populace_speedup": 2.0,
                            "attack_rate_gap": 0.03,
                            "attack_rate_gap_se": 0.01,
                            "agree": False,
                        }
                    },
                    "laser-generic": {"1": {"status": "timed out", "reason": "no result"}},
                },
            }
        ],
    }
    (tmp_path / "compare-cpu-1.json").write_text(json.dumps({**compare_rec, "epidemic": epi}))
    (tmp_path / "epi_compare-cpu-2.json").write_text(json.dumps(epi))
    text = report.render(tmp_path)
    assert "| 1 | 20 | **20×** | 40 | **40×** | happy 0.9 / 0.9 / 0.8 |" in text
    row = "| sir | 10,000 | 1 | starsim 3.7.2 | 1 | 2 | **2×** | 300 / 300 | 0.8000 / 0.8000 |"
    assert text.count(row) == 2  # from the standalone record and the one inside compare
    assert "+3.0% ± 1.0% (outside ±2%)" in text
    assert "| laser-generic | timed out: no result |" in text and "load average 4 before" in text
