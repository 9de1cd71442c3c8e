"""The GPU suite runs end to end at tiny sizes on CPU, so it cannot rot."""

from __future__ import annotations

import json

import pytest

from populace import models
from populace.benchmarks import gpu_suite


def test_tiny_suite_runs_every_entry_or_says_why_not(capsys):
    assert gpu_suite.main(["--tiny", "--device", "cpu"]) == 0
    out = capsys.readouterr()
    rec = json.loads(out.out.strip().splitlines()[-1])
    assert rec["tiny"] and rec["device"] == "cpu" and rec["versions"]["torch"]
    entries = {e["name"]: e for e in rec["entries"]}
    assert set(entries) == {e.name for e in gpu_suite.ENTRIES} | {"vicsek_largest"}
    needs = {"circles_1m": "circles", "vicsek_10m": "vicsek", "vicsek_largest": "vicsek"}
    for name, entry in entries.items():
        model = needs.get(name)
        if model is not None and model not in models.ZOO:
            # skipped only because the model is not merged yet, and the reason is printed
            assert entry["status"] == "skipped"
            assert f"model {model!r} is not in populace.models.ZOO" in entry["reason"]
            assert f"{name}" in out.err and entry["reason"] in out.err
            continue
        assert entry["status"] == "ok", entry
        assert entry["steps"] >= 1 and entry["ms_per_step"] > 0 and entry["agents"] > 0
    assert entries["ants_10m"]["options"]["world"] == 48
    assert entries["nyc_epidemic_day"]["agents"] > 8_000  # 0.1 % of 8.33 M
    if "vicsek" in models.ZOO:
        assert entries["vicsek_largest"]["agents"] == 1_200  # 300 doubled up to the cap


def test_full_entries_have_the_issue_sizes(monkeypatch):
    built = {}

    class Stop(Exception):
        pass

    def fake_build(name):
        def build(**kwargs):
            built[name] = kwargs
            raise Stop

        return build

    monkeypatch.setattr(models, "ZOO", (*models.ZOO, "circles", "vicsek"))
    monkeypatch.setattr(
        models, "module", lambda n: type("M", (), {"build": staticmethod(fake_build(n))})
    )
    for entry in gpu_suite.ENTRIES[:4]:
        with pytest.raises(Stop):
            entry.full("cpu")
    assert built["circles"]["agents"] == 1_000_000
    assert built["vicsek"]["agents"] == 10_000_000
    assert built["ants"] == dict(agents=10_000_000, world=4096)
    assert built["network_sir"]["agents"] == 8_400_000 and built["network_sir"]["degree"] == 20


def test_unknown_entry_raises():
    with pytest.raises(KeyError, match="valid: circles_1m"):
        gpu_suite.suite(tiny=True, device="cpu", only=["nope"])
