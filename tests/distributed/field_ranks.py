"""What the field-slab tests run: a few steps of deposit, diffusion and sensing on a small
field, with the kernels on the whole field in one process or on row slabs over W ranks.

``worker`` (for ``sharded_runs.launch(target=worker)``) pickles each case's whole field and
readings (gathered), and a physarum run on field rows (metrics, gathered state; mode ``save``
also checkpoints it, ``resume`` resumes that checkpoint), to ``folder/w{world}_r{rank}.pkl``.
Kept small: the CI machine has 2 cores.
"""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

import torch
from sharded_runs import TIMEOUT, _frame, group_of_one, leave_group

from populace.engine import Simulation
from populace.engine import distributed as D
from populace.engine.field_slabs import FieldRows, FieldSlabs
from populace.kernels.stigmergy import deposit, diffuse_evaporate, sense
from populace.models import physarum, physarum_slabs

B, H, W, N, STEPS = 2, 11, 7, 40, 4
ANGLES = (-0.6, 0.0, 0.6)
#: (boundary, mode, dtype name): every combination in float64, two in float32
CASES = [(b, m, "float64") for b in ("wrap", "closed") for m in ("nearest", "bilinear")] + [
    ("wrap", "bilinear", "float32"),
    ("closed", "nearest", "float32"),
]


def start(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The whole field and every agent (some outside the field: wrapped or clamped)."""
    g = torch.Generator().manual_seed(12)
    scale = torch.tensor([W + 3.0, H + 3.0], dtype=torch.float64)
    return {
        "field": (3 * torch.rand(B, H, W, generator=g, dtype=torch.float64)).to(dtype),
        "pos": (torch.rand(B, N, 2, generator=g, dtype=torch.float64) * scale - 2).to(dtype),
        "heading": (2 * math.pi * torch.rand(B, N, generator=g, dtype=torch.float64)).to(dtype),
        "amount": (torch.rand(B, N, generator=g, dtype=torch.float64) * 2).to(dtype),
        "alive": torch.rand(B, N, generator=g) > 0.2,
    }


def rates(dtype):
    return (
        torch.tensor([0.6, 0.9], dtype=dtype),  # diffusion
        torch.tensor([0.0, 0.1], dtype=dtype),  # evaporation: member 0 keeps its mass
        torch.tensor([2.5, 3.7], dtype=dtype),  # sensor distance: halo rows > 1
    )


def walk(heading, pos):
    step = torch.stack([torch.cos(heading), torch.sin(heading)], -1)
    return pos + 0.8 * step, heading + 0.4


def whole(boundary: str, mode: str, dtype_name: str) -> dict[str, torch.Tensor]:
    """One process: the kernels (torch path) on the whole field."""
    dtype = getattr(torch, dtype_name)
    s = start(dtype)
    d, e, reach = rates(dtype)
    field, pos, heading = s["field"], s["pos"], s["heading"]
    readings = []
    for _ in range(STEPS):
        pos, heading = walk(heading, pos)
        kw = {"mode": mode, "boundary": boundary, "backend": "torch"}
        field = deposit(field, pos, s["amount"], s["alive"], **kw)
        field = diffuse_evaporate(field, d, e, boundary=boundary, backend="torch")
        readings.append(sense(field, pos, heading, ANGLES, reach, **kw))
    return {"field": field, "readings": torch.stack(readings)}


def sharded(
    comm, boundary: str, mode: str, dtype_name: str, halo: bool = True
) -> dict[str, torch.Tensor]:
    """On row slabs; rank r moves agents r, r + W, r + 2W, ... (anywhere in the field).
    ``halo=False`` diffuses each slab on its own (what skipping the exchange gives)."""
    dtype = getattr(torch, dtype_name)
    s = start(dtype)
    d, e, reach = rates(dtype)
    slabs = FieldSlabs(H, W, comm, boundary)
    world, rank = slabs.world, slabs.rank
    ids = torch.arange(rank, N, world)  # dealt round: a cell gets deposits from every rank
    field = slabs.local(s["field"])
    pos, heading = s["pos"][:, ids], s["heading"][:, ids]
    gid = ids.expand(B, -1).contiguous()
    amount, alive = s["amount"][:, ids], s["alive"][:, ids]
    readings = []
    for _ in range(STEPS):
        pos, heading = walk(heading, pos)
        field = slabs.deposit(field, pos, amount, alive, gid, mode=mode)
        if halo:
            field = slabs.diffuse_evaporate(field, d, e, backend="torch")
        else:
            field = diffuse_evaporate(field, d, e, boundary=boundary, backend="torch")
        readings.append(slabs.sense(field, pos, heading, ANGLES, reach, mode=mode))
    readings = torch.stack(readings)  # [STEPS, B, n, K] of this rank's agents
    if comm is not None and world > 1:
        sizes = [len(range(r, N, world)) for r in range(world)]
        readings = comm.all_gather_cat(readings, 2, sizes, "readings")
        ids = torch.cat([torch.arange(r, N, world) for r in range(world)])
    by_id = torch.empty_like(readings)
    by_id[:, :, ids] = readings
    return {
        "field": slabs.gather(field),
        "readings": by_id,
        "total": slabs.total(field),
    }


# -- physarum on field rows ---------------------------------------------------------------
#: 12 rows over 3 ranks: 4 each, and sensors 4.5 cells ahead reach past the next rank's rows
PHYSARUM = {"agents": 60, "world": 12, "sensor_offset": 4.5, "step_size": 1.3}


def physarum_run(folder: Path | None, mode: str, sharded: bool = True) -> dict:
    """6 steps (``save``: checkpoint after 3 into ``folder``), or 3 resumed (``resume``);
    the metrics of the run and of the 3 steps after the checkpoint, the whole final state."""
    build = physarum_slabs.build if sharded else physarum.build
    shard = FieldRows(capacity=3.0) if sharded else False
    if mode == "resume":
        sim = Simulation.resume(
            folder / "physarum.ckpt", build(**PHYSARUM), device="cpu", distributed=shard
        )
        return {"after": _frame(sim.run(3).metrics)}
    sim = Simulation(build(**PHYSARUM), members=2, seed=3, device="cpu", distributed=shard)
    first = sim.run(3).metrics
    if folder is not None:
        sim.save(folder / "physarum.ckpt")
    after = sim.run(3).metrics
    state = sim.global_state() if sharded else sim.state
    return {
        "metrics": _frame(first.vstack(after)),
        "after": _frame(after),
        "trail": state.trail,
        "pos": state.pos,
        "heading": state.heading,
    }


def run_cases(comm, folder: Path, mode: str) -> dict:
    out = {case: sharded(comm, *case) for case in CASES}
    out["no halo"] = sharded(comm, "wrap", "nearest", "float64", halo=False)
    out["physarum"] = physarum_run(folder, mode)
    return out


def worker(rank: int, world: int, port: int, folder: str, mode: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world)
    )
    comm = D.init("gloo", timeout=TIMEOUT)
    got = run_cases(comm, Path(folder), mode)
    (Path(folder) / f"w{world}_r{rank}.pkl").write_bytes(pickle.dumps(got))
    leave_group()


def in_process(folder: Path, mode: str) -> dict:
    """World size 1: :func:`run_cases` in a group of one in this process."""
    with group_of_one() as comm:
        return run_cases(comm, folder, mode)
