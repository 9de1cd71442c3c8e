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
