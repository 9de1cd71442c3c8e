"""Slabs without a process group: the slab-written Vicsek is vicsek bit for bit; a slab layout
splits a box by cell columns, keeps slots sorted by id and refuses what it cannot hold."""

from __future__ import annotations

import pytest
import torch

from populace.engine import Simulation
from populace.engine.distributed import DistributedError
from populace.engine.slabs import SlabLayout
from populace.kernels.neighbors import cell_grid
from populace.models import vicsek, vicsek_slabs


def test_the_slab_model_in_one_process_is_vicsek():
    kw = {"agents": 150, "density": 1.5, "noise": 0.8, "backend": "torch"}
    a = Simulation(vicsek.build(**kw), members=2, seed=4, device="cpu")
    b = Simulation(vicsek_slabs.build(**kw), members=2, seed=4, device="cpu")
    ra, rb = a.run(6), b.run(6)
    assert ra.metrics.equals(rb.metrics)
    assert torch.equal(ra.final_state.pos, rb.final_state.pos)
    assert torch.equal(ra.final_state.theta, rb.final_state.theta)
    assert torch.equal(rb.final_state.gid[0], torch.arange(150))


def test_a_layout_gives_each_slot_its_particle_sorted_by_id():
    grid = cell_grid(10.0, 1.0, periodic=True, dim=2)
    layout = SlabLayout(grid, 6, capacity=6)
    gid = torch.tensor([[5, 1, 3, 0, 2, 4]])
    pos = torch.rand(1, 6, 2) * 10
    ids, fields = layout.split(gid, {"pos": pos})
    assert ids.tolist() == [[0, 1, 2, 3, 4, 5]]
    assert torch.equal(fields["pos"][0], pos[0, torch.argsort(gid[0])])
    assert torch.equal(layout.gather_by_id(fields["pos"], ids), fields["pos"])
    small = SlabLayout(grid, 6, capacity=4)
    with pytest.raises(DistributedError, match="more than its capacity 4"):
        small.split(gid, {"pos": pos})


def test_slabs_need_a_periodic_box_wide_enough_for_the_ranks():
    class Comm:
        rank, world = 0, 4

    with pytest.raises(DistributedError, match="1 cell column"):
        SlabLayout(cell_grid((2.0, 8.0), 1.0, periodic=True), 10, Comm())
    with pytest.raises(DistributedError, match="periodic"):
        SlabLayout(cell_grid(8.0, 1.0, periodic=False, dim=2), 10)
