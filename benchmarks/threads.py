"""Thread load test: default threads vs one thread, with a competing busy process.

    python -m populace.benchmarks.threads --save benchmarks/results

Each case runs a zoo model in a fresh subprocess (the OpenMP wait policy is read when torch
loads), while another process spins on one core: ``default`` is what a user gets (populace's
thread count and passive wait policy), ``one`` is one thread, ``torch_default`` is torch's own
default (every core, active spin-waits: what populace did before). Cases are interleaved and
repeated; the record has each case's median ms/step and the ratio default / one, which
issue 19 wants at most 1.5.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time

#: case -> (environment of its subprocess, None: variable removed; Simulation's threads). An
#: empty OMP_WAIT_POLICY keeps populace from setting one, and libgomp ignores it: its own default
CASES = {
    "default": (
        {"OMP_NUM_THREADS": None, "OMP_WAIT_POLICY": None, "POPULACE_THREADS": None},
        "auto",
    ),
    "one": ({"OMP_NUM_THREADS": None, "OMP_WAIT_POLICY": None, "POPULACE_THREADS": "1"}, "auto"),
    "torch_default": (
        {"OMP_NUM_THREADS": None, "OMP_WAIT_POLICY": "", "POPULACE_THREADS": None},
        "none",
    ),
}
#: model -> (agents, steps)
WORKLOADS = {"sir": (1_000_000, 50), "vicsek": (100_000, 20), "network_sir": (200_000, 30)}


def _spin(stop) -> None:  # the competing busy process
    while not stop.is_set():
        pass


def worker(model_name: str, agents: int, steps: int, threads: str) -> dict:
    import torch

    from populace import models  # sets the wait policy before torch's pool starts
    from populace.engine import Simulation

    threads = None if threads == "none" else threads
    model = models.module(model_name).build(agents=agents)
    sim = Simulation(model, device="cpu", progress=False, record_every=steps, threads=threads)
    sim.run(2)
    start = time.perf_counter()
    sim.run(steps)
    return {
        "ms_per_step": 1e3 * (time.perf_counter() - start) / steps,
        "threads": torch.get_num_threads(),
        "wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }


def run_case(case: str, model_name: str, size: tuple[int, int]) -> dict:
    env = dict(os.environ)
    changes, threads = CASES[case]
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    agents, steps = size
    cmd = [sys.executable, "-m", "populace.benchmarks.threads", "--worker", model_name]
    cmd += ["--agents", str(agents), "--steps", str(steps), "--threads", threads]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def load_test(model_names: list[str], repeats: int, busy: bool, size=None) -> dict:
    """``size``: ``(agents, steps)`` for every model instead of :data:`WORKLOADS`."""
    from populace.engine.provenance import now, versions
    from populace.engine.threads import available_cores

    stop = multiprocessing.Event()
    spinner = multiprocessing.Process(target=_spin, args=(stop,), daemon=True) if busy else None
    if spinner is not None:
        spinner.start()
    try:
        runs = {m: {c: [] for c in CASES} for m in model_names}
        for _ in range(repeats):
            for m in model_names:
                for case in CASES:
                    runs[m][case].append(run_case(case, m, size or WORKLOADS[m]))
    finally:
        stop.set()
        if spinner is not None:
            spinner.join(5)
    summary = {}
    for m, cases in runs.items():
        med = {c: statistics.median(r["ms_per_step"] for r in rs) for c, rs in cases.items()}
        summary[m] = {
            "agents": (size or WORKLOADS[m])[0],
            "steps": (size or WORKLOADS[m])[1],
            **{f"{c}_ms_per_step": v for c, v in med.items()},
            **{f"{c}_threads": cases[c][0]["threads"] for c in cases},
            "default_over_one": med["default"] / med["one"],
            "torch_default_over_one": med["torch_default"] / med["one"],
        }
    return {
        "name": "threads-load",
        "device": "cpu",
        "available_cores": available_cores(),
        "cpu_count": os.cpu_count(),
        "competing_busy_process": busy,
        "repeats": repeats,
        "summary": summary,
        "runs": runs,
        "command": "python -m populace.benchmarks.threads " + " ".join(sys.argv[1:]),
        "load_average": os.getloadavg(),
        "versions": versions(),
        "date": now(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="populace bench threads", description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", choices=sorted(WORKLOADS), default=["sir", "vicsek"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--idle", action="store_true", help="no competing busy process")
    p.add_argument("--worker", choices=sorted(WORKLOADS), help=argparse.SUPPRESS)
    p.add_argument("--agents", type=int, help="agents of every model (default: WORKLOADS)")
    p.add_argument("--steps", type=int, help="steps of every model (default: WORKLOADS)")
    p.add_argument("--threads", choices=["auto", "none"], help=argparse.SUPPRESS)
    p.add_argument("--save", metavar="DIR", help="also write the JSON record into DIR")
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.agents, args.steps, args.threads)))
        return 0
    size = (args.agents, args.steps) if args.agents and args.steps else None
    record = load_test(args.models, args.repeats, busy=not args.idle, size=size)
    if args.save:
        from populace.benchmarks.harness import save

        print(f"saved {save(record, args.save)}", file=sys.stderr)
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
