"""The defaults of `populace calibrate` recover known parameters of every zoo epidemic model.

Synthetic data: the mean of 16 members (seeds other than the fit's) of each model of 10,000
agents built as the CLI builds it for a fit (straight-through estimator, ``initial_infected=None``
so the initial probability is a param) with known values; then `populace calibrate MODEL --data F
--target COL --population N` with no budget, start or method given. Every fitted param, the
initial probability included, must lie within 10 % of the truth.

Why 10,000 agents (measured 2026-12-01): at 1,000 the fit's own Monte-Carlo noise is as large as
what separates the truth from its neighbours. 4 members at 20 initial infections give the initial
counts an error of about 11 % (the fit missed the initial by +14 to +21 %, by +75 % on the random
graph of ``network_sir``, where early local saturation trades it against the transmissibility),
and the covid models' objective is flat along the beta-gamma ridge (covid_behavior, 4 seeds,
negative binomial: 3.02-3.24 at the truth, 3.02-3.08 at beta 0.38, gamma 0.17, where the fit
stopped). At 10,000: sir -2.3 % beta, -0.6 % gamma, -0.3 % initial; metapop -2.2 %, -0.6 %,
+0.6 %; network_sir -1.5 % transmissibility, -0.5 % gamma, +5.5 % initial.
"""

from __future__ import annotations

import json

import pytest
import torch

from populace.calibration.cli import DEFAULT_METRIC, DEFAULT_PARAMS, calibration_model
from populace.cli import main
from populace.engine import Simulation

CASES = {
    "sir": ({"beta": 0.6, "gamma": 0.2, "initial": 0.02}, [], 40),
    "network_sir": ({"transmissibility": 0.08, "gamma": 0.25, "initial": 0.02}, [], 40),
    "metapop": ({"beta": 0.6, "gamma": 0.2, "initial": 0.02}, ["regions=4"], 40),
    "covid_nyc_seir": (
        {"beta": 0.7, "gamma": 0.25, "initial": 0.02},
        ["population=well_mixed", "sigma=0.5"],
        40,
    ),
    "covid_behavior": ({"beta": 0.5, "gamma": 0.2}, ["initial=0.02"], 40),
}
AGENTS = 10_000


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_calibrate_defaults_recover_known_parameters(name, tmp_path, capsys):
    true, settings, steps = CASES[name]
    assert set(true) <= set(DEFAULT_PARAMS[name].split(","))
    metric = DEFAULT_METRIC.get(name, "I")
    model = calibration_model(name, AGENTS, settings).with_params(**true)
    with torch.no_grad():
        data = Simulation(model, members=16, seed=100, progress=False).run(steps)
    series = data.series(metric)[:, 1:].mean(dim=0)
    path = tmp_path / "data.csv"
    path.write_text("y\n" + "\n".join(f"{v:.4f}" for v in series.tolist()) + "\n")
    args = ["calibrate", name, "--data", str(path), "--target", "y", "--population", str(AGENTS)]
    args += [x for s in settings for x in ("--set", s)]
    assert main(args) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["converged"] and not last["hit_cap"], last
    for param, value in true.items():
        got = torch.as_tensor(last["params"][param]).mean().item()
        assert got == pytest.approx(value, rel=0.10), (param, got, value, last["params"])
