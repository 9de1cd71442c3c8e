"""The epidemic peer runner: child processes, threading modes, isolation, summaries, records.

The runner logic is tested with populace sides only (this venv); the peers' own sides run in
``test_epi_peers.py`` with the peers venv (``make setup-peers``).
"""

from __future__ import annotations

import json
import sys

import pytest
import torch

from populace.benchmarks import epi_compare
from populace.benchmarks.peers import epi_populace, side
from populace.populations.graphs import erdos_renyi

TINY = dict(beta=0.5, gamma=0.25)


def twin_scenario(steps: int = 100) -> epi_compare.Scenario:
    """Two copies of populace's sir: same model, same seeds, so the attack rates are equal."""
    return epi_compare.Scenario(
        "twin",
        steps=steps,
        warmup=2,
        sides=(
            epi_compare.Side("populace", "epi_populace:sir"),
            epi_compare.Side("populace-again", "epi_populace:sir", {"gamma": 0.25}),
        ),
        params={**TINY, "initial": 10},
    )


def test_timed_loop_times_warmup_apart_and_stops_at_the_limit():
    calls = []
    out = side.timed_loop(calls.append, steps=10, warmup=3)
    assert calls == [3, 7] and out["status"] == "ok" and out["steps_done"] == 10
    assert out["s_per_step"] == pytest.approx(out["seconds"] / 7)
    calls.clear()
    out = side.timed_loop(calls.append, steps=10, warmup=2, limit=0.0)
    assert calls == [2, 1] and out["status"] == "stopped" and out["steps_done"] == 3
    assert "stopped after 3 of 10" in out["reason"]
    with pytest.raises(ValueError, match="warmup < steps"):
        side.timed_loop(calls.append, steps=3, warmup=3)


def test_modes_set_or_clear_the_thread_variables(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    one, default = side.environment("1"), side.environment("default")
    assert all(one[v] == "1" for v in side.THREAD_VARS)
    assert not any(v in default for v in side.THREAD_VARS)
    with pytest.raises(ValueError, match="unknown threading mode 'two'"):
        side.environment("two")


def test_isolated_child_runs_without_torch_and_a_populace_child_with_one_thread():
    bare = side.spawn("side:thread_counts", {}, mode="1", isolated=True)
    assert bare["status"] == "ok" and "torch" not in bare["threads"] and bare["peak_rss_bytes"] > 0
    ours = side.spawn(
        "epi_populace:sir",
        dict(agents=500, steps=10, warmup=1, seed=0, initial=5, **TINY),
        mode="1",
        isolated=False,
    )
    assert ours["status"] == "ok" and ours["threads"]["torch"] == 1
    assert ours["peak_rss_bytes"] > bare["peak_rss_bytes"]  # torch is in this one


def test_a_failing_side_reports_why():
    out = side.spawn("epi_populace:sir", dict(agents=10), mode="1", isolated=False)
    assert out["status"] == "failed" and "missing" in out["reason"]
    out = side.spawn("no_such_module:run", {}, mode="1")
    assert out["status"] == "failed" and "no_such_module" in out["reason"]


def test_edge_file_gives_populace_the_same_graph(tmp_path):
    path = epi_compare.write_graph(300, 6.0, 3, tmp_path)
    got, want = epi_populace.load_edges(str(path), 300), erdos_renyi(300, 6.0, 3)
    assert torch.equal(got.crow_indices(), want.crow_indices())
    assert torch.equal(got.col_indices(), want.col_indices())


def test_twin_sides_agree_exactly_and_the_summary_has_ratios():
    scenario = twin_scenario()
    rec = epi_compare.compare(["twin"], [800], repeats=2, modes=["1"], scenarios={"twin": scenario})
    runs = rec["runs"]
    assert [r["framework"] for r in runs] == [
        "populace",
        "populace-again",
        "populace-again",
        "populace",
    ]  # interleaved, the order rotating with the repeat
    assert {r["seed"] for r in runs} == {0, 1}
    case = rec["cases"][0]
    ours, again = case["sides"]["populace"]["1"], case["sides"]["populace-again"]["1"]
    assert ours["runs"] == again["runs"] == 2
    assert again["attack_rate"] == ours["attack_rate"] and again["attack_rate_gap"] == 0
    assert again["agree"] is True and ours["active"] == 0  # the epidemic is over
    assert again["populace_speedup"] == pytest.approx(again["s_per_step"] / ours["s_per_step"])
    assert 0 < ours["attack_rate"] < 1 and ours["attack_rate_se"] is not None
    assert rec["load_average"]["before"] and rec["versions"]["torch"] and rec["date"]


def test_attack_rate_follows_the_final_size_relation():
    """The populace side is the model: its attack rate is the final size of R0 = beta/gamma."""
    from populace.models.sir import final_size

    out = epi_populace.sir(
        agents=20_000, steps=150, warmup=1, seed=1, beta=0.5, gamma=0.25, initial=20
    )
    assert out["outcomes"]["attack_rate"] == pytest.approx(final_size(2.0), abs=0.02)


def test_the_seir_vaccination_side_has_the_final_size_of_its_vaccine():
    from populace.epi import vaccination

    kw = {**epi_compare.SEIR_VACCINATION, "initial": 20}
    out = epi_populace.seir_vaccination(agents=20_000, steps=200, warmup=1, seed=0, **kw)
    want = vaccination.final_size(3.0, 0.5, 0.8, "all_or_nothing", seeded=20 / 20_000)
    assert out["outcomes"]["attack_rate"] == pytest.approx(want, abs=0.02)
    assert out["outcomes"]["active"] == 0


def test_summary_reports_failures_and_bad_input_names_the_problem():
    scenario = twin_scenario()
    broken = dataclass_replace(
        scenario,
        sides=(scenario.sides[0], epi_compare.Side("broken", "epi_populace:nothing")),
    )
    rec = epi_compare.compare(["twin"], [300], repeats=1, modes=["1"], scenarios={"twin": broken})
    bad = rec["cases"][0]["sides"]["broken"]["1"]
    assert bad["status"] == "failed" and "nothing" in bad["reason"]
    with pytest.raises(KeyError, match="unknown scenario"):
        epi_compare.compare(["measles"], [100])
    with pytest.raises(ValueError, match="unknown threading mode"):
        epi_compare.compare(["sir"], [100], modes=["4"])
    with pytest.raises(ValueError, match=">= 1"):
        epi_compare.compare(["sir"], [0])


def dataclass_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)


def test_every_scenario_has_populace_first_and_says_what_it_matched():
    for scenario in epi_compare.SCENARIOS.values():
        assert scenario.sides[0].framework == "populace" and len(scenario.sides) >= 2
        assert scenario.matching and scenario.warmup < scenario.steps
        assert (scenario.graph_degree is not None) == any(s.graph for s in scenario.sides)
        for s in scenario.sides[1:]:
            assert s.isolated  # peers never see populace's imports


def test_cli_saves_a_record(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(epi_compare.SCENARIOS, "twin", twin_scenario(steps=20))
    code = epi_compare.main(
        ["--scenarios", "twin", "--sizes", "300", "--repeats", "1", "--modes", "1"]
        + ["--python", sys.executable, "--save", str(tmp_path)]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    saved = json.loads(next(tmp_path.glob("epi_compare-cpu-*.json")).read_text())
    assert saved["command"].endswith("--save " + str(tmp_path)) and saved["cases"] == out["cases"]


def test_populace_sides_run_with_their_own_interpreter():
    """``populace_python`` runs the populace sides; the peers' interpreter (here ``false``,
    which fails at once) runs only the peers."""
    import shutil

    scenario = twin_scenario()
    mixed = dataclass_replace(
        scenario, sides=(scenario.sides[0], dataclass_replace(scenario.sides[1], framework="peer"))
    )
    rec = epi_compare.compare(
        ["twin"],
        [300],
        repeats=1,
        modes=["1"],
        python=shutil.which("false"),
        scenarios={"twin": mixed},
        populace_python=sys.executable,
    )
    sides = rec["cases"][0]["sides"]
    assert sides["populace"]["1"]["status"] == "ok"
    assert sides["peer"]["1"]["status"] == "failed"
    assert rec["populace_python"] == sys.executable
