"""A GradABM-style neural calibrator: a small network maps data features to time-varying params.

Instead of one free value per week, a multilayer perceptron reads features of the observed data
(e.g. the log1p case counts of the previous weeks per borough, :func:`lagged_features`) and
outputs that week's transmission rate; it is trained end to end through the simulator, so the
gradient of the loss reaches its weights through the model's stochastic transitions.
"""

from __future__ import annotations

import time

import torch

from populace.calibration.fit import (
    CalibrationError,
    Fit,
    Problem,
    check_gradient,
    check_loss,
    check_lr,
    check_ranks,
    plain_values,
    retain_grads,
)
from populace.engine import Schedule, distributed


def lagged_features(series: torch.Tensor, period: int = 7, lags: int = 2) -> torch.Tensor:
    """Per piece (week), the mean log1p counts of the ``lags`` previous pieces.

    Args:
        series: ``[C, T]`` observed daily counts of C series (e.g. boroughs).

    Returns:
        ``[W, C * lags]`` with ``W = ceil(T / period)``; pieces before the data are 0.
    """
    if series.dim() != 2:
        raise ValueError(f"series must be [C, T], got shape {tuple(series.shape)}")
    c, t = series.shape
    w = -(-t // period)
    padded = torch.nn.functional.pad(series.to(torch.float64), (0, w * period - t))
    weekly = torch.log1p(padded.reshape(c, w, period).mean(dim=-1))  # [C, W]
    cols = []
    for lag in range(1, lags + 1):
        shifted = torch.nn.functional.pad(weekly, (lag, 0))[:, :w]  # value of week w - lag
        cols.append(shifted)
    return torch.cat(cols, dim=0).T.contiguous()  # [W, C * lags]


class NeuralCalibrator(torch.nn.Module):
    """MLP ``features [W, F] -> values [W]`` in ``(lower, upper)`` (sigmoid output).

    Args:
        features: F, inputs per piece.
        lower, upper: range of the output parameter.
        hidden: hidden units.
        init: output value at initialisation (the output bias is set to give it).
    """

    def __init__(
        self, features: int, lower: float, upper: float, hidden: int = 16, init: float = 0.5
    ) -> None:
        super().__init__()
        if not lower < init < upper:
            raise ValueError(f"init {init} must lie strictly inside ({lower}, {upper})")
        self.lower, self.upper = lower, upper
        self.net = torch.nn.Sequential(
            torch.nn.Linear(features, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1)
        )
        with torch.no_grad():  # start flat at `init` so training begins from a sensible model
            self.net[2].weight.mul_(0.1)
            self.net[2].bias.fill_(
                float(torch.logit(torch.tensor((init - lower) / (upper - lower))))
            )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = self.net(features).squeeze(-1)
        return self.lower + (self.upper - self.lower) * torch.sigmoid(z)


def fit_neural(
    problem: Problem,
    calibrator: NeuralCalibrator,
    features: torch.Tensor,
    name: str = "beta",
    period: int = 7,
    epochs: int = 30,
    lr: float = 0.01,
    free_lr: float = 0.05,
) -> tuple[Fit, NeuralCalibrator]:
    """Train ``calibrator`` (and the problem's free params) through the simulator with Adam.

    The calibrator's outputs become the Schedule ``name`` with one value per ``period`` steps;
    ``name`` must not also be a free parameter of the problem. Under torchrun every rank
    trains the same calibrator (built after the same ``torch.manual_seed``: checked) on the
    whole ensemble's loss and gradient.

    Args:
        lr: Adam learning rate of the calibrator's weights.
        free_lr: Adam learning rate of the problem's free params (unconstrained units).

    Returns:
        The fit (``values[name]`` lists the weekly values) and the trained calibrator.

    Raises:
        CalibrationError: ``epochs < 1``, a learning rate not finite and > 0, ``name`` free or
            unknown, a gradient that does not reach the calibrator or the free params at the
            first epoch (:func:`~populace.calibration.fit.check_gradient`), or a NaN/Inf
            objective.
    """
    if epochs < 1:
        raise CalibrationError(f"epochs must be >= 1, got {epochs}")
    check_lr(lr)
    check_lr(free_lr, "free_lr")
    if name in [f.name for f in problem.free]:
        raise CalibrationError(f"{name!r} is both a free parameter and the calibrator's output")
    if name not in problem.model.params.names():
        raise CalibrationError(f"model {problem.model.name!r} has no parameter {name!r}")
    features = features.to(problem.dtype)
    calibrator = calibrator.to(problem.dtype)
    theta = problem.start().to(problem.dtype)
    weights = [p.detach().cpu().tolist() for p in calibrator.parameters()]
    check_ranks(
        problem,
        theta,
        "neural",
        options=(name, period, epochs, lr, free_lr),
        features=distributed.digest(features.cpu().tolist()),
        calibrator=distributed.digest(weights),  # torch.manual_seed alike before building it
    )
    theta.requires_grad_(True)
    opt = torch.optim.Adam(
        [{"params": calibrator.parameters()}, {"params": [theta], "lr": free_lr}], lr=lr
    )

    def values(th: torch.Tensor) -> dict:
        out = problem.split(th) if th.numel() else {}
        out[name] = Schedule.every(calibrator(features), period)
        return out

    history = []
    start = time.perf_counter()
    for epoch in range(epochs):
        opt.zero_grad()
        current = values(theta)
        tensors = retain_grads(current) if epoch == 0 else {}
        loss = problem.objective(current)
        check_loss(problem, loss, theta, f"epoch {epoch}")
        if not loss.requires_grad:
            raise CalibrationError(
                f"the loss of model {problem.model.name!r} carries no gradient to the calibrator: "
                "its transitions are not differentiable"
            )
        loss.backward()
        distributed.average_grads([*calibrator.parameters(), theta], problem.comm)
        if epoch == 0:
            if all(p.grad is None or not p.grad.any() for p in calibrator.parameters()):
                raise CalibrationError(f"no gradient reaches the calibrator's output {name!r}")
            check_gradient(problem, tensors)
        opt.step()
        history.append(float(loss.detach()))
    seconds = time.perf_counter() - start
    theta = theta.detach()
    with torch.no_grad():
        final = values(theta)
        loss = float(problem.objective(final))
    return Fit("neural", theta, plain_values(final), history, loss, seconds, epochs + 1), calibrator
