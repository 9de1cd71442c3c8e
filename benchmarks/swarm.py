"""Swarm benchmarks: ``python -m populace.benchmarks.swarm --model vicsek --agents 1000000``.

Times a swarm model's step loop with :func:`populace.benchmarks.harness.bench_model` and adds
what the issue asks to report: milliseconds per step and state bytes per agent. The settings of
each case (density, radius) are the issue's: Vicsek at density 4 (radius 1), circles at density 1
(radius 2), boids at the comparison suite's "small" visual distance 5 scaled to keep the suite's
density of 300 birds per 100 x 100.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from populace.benchmarks import harness

MODELS = ("vicsek", "boids", "circles")


def case_options(model: str, agents: int) -> dict:
    """Build options of the benchmark case of ``model`` at ``agents`` agents."""
    if model == "vicsek":
        return {"density": 4.0}
    if model == "circles":
        return {"density": 1.0}
    if model == "boids":
        return {"extent": 100.0 * math.sqrt(agents / 300), "visual_distance": 5.0}
    raise ValueError(f"unknown swarm model {model!r}; valid: {', '.join(MODELS)}")


STATE_BYTES = {"vicsek": 3 * 4, "boids": 4 * 4, "circles": 3 * 4}  # float32 fields per agent


def bench(model: str, agents: int, steps: int, device: str, warmup: int) -> dict:
    record = harness.bench_model(
        model,
        agents=agents,
        steps=steps,
        device=device,
        warmup=warmup,
        options=case_options(model, agents),
    )
    record["options"] = case_options(model, agents)
    record["ms_per_step"] = 1e3 * record["seconds"] / steps
    record["state_bytes_per_agent"] = STATE_BYTES[model]
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="populace bench swarm")
    p.add_argument("--model", choices=MODELS, required=True)
    p.add_argument("--agents", type=int, default=1_000_000)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--save", metavar="DIR", help="also write the JSON record into DIR")
    args = p.parse_args(argv)
    record = bench(args.model, args.agents, args.steps, args.device, args.warmup)
    if args.save:
        print(f"saved {harness.save(record, args.save)}", file=sys.stderr)
    print(json.dumps(record))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
