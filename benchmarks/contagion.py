"""Contagion benchmarks: the pressure kernel, its push/pull crossover, and ``network_sir``.

    python -m populace.benchmarks.contagion --agents 1000000 --degree 20
    python -m populace.benchmarks.contagion --crossover --agents 1000000 --degree 10
    python -m populace.benchmarks.contagion --model --agents 1000000 --degree 10 --save DIR

The first prints one JSON record: milliseconds per pressure evaluation of
:func:`contact_pressure` and of the ``torch.sparse.mm`` baseline, measured in the same run, with
device and date (``backend`` says which implementation ran).

``--crossover`` times push and pull, per CPU implementation, over a range of infectious
fractions: where they cost the same sets :data:`populace.kernels.graph.PUSH_FRACTION`.

``--model`` runs the ``network_sir`` zoo model (1 member, one thread) in one subprocess per
variant, interleaved and repeated, and records ms/step over the whole epidemic and the
subprocess's peak resident memory (``ru_maxrss``, graph build included) and its growth over the
steps: ``today`` is the pull-only path this kernel replaced (``torch.sparse.mm`` every step),
``torch`` and ``numba`` the frontier dispatcher with each CPU implementation.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

from populace.benchmarks.harness import sync
from populace.engine.context import resolve_device
from populace.engine.provenance import device_name, now, versions
from populace.kernels._backend import HAS_NUMBA, choose
from populace.kernels.graph import PUSH_FRACTION, contact_pressure
from populace.populations.graphs import erdos_renyi

#: the variants of ``--model``: contact_pressure options per variant
VARIANTS = {
    "today": {"backend": "torch", "strategy": "pull"},
    "torch": {"backend": "torch", "strategy": "auto"},
    "numba": {"backend": "numba", "strategy": "auto"},
}


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
        "backend": choose("auto", infectious, layer),
        "ms_per_step": ms,
        "baseline_sparse_mm_ms": base,
        "speedup_vs_sparse_mm": base / ms,
        "threads": torch.get_num_threads(),
        "versions": versions(),
        "date": now(),
    }


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def model_worker(variant: str, agents: int, degree: float, steps: int, seed: int) -> dict:
    """One ``network_sir`` run with ``variant``'s contact_pressure (in a fresh subprocess)."""
    from unittest import mock

    from populace.engine import Simulation
    from populace.epi import contact  # network_sir's pressure goes through contact.layered
    from populace.models import network_sir

    torch.set_num_threads(1)
    start = time.perf_counter()
    model = network_sir.build(agents=agents, degree=degree, initial_infected=10, graph_seed=seed)
    build_s = time.perf_counter() - start
    rss_built = _rss_mib()
    pressure = functools.partial(contact_pressure, **VARIANTS[variant])
    with mock.patch.object(contact, "contact_pressure", pressure):
        sim = Simulation(model, seed=seed, device="cpu", progress=False, record_every=10)
        sim.run(1)  # compiles the numba kernel, builds the transpose
        rss_before = _rss_mib()
        cpu = time.process_time()
        result = sim.run(steps)
        cpu = time.process_time() - cpu
    frame = result.metrics
    return {
        "variant": variant,
        "ms_per_step": 1e3 * result.seconds / steps,
        "cpu_ms_per_step": 1e3 * cpu / steps,
        "build_s": build_s,
        "peak_rss_mib": _rss_mib(),
        "rss_after_build_mib": rss_built,
        "rss_growth_over_steps_mib": _rss_mib() - rss_before,
        "peak_infectious": float(frame["I"].max()),
        "final_recovered": float(frame["R"][-1]),
    }


def bench_model_variants(
    agents: int, degree: float, steps: int, repeats: int, variants: list[str]
) -> dict:
    """Each variant in its own subprocess (OMP_NUM_THREADS=1), interleaved, ``repeats`` times."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for _ in range(repeats):
        for v in variants:
            cmd = [sys.executable, "-m", "populace.benchmarks.contagion", "--worker", v]
            cmd += ["--agents", str(agents), "--degree", str(degree), "--steps", str(steps)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            runs[v].append(json.loads(out.stdout.strip().splitlines()[-1]))
    summary = {}
    for v, rs in runs.items():
        summary[v] = {
            "ms_per_step_median": statistics.median(r["ms_per_step"] for r in rs),
            "cpu_ms_per_step_median": statistics.median(r["cpu_ms_per_step"] for r in rs),
            "peak_rss_mib_max": max(r["peak_rss_mib"] for r in rs),
            "rss_growth_over_steps_mib_max": max(r["rss_growth_over_steps_mib"] for r in rs),
        }
    if "today" in summary:
        for v in summary:
            for m in ("ms_per_step", "cpu_ms_per_step"):
                summary[v][f"speedup_vs_today_{m.split('_')[0]}"] = (
                    summary["today"][f"{m}_median"] / summary[v][f"{m}_median"]
                )
    return {
        "name": "network_sir-frontier",
        "device": "cpu",
        "device_name": device_name(torch.device("cpu")),
        "agents": agents,
        "degree": degree,
        "steps": steps,
        "repeats": repeats,
        "threads": 1,
        "summary": summary,
        "runs": runs,
        "command": "python -m populace.benchmarks.contagion " + " ".join(sys.argv[1:]),
        "load_average": os.getloadavg(),
        "versions": versions(),
        "date": now(),
    }


def crossover(agents: int, degree: float, repeats: int, fractions: list[float]) -> dict:
    """ms per pressure evaluation, push vs pull per CPU implementation, per infectious fraction."""
    torch.set_num_threads(1)
    layer = erdos_renyi(agents, degree, seed=0)
    gen = torch.Generator().manual_seed(1)
    backends = ["torch"] + (["numba"] if HAS_NUMBA else [])
    rows = []
    for fraction in fractions:
        x = (torch.rand(1, agents, generator=gen) < fraction).float()
        row = {"fraction": fraction}
        for backend in backends:
            for strategy in ("push", "pull"):
                fn = functools.partial(contact_pressure, layer, x, backend=backend)
                row[f"{backend}_{strategy}_ms"] = _cpu_time(
                    functools.partial(fn, strategy=strategy), repeats
                )
        rows.append(row)
    return {
        "name": "contagion-crossover",
        "device": "cpu",
        "device_name": device_name(torch.device("cpu")),
        "agents": agents,
        "degree": degree,
        "threads": 1,
        "push_fraction_in_use": PUSH_FRACTION,
        "rows": rows,
        "command": "python -m populace.benchmarks.contagion " + " ".join(sys.argv[1:]),
        "versions": versions(),
        "date": now(),
    }


def _cpu_time(fn, repeats: int) -> float:
    """Milliseconds of process CPU time per call (robust to other jobs on a shared machine)."""
    fn()
    start = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - start) / repeats * 1e3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="populace bench contagion", description=__doc__.splitlines()[0]
    )
    p.add_argument("--agents", type=int, default=1_000_000)
    p.add_argument("--degree", type=float, default=20.0)
    p.add_argument("--members", type=int, default=1)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--device", default="auto")
    p.add_argument("--model", action="store_true", help="network_sir per variant (subprocesses)")
    p.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    p.add_argument("--steps", type=int, default=60, help="network_sir steps (--model)")
    p.add_argument("--crossover", action="store_true", help="push vs pull over fractions")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.001, 0.01, 0.1, 0.3, 1.0])
    p.add_argument("--worker", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    p.add_argument("--save", metavar="DIR", help="also write the JSON record into DIR")
    args = p.parse_args(argv)
    if args.worker:
        record = model_worker(args.worker, args.agents, args.degree, args.steps, seed=0)
    elif args.model:
        variants = [v for v in args.variants if v != "numba" or HAS_NUMBA]
        record = bench_model_variants(args.agents, args.degree, args.steps, args.repeats, variants)
    elif args.crossover:
        record = crossover(args.agents, args.degree, args.repeats, args.fractions)
    else:
        record = bench_contagion(args.agents, args.degree, args.members, args.repeats, args.device)
    if args.save:
        from populace.benchmarks.harness import save

        print(f"saved {save(record, args.save)}", file=sys.stderr)
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
