"""The flagship's cost: seconds per simulated day, and a calibration epoch's forward + backward.

    python -m populace.benchmarks.flagship --scale 0.01 --days 20 --members 1 8 \
        --save benchmarks/results
    python -m populace.benchmarks.flagship --scale 1.0 --device cuda --grad-days 120 --save ...

The model is :mod:`populace.flagship`'s: the synthetic NYC at ``scale`` on its four contact
layers, severity by age, the heuristic stay-home table (the LLM's table costs the same per day:
both are read from a ``[W, K]`` tensor), per-borough metrics. Timed: ``days`` days after two
untimed ones, for each member count (``s_per_day``: wall seconds per simulated day of the
whole batch; ``s_per_member_day``); then, with ``--grad-days``, one forward + backward of a
straight-through run of that many days (the loss: total infections), as a gradient calibration
epoch would do. LLM work per simulated week is ``archetypes x samples`` questions whatever the
number of agents (``tests/flagship`` checks it at two scales); the record states it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import torch

from populace import flagship as fl
from populace.benchmarks.harness import peak_memory_bytes, save, sync
from populace.engine import Simulation
from populace.engine.context import resolve_device
from populace.engine.provenance import device_name, now, versions

PARAMS = {
    "beta": 1.0,
    "initial": 5e-4,
    "stay_home_effect": 0.8,
    "link_bias": 4.0,
    "link_scale": 2.0,
}


def measure(
    scale: float, days: int, members: list[int], device: str, grad_days: int
) -> dict[str, Any]:
    dev = resolve_device(device)
    t0 = time.perf_counter()
    flag = fl.prepare(fl.Setting(scale=scale, device=dev.type), None, log=lambda m: None)
    build = time.perf_counter() - t0
    model = flag.model("heuristic", **PARAMS)
    runs = []
    for b in members:
        sim = Simulation(model, members=b, seed=0, device=dev, progress=False, record_every=1)
        sim.run(2)
        sync(dev)
        start = time.perf_counter()
        sim.run(days)
        sync(dev)
        seconds = time.perf_counter() - start
        runs.append(
            {
                "members": b,
                "days": days,
                "seconds": seconds,
                "s_per_day": seconds / days,
                "s_per_member_day": seconds / days / b,
            }
        )
    record: dict[str, Any] = {
        "name": "flagship",
        "device": dev.type,
        "device_name": device_name(dev),
        "scale": scale,
        "agents": flag.population.n,
        "archetypes": len(flag.labels),
        "llm_questions_per_week": len(flag.labels),
        "population_seconds": build,
        "runs": runs,
    }
    if grad_days:
        grad_model = flag.model("heuristic", estimator="straight_through", **PARAMS)
        beta = torch.tensor(PARAMS["beta"], dtype=torch.float64, requires_grad=True)
        sim = Simulation(
            grad_model.with_params(beta=beta), members=1, seed=0, device=dev, progress=False
        )
        start = time.perf_counter()
        result = sim.run(grad_days)
        loss = result.series("new_infections").sum()
        loss.backward()
        sync(dev)
        record["epoch"] = {
            "days": grad_days,
            "members": 1,
            "seconds": time.perf_counter() - start,
            "grad_beta": float(beta.grad),
        }
    record |= {"peak_memory_bytes": peak_memory_bytes(dev), "versions": versions(), "date": now()}
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=0.01)
    p.add_argument("--days", type=int, default=20)
    p.add_argument("--members", type=int, nargs="+", default=[1, 8])
    p.add_argument("--grad-days", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--save", default=None, help="folder for the JSON record")
    args = p.parse_args(argv)
    record = measure(args.scale, args.days, args.members, args.device, args.grad_days)
    record["command"] = "python -m populace.benchmarks.flagship " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    if args.save:
        print(f"saved {save(record, args.save)}", file=sys.stderr)
    print(json.dumps(record, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
