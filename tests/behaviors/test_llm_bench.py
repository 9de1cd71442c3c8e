"""`populace bench llm` and the CLI hooks of the behaviour model."""

from __future__ import annotations

import json

from populace.behaviors.llm.bench import bench_llm
from populace.cli import main


def test_bench_counts_archetypes_times_samples_times_rounds(scripted):
    backend = scripted(lambda text, seen: "yes")
    record = bench_llm(backend, archetypes=5, samples=2, rounds=3)
    assert record["calls"] == 5 * 2 * 3
    assert backend.calls == record["calls"] + 2 * 2  # plus the untimed warm-up round
    assert record["prompts_per_s"] > 0 and record["fallbacks"] == 0
    assert record["seconds_per_query_step"] == record["seconds"] / 3


def test_cli_bench_llm_rejects_unknown_backend(capsys):
    assert main(["bench", "llm", "--backend", "telepathy"]) == 2
    assert "unknown LLM backend" in capsys.readouterr().err


def test_cli_runs_the_behaviour_model(capsys):
    args = ["run", "covid_behavior", "--agents", "400", "--steps", "8", "--json"]
    assert main([*args, "--set", "behavior=heuristic", "--set", "isolation_per_case=0.01"]) == 0
    final = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert final["S"] + final["I"] + final["R"] == 400
    assert final["llm_calls"] == 0
    assert main([*args, "--set", "behavior=oracle"]) == 2
    assert "behavior" in capsys.readouterr().err
