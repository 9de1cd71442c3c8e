"""The flagship demo runs end to end at a tiny scale with the real embedded SmolLM2, and a rerun
with warm caches asks the LLM nothing and fits nothing."""

import json

import polars as pl
import pytest

from populace import flagship as fl
from populace.cli import main

FILES = (
    "summary.md",
    "summary.json",
    "fit.parquet",
    "forecasts.parquet",
    "counterfactuals.parquet",
    "counterfactual_metrics.parquet",
    "attack_rate_by_area.parquet",
    "fit_cases.png",
    "fit_deaths.png",
    "comparison.png",
    "counterfactuals.png",
    "attack_rate_map.png",
)


def _demo(out, tmp_path):
    args = ["demo", "--out", str(out), "--scale", "0.0004", "--archetypes", "borough"]
    args += ["--popsize", "4", "--generations", "1", "--seeds", "2", "--device", "cpu"]
    args += ["--cache", str(tmp_path / "llm.sqlite"), "--fit-cache", str(tmp_path / "fits")]
    return main(args)


@pytest.mark.slow
def test_demo_writes_a_complete_report_and_reuses_its_caches(tmp_path, capsys):
    out = tmp_path / "report"
    assert _demo(out, tmp_path) == 0
    printed = capsys.readouterr().out
    assert str(out.resolve()) in printed
    for name in FILES:
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["behaviour_models"]) == {"none", "heuristic", "llm"}
    for m in summary["behaviour_models"].values():
        assert m["nd_fit"] >= 0 and m["forecast_relative_mae"] >= 0
        lo, hi = m["nd_fit_interval"]
        assert lo <= m["nd_fit"] <= hi
    # the LLM was really asked, once per archetype (borough) and week, never per agent
    weeks = fl.table_weeks()
    llm = summary["llm"]
    assert summary["archetypes"] == 5 and llm["questions"] == weeks * 5
    # a fresh cache: every distinct prompt asked once (identical prompts share one completion)
    assert llm["cache_hits"] == 0 and 0 < llm["completions"] <= llm["questions"]
    assert llm["fallbacks"] <= llm["invalid"] + llm.get("lost", 0) + llm["completions"]
    link = summary["behaviour_models"]["llm"]["link"]
    assert 0 <= link["raw_mean"] <= 1 and 0 <= link["acted_mean"] <= 1
    assert set(summary["counterfactuals"]) == {
        "schools_closed_BX",
        "vaccine_65_first",
        "vaccine_most_connected_first",
        "stay_home_order_by_borough",
    }
    for entry in summary["counterfactuals"].values():
        lo, hi = entry["infections_averted_interval"]
        assert lo <= entry["infections_averted"] <= hi
    fit = pl.read_parquet(out / "fit.parquet")
    assert fit["borough"].n_unique() == 5 and fit["behaviour"].n_unique() == 3
    assert "Counterfactuals" in (out / "summary.md").read_text()

    again = tmp_path / "again"
    assert _demo(again, tmp_path) == 0
    warm = json.loads((again / "summary.json").read_text())
    assert warm["llm"]["completions"] == 0 and warm["llm"]["cache_hits"] >= llm["completions"]
    assert all(m["fit_cached"] for m in warm["behaviour_models"].values())
    for name, m in warm["behaviour_models"].items():
        assert m["params"] == summary["behaviour_models"][name]["params"]


def test_demo_refuses_an_unknown_behaviour(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["demo", "--out", str(out), "--behaviours", "none,psychic"]) == 2
    assert "unknown behaviour(s) ['psychic']" in capsys.readouterr().err
    assert not out.exists()


def test_demo_refuses_a_non_empty_folder(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep")
    assert main(["demo", "--out", str(tmp_path)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]
