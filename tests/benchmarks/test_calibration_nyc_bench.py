"""The NYC calibration benchmark's record over member seeds."""

from __future__ import annotations

import argparse

import pytest

from populace.benchmarks import calibration_nyc
from populace.benchmarks.calibration_nyc import across_seeds, claim, seed_list


def _record(seed: int, nd: float, bx: float, mae: float, per_origin: list[float]) -> dict:
    return {
        "seed": seed,
        "agents": 83_000,
        "held": "reproduction",
        "nd": nd,
        "nd_by_borough": {"BX": bx, "SI": 0.2},
        "nd_all": [],
        "params": {},
        "convergence": {},
        "converged": seed == 0,
        "forecast_relative_mae": mae,
        "forecast_relative_wis": mae / 2,
        "forecast_pooled": {"relative_mae": mae - 0.5},
        "forecast_extinct": [f"2020-0{7 + i}-01 SI" for i, v in enumerate(per_origin) if v > 1.9],
        "forecast_per_origin": [
            {"origin": f"2020-0{7 + i}-01", "relative_mae": v, "model_mae": 10.0 * v}
            for i, v in enumerate(per_origin)
        ],
    }


def test_across_seeds_takes_the_worst_fit_and_the_mean_forecast():
    records = [_record(0, 0.20, 0.30, 1.5, [2.0, 1.0]), _record(1, 0.24, 0.25, 0.9, [1.0, 0.8])]
    out = across_seeds(records)
    assert out["seeds"] == [0, 1]
    assert out["nd"] == 0.24 and out["nd_by_borough"] == {"BX": 0.30, "SI": 0.2}
    assert out["converged"] is False  # seed 1's fit did not converge
    assert out["forecast_relative_mae"] == pytest.approx(1.2)
    assert out["forecast_relative_mae_sd"] == pytest.approx(0.3)
    assert out["forecast_relative_wis"] == pytest.approx(0.6)
    assert out["forecast_pooled"] == {"relative_mae": pytest.approx(0.7)}
    assert out["forecast_per_origin"] == [
        {"origin": "2020-07-01", "relative_mae": 1.5, "model_mae": 15.0},
        {"origin": "2020-08-01", "relative_mae": pytest.approx(0.9), "model_mae": 9.0},
    ]
    assert out["forecast_extinct"] == ["2020-07-01 SI"]  # every seed's
    assert out["by_seed"] == records and out["held"] == "reproduction"
    assert "seed" not in out and "params" not in out


def test_seed_list_refuses_what_is_not_distinct_integers():
    assert seed_list("0,1, 2") == [0, 1, 2]
    for bad in ("", "0,x", "1,1"):
        with pytest.raises(argparse.ArgumentTypeError, match="seeds must be"):
            seed_list(bad)


def test_runs_started_in_one_second_claim_different_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(calibration_nyc.time, "strftime", lambda *a: "20261203T090625")
    first, second = claim(tmp_path / "results"), claim(tmp_path / "results")
    assert first.name == "calibration-nyc-cpu-20261203T090625"
    assert second.name == "calibration-nyc-cpu-20261203T090625-2"
    assert first.is_dir() and second.is_dir()
