"""The zoo's Boltzmann wealth (``populace.models.boltzmann``, sequential activation) against
Mesa's official example (``mesa.examples.basic.boltzmann_wealth_model``), side by side: the
mean Gini trajectory over seeds of each, its largest gap, and the speed ratio in the same run.

    OMP_NUM_THREADS=1 python benchmarks/loc/gini_vs_mesa.py --agents 10000 --steps 50 \
        --seeds 4 --save benchmarks/results

One agent per cell (a square grid of ``agents`` cells), as in Mesa's example. The timed runs
alternate (Mesa seed k, then populace with all seeds as one batch, repeated); speeds are
agent-steps per second over the mean time of each side's runs, populace counting every
member of its batch.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch


def mesa_trajectory(agents: int, side: int, steps: int, seed: int) -> tuple[torch.Tensor, float]:
    """``[steps + 1]`` Gini of one Mesa run, and its seconds (model creation included)."""
    from mesa.examples.basic.boltzmann_wealth_model.model import BoltzmannWealth

    t0 = time.perf_counter()
    model = BoltzmannWealth(n=agents, width=side, height=side, seed=seed)
    for _ in range(steps):
        model.step()
    seconds = time.perf_counter() - t0
    gini = model.datacollector.get_model_vars_dataframe()["Gini"].to_numpy()
    return torch.tensor(gini, dtype=torch.float64), seconds


def populace_trajectories(
    agents: int, side: int, steps: int, seeds: int, device: str
) -> tuple[torch.Tensor, float]:
    """``[seeds, steps + 1]`` Gini of a batch of populace runs, and its seconds."""
    from populace.engine import Simulation
    from populace.models import boltzmann

    model = boltzmann.build(agents=agents, width=side, height=side)
    t0 = time.perf_counter()
    result = Simulation(model, members=seeds, seed=0, device=device, progress=False).run(steps)
    gini = result.series("gini").double().cpu()  # synchronises the device
    return gini, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=4, help="runs of each side")
    parser.add_argument("--repeats", type=int, default=1, help="timed populace batches")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--save", type=Path, help="folder for a JSON record")
    args = parser.parse_args(argv)
    side = math.isqrt(args.agents)
    if side * side != args.agents:
        raise SystemExit(f"--agents must be a square (one agent per cell), got {args.agents}")
    mesa_runs, mesa_seconds, ours_seconds = [], [], []
    ours = None
    for k in range(args.seeds):  # interleaved: a Mesa run, then (for the first repeats) a batch
        g, s = mesa_trajectory(args.agents, side, args.steps, k)
        mesa_runs.append(g)
        mesa_seconds.append(s)
        if k < args.repeats:
            ours, s = populace_trajectories(args.agents, side, args.steps, args.seeds, args.device)
            ours_seconds.append(s)
    theirs = torch.stack(mesa_runs)
    gap = (ours.mean(0) - theirs.mean(0)).abs()
    mesa_rate = args.agents * args.steps / (sum(mesa_seconds) / len(mesa_seconds))
    ours_rate = args.agents * args.steps * args.seeds / (sum(ours_seconds) / len(ours_seconds))
    record = {
        "agents": args.agents,
        "grid": [side, side],
        "steps": args.steps,
        "seeds": args.seeds,
        "final_gini": {"populace": ours[:, -1].mean().item(), "mesa": theirs[:, -1].mean().item()},
        "largest_gap_of_mean_trajectories": gap.max().item(),
        "step_of_largest_gap": int(gap.argmax()),
        "agent_steps_per_s": {"populace": ours_rate, "mesa": mesa_rate},
        "speed_ratio": ours_rate / mesa_rate,
        "seconds": {"populace": ours_seconds, "mesa": mesa_seconds},
        "device": args.device,
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/loc/gini_vs_mesa.py", *(argv or sys.argv[1:])]),
    }
    print(json.dumps(record))
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%z")
        (args.save / f"boltzmann-vs-mesa-{args.device}-{stamp}.json").write_text(
            json.dumps(record, indent=1)
        )
    return record


if __name__ == "__main__":
    main()
