"""Swarm sharding: particles in a periodic box split into slabs of cell columns over ranks.

The box's cell grid (:func:`populace.kernels.neighbors.cell_grid`, cells at least one
interaction radius wide) is cut along axis 0 into one slab of whole cell columns per rank.
A rank holds the particles whose positions fall in its slab, in a fixed number of slots
(``capacity``, a state with an agent axis of that size) sorted by global id, empty slots last
with id -1. Each step:

1. :meth:`SlabLayout.neighbourhood`: the particles of the cell columns next to a slab (the
   *ghosts*, one interaction radius wide) are sent to the neighbour ranks; the rank's own
   particles plus the ghosts, sorted by global id, are exactly the particles a neighbour
   kernel visits around its own ones, in the order one process visits them, so neighbour sums
   are bit for bit those of one process.
2. The model updates its own particles (random numbers by global id:
   :meth:`~populace.engine.Streams.uniform_at`).
3. :meth:`SlabLayout.migrate`: particles that left the slab go to their new owner.

Metrics that need every particle in order (an order parameter is a float mean: summed in
another order it differs in the last bits) gather by id (:meth:`SlabLayout.gather_by_id`).

A model written for slabs (see :mod:`populace.models.vicsek_slabs`) runs the same without a
process group: one slab holding everything.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from populace.engine.distributed import Comm, DistributedError, Shard, split
from populace.engine.state import AGENT_AXIS, State
from populace.kernels.neighbors import CellGrid, cell_coords

#: the state field holding each slot's global particle id (-1: an empty slot)
IDS = "gid"
#: the state field holding positions ``[B, N, D]``
POSITIONS = "pos"


class SlabLayout:
    """Which cell columns a rank owns, and the exchanges between slabs.

    Args:
        grid: a periodic cell grid with at least 3 columns along axis 0.
        agents: N, particles in the whole box.
        comm: the process group (None: one slab holding everything).
        capacity: slots per rank (default N).
    """

    def __init__(
        self, grid: CellGrid, agents: int, comm: Comm | None = None, capacity: int | None = None
    ) -> None:
        self.grid = grid
        self.agents = agents
        self.comm = comm
        self.world = comm.world if comm is not None else 1
        self.rank = comm.rank if comm is not None else 0
        columns = grid.cells[0]
        if not grid.periodic:
            raise DistributedError("slabs need a periodic box")
        if self.world > 1 and (columns < 3 or columns < self.world):
            raise DistributedError(
                f"the box has {columns} cell column(s) along axis 0 (cells at least one "
                f"interaction radius wide); {self.world} slabs need at least "
                f"{max(3, self.world)}: run fewer ranks or a larger box"
            )
        self.columns = [split(columns, self.world, r) for r in range(self.world)]
        self.capacity = agents if capacity is None else min(agents, capacity)
        # which rank owns each cell column, and which columns each rank sees as ghosts
        owner = torch.empty(columns, dtype=torch.int64)
        for r, (lo, hi) in enumerate(self.columns):
            owner[lo:hi] = r
        self.owner_of_column = owner
        self.ghost_columns = [
            sorted({(lo - 1) % columns, hi % columns} - set(range(lo, hi)))
            for lo, hi in self.columns
        ]

    def owner(self, pos: torch.Tensor) -> torch.Tensor:
        """``[...]`` rank owning each position ``[..., D]``."""
        column = cell_coords(pos.reshape(1, -1, pos.shape[-1]), self.grid)[0, :, 0]
        return self.owner_of_column.to(pos.device)[column].reshape(pos.shape[:-1])

    # -- packing: rows (member, gid, field values...) ---------------------------------------
    @staticmethod
    def _pack(member, gid, fields: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``[R, 2 + F]`` float64 rows; ids and members are exact in float64 below 2^53."""
        cols = [member.to(torch.float64).unsqueeze(1), gid.to(torch.float64).unsqueeze(1)]
        cols += [
            v.to(torch.float64).reshape(v.shape[0], math.prod(v.shape[1:])) for v in fields.values()
        ]
        return torch.cat(cols, dim=1)

    @staticmethod
    def _unpack(rows: torch.Tensor, like: Mapping[str, torch.Tensor]):
        member, gid = rows[:, 0].long(), rows[:, 1].long()
        out, i = {}, 2
        for name, v in like.items():
            width = math.prod(v.shape[2:])
            out[name] = rows[:, i : i + width].reshape(-1, *v.shape[2:]).to(v.dtype)
            i += width
        return member, gid, out

    def _send(self, rows: torch.Tensor, dest: torch.Tensor, what: str) -> torch.Tensor:
        """Rows to their destination ranks (``dest``: ``[R]``); returns the rows received."""
        if self.comm is None:
            return rows[:0]
        order = torch.argsort(dest, stable=True)
        counts = torch.bincount(dest, minlength=self.world)
        recv = self.comm.all_to_all(counts.unsqueeze(1), [1] * self.world, [1] * self.world, what)
        return self.comm.all_to_all(rows[order], counts.tolist(), recv.flatten().tolist(), what)

    def _slots(self, member, gid, fields, members: int, like) -> tuple[torch.Tensor, dict]:
        """Rows → ``[B, capacity]`` slots sorted by id per member (empty: id -1, zeros)."""
        key = member * (self.agents + 1) + gid
        order = torch.argsort(key)
        member, gid = member[order], gid[order]
        counts = torch.bincount(member, minlength=members)
        if counts.numel() and int(counts.max()) > self.capacity:
            b = int(counts.argmax())
            raise DistributedError(
                f"rank {self.rank}: the slab holds {int(counts.max())} particles of member {b}, "
                f"more than its capacity {self.capacity}; give a larger Slabs(capacity=...)"
            )
        first = torch.cumsum(counts, 0) - counts
        slot = torch.arange(member.numel(), device=member.device) - first[member]
        ids = torch.full((members, self.capacity), -1, dtype=torch.int64, device=member.device)
        ids[member, slot] = gid
        out = {}
        for name, v in fields.items():
            t = like[name].new_zeros((members, self.capacity, *like[name].shape[2:]))
            t[member, slot] = v[order]
            out[name] = t
        return ids, out

    # -- the exchanges ----------------------------------------------------------------------
    def split(self, gid: torch.Tensor, fields: Mapping[str, torch.Tensor]):
        """The whole box's particles (``[B, N]`` ids, ``[B, N, ...]`` fields; positions under
        :data:`POSITIONS`) → this rank's slots."""
        b = gid.shape[0]
        mine = (self.owner(fields[POSITIONS]) == self.rank) & (gid >= 0)
        member = torch.arange(b, device=gid.device).unsqueeze(1).expand_as(gid)[mine]
        return self._slots(member, gid[mine], {k: v[mine] for k, v in fields.items()}, b, fields)

    def migrate(self, gid: torch.Tensor, fields: Mapping[str, torch.Tensor]):
        """Send the particles now outside this slab to their owners; returns the new slots
        ``(ids [B, C], fields [B, C, ...])`` (positions under :data:`POSITIONS`)."""
        b = gid.shape[0]
        valid = gid >= 0
        dest = self.owner(fields[POSITIONS])
        member = torch.arange(b, device=gid.device).unsqueeze(1).expand_as(gid)
        stay = valid & (dest == self.rank)
        leave = valid & (dest != self.rank)
        rows = self._pack(member[leave], gid[leave], {k: v[leave] for k, v in fields.items()})
        got = self._send(rows, dest[leave], "migrating particles")
        m2, g2, f2 = self._unpack(got, fields)
        member_all = torch.cat([member[stay], m2])
        gid_all = torch.cat([gid[stay], g2])
        f_all = {k: torch.cat([v[stay], f2[k]]) for k, v in fields.items()}
        return self._slots(member_all, gid_all, f_all, b, fields)

    def neighbourhood(self, gid: torch.Tensor, fields: Mapping[str, torch.Tensor]):
        """Per member: this rank's particles plus the ghosts of the neighbour slabs' edge
        columns, sorted by global id.

        Returns:
            A list over members of ``(own, ext)``: ``own`` ``[n_b]`` int64 the positions of the
            member's own particles (in slot order) inside the extended set; ``ext`` name →
            ``[m_b, ...]`` field values of the extended set (ids under :data:`IDS`).
        """
        b = gid.shape[0]
        valid = gid >= 0
        member = torch.arange(b, device=gid.device).unsqueeze(1).expand_as(gid)
        received = None
        if self.comm is not None and self.world > 1:
            column = cell_coords(fields[POSITIONS], self.grid)[..., 0]  # [B, C]
            rows_out, dest_out = [], []
            for q in range(self.world):
                if q == self.rank:
                    continue
                wanted = torch.tensor(self.ghost_columns[q], dtype=torch.int64, device=gid.device)
                edge = valid & torch.isin(column, wanted)
                rows_out.append(
                    self._pack(member[edge], gid[edge], {k: v[edge] for k, v in fields.items()})
                )
                dest_out.append(torch.full((int(edge.sum()),), q, dtype=torch.int64))
            rows = torch.cat(rows_out)
            received = self._send(rows, torch.cat(dest_out).to(gid.device), "ghost particles")
        if received is not None:
            gm, gg, gf = self._unpack(received, fields)
        out = []
        for k in range(b):
            n = int(valid[k].sum())
            ids = gid[k, :n]
            vals = {name: v[k, :n] for name, v in fields.items()}
            if received is not None:
                mine = gm == k
                ids = torch.cat([ids, gg[mine]])
                vals = {name: torch.cat([v, gf[name][mine]]) for name, v in vals.items()}
            order = torch.argsort(ids)
            position = torch.empty_like(order)
            position[order] = torch.arange(order.numel(), device=order.device)
            ext = {name: v[order] for name, v in vals.items()}
            ext[IDS] = ids[order]
            out.append((position[:n], ext))
        return out

    def gather_by_id(self, x: torch.Tensor, gid: torch.Tensor) -> torch.Tensor:
        """``[B, C, ...]`` per-slot values → ``[B, N, ...]`` by global id, on every rank."""
        b = gid.shape[0]
        valid = gid >= 0
        member = torch.arange(b, device=gid.device).unsqueeze(1).expand_as(gid)
        rows = self._pack(member[valid], gid[valid], {"x": x[valid]})
        if self.comm is not None and self.world > 1:
            rows = self.comm.all_gather_cat(rows, 0, what="particles by id")
        m, g, f = self._unpack(rows, {"x": x})
        out = x.new_zeros((b, self.agents, *x.shape[2:]))
        out[m, g] = f["x"]
        return out

    @classmethod
    def whole(cls, grid: CellGrid, agents: int) -> SlabLayout:
        """One slab holding every particle (no process group)."""
        return cls(grid, agents)


# -- the shard ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Slabs:
    """Spec of swarm sharding: one slab of cell columns per rank.

    The model's state holds positions ``pos: [B, N, D]``, global ids ``gid: [B, N]`` int64 and
    other per-particle fields with the agent axis at dim 1, and a ``grid`` property (the
    periodic :class:`~populace.kernels.neighbors.CellGrid`); its steps use
    :func:`layout_of`.

    Attributes:
        capacity: slots per rank as a multiple of ``N / world`` (at most N).
    """

    capacity: float = 2.0

    def build(self, comm: Comm, model: Any, seeds: Sequence[int]) -> SlabShard:
        return SlabShard(comm, model, seeds, self)


class SlabShard(Shard):
    """This rank's slab; the layout is fixed from the initial state's grid."""

    kind = "slabs"

    def __init__(self, comm: Comm, model: Any, seeds: Sequence[int], spec: Slabs) -> None:
        super().__init__(comm, model, seeds)
        if not model.agents:
            raise DistributedError(f"model {model.name!r} declares no agents (Model(agents=...))")
        if comm.world > model.agents:
            raise DistributedError(
                f"world size {comm.world} is larger than the {model.agents} particles"
            )
        if not spec.capacity > 0:
            raise ValueError(f"Slabs capacity must be > 0, got {spec.capacity}")
        self.spec = spec
        self.layout: SlabLayout | None = None

    def _layout(self, state: State) -> SlabLayout:
        if self.layout is None:
            grid = getattr(state, "grid", None)
            if not isinstance(grid, CellGrid):
                raise DistributedError(
                    f"{type(state).__name__} has no grid property (a periodic CellGrid): slabs "
                    f"need the box's cell grid"
                )
            for name in (IDS, POSITIONS):
                if name not in state.tensor_names():
                    raise DistributedError(
                        f"{type(state).__name__} has no field {name!r}: slabs need positions "
                        f"'pos' and global ids 'gid'"
                    )
            cap = math.ceil(self.spec.capacity * self.model.agents / self.comm.world)
            self.layout = SlabLayout(grid, self.model.agents, self.comm, cap)
        return self.layout

    def initial_state(self, sim: Any) -> State:
        """The model's init for the whole box (the draws of one process), split into slabs."""
        state = self.whole_initial_state(sim)
        return self.local_state(state) if isinstance(state, State) else state

    @staticmethod
    def _agent_fields(state: State) -> list[str]:
        out = []
        for f in dataclasses.fields(state):
            shape = f.metadata.get("shape")
            if shape and len(shape) > 1 and shape[1] == AGENT_AXIS and f.name != IDS:
                out.append(f.name)
        return out

    def local_state(self, state: State) -> State:
        layout = self._layout(state)
        names = self._agent_fields(state)
        gid, fields = layout.split(state.gid, {n: getattr(state, n) for n in names})
        return state.replace(gid=gid, **fields)

    def global_state(self, state: State) -> State:
        layout = self._layout(state)
        out = {
            n: layout.gather_by_id(getattr(state, n), state.gid) for n in self._agent_fields(state)
        }
        gid = torch.arange(self.model.agents, device=state.gid.device).expand(state.members, -1)
        for name, t in state.tensors().items():
            if name not in out and name != IDS:
                self.check_replicated(type(state).__name__, name, t)
        return state.replace(gid=gid.contiguous(), **out)


def layout_of(ctx: Any, state: State) -> SlabLayout:
    """The slab layout of a step: the rank's under a :class:`SlabShard`, else one slab."""
    shard = getattr(ctx, "shard", None)
    if isinstance(shard, SlabShard):
        return shard._layout(state)
    return SlabLayout.whole(state.grid, state.gid.shape[1])
