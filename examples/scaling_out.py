"""Scaling out: one script for one process or many ranks.

    python examples/scaling_out.py                                  # one process
    torchrun --standalone --nproc-per-node 4 examples/scaling_out.py   # 4 ranks (gloo or NCCL)

The results are the same bit for bit on CPU, whatever the number of ranks: a study's members
are split over the ranks, a network epidemic's agents too (each rank holds a block of agents
and its rows of the contact layers), and a checkpoint taken on N ranks resumes on any other
number. Rank 0 alone prints and writes.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from populace.engine import Simulation
from populace.engine import distributed as dist
from populace.engine.intervention import ScaleParam
from populace.engine.study import Scenario, study
from populace.models import network_sir, sir


def main(agents: int = 2_000, steps: int = 30, out: Path | None = None) -> dict:
    comm = dist.init() if dist.launched() else None  # torchrun's environment → process group
    rank0 = comm is None or comm.rank == 0

    # 1. a study: 2 scenarios x 4 seeds = 8 members, split over the ranks
    distancing = Scenario("distancing", (ScaleParam("beta", 0.5, start=steps // 3),))
    result = study(
        sir.build(agents=agents, initial_infected=10), [distancing], steps=steps, seeds=4
    )
    effect = result.difference("R", "final")

    # 2. one population split over the ranks: each holds a block of agents and its halo
    model = network_sir.build(agents=agents, degree=8, initial_infected=10, transmissibility=0.1)
    sharded = "agents" if comm is not None else False
    sim = Simulation(model, members=2, seed=1, distributed=sharded, progress=False)
    sim.run(steps // 2)
    folder = out or (tempfile.mkdtemp() if rank0 else None)
    folder = Path(comm.broadcast_object(folder) if comm is not None else folder)  # one folder
    checkpoint = sim.save(folder / "network.ckpt")  # the whole run; rank 0 writes it
    second = sim.run(steps - steps // 2).metrics

    # 3. resume it (on any number of ranks): the same trajectory
    again = Simulation.resume(checkpoint, model, distributed=sharded, progress=False)
    assert again.run(steps - steps // 2).metrics.equals(second)
    if comm is not None:
        comm.barrier()
    if out is None and rank0:
        shutil.rmtree(folder)
    final = {
        "recovered_reduction": float(effect["mean"][0]),
        "network_R": second["R"].to_list()[-2:],
    }
    if rank0:
        world = comm.world if comm is not None else 1
        print(f"{world} rank(s): distancing changes final R by {final['recovered_reduction']:+.1f}")
        print(f"network epidemic, final R per member: {final['network_R']}")
    return final


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=2_000)
    p.add_argument("--steps", type=int, default=30)
    args = p.parse_args()
    main(args.agents, args.steps)
