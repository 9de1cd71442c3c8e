"""Benchmark of one ants-style stigmergy step: sense + turn + move + deposit + diffuse/evaporate.

``python -m populace.benchmarks.stigmergy --agents 1000000 --grid 1024 [--device cuda]``

Times ``steps`` steps of ``agents`` agents on a ``grid x grid`` torus (after ``warmup`` untimed
steps) for each backend asked for, and prints one JSON record (last stdout line) with
``ms_per_step`` and ``agent_steps_per_s`` per backend, and on a GPU the ratio of the Triton
kernels' speed to the torch reference's, both measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from populace.benchmarks.harness import sync
from populace.engine.context import resolve_device
from populace.engine.provenance import device_name, now, versions
from populace.kernels.stigmergy import deposit, diffuse_evaporate, sense

ANGLES = (math.pi / 4, 0.0, -math.pi / 4)  # left, ahead, right


def trail_step(
    field: torch.Tensor,
    pos: torch.Tensor,
    heading: torch.Tensor,
    noise: torch.Tensor,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of trail-following agents on a torus.

    Args:
        field: ``[B, G, G]``; pos: ``[B, N, 2]``; heading: ``[B, N]``; noise: ``[B, N]``
            random turns (radians).

    Returns:
        new field, pos, heading (same shapes).
    """
    G = field.shape[-1]
    readings = sense(field, pos, heading, ANGLES, 3.0, backend=backend)  # [B, N, 3]
    turn = (1 - readings.argmax(dim=-1)).to(heading.dtype) * (math.pi / 4)  # towards the max
    heading = heading + turn + noise
    step = torch.stack([torch.cos(heading), torch.sin(heading)], -1)
    pos = torch.remainder(pos + step + 0.5, G) - 0.5
    field = deposit(field, pos, 1.0, backend=backend)
    field = diffuse_evaporate(field, 0.5, 0.1, backend=backend)
    return field, pos, heading


def time_backend(
    backend: str, agents: int, grid: int, steps: int, warmup: int, device: torch.device, seed: int
) -> dict[str, float]:
    """Seconds, ms per step and agent-steps per second of ``steps`` timed steps."""
    g = torch.Generator(device=device).manual_seed(seed)
    pos = torch.rand(1, agents, 2, generator=g, device=device) * grid - 0.5
    heading = torch.rand(1, agents, generator=g, device=device) * (2 * math.pi)
    field = torch.zeros(1, grid, grid, device=device)
    noise = (torch.rand(1, agents, generator=g, device=device) - 0.5) * 0.5
    for _ in range(warmup):
        field, pos, heading = trail_step(field, pos, heading, noise, backend)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        field, pos, heading = trail_step(field, pos, heading, noise, backend)
    sync(device)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "ms_per_step": 1e3 * seconds / steps,
        "agent_steps_per_s": agents * steps / seconds,
        "trail_mass": float(field.sum()),
    }


def bench(
    agents: int,
    grid: int,
    steps: int = 10,
    warmup: int = 2,
    device: str = "auto",
    backends: tuple[str, ...] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Benchmark record of :func:`trail_step` for each backend (default: torch, plus triton
    on CUDA)."""
    dev = resolve_device(device)
    if backends is None:
        backends = ("torch", "triton") if dev.type == "cuda" else ("torch",)
    results = {b: time_backend(b, agents, grid, steps, warmup, dev, seed) for b in backends}
    record: dict[str, Any] = {
        "name": "stigmergy",
        "step": "sense(3) + turn + move + deposit(nearest) + diffuse_evaporate(wrap)",
        "device": dev.type,
        "device_name": device_name(dev),
        "threads": torch.get_num_threads(),
        "agents": agents,
        "grid": grid,
        "steps": steps,
        "warmup": warmup,
        "backends": results,
        "versions": versions(),
        "date": now(),
    }
    if "torch" in results and "triton" in results:
        record["triton_speedup"] = results["torch"]["seconds"] / results["triton"]["seconds"]
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="populace bench stigmergy")
    p.add_argument("--agents", type=int, default=1_000_000)
    p.add_argument("--grid", type=int, default=1024)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    p.add_argument("--backend", action="append", choices=("torch", "triton", "auto"))
    p.add_argument("--save", metavar="DIR", help="also write the JSON record into DIR")
    args = p.parse_args(argv)
    for flag in ("agents", "grid", "steps"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag} must be a positive integer, got {getattr(args, flag)}")
    record = bench(
        args.agents,
        args.grid,
        args.steps,
        args.warmup,
        args.device,
        tuple(args.backend) if args.backend else None,
    )
    if args.save:
        folder = Path(args.save)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = record["date"].replace(":", "").replace("-", "")
        path = folder / f"stigmergy-{record['device']}-{stamp}.json"
        path.write_text(json.dumps(record, indent=2) + "\n")
        print(f"saved {path}", file=sys.stderr)
    print(json.dumps(record))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
