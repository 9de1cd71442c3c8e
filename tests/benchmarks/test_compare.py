"""The comparison suite runs both sides at tiny sizes and reports ratios, limits and gaps."""

from __future__ import annotations

import json
import statistics

import pytest

from populace import models
from populace.benchmarks import compare

pytest.importorskip("mesa", reason="the Mesa peers need the bench extra (pip install mesa)")

TINY = {
    "flocking": {"small": dict(agents=40, extent=30.0, visual_distance=5.0)},
    "schelling": {"small": dict(agents=120, width=15, radius=1, min_similar=3)},
    "wolfsheep": {"small": dict(agents=45, width=10, regrowth=10)},
    "forestfire": {"small": dict(agents=400, density=0.7)},
    "boltzmann": {"small": dict(agents=50, width=8, height=8)},
}


@pytest.fixture(scope="module")
def record():
    return compare.compare(list(TINY), ["small"], device="cpu", steps=3, overrides=TINY)


def test_every_suite_model_runs_on_every_side_with_a_ratio(record):
    cases = {c["suite"]: c for c in record["cases"]}
    assert set(cases) == set(compare.SUITE)
    for name, case in cases.items():
        suite = compare.SUITE[name]
        if suite.peer is None:  # Boltzmann: Mesa's official example is the peer
            assert case["mesa"]["status"] == "not run" and case["ratio"] is None
        else:
            assert case["mesa"]["status"] == "ok" and case["mesa"]["steps"] == 3
            assert case["mesa"]["s_per_step"] > 0
        shipped = case["mesa_official"]
        if suite.official is None:  # ForestFire: Mesa ships none
            assert shipped["status"] == "not run" and case["official_ratio"] is None
        else:
            assert shipped["status"] == "ok" and shipped["steps_done"] == 3
            assert shipped["model"].startswith("mesa.examples.") and shipped["outcomes"]
            assert shipped["peak_rss_bytes"] > 0
        if suite.model not in models.ZOO:  # boltzmann until the lead's model lands
            assert case["populace"]["status"] == "missing"
            assert "not in populace.models.ZOO" in case["populace"]["reason"]
            assert case["ratio"] is None and case["official_ratio"] is None
            continue
        ours = case["populace"]
        assert ours["status"] == "ok"
        # repeated until a second is timed (or the cap): the median run counts
        runs = ours["repeats"]
        assert sum(runs) >= compare.MIN_SECONDS or len(runs) == compare.MAX_REPEATS
        assert ours["s_per_step"] == pytest.approx(statistics.median(runs) / 3)
        if suite.peer is not None:
            assert case["ratio"] == pytest.approx(case["mesa"]["s_per_step"] / ours["s_per_step"])
            assert set(ours["outcomes"]) == set(case["mesa"]["outcomes"]) == set(suite.outcomes)
        if suite.official is not None:
            assert case["official_ratio"] == pytest.approx(
                shipped["s_per_step"] / ours["s_per_step"]
            )
    assert record["versions"]["mesa"] and record["device"] == "cpu" and record["date"]


def test_official_boltzmann_at_the_lead_sizes():
    assert compare.SUITE["boltzmann"].sizes["small"] == dict(agents=100, width=10, height=10)
    assert compare.SUITE["boltzmann"].sizes["large"] == dict(agents=10_000, width=100, height=100)


def test_forestfire_outcome_is_a_fraction_on_both_sides(record):
    case = next(c for c in record["cases"] if c["suite"] == "forestfire")
    for side in ("populace", "mesa"):
        assert 0 < case[side]["outcomes"]["burnt_fraction"] <= 1


def test_mesa_limits_are_reported_not_hidden():
    big = {"schelling": {"small": dict(agents=2_000, width=50, radius=2, min_similar=8)}}
    rec = compare.compare(
        ["schelling"], ["small"], device="cpu", steps=50, mesa_limit=0.0, overrides=big
    )
    mesa = rec["cases"][0]["mesa"]
    assert (
        mesa["status"] == "stopped" and mesa["steps"] == 1 and "stopped after 1" in mesa["reason"]
    )
    rec = compare.compare(
        ["forestfire"], ["small"], device="cpu", steps=1, mesa_max_agents=100, overrides=TINY
    )
    mesa = rec["cases"][0]["mesa"]
    assert mesa["status"] == "not run" and "--mesa-max-agents=100" in mesa["reason"]
    assert rec["cases"][0]["ratio"] is None


def test_suite_sizes_follow_the_issue_specs():
    s = compare.SUITE
    assert s["schelling"].sizes["large"] == dict(agents=8_000, width=100, radius=2, min_similar=8)
    assert s["schelling"].steps == 20
    assert s["wolfsheep"].sizes["large"]["agents"] == 1_500
    assert s["forestfire"].sizes["large"] == dict(agents=250_000, density=0.9)
    for suite in s.values():  # x100 and x10000 keep the large case's density of agents
        assert suite.sizes["x10000"]["agents"] == 100 * suite.sizes["x100"]["agents"]


def test_unknown_names_raise_listing_valid_ones():
    with pytest.raises(KeyError, match="valid: flocking"):
        compare.compare(["boids"], ["small"], device="cpu")
    with pytest.raises(KeyError, match="unknown size 'huge'"):
        compare.compare(["schelling"], ["huge"], device="cpu")


def test_cli_saves_a_json_record(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(compare.SUITE["forestfire"].sizes, "small", TINY["forestfire"]["small"])
    code = compare.main(
        ["--models", "forestfire", "--sizes", "small", "--device", "cpu", "--save", str(tmp_path)]
    )
    assert code == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    saved = json.loads(next(tmp_path.glob("compare-cpu-*.json")).read_text())
    assert saved == rec and rec["command"].endswith("--save " + str(tmp_path))
