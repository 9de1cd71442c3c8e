"""What sharding a population costs: halo volumes of the NYC population, and the
communication share of a network-epidemic step on 2 gloo ranks.

    python -m populace.benchmarks.distributed halo --scale 0.01 --ranks 2 4 8 16 64
    python -m populace.benchmarks.distributed step --scale 0.01 --steps 10 --repeats 3

``halo`` splits the synthetic NYC population (``populations.nyc``: agents ordered by area, four
contact layers) into contiguous blocks snapped to area boundaries (what
``Distributed(Blocks(axis="area"))`` runs) and, for contrast, into a random assignment of agents
to ranks; for each world size it records the cut-edge fraction, the halo agents each rank
receives per exchange and the bytes a step moves (one float32 per halo agent and member).
Nothing is run: the numbers come from the layers
(:func:`~populace.engine.partition.cut_statistics`).

``step`` runs ``network_sir`` on the same layers on 2 gloo ranks (spawned here, one thread each)
and, interleaved in the same processes, on rank 0 alone; it records the seconds per step of
both and, on the ranks, the share of a step spent inside collectives (halo all_to_all and
metric all_reduce, waiting for the other rank included), and the median time of the transfers
alone (one step's halo exchange and one metric record, each started after a barrier). The
first repeat warms up (allocations, page faults): read the later ones.

Each command prints one JSON record (``--save DIR`` writes it there too).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import torch

from populace.engine.provenance import device_name, now, versions

NAME = "distributed"


def _record(what: str, **fields: Any) -> dict[str, Any]:
    """A benchmark record: name, CPU device, the fields, command, versions and date."""
    return {
        "name": f"{NAME}-{what}",
        "device": "cpu",
        "device_name": device_name(torch.device("cpu")),
        **fields,
        "command": "python -m populace.benchmarks.distributed " + " ".join(sys.argv[1:]),
        "versions": versions(),
        "date": now(),
    }


def nyc_layers(scale: float, seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor, list]:
    """The NYC population's contact layers, its agents' area codes and the area labels."""
    import warnings

    from populace.populations.nyc import nyc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # borough rescaling notice
        pop = nyc(scale=scale, seed=seed, homes=False)
    return dict(pop.layers), pop.attributes["area"].to(torch.int64), pop.codebook["area"]


def _relabel(layer: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """The layer with agent i renamed perm[i] (a random assignment of agents to blocks)."""
    from populace.populations.graphs import csr_from_edges

    crow, col = layer.crow_indices(), layer.col_indices()
    rows = torch.repeat_interleave(torch.arange(crow.numel() - 1), crow.diff())
    n = crow.numel() - 1
    return csr_from_edges(perm[rows], perm[col], n, symmetric=False, dedupe=False)


def halo_volumes(scale: float, ranks: list[int], members: int = 1, seed: int = 0) -> dict:
    from populace.engine.partition import block_bounds, cut_statistics

    t0 = time.perf_counter()
    layers, area, labels = nyc_layers(scale, seed)
    n = area.numel()
    build_s = time.perf_counter() - t0
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    shuffled = {k: _relabel(v, perm) for k, v in layers.items()}
    rows = []
    for world in ranks:
        row: dict[str, Any] = {"ranks": world, "agents_per_rank": n / world}
        for how, lay, codes in (("areas", layers, area), ("random", shuffled, None)):
            bounds = block_bounds(n, world, codes)
            stats = cut_statistics(list(lay.values()), bounds)
            per_layer = {
                k: round(cut_statistics([v], bounds)["cut_fraction"], 5) for k, v in lay.items()
            }
            row[how] = {
                "cut_fraction": stats["cut_fraction"],
                "cut_fraction_by_layer": per_layer,
                "halo_max": stats["halo_max"],
                "halo_mean": stats["halo_total"] / world,
                "halo_max_over_block": stats["halo_max"] / (n / world),
                "bytes_per_step_total": stats["halo_total"] * 4 * members,
                "bytes_per_step_max_rank": stats["halo_max"] * 4 * members,
            }
        rows.append(row)
    edges = sum(int(v.col_indices().numel()) for v in layers.values())
    return _record(
        "halo",
        scale=scale,
        agents=n,
        areas=len(labels),
        edges=edges,
        mean_degree=edges / n,
        layers={k: int(v.col_indices().numel()) for k, v in layers.items()},
        members=members,
        seed=seed,
        population_seconds=build_s,
        rows=rows,
    )


# -- communication share on 2 ranks ---------------------------------------------------------
def _timed_comm(log: list[float]):
    """Patch Comm's collectives to add their seconds to ``log[0]``."""
    from populace.engine.distributed import Comm

    def wrap(fn):
        def timed(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(self, *args, **kwargs)
            finally:
                log[0] += time.perf_counter() - start

        return timed

    for name in ("all_to_all", "all_reduce"):
        setattr(Comm, name, wrap(getattr(Comm, name)))


def _model(scale: float):
    from populace.engine import Data
    from populace.models import network_sir

    layers, area, labels = nyc_layers(scale)
    return network_sir.build(
        agents=area.numel(),
        graph=layers,
        data=Data({"area": area}, axes={"area": labels}),
        initial_infected=50,
        transmissibility=0.05,
    )


def _step_worker(rank: int, port: int, scale: float, steps: int, repeats: int, out: str) -> None:
    import torch.distributed as dist

    from populace.engine import Simulation
    from populace.engine import distributed as D
    from populace.engine.partition import Blocks

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank))
    os.environ["WORLD_SIZE"] = "2"
    D.init("gloo", timeout=600)
    comm = D.Comm()
    model = _model(scale)
    log = [0.0]
    _timed_comm(log)
    single, sharded, shares = [], [], []
    for _ in range(repeats):
        comm.barrier()
        if rank == 0:  # one process, the other rank idle
            sim = Simulation(model, seed=1, device="cpu", distributed=False, progress=False)
            single.append(sim.run(steps).seconds / steps)
        comm.barrier()
        sim = Simulation(
            model, seed=1, device="cpu", distributed=Blocks(axis="area"), progress=False
        )
        log[0] = 0.0
        result = sim.run(steps)
        sharded.append(result.seconds / steps)
        shares.append(log[0] / result.seconds)
    # the transfers alone: the halo payload of one step and one metric record, after a barrier
    shard = sim.shard
    x = torch.zeros(1, shard.halo.agents)
    metrics = torch.zeros(len(model.metric_columns()), 1, dtype=torch.float64)
    transfer: dict[str, list[float]] = {"halo": [], "metrics": []}
    for _ in range(20):
        for what, fn in (
            ("halo", lambda: shard.exchange(x)),
            ("metrics", lambda: comm.all_reduce(metrics)),
        ):
            comm.barrier()
            start = time.perf_counter()
            fn()
            transfer[what].append(time.perf_counter() - start)
    if rank == 0:
        halo = sim.shard.halo
        record = {
            "halo_exchange_s": sorted(transfer["halo"])[len(transfer["halo"]) // 2],
            "metric_all_reduce_s": sorted(transfer["metrics"])[len(transfer["metrics"]) // 2],
            "single_s_per_step": single,
            "sharded_s_per_step": sharded,
            "comm_share_rank0": shares,
            "halo_rank0": halo.below.numel() + halo.above.numel(),
            "agents_rank0": halo.agents,
        }
        torch.save(record, out)
    else:
        torch.save({"comm_share_rank1": shares}, out + ".1")
    dist.destroy_process_group()


def step_share(scale: float, steps: int, repeats: int) -> dict:
    import socket
    import tempfile

    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r0.pt")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ["OMP_NUM_THREADS"] = "1"
        mp.start_processes(
            _step_worker,
            args=(port, scale, steps, repeats, out),
            nprocs=2,
            start_method="spawn",
        )
        got = torch.load(out)
        got.update(torch.load(out + ".1"))
    ratio = [
        a / b for a, b in zip(got["single_s_per_step"], got["sharded_s_per_step"], strict=True)
    ]

    def median(values):  # over the repeats after the first (warm-up)
        rest = sorted(values[1:] or values)
        return rest[len(rest) // 2]

    sharded = median(got["sharded_s_per_step"])
    got["summary"] = {
        "single_s_per_step": median(got["single_s_per_step"]),
        "sharded_s_per_step": sharded,
        "speedup_2_ranks_over_1": median(ratio),
        "in_collectives_share_rank0": median(got["comm_share_rank0"]),
        "in_collectives_share_rank1": median(got["comm_share_rank1"]),
        "transfer_share": (got["halo_exchange_s"] + got["metric_all_reduce_s"]) / sharded,
    }
    return _record(
        "step",
        scale=scale,
        steps=steps,
        repeats=repeats,
        world_size=2,
        backend="gloo",
        threads_per_rank=1,
        **got,
        speedup_2_ranks_over_1=ratio,
    )


def main(argv: list[str] | None = None) -> int:
    from populace.benchmarks.harness import save
    from populace.engine import storage

    p = argparse.ArgumentParser(prog="python -m populace.benchmarks.distributed")
    sub = p.add_subparsers(dest="what", required=True)
    h = sub.add_parser("halo", help="cut edges and halo volumes of NYC over world sizes")
    h.add_argument("--scale", type=float, default=0.01)
    h.add_argument("--ranks", type=int, nargs="+", default=[2, 4, 8, 16, 64])
    h.add_argument("--members", type=int, default=1)
    s = sub.add_parser("step", help="communication share of a step on 2 gloo ranks")
    s.add_argument("--scale", type=float, default=0.01)
    s.add_argument("--steps", type=int, default=10)
    s.add_argument("--repeats", type=int, default=3)
    for q in (h, s):
        q.add_argument("--save", metavar="DIR")
    args = p.parse_args(argv)
    if args.what == "halo":
        record = halo_volumes(args.scale, args.ranks, args.members)
    else:
        record = step_share(args.scale, args.steps, args.repeats)
    if args.save:
        print(f"saved {save(record, args.save)}", file=sys.stderr)
    print(storage.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
