"""What the distributed tests run: the same small scenarios in one process and on W ranks.

``launch(world, mode, folder)`` starts ``world`` processes (gloo on 127.0.0.1, spawned, with a
deadline) that each run :func:`worker`; every rank pickles what it got into
``folder/w{world}_r{rank}.pkl``. Kept small: the CI machine has 2 cores.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import os
import pickle
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from populace.engine import Data, Simulation
from populace.engine import distributed as D
from populace.engine.intervention import ScaleParam, Trigger
from populace.engine.partition import Blocks
from populace.engine.slabs import Slabs
from populace.engine.study import Scenario, study
from populace.models import network_sir, sir, vicsek, vicsek_slabs
from populace.populations.graphs import erdos_renyi

#: seconds a collective waits for a peer in these tests
TIMEOUT = 120


def _frame(f: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    f.write_ipc(buffer)
    return buffer.getvalue()


def read_frame(data: bytes) -> pl.DataFrame:
    return pl.read_ipc(io.BytesIO(data))


# -- the scenarios ------------------------------------------------------------------------
def sir_model():
    return sir.build(agents=200, initial_infected=4)


def network_model():
    """Two layers, five areas of 60 agents; the work layer's scale runs along the areas."""
    layers = {"home": erdos_renyi(300, 3.0, 1), "work": erdos_renyi(300, 4.0, 2)}
    areas = Data({"area": torch.arange(300) // 60}, axes={"area": list("abcde")})
    return network_sir.build(
        agents=300,
        graph=layers,
        data=areas,
        layer_axis="area",
        initial_infected=3,
        transmissibility=0.2,
        work=torch.tensor([1.0, 0.5, 1.0, 0.2, 1.0]),
    )


def swarm_model(slabs: bool):
    build = vicsek_slabs.build if slabs else vicsek.build
    return build(agents=240, density=2.0, noise=0.5, backend="torch")


def ensemble(distributed):
    model = sir_model()
    beta = torch.tensor([0.3, 0.5, 0.7, 0.9, 1.1])
    sim = Simulation(
        model,
        members=5,
        seed=7,
        params=model.params.replace(beta=beta),
        device="cpu",
        distributed=distributed,
    )
    return sim.run(15).metrics


def infectious_count(state, params, ctx):
    return state.health[:, 1].sum(dim=1)  # a total over agents: summed over the ranks


def network(distributed):
    distancing = Trigger("transmissibility", 0.05, infectious_count, 12, 6, label="distancing")
    sim = Simulation(
        network_model(),
        members=2,
        seed=1,
        device="cpu",
        distributed=distributed,
        triggers=[distancing],
    )
    return sim.run(12).metrics


def swarm(distributed):
    sim = Simulation(
        swarm_model(slabs=distributed is not False),
        members=2,
        seed=3,
        device="cpu",
        distributed=distributed,
    )
    return sim.run(8).metrics


def infectious_share(state, params, ctx):
    return state.health[:, 1].mean(dim=1)


def triggered_study(distributed):
    scenarios = [
        Scenario("halved", (ScaleParam("beta", 0.5, start=4),)),
        Scenario(
            "lockdown",
            triggers=(Trigger("beta", 0.1, infectious_share, 0.04, 0.02, label="lockdown"),),
        ),
    ]
    kw = {} if distributed is False else {"distributed": distributed}
    out = study(sir_model(), scenarios, steps=20, seeds=2, seed=2, device="cpu", **kw)
    return out.metrics


def scenarios(sharded: bool) -> dict[str, pl.DataFrame]:
    """Every scenario's metrics, sharded as on the ranks, or in one process."""
    off = False
    return {
        "ensemble": ensemble(None if sharded else off),
        "network": network(Blocks(axis="area") if sharded else off),
        "swarm": swarm(Slabs(capacity=3.0) if sharded else off),
        "study": triggered_study(None if sharded else off),
    }


def calibration_step(distributed) -> tuple[float, float]:
    """One gradient evaluation of a calibration ensemble: (loss, d loss / d beta)."""
    model = sir.build(agents=200, initial_infected=4, estimator="straight_through")
    beta = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    sim = Simulation(
        model,
        members=4,
        seed=9,
        params=model.params.replace(beta=beta),
        device="cpu",
        dtype=torch.float64,
        distributed=distributed,
    )
    costs = ((sim.run(10).series("I") - 20.0) ** 2).mean(dim=1)  # [members of this rank]
    loss = D.mean_over_members(costs)
    loss.backward()
    D.all_reduce_grads([beta])
    return float(loss.detach()), float(beta.grad)


# -- checkpoints ----------------------------------------------------------------------------
CHECKPOINTS = {
    "network": (network_model, 2, "agents"),
    "ensemble": (sir_model, 3, "members"),
}


def save_checkpoints(folder: Path, distributed: bool) -> dict[str, pl.DataFrame]:
    """Run 5 steps, save, run 6 more: the metrics of the 6 (and the files)."""
    out = {}
    for name, (build, members, shard) in CHECKPOINTS.items():
        sim = Simulation(
            build(),
            members=members,
            seed=4,
            device="cpu",
            distributed=shard if distributed else False,
        )
        sim.run(5)
        sim.save(folder / f"{name}.ckpt")
        out[name] = sim.run(6).metrics
    return out


def resume_checkpoints(folder: Path) -> dict[str, pl.DataFrame]:
    out = {}
    for name, (build, _, shard) in CHECKPOINTS.items():
        sim = Simulation.resume(folder / f"{name}.ckpt", build(), device="cpu", distributed=shard)
        out[name] = sim.run(6).metrics
    return out


# -- bad input on 2 ranks --------------------------------------------------------------------
def bad_inputs(rank: int) -> dict[str, str]:
    """The error each bad input raised on this rank (every rank must raise)."""
    errors = {}

    def attempt(name, fn):
        try:
            fn()
            errors[name] = "no error"
        except (D.DistributedError, ValueError) as err:
            errors[name] = f"{type(err).__name__}: {err}"

    attempt("seeds", lambda: Simulation(sir_model(), members=4, seed=rank, device="cpu"))
    saved = D._VERSION
    D._VERSION = D.version_hash() if rank == 0 else "0" * 16  # rank 1 runs other code
    attempt("version", lambda: Simulation(sir_model(), members=4, device="cpu"))
    D._VERSION = saved
    attempt("members", lambda: Simulation(sir_model(), members=1, device="cpu"))
    tiny = network_sir.build(agents=1, graph=erdos_renyi(1, 0.0, 0), initial_infected=0)
    attempt("agents", lambda: Simulation(tiny, device="cpu", distributed="agents"))
    return errors


# -- the processes ---------------------------------------------------------------------------
def leave_group() -> None:
    """End a spawned rank whose results are written: wait for every rank, then exit without
    the process group's C++ teardown. Destroying a gloo group while a peer still closes its
    connections can abort the process ("terminate called without an active exception",
    SIGABRT: seen once on the 2-core CI after every result was computed), which would fail a
    run whose numbers are all there."""
    dist.barrier()
    os._exit(0)


def worker(rank: int, world: int, port: int, folder: str, mode: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world)
    )
    D.init("gloo", timeout=TIMEOUT)
    run_ranks(Path(folder), mode, rank, world)
    leave_group()


def run_ranks(folder: Path, mode: str, rank: int, world: int) -> None:
    """What each rank does, in an initialised process group."""
    got: dict[str, object] = {k: _frame(v) for k, v in scenarios(sharded=True).items()}
    got["calibration"] = calibration_step(None)
    if mode == "save":
        got["after"] = {k: _frame(v) for k, v in save_checkpoints(folder, True).items()}
        got["errors"] = bad_inputs(rank)
    else:
        got["resumed"] = {k: _frame(v) for k, v in resume_checkpoints(folder).items()}
    (folder / f"w{world}_r{rank}.pkl").write_bytes(pickle.dumps(got))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(world: int, mode: str, folder: Path, deadline: float = 600, target=None) -> list[dict]:
    """Run ``target`` (default :func:`worker`; called as ``target(rank, world, port, folder,
    mode)``, it pickles its results to ``folder/w{world}_r{rank}.pkl``) on ``world`` spawned
    ranks; every rank's results, or an error."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ctx = mp.start_processes(
        target or worker,
        args=(world, free_port(), str(folder), mode),
        nprocs=world,
        start_method="spawn",
        join=False,
    )
    end = time.monotonic() + deadline
    while not ctx.join(timeout=5):
        if time.monotonic() > end:
            for p in ctx.processes:
                p.kill()
            raise TimeoutError(f"{world} ranks did not finish {mode!r} in {deadline} s")
    return [pickle.loads((folder / f"w{world}_r{r}.pkl").read_bytes()) for r in range(world)]


@contextlib.contextmanager
def group_of_one() -> Iterator[D.Comm]:
    """World size 1: a gloo group of one in this process (no spawn), its collectives."""
    dist.init_process_group(
        "gloo",
        store=dist.HashStore(),
        rank=0,
        world_size=1,
        timeout=datetime.timedelta(seconds=TIMEOUT),
    )
    try:
        yield D.Comm()
    finally:
        dist.destroy_process_group()


def in_process(mode: str, folder: Path) -> list[dict]:
    """World size 1: :func:`run_ranks` in a group of one in this process."""
    with group_of_one():
        run_ranks(folder, mode, 0, 1)
    return [pickle.loads((folder / "w1_r0.pkl").read_bytes())]
