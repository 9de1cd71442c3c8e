"""The GradABM-style neural calibrator trains through the simulator."""

from __future__ import annotations

import pytest
import torch

from populace.calibration.fit import CalibrationError, Free, Problem
from populace.calibration.neural import NeuralCalibrator, fit_neural, lagged_features
from populace.engine import Simulation
from populace.models import covid_nyc_seir


def test_neural_calibrator_trains_through_the_simulator():
    model = covid_nyc_seir.build(agents=300, population="well_mixed", initial=0.02)
    with torch.no_grad():
        obs = Simulation(model.with_params(beta=0.9), members=4, seed=5, progress=False).run(21)
    cases = obs.series("cases")[:, 1:].mean(dim=0)
    problem = Problem(model, {"cases": cases}, [], members=2, seed=0, loss="mse_log1p")
    features = lagged_features(cases.unsqueeze(0), period=7, lags=1)  # [3, 1]
    net = NeuralCalibrator(features.shape[1], 0.05, 2.0, init=0.3)
    with torch.no_grad():
        start = float(problem.objective({"beta": net(features.float()).mean()}))
    fit, net = fit_neural(problem, net, features, epochs=15, lr=0.05)
    assert fit.loss < start
    assert len(fit.values["beta"]) == 3


@pytest.mark.parametrize("lr", [float("nan"), -0.1, 0.0, float("inf")])
def test_learning_rates_must_be_finite_and_positive(lr):
    model = covid_nyc_seir.build(agents=50, population="well_mixed")
    problem = Problem(model, {"cases": torch.ones(3)}, [], loss="mse_log1p")
    net, features = NeuralCalibrator(1, 0.05, 2.0), torch.zeros(1, 1)
    with pytest.raises(CalibrationError, match="lr must be finite and > 0"):
        fit_neural(problem, net, features, lr=lr)
    with pytest.raises(CalibrationError, match="free_lr must be finite and > 0"):
        fit_neural(problem, net, features, free_lr=lr)


def test_the_calibrators_output_may_not_also_be_free():
    model = covid_nyc_seir.build(agents=50, population="well_mixed")
    problem = Problem(model, {"cases": torch.ones(5)}, [Free("beta")], loss="mse_log1p")
    with pytest.raises(CalibrationError, match="both a free parameter and the calibrator"):
        fit_neural(problem, NeuralCalibrator(1, 0.05, 2.0), torch.zeros(1, 1))
