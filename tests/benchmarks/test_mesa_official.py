"""Mesa's official examples as the suite's third side, and the Boltzmann runner the lead's
populace Boltzmann model is compared against."""

from __future__ import annotations

import pytest

pytest.importorskip("mesa", reason="the Mesa examples need the bench extra (pip install mesa)")

from populace.benchmarks.peers import boltzmann, mesa_official  # noqa: E402


def test_boltzmann_gini_trajectory_starts_equal_and_spreads():
    out = boltzmann.run_official(agents=200, width=10, height=10, steps=30, seed=3)
    gini = out["gini"]
    assert len(gini) == 31 and out["gini_steps"] == list(range(31))
    assert gini[0] == 0  # everyone starts with 1
    assert all(0 <= g < 1 for g in gini) and gini[-1] > 0.3
    assert out["outcomes"]["gini"] == gini[-1] and out["s_per_step"] > 0


def test_boltzmann_without_the_datacollector_follows_the_same_path():
    """Collecting draws no random numbers: the same seed gives the same Gini either way."""
    kw = dict(agents=150, width=12, height=12, steps=12, seed=5)
    full = boltzmann.run_official(**kw)
    bare = boltzmann.run_official(**kw, collect=False, record_every=4)
    assert bare["gini_steps"] == [0, 4, 8, 12]
    assert bare["gini"] == [full["gini"][s] for s in bare["gini_steps"]]


def test_boltzmann_is_reproducible_and_refuses_bad_sizes():
    a = boltzmann.run_official(agents=100, width=10, height=10, steps=5, seed=1)
    b = boltzmann.run_official(agents=100, width=10, height=10, steps=5, seed=1)
    assert a["gini"] == b["gini"]
    with pytest.raises(ValueError, match="must be >= 1"):
        boltzmann.run_official(agents=0)


def test_official_examples_run_and_stop_at_the_limit():
    out = mesa_official.schelling(agents=300, width=20, radius=1, min_similar=3, steps=4)
    assert out["status"] == "ok" and 0 <= out["outcomes"]["happy"] <= 1
    out = mesa_official.wolfsheep(agents=60, width=15, regrowth=10, steps=5)
    assert out["status"] == "ok" and out["outcomes"]["sheep"] >= 0
    out = mesa_official.flocking(agents=40, extent=30.0, visual_distance=5.0, steps=3)
    assert 0 <= out["outcomes"]["order"] <= 1
    out = mesa_official.flocking(agents=40, extent=30.0, visual_distance=5.0, steps=50, limit=0.0)
    assert out["status"] == "stopped" and out["steps_done"] == 2 and out["outcomes"] == {}
