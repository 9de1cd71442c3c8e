"""The flagship demo runs end to end at a tiny scale with the real embedded SmolLM2."""

import json

import polars as pl
import pytest

from populace.cli import main


@pytest.mark.slow
def test_demo_writes_a_complete_report(tmp_path, capsys):
    out = tmp_path / "report"
    code = main(
        [
            "demo",
            "--out",
            str(out),
            "--scale",
            "0.0004",
            "--days",
            "8",
            "--lockdown-day",
            "3",
            "--cache",
            str(tmp_path / "llm.sqlite"),
            "--seeds",
            "1",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert str(out.resolve()) in printed
    for name in (
        "metrics.parquet",
        "I.png",
        "isolating_share.png",
        "attack_rate_map.png",
        "summary.md",
        "summary.json",
    ):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    metrics = pl.read_parquet(out / "metrics.parquet")
    assert sorted(metrics["scenario"].unique()) == ["baseline", "stay_at_home"]
    assert metrics["step"].max() == 8
    # the LLM was really asked: queries at day 0 and day 7, one prompt per archetype (+ retries)
    assert summary["llm"]["calls"] >= summary["archetypes"]
    # answers needed >= completions made: identical prompts are asked once, cached ones never
    assert summary["llm"]["prompts"] >= summary["llm"]["calls"] + summary["llm"]["cache_hits"]
    assert 0 <= summary["attack_rate"]["baseline"] <= 1
    assert "Infections averted" in (out / "summary.md").read_text()


def test_demo_refuses_a_lockdown_after_the_last_day(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["demo", "--out", str(out), "--days", "8", "--lockdown-day", "8"]) == 2
    assert "lockdown_day=8 must fall inside the 8 days" in capsys.readouterr().err
    assert not out.exists()


def test_demo_refuses_a_non_empty_folder(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep")
    assert main(["demo", "--out", str(tmp_path)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]
