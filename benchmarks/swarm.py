"""Swarm benchmarks.

    python -m populace.benchmarks.swarm --model vicsek --agents 1000000
    python -m populace.benchmarks.swarm --versus-scipy --sizes 1000 4000 100000 1000000
    python -m populace.benchmarks.swarm --clustering --agents 4000 --steps 400

The first times a swarm model's step loop with :func:`populace.benchmarks.harness.bench_model`
and adds what the issue asks to report: milliseconds per step and state bytes per agent. The
settings of each case (density, radius) are the issue's: Vicsek at density 4 (radius 1), circles
at density 1 (radius 2), boids at the comparison suite's "small" visual distance 5 scaled to keep
the suite's density of 300 birds per 100 x 100.

``--versus-scipy`` runs the zoo Vicsek and the scipy ``cKDTree`` Vicsek a user would write
(:mod:`populace.benchmarks.peers.vicsek_scipy`), same N, steps and rule, one thread, interleaved
and repeated; it records both times per step and their ratio.

``--clustering`` runs Vicsek from the same start ordered (zero noise: the flock aligns and
clusters) and disordered (noise 2 pi: uniform headings, uniform density) for the same steps,
per CPU backend, interleaved and repeated; it records the wall-time ratio and the mean number of
neighbours each run saw (the pairs a walk must visit grow with clustering whatever the walk).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

import torch

from populace.benchmarks import harness
from populace.engine.provenance import device_name, now, versions
from populace.kernels._backend import HAS_NUMBA

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


def _vicsek_run(agents: int, steps: int, backend: str, noise: float, seed: int = 0) -> dict:
    """Time ``steps`` Vicsek steps from a fresh start (init excluded): wall and CPU seconds."""
    from populace.engine import Simulation
    from populace.models import vicsek

    model = vicsek.build(agents=agents, backend=backend, noise=noise)
    sim = Simulation(model, seed=seed, device="cpu", progress=False, record_every=1, threads=1)
    wall, cpu = time.perf_counter(), time.process_time()
    result = sim.run(steps)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    frame = result.metrics
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "mean_neighbours": float(frame["neighbours"][1:].mean()),
        "final_order": float(frame["order"][-1]),
    }


def _cpu_backends() -> list[str]:
    return (["numba"] if HAS_NUMBA else []) + ["torch"]


def clustering(agents: int, steps: int, repeats: int, backends: list[str]) -> dict:
    """Ordered (noise 0) vs disordered (noise 2 pi) Vicsek per backend, interleaved."""
    torch.set_num_threads(1)
    runs: dict[str, list[dict]] = {}
    for _ in range(repeats):
        for backend in backends:
            for case, noise in (("ordered", 0.0), ("disordered", 2 * math.pi)):
                key = f"{backend}/{case}"
                runs.setdefault(key, []).append(_vicsek_run(agents, steps, backend, noise))
    summary = {}
    for backend in backends:
        med = {
            case: {
                m: statistics.median(r[m] for r in runs[f"{backend}/{case}"])
                for m in ("wall_s", "cpu_s", "mean_neighbours")
            }
            for case in ("ordered", "disordered")
        }
        summary[backend] = {
            **{f"{case}_{m}": v for case, row in med.items() for m, v in row.items()},
            "wall_ratio": med["ordered"]["wall_s"] / med["disordered"]["wall_s"],
            "cpu_ratio": med["ordered"]["cpu_s"] / med["disordered"]["cpu_s"],
            "neighbour_ratio": med["ordered"]["mean_neighbours"]
            / med["disordered"]["mean_neighbours"],
        }
    return _record("vicsek-clustering", agents=agents, steps=steps, summary=summary, runs=runs)


#: steps per size of ``--versus-scipy`` (the large sizes run few: minutes on two cores)
SCIPY_STEPS = {1_000: 200, 4_000: 100, 100_000: 10, 1_000_000: 3}


def versus_scipy(sizes: list[int], repeats: int, backend: str) -> dict:
    """The zoo Vicsek vs the scipy cKDTree Vicsek, per N, interleaved (median of repeats)."""
    from populace.benchmarks.peers import vicsek_scipy

    torch.set_num_threads(1)
    rows = []
    for n in sizes:
        steps = SCIPY_STEPS.get(n, max(3, min(200, int(2e6 // n))))
        vicsek_scipy.vicsek(n, 1)  # warm caches and imports
        _vicsek_run(n, 1, backend, 0.5)  # compiles the kernel
        ours, peer = [], []
        for _ in range(repeats):
            ours.append(_vicsek_run(n, steps, backend, 0.5)["wall_s"] / steps)
            start = time.perf_counter()
            vicsek_scipy.vicsek(n, steps)
            peer.append((time.perf_counter() - start) / steps)
        o, q = statistics.median(ours), statistics.median(peer)
        rows.append(
            {
                "agents": n,
                "steps": steps,
                "populace_ms_per_step": 1e3 * o,
                "scipy_ms_per_step": 1e3 * q,
                "speedup_vs_scipy": q / o,
            }
        )
    return _record("vicsek-vs-scipy", backend=backend, repeats=repeats, rows=rows)


def _record(name: str, **fields) -> dict:
    return {
        "name": name,
        "device": "cpu",
        "device_name": device_name(torch.device("cpu")),
        "threads": 1,
        **fields,
        "command": "python -m populace.benchmarks.swarm " + " ".join(sys.argv[1:]),
        "load_average": os.getloadavg(),
        "versions": versions(),
        "date": now(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="populace bench swarm")
    p.add_argument("--model", choices=MODELS)
    p.add_argument("--agents", type=int, default=1_000_000)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--versus-scipy", action="store_true", help="Vicsek vs the scipy peer")
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000, 4_000, 100_000, 1_000_000])
    p.add_argument("--clustering", action="store_true", help="ordered vs disordered Vicsek")
    p.add_argument("--backends", nargs="+", choices=["numba", "torch"], default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--save", metavar="DIR", help="also write the JSON record into DIR")
    args = p.parse_args(argv)
    backends = args.backends or _cpu_backends()
    if args.versus_scipy:
        record = versus_scipy(args.sizes, args.repeats, backends[0])
    elif args.clustering:
        record = clustering(args.agents, args.steps, args.repeats, backends)
    elif args.model:
        record = bench(args.model, args.agents, args.steps, args.device, args.warmup)
    else:
        p.error("give --model, --versus-scipy or --clustering")
    if args.save:
        print(f"saved {harness.save(record, args.save)}", file=sys.stderr)
    print(json.dumps(record))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
