"""Benchmark harness: time a zoo model's step loop and report agent-steps per second."""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

from populace import models
from populace.engine import Model, Simulation, storage
from populace.engine.context import resolve_device
from populace.engine.provenance import device_name, now, versions


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA launches are asynchronous); no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak device memory (CUDA allocator) or the process's peak resident set size (CPU)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: KiB


def bench_model(
    name: str | Model,
    *,
    agents: int | None = None,
    steps: int,
    members: int = 1,
    device: str = "auto",
    seed: int = 0,
    warmup: int = 2,
    options: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    compile: str | bool = "auto",
) -> dict[str, Any]:
    """Run ``warmup`` untimed steps, then ``steps`` timed ones, of a model: a zoo name (built
    with ``agents``, ``options`` and ``params``) or a built :class:`Model`.

    Metrics are recorded only at the first and last step so the figure is the step loop's.
    ``compile``: :class:`Simulation`'s switch (a compiled run compiles in its warmup steps).

    Returns:
        name, device, device_name, agents, members, steps, seconds, agent_steps_per_s,
        peak_memory_bytes, versions, date.
    """
    dev = resolve_device(device)
    if isinstance(name, Model):
        model = name
    else:
        model = models.module(name).build(agents=agents, **(options or {}))
    if params:
        model = model.with_params(**params)
    name, agents = model.name, model.agents
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    sim = Simulation(
        model,
        members=members,
        seed=seed,
        device=dev,
        progress=False,
        record_every=max(steps, 1),
        compile=compile,
    )
    sim.run(warmup)
    sync(dev)
    start = time.perf_counter()
    result = sim.run(steps)
    sync(dev)
    seconds = time.perf_counter() - start
    return {
        "name": name,
        "device": dev.type,
        "device_name": device_name(dev),
        "agents": agents,
        "members": members,
        "steps": steps,
        "seconds": seconds,
        "agent_steps_per_s": agents * members * steps / seconds if seconds > 0 else None,
        "peak_memory_bytes": peak_memory_bytes(dev),
        "compiled": [r.compiled for r in sim.compile_report],
        "final": result.final(),
        "versions": versions(),
        "date": now(),
    }


def save(record: dict[str, Any], folder: str | Path) -> Path:
    """Write a benchmark record as ``folder/<name>-<device>-<date>.json``."""
    stamp = record["date"].replace(":", "").replace("-", "")
    path = Path(folder) / f"{record['name']}-{record['device']}-{stamp}.json"
    return storage.write_file(path, [(storage.dumps(record, indent=2) + "\n").encode()])


def emit(record: dict[str, Any], folder: str | Path | None) -> int:
    """A benchmark command's ending: save ``record`` into ``folder`` (if given, saying where on
    stderr), print it as the last stdout line; returns the exit status 0."""
    if folder:
        print(f"saved {save(record, folder)}", file=sys.stderr)
    print(storage.dumps(record))
    return 0
