"""Compiled vs eager steps, per zoo model, at two sizes, in one run.

    python -m populace.benchmarks.compile --save benchmarks/results

For each model and size, one eager and one compiled simulation (``Simulation(compile=False)``
and ``compile=True``) of the same model and seed, one thread each: the compiled one's first
run pays the compilation (``compile_seconds``, from a fresh inductor cache, so cold; inductor's
one-time start in a process is recorded apart), then
timed runs of ``steps`` steps alternate eager, compiled, eager, ... ``repeats`` times. The
record has each side's median steady-state ms/step, the ratio eager / compiled (above 1:
compiled wins), which steps ran compiled (and why not, where they fell back) and whether the
two runs' metrics are equal. ``Model.compile_on`` (what ``compile="auto"`` does) is set from it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings

#: model -> ((agents, timed steps) at the small and the large size)
WORKLOADS = {
    "sir": ((1_000, 100), (100_000, 20)),
    "network_sir": ((1_000, 100), (100_000, 20)),
    "kuramoto": ((1_000, 100), (100_000, 20)),
    "vicsek": ((1_000, 50), (100_000, 5)),
    "boids": ((1_000, 50), (100_000, 5)),
    "physarum": ((1_000, 50), (100_000, 10)),
}


def _metrics_equal(a, b) -> bool:
    import polars as pl

    return a.metrics.select(pl.all().cast(pl.Float64)).equals(
        b.metrics.select(pl.all().cast(pl.Float64))
    )


def measure(name: str, agents: int, steps: int, repeats: int, device: str = "cpu") -> dict:
    """One model at one size: eager and compiled, interleaved."""
    from populace import models
    from populace.engine import Simulation
    from populace.engine.compiled import CompileFallback

    model = models.module(name).build(agents=agents)
    sims = {
        side: Simulation(
            model, device=device, progress=False, record_every=steps, threads=1, compile=side
        )
        for side in (False, True)
    }
    firsts = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompileFallback)  # the report below names each one
        for side, sim in sims.items():  # the compiled side's first steps compile it
            start = time.perf_counter()
            first = sim.run(2)  # a run's end synchronises the device (its metrics' host copy)
            firsts[side] = (first, time.perf_counter() - start)
        times = {False: [], True: []}
        for _ in range(repeats):
            for side, sim in sims.items():
                start = time.perf_counter()
                sim.run(steps)
                times[side].append((time.perf_counter() - start) / steps)
    eager_last, compiled_last = sims[False].run(0), sims[True].run(0)
    eager_ms = 1e3 * statistics.median(times[False])
    compiled_ms = 1e3 * statistics.median(times[True])
    report = sims[True].compile_report
    return {
        "model": name,
        "agents": agents,
        "steps": steps,
        "eager_ms_per_step": eager_ms,
        "compiled_ms_per_step": compiled_ms,
        "eager_over_compiled": eager_ms / compiled_ms,
        "eager_runs_ms": [1e3 * t for t in times[False]],
        "compiled_runs_ms": [1e3 * t for t in times[True]],
        "compile_seconds": firsts[True][1] - firsts[False][1],
        "steps_compiled": [r.compiled for r in report],
        "fallbacks": {r.step: r.reason for r in report if not r.compiled},
        "graphs": {r.step: r.graphs for r in report},
        "metrics_equal": _metrics_equal(eager_last, compiled_last)
        and _metrics_equal(firsts[False][0], firsts[True][0]),
    }


def run(model_names: list[str], sizes: list[int], repeats: int, device: str = "cpu") -> dict:
    import torch

    from populace.engine.provenance import device_name, now, versions

    start = time.perf_counter()  # inductor's one-time start (imports, C++ headers): not a model's
    torch.compile(lambda x: x.sin() + 1, dynamic=False)(torch.ones(8))
    startup = time.perf_counter() - start
    cases = []
    load_before = os.getloadavg()
    for name in model_names:
        for k in sizes:
            agents, steps = WORKLOADS[name][k]
            case = measure(name, agents, steps, repeats, device)
            print(json.dumps(case), file=sys.stderr)
            cases.append(case)
    return {
        "name": "compile",
        "device": torch.device(device).type,
        "device_name": device_name(torch.device(device)),
        "threads": 1,
        "repeats": repeats,
        "inductor_startup_seconds": startup,
        "cases": cases,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "command": "python -m populace.benchmarks.compile " + " ".join(sys.argv[1:]),
        "versions": versions(),
        "date": now(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m populace.benchmarks.compile", description=__doc__.splitlines()[0]
    )
    p.add_argument("--models", nargs="+", choices=sorted(WORKLOADS), default=list(WORKLOADS))
    p.add_argument("--sizes", nargs="+", choices=["small", "large"], default=["small", "large"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu", help="cpu | cuda[:i] (one GPU: CUDA graphs)")
    p.add_argument("--save", metavar="DIR", help="also write the JSON record into DIR")
    args = p.parse_args(argv)
    # cold compilation: inductor's on-disk cache would hide what a first run costs
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="populace-compile-")
    sizes = [("small", "large").index(s) for s in args.sizes]
    from populace.benchmarks.harness import emit

    return emit(run(args.models, sizes, args.repeats, args.device), args.save)


if __name__ == "__main__":
    raise SystemExit(main())
