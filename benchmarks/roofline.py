"""Memory-bandwidth bound of the swarm and contagion kernels on this CPU, and the H200 floor.

    python -m populace.benchmarks.roofline --save benchmarks/results

Measures a STREAM-like bandwidth of this machine (the triad ``a = b + s c`` over 2e7 doubles,
one thread, best of 5), then times each kernel (process CPU time per call, one thread) and
divides the bytes it must move per agent-step (:data:`KERNELS`: compulsory traffic, float32,
int64 indices; caches assumed to hold what a sorted neighbour walk rereads) by that bandwidth:
``% of bound = bound time / measured time``. The projected H200 floor is the same bytes at
4.8 TB/s of HBM.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch

from populace.kernels._backend import HAS_NUMBA
from populace.kernels.graph import contact_pressure
from populace.kernels.neighbors import cell_grid
from populace.kernels.swarm import boids_steer, circles_force, vicsek_align

H200_BYTES_PER_S = 4.8e12
DEGREE = 10


def _bytes(name: str, infectious: float = 0.0) -> float:
    """Compulsory bytes per agent-step (float32 values, int64 indices)."""
    if name == "vicsek_align":  # read pos, vel [2]; write total [2], count
        return 4 * (2 + 2 + 2 + 1)
    if name == "boids_steer":  # read pos, vel [2]; write cohere, separate, match [2], count
        return 4 * (2 + 2 + 6 + 1)
    if name == "circles_force":  # read pos [3]; write force [3], count
        return 4 * (3 + 3 + 1)
    if name == "pressure_pull":  # row offsets 8, output 4; per edge: column 8, gathered value 4
        return 8 + 4 + DEGREE * (8 + 4)
    if name == "pressure_push":  # scan x 4, clear+write out 4+4; per frontier edge: col 8, +=(4+4)
        return 4 + 8 + infectious * (16 + DEGREE * 16)
    raise KeyError(name)


def stream_bandwidth(n: int = 20_000_000) -> float:
    """Bytes per second of the triad ``a = b + 3 c`` (3 arrays of doubles), best of 9, timed in
    process CPU time as the kernels are (wall time on a shared machine counts other jobs)."""
    b, c = torch.rand(n, dtype=torch.float64), torch.rand(n, dtype=torch.float64)
    a = torch.empty_like(b)
    best = math.inf
    for _ in range(9):
        start = time.process_time()
        torch.add(b, c, alpha=3.0, out=a)
        best = min(best, time.process_time() - start)
    return 3 * 8 * n / best


def _cpu_ms(fn, repeats: int) -> float:
    fn()
    start = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - start) / repeats * 1e3


def measure(agents: int, repeats: int) -> dict:
    torch.set_num_threads(1)
    bandwidth = stream_bandwidth()
    gen = torch.Generator().manual_seed(0)
    backends = (["numba"] if HAS_NUMBA else []) + ["torch"]
    rows = []

    def add(name, backend, fn, infectious=0.0):
        ms = _cpu_ms(fn, repeats)
        moved = _bytes(name, infectious)
        bound_ms = moved * agents / bandwidth * 1e3
        rows.append(
            {
                "kernel": name,
                "backend": backend,
                "infectious": infectious,
                "bytes_per_agent_step": moved,
                "ms": ms,
                "bound_ms": bound_ms,
                "percent_of_bound": 100 * bound_ms / ms,
                "ns_per_agent_step": 1e6 * ms / agents,
                "h200_floor_us": moved * agents / H200_BYTES_PER_S * 1e6,
            }
        )

    side = math.sqrt(agents / 4.0)  # the Vicsek case: density 4, radius 1
    grid2 = cell_grid(side, 1.0, periodic=True, dim=2)
    pos = torch.rand(1, agents, 2, generator=gen) * side
    vel = torch.nn.functional.normalize(torch.randn(1, agents, 2, generator=gen), dim=-1)
    grid3 = cell_grid(agents ** (1 / 3), 2.0, periodic=False, dim=3)  # circles: density 1, R 2
    pos3 = torch.rand(1, agents, 3, generator=gen) * agents ** (1 / 3)
    boids_grid = cell_grid(100 * math.sqrt(agents / 300), 5.0, periodic=True, dim=2)
    bpos = torch.rand(1, agents, 2, generator=gen) * boids_grid.box[0]
    for backend in backends:
        add("vicsek_align", backend, lambda b=backend: vicsek_align(pos, vel, grid2, backend=b))
        add(
            "boids_steer",
            backend,
            lambda b=backend: boids_steer(bpos, vel, boids_grid, 1.0, backend=b),
        )
        add("circles_force", backend, lambda b=backend: circles_force(pos3, grid3, backend=b))

    from populace.populations.graphs import erdos_renyi

    layer = erdos_renyi(agents, DEGREE, seed=0)
    for fraction in (0.01, 0.3):
        x = (torch.rand(1, agents, generator=gen) < fraction).float()
        for backend in backends:
            add(
                "pressure_push",
                backend,
                lambda b=backend, x=x: contact_pressure(layer, x, backend=b, strategy="push"),
                fraction,
            )
    x = (torch.rand(1, agents, generator=gen) < 0.3).float()
    for backend in backends:
        add(
            "pressure_pull",
            backend,
            lambda b=backend: contact_pressure(layer, x, backend=b, strategy="pull"),
        )
    from populace.engine.provenance import device_name, now, versions

    return {
        "name": "roofline",
        "device": "cpu",
        "device_name": device_name(torch.device("cpu")),
        "threads": 1,
        "agents": agents,
        "stream_bytes_per_s": bandwidth,
        "h200_bytes_per_s": H200_BYTES_PER_S,
        "rows": rows,
        "command": "python -m populace.benchmarks.roofline " + " ".join(sys.argv[1:]),
        "versions": versions(),
        "date": now(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="populace bench roofline", description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--save", metavar="DIR", help="also write the JSON record into DIR")
    args = p.parse_args(argv)
    record = measure(args.agents, args.repeats)
    if args.save:
        from populace.benchmarks.harness import save

        print(f"saved {save(record, args.save)}", file=sys.stderr)
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
