"""Gradient-based vs gradient-free calibration on the same NYC first-wave problem.

    python -m populace.benchmarks.calibration --agents 2000 --epochs 60

Adam (gradients through the straight-through SEIR) runs ``epochs`` epochs; Nelder-Mead then gets
the same wall-time budget: it stops once Adam's measured seconds have elapsed (overrunning by at
most one evaluation; it always evaluates its first simplex of D + 1 points). Both wall times are
recorded. Both minimise the same objective (same model, data, free parameters, member seeds) from
the same start, and both are scored by the same fresh evaluation and by ND per borough of the
member-mean fit.
Writes one JSON record to ``benchmarks/results/calibration-<device>-<date>.json`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from populace.calibration.baseline import nelder_mead
from populace.calibration.fit import evaluate, fit_adam
from populace.calibration.nyc import nd_rows, nyc_model, nyc_problem
from populace.engine.provenance import device_name, now, versions

RESULTS = Path(__file__).parent / "results"


def compare(
    *,
    agents: int = 2000,
    members: int = 2,
    epochs: int = 60,
    lr: float = 0.05,
    beta: str = "city",
    period: int = 28,
    days: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Adam vs Nelder-Mead at an equal wall-time budget; see the module docstring."""
    model = nyc_model(agents)
    problem = nyc_problem(model, beta=beta, period=period, members=members, seed=seed, days=days)
    theta0 = problem.start().to(problem.dtype)
    loss0 = evaluate(problem, theta0)  # warm-up: the first run pays one-time costs
    times = []
    for _ in range(3):
        start = time.perf_counter()
        evaluate(problem, theta0)
        times.append(time.perf_counter() - start)
    eval_seconds = sorted(times)[1]  # the median of three warm evaluations
    adam = fit_adam(problem, epochs=epochs, lr=lr)
    dims = int(theta0.numel())
    simplex = nelder_mead(problem, evaluations=None, seconds=adam.seconds)
    out: dict[str, Any] = {}
    for fit in (adam, simplex):
        with torch.no_grad():
            preds, _ = problem.predict(problem.split(fit.theta))
        nd = {r["borough"]: r["nd"] for r in nd_rows(preds, problem.observed, "fit")}
        out[fit.method] = {
            "loss": fit.loss,
            "nd": nd,
            "seconds": fit.seconds,
            "evaluations": fit.evaluations,
            "values": fit.values,
        }
    return {
        "name": "calibration",
        "device": str(problem.device),
        "device_name": device_name(torch.device(problem.device)),
        "agents": model.options["agents"],
        "members": members,
        "beta": beta,
        "period": period,
        "days": problem.rows,
        "free_dimensions": dims,
        "loss_start": loss0,
        "seconds_per_evaluation_no_grad": eval_seconds,
        "adam_epochs": epochs,
        "adam_lr": lr,
        "budget_seconds": adam.seconds,
        **out,
        "threads": torch.get_num_threads(),
        "versions": versions(),
        "date": now(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=2000)
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--beta", default="city", help="borough | city")
    parser.add_argument("--period", type=int, default=28, help="days per rate piece")
    parser.add_argument("--days", type=int, help="fit only the first DAYS days")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS), help="results folder ('' = do not write)")
    args = parser.parse_args(argv)
    if args.beta == "neural":
        parser.error("--beta neural has no Nelder-Mead counterpart; use borough or city")
    record = compare(
        agents=args.agents,
        members=args.members,
        epochs=args.epochs,
        lr=args.lr,
        beta=args.beta,
        period=args.period,
        days=args.days,
        seed=args.seed,
    )
    if args.out:
        folder = Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = record["date"].replace(":", "").replace("-", "")
        path = folder / f"calibration-{record['device']}-{stamp}.json"
        path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
