"""What the sharded calibration tests run: small SIR fits in one process and on W ranks.

Each fit returns plain numbers (theta, loss history, final loss) so the ranks' results can be
compared with one process's. Kept small: the CI machine has 2 cores.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from sharded_runs import TIMEOUT, leave_group

from populace.calibration.fit import Free, Problem
from populace.calibration.neural import NeuralCalibrator, fit_neural, lagged_features
from populace.calibration.optimize import adam
from populace.engine import distributed as D
from populace.models import sir

#: an epidemic curve of 15 rows (made up: the fits only have to agree, not to be good)
OBSERVED = [4, 6, 9, 13, 18, 24, 30, 35, 38, 38, 36, 32, 28, 24, 20]
MEMBERS = 4  # blocks of 2 + 2 on 2 ranks, 1 + 1 + 2 on 3
EPOCHS = 5


def problem(estimator: str = "straight_through", **kw) -> Problem:
    """SIR of 150 agents; beta weekly (3 pieces of 5 steps: the smoothness penalty acts), gamma
    and (negbin) the dispersion free; 4 members in float64."""
    model = sir.build(agents=150, initial_infected=4, estimator=estimator)
    free = kw.pop("free", [Free("beta", 0.5, period=5), Free("gamma", 0.2)])
    return Problem(
        model,
        {"I": torch.tensor(OBSERVED, dtype=torch.float64)},
        free,
        members=MEMBERS,
        seed=5,
        dtype=torch.float64,
        **kw,
    )


def _plain(fit) -> dict:
    return {"theta": fit.theta.tolist(), "history": list(fit.history), "loss": fit.loss}


def gradient(p: Problem) -> list[float]:
    """The objective's gradient at the start (averaged over the ranks, as the fits do)."""
    theta = p.start().to(p.dtype).requires_grad_(True)
    p.objective(p.split(theta)).backward()
    D.average_grads([theta], p.comm)
    return theta.grad.tolist()


def fits() -> dict[str, dict]:
    """Every fit of this process (in a process group: sharded over its ranks)."""
    out = {
        # the default: loss of the members' mean, negbin dispersion fitted, a Schedule penalty
        "mean": _plain(adam(problem(), lr=0.1, max_epochs=EPOCHS)),
        # each member's loss, score-function gradients (the members' log-probabilities)
        "score": _plain(
            adam(
                problem("score_function", loss="poisson", average=False, free=[Free("beta", 0.5)]),
                lr=0.1,
                max_epochs=EPOCHS,
            )
        ),
    }
    out["mean"]["gradient"] = gradient(problem())
    score = problem("score_function", loss="poisson", average=False)
    out["score"]["gradient"] = gradient(score)
    torch.manual_seed(0)  # the same calibrator on every rank (fit_neural checks)
    calibrator = NeuralCalibrator(features=2, lower=0.05, upper=2.0, hidden=4, init=0.5)
    features = lagged_features(torch.tensor([OBSERVED], dtype=torch.float64), period=5)
    fit, trained = fit_neural(
        problem(free=[Free("gamma", 0.2)]), calibrator, features, period=5, epochs=3, lr=0.05
    )
    out["neural"] = _plain(fit) | {
        "weights": [p.detach().reshape(-1).tolist() for p in trained.parameters()]
    }
    return out


def unaveraged() -> dict:
    """The default fit with the ranks' gradients left as they are (each rank's own members
    only): what the averaging prevents."""
    saved = D.average_grads
    D.average_grads = lambda tensors, comm=None: None
    try:
        return _plain(adam(problem(), lr=0.1, max_epochs=EPOCHS))
    finally:
        D.average_grads = saved


def disagreements(rank: int) -> dict[str, str]:
    """The error of a fit whose ranks start from different points, and of a neural fit whose
    ranks built different calibrators (every rank must raise)."""
    errors = {}

    def attempt(name, fn):
        try:
            fn()
            errors[name] = "no error"
        except D.DistributedError as err:
            errors[name] = f"{type(err).__name__}: {err}"

    p = problem()
    attempt("start", lambda: adam(p, p.start() + rank, max_epochs=1))
    torch.manual_seed(rank)
    calibrator = NeuralCalibrator(features=2, lower=0.05, upper=2.0, hidden=4)
    features = torch.zeros(3, 2, dtype=torch.float64)
    gamma = problem(free=[Free("gamma", 0.2)])
    attempt("calibrator", lambda: fit_neural(gamma, calibrator, features, period=5, epochs=1))
    return errors


def worker(rank: int, world: int, port: int, folder: str, mode: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world)
    )
    D.init("gloo", timeout=TIMEOUT)
    got = fits()
    if mode == "controls":
        got["unaveraged"] = unaveraged()
        got["errors"] = disagreements(rank)
    (Path(folder) / f"w{world}_r{rank}.pkl").write_bytes(pickle.dumps(got))
    leave_group()
