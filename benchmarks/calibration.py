"""Optimisers on one calibration problem: Adam, scipy's Nelder-Mead, optuna's CMA-ES and the
hand-written Nelder-Mead they replaced (measured in the same run before it was deleted).

    python -m populace.benchmarks.calibration --agents 1000 --steps 40 --members 2

The problem: the synthetic prevalence of the straight-through SIR (``sir``, its ``initial``
probability free) with known beta, gamma and initial infections, simulated with other member
seeds than the fit's; every method minimises the same objective (same
model, data, free parameters, member seeds, start) until its own convergence test stops it, and
is scored by the objective, the relative error of each parameter, evaluations and seconds. The
methods run one after the other on a shared 2-core machine: their seconds are indicative, the
objective and errors are not timing-sensitive.
Writes one JSON record to ``benchmarks/results/calibration-<device>-<date>.json`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from populace.calibration.fit import Free, Problem, evaluate
from populace.calibration.optimize import adam, cmaes, nelder_mead
from populace.engine import Simulation
from populace.engine.provenance import device_name, now, versions

RESULTS = Path(__file__).parent / "results"
TRUE = {"beta": 0.6, "gamma": 0.2, "initial": 0.02}


def problem(agents: int, steps: int, members: int) -> Problem:
    from populace.models import sir

    model = sir.build(agents=agents, initial_infected=None, estimator="straight_through", **TRUE)
    with torch.no_grad():
        data = Simulation(model, members=16, seed=100, progress=False).run(steps)
    observed = {"I": data.series("I")[:, 1:].mean(dim=0)}
    free = [Free("beta", 0.4), Free("gamma", 0.35), Free("initial", 0.01)]
    return Problem(model, observed, free, members=members, seed=0, loss="mse_log1p")


def compare(
    *, agents: int = 1000, steps: int = 40, members: int = 2, methods=None
) -> dict[str, Any]:
    """Every method from the same start on the same problem; see the module docstring."""
    p = problem(agents, steps, members)
    runs = {
        "adam": lambda: adam(p),
        "scipy_nelder_mead": lambda: nelder_mead(p),
        "optuna_cmaes": lambda: cmaes(p, max_evaluations=600),
    }
    if methods is not None:
        runs = {k: v for k, v in runs.items() if k in methods}
    try:  # the hand-written simplex, while it still exists
        from populace.calibration.baseline import nelder_mead as handwritten

        runs["handwritten_nelder_mead"] = lambda: handwritten(p, evaluations=600, tol=1e-6)
    except ImportError:
        pass
    out: dict[str, Any] = {}
    for name, run in runs.items():
        fit = run()
        values = p.split(fit.theta.to(p.dtype))
        out[name] = {
            "loss": evaluate(p, fit.theta),
            "relative_error": {k: float(values[k].mean()) / v - 1 for k, v in TRUE.items()},
            "evaluations": fit.evaluations,
            "seconds": fit.seconds,
            "converged": getattr(fit, "converged", None),
            "hit_cap": getattr(fit, "hit_cap", None),
            "message": getattr(fit, "message", ""),
        }
        print(name, json.dumps(out[name]), file=sys.stderr)
    return {
        "name": "calibration-optimisers",
        "device": "cpu",
        "device_name": device_name(torch.device("cpu")),
        "agents": agents,
        "steps": steps,
        "members": members,
        "true": TRUE,
        "loss_start": evaluate(p, p.start()),
        **out,
        "threads": torch.get_num_threads(),
        "versions": versions(),
        "date": now(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS), help="results folder ('' = do not write)")
    args = parser.parse_args(argv)
    record = compare(agents=args.agents, steps=args.steps, members=args.members)
    record["command"] = "python -m populace.benchmarks.calibration " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    if args.out:
        folder = Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = record["date"].replace(":", "").replace("-", "")
        path = folder / f"calibration-optimisers-{record['device']}-{stamp}.json"
        path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
