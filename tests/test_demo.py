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
    "fit_cases_autumn.png",
    "fit_deaths_autumn.png",
)


def _demo(out, tmp_path):
    args = ["demo", "--out", str(out), "--scale", "0.0004", "--archetypes", "borough"]
    args += ["--popsize", "4", "--generations", "1", "--seeds", "2", "--device", "cpu"]
    args += ["--waves", "first,autumn"]
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
    # both waves compared, the autumn on its own window and origins
    autumn = summary["waves"]["autumn"]
    assert set(autumn["behaviour_models"]) == {"none", "heuristic", "llm"}
    assert autumn["fit_window"] == [fl.START, fl.date_of(fl.WAVES["autumn"].fit_days - 1)]
    assert summary["waves"]["first"]["behaviour_models"] == summary["behaviour_models"]
    for m in autumn["behaviour_models"].values():
        assert m["nd_fit"] >= 0 and m["forecast_relative_mae"] >= 0
    assert "autumn wave" in (out / "summary.md").read_text()
    # the LLM was really asked, once per archetype (borough) and week, never per agent: the
    # autumn table repeats the first wave's weeks (asked again: cache hits) and adds its own
    weeks = fl.table_weeks() + fl.table_weeks("autumn")
    llm = summary["llm"]
    assert summary["archetypes"] == 5 and llm["questions"] == weeks * 5
    # a fresh cache: every distinct prompt asked once (identical prompts share one completion);
    # the autumn table's first weeks are the first wave's, answered from the cache
    assert llm["cache_hits"] >= fl.table_weeks() * 5 // 2
    assert 0 < llm["completions"] <= llm["questions"] - llm["cache_hits"]
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
    assert fit["wave"].n_unique() == 2
    assert "Counterfactuals" in (out / "summary.md").read_text()

    again = tmp_path / "again"
    assert _demo(again, tmp_path) == 0
    warm = json.loads((again / "summary.json").read_text())
    assert warm["llm"]["completions"] == 0 and warm["llm"]["cache_hits"] >= llm["completions"]
    assert all(m["fit_cached"] for m in warm["behaviour_models"].values())
    assert all(m["fit_cached"] for m in warm["waves"]["autumn"]["behaviour_models"].values())
    for name, m in warm["behaviour_models"].items():
        assert m["params"] == summary["behaviour_models"][name]["params"]


def test_demo_refuses_an_unknown_behaviour(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["demo", "--out", str(out), "--behaviours", "none,psychic"]) == 2
    assert "unknown behaviour(s) ['psychic']" in capsys.readouterr().err
    assert not out.exists()


def test_demo_refuses_an_unknown_wave(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["demo", "--out", str(out), "--waves", "first,spring"]) == 2
    assert "unknown wave(s) ['spring']" in capsys.readouterr().err
    assert not out.exists()


def test_demo_refuses_a_non_empty_folder(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep")
    assert main(["demo", "--out", str(tmp_path)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]
