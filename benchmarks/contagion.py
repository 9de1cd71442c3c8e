"""Contagion kernel benchmark: contact pressure on an Erdős–Rényi layer vs ``torch.sparse.mm``.

    python -m populace.benchmarks.contagion --agents 1000000 --degree 20

Prints one JSON record: milliseconds per pressure evaluation of :func:`contact_pressure` and of
the ``torch.sparse.mm`` baseline, measured in the same run, with device and date. On CUDA
``contact_pressure`` runs the Triton kernel, so the ratio compares it with cuSPARSE; on CPU it runs
the torch reference, which itself calls ``torch.sparse.mm`` for fixed weights, so there the ratio
only measures the dispatcher's overhead (``backend`` in the record says which ran).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from populace.benchmarks.harness import sync
from populace.engine.context import resolve_device
from populace.engine.provenance import device_name, now, versions
from populace.kernels._backend import pick
from populace.kernels.graph import contact_pressure
from populace.populations.graphs import erdos_renyi


def _time(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up (Triton compilation, allocator)
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeats * 1e3


def bench_contagion(
    agents: int, degree: float, members: int = 1, repeats: int = 10, device: str = "auto"
) -> dict:
    dev = resolve_device(device)
    layer = erdos_renyi(agents, degree, seed=0, device=dev)
    gen = torch.Generator(device=dev).manual_seed(1)
    infectious = (torch.rand(members, agents, generator=gen, device=dev) < 0.01).float()
    ms = _time(lambda: contact_pressure(layer, infectious), repeats, dev)
    base = _time(lambda: torch.sparse.mm(layer, infectious.T), repeats, dev)
    return {
        "name": "contagion",
        "device": dev.type,
        "device_name": device_name(dev),
        "agents": agents,
        "degree": degree,
        "edges": int(layer.col_indices().numel()),
        "members": members,
        "backend": "triton" if pick("auto", infectious, layer) else "torch",
        "ms_per_step": ms,
        "baseline_sparse_mm_ms": base,
        "speedup_vs_sparse_mm": base / ms,
        "threads": torch.get_num_threads(),
        "versions": versions(),
        "date": now(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="populace bench contagion", description=__doc__.splitlines()[0]
    )
    p.add_argument("--agents", type=int, default=1_000_000)
    p.add_argument("--degree", type=float, default=20.0)
    p.add_argument("--members", type=int, default=1)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    print(
        json.dumps(
            bench_contagion(args.agents, args.degree, args.members, args.repeats, args.device)
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
