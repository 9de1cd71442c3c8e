"""Stigmergy fields sharded over ranks: each rank owns a contiguous block of grid rows.

A field ``[B, H, W]`` (rows ``y``, columns ``x``, as in :mod:`populace.kernels.stigmergy`) is
cut into row slabs, rank ``r`` holding rows ``[lo, hi)`` (:func:`~populace.engine.distributed.
split`) as a local tensor ``[B, h, W]``. The three field operations keep the results of one
process:

- :meth:`FieldSlabs.diffuse_evaporate`: one halo row from each neighbour rank (``wrap``: the
  rows are periodic too, so rank 0's upper neighbour is the last rank; ``closed``: no halo row
  beyond the first and the last row, where the kernel's closed-boundary rule keeps the shares
  of missing neighbours in the cell, so mass is conserved), then the kernel itself on the
  extended slab ``[B, a + h + b, W]``; its inner rows are those of the whole field.
- :meth:`FieldSlabs.deposit`: every contribution (agent, corner of the splat, cell, mass; the
  stencil of :func:`~populace.kernels.stigmergy.cells_and_weights`) is sent to the rank owning
  its cell's row, where all contributions to the slab are added in global agent order, as one
  process adds them.
- :meth:`FieldSlabs.sense`: the sensors' cells by the same stencil, read from the slab plus as
  many halo rows as the farthest sensor needs (agreed over the ranks).

Agents that walk on the field may live anywhere (the operations take any rank's agents), or,
with :class:`FieldRows` (``Simulation(..., distributed=FieldRows())``), in the slab of the row
they stand on (:class:`RowAgents`: slots sorted by global id, migrating like
:mod:`populace.engine.slabs` particles); see :mod:`populace.models.physarum_slabs`.

Bit for bit (CPU, torch path): diffusion (elementwise on the same values), sensing (the same
products summed in the same order) and deposits, float amounts included, when the agents carry
their global ids (``gid``, the slot order of one process): contributions to a cell are then
added in the same sequence. Without ``gid`` the order is (rank, slot): bit for bit for
integer-valued amounts only, else equal to rounding. Totals summed per rank and all-reduced
(:meth:`FieldSlabs.total`) are equal to rounding; :meth:`FieldSlabs.gather` then a sum is the
one-process number. On a GPU, ``scatter_add`` adds atomically: float deposits vary in the
last bits from run to run (as the one-process kernels' do there).
Gradients do not cross ranks (the exchanges carry values only).

:class:`FieldSlabs` also works without a process group (one slab, the whole field), so a model
written for slabs runs unchanged in one process.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch

from populace.engine.distributed import Comm, DistributedError, split
from populace.engine.slabs import IDS, POSITIONS, SlabLayout, Slabs, SlabShard
from populace.engine.state import State
from populace.kernels import stigmergy
from populace.kernels.stigmergy import (
    BOUNDARIES,
    MODES,
    _alive,
    _amounts,
    _check_agents,
    _check_choice,
    cells_and_weights,
    diffuse_evaporate,
    sensor_points,
)

Number = float | int
#: the symbolic shape of a state field that :class:`FieldRows` cuts into row slabs
FIELD_SHAPE = ("B", "H", "W")


class FieldSlabs:
    """The row slabs of an ``H x W`` field over the ranks of ``comm``.

    Args:
        height, width: the whole field's H and W.
        comm: the process group (None: one slab holding every row).
        boundary: ``"wrap"`` or ``"closed"``, as the kernels' boundary.

    Attributes:
        rows: ``[(lo, hi)]`` per rank; lo, hi: this rank's rows; h: ``hi - lo``.
    """

    def __init__(
        self, height: int, width: int, comm: Comm | None = None, boundary: str = "wrap"
    ) -> None:
        _check_choice("boundary", boundary, BOUNDARIES)
        if height < 1 or width < 1:
            raise ValueError(f"a field needs at least one row and column, got {height}x{width}")
        self.height, self.width, self.boundary = int(height), int(width), boundary
        self.comm = comm
        self.world = comm.world if comm is not None else 1
        self.rank = comm.rank if comm is not None else 0
        if self.world > height:
            raise DistributedError(
                f"world size {self.world} is larger than the {height} rows of the field: every "
                f"rank needs at least one row (run fewer ranks or a taller field)"
            )
        self.rows = [split(height, self.world, r) for r in range(self.world)]
        self.lo, self.hi = self.rows[self.rank]
        self.h = self.hi - self.lo
        owner = torch.empty(height, dtype=torch.int64)
        for r, (lo, hi) in enumerate(self.rows):
            owner[lo:hi] = r
        self.owner_of_row = owner

    def __repr__(self) -> str:
        return (
            f"FieldSlabs({self.height}x{self.width} {self.boundary}, rows [{self.lo}, {self.hi}) "
            f"of rank {self.rank} of {self.world})"
        )

    # -- checks ------------------------------------------------------------------------------
    def _check_local(self, local: torch.Tensor, what: str = "local field") -> None:
        if not isinstance(local, torch.Tensor) or local.dim() != 3:
            got = tuple(local.shape) if isinstance(local, torch.Tensor) else type(local).__name__
            raise ValueError(f"{what} must be a [B, h, W] tensor, got {got}")
        if tuple(local.shape[1:]) != (self.h, self.width):
            raise ValueError(
                f"{what} of rank {self.rank} must be [B, {self.h}, {self.width}] (rows "
                f"[{self.lo}, {self.hi}) of {self.height}), got {tuple(local.shape)}"
            )
        if local.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"{what} must be float32 or float64, got {local.dtype}")

    # -- whole <-> slabs ---------------------------------------------------------------------
    def local(self, field: torch.Tensor) -> torch.Tensor:
        """``[B, H, W]`` whole field → ``[B, h, W]`` this rank's rows (a copy)."""
        if field.dim() != 3 or tuple(field.shape[1:]) != (self.height, self.width):
            raise ValueError(
                f"field must be [B, {self.height}, {self.width}], got {tuple(field.shape)}"
            )
        return field[:, self.lo : self.hi].clone()

    def gather(self, local: torch.Tensor) -> torch.Tensor:
        """``[B, h, W]`` every rank's rows → ``[B, H, W]`` the whole field, on every rank."""
        self._check_local(local)
        if self.comm is None or self.world == 1:
            return local
        sizes = [hi - lo for lo, hi in self.rows]
        # contiguous: a sum over a strided view may add in another order (other float bits)
        return self.comm.all_gather_cat(local, 1, sizes, what="field rows").contiguous()

    def total(self, local: torch.Tensor) -> torch.Tensor:
        """``[B]`` the field's mass: per-rank sums all-reduced (equal to rounding; for the
        one-process bits sum :meth:`gather`)."""
        self._check_local(local)
        mine = local.sum(dim=(1, 2))
        if self.comm is None or self.world == 1:
            return mine
        return self.comm.all_reduce(mine, what="field mass")

    # -- halo rows ---------------------------------------------------------------------------
    def halo(self, rank: int, width: int) -> tuple[list[int], list[int]]:
        """The global rows above and below ``rank``'s slab that a halo ``width`` rows wide
        holds (``wrap``: periodic; ``closed``: none beyond the field's edges)."""
        lo, hi = self.rows[rank]
        above = list(range(lo - width, lo))
        below = list(range(hi, hi + width))
        if self.boundary == "wrap":
            return [g % self.height for g in above], [g % self.height for g in below]
        return [g for g in above if g >= 0], [g for g in below if g < self.height]

    def extend(self, local: torch.Tensor, width: int = 1) -> tuple[torch.Tensor, int]:
        """This rank's rows with ``width`` halo rows on each side from their owners.

        Every rank must call it with the same ``width``.

        Returns:
            ``ext [B, a + h + b, W]`` (a, b: halo rows above and below, fewer at a closed
            edge) and ``a``: ``ext[:, a : a + h]`` is ``local``.
        """
        self._check_local(local)
        if width < 0:
            raise ValueError(f"halo width must be >= 0, got {width}")
        if self.comm is None or self.world == 1:
            if self.boundary == "closed" or width == 0:
                return local, 0
            rows = torch.arange(-width, self.h + width, device=local.device) % self.height
            return local[:, rows], width
        B, W = local.shape[0], self.width
        plans = [self.halo(r, width) for r in range(self.world)]
        # what this rank sends: its rows in each other rank's halo, in that halo's order
        send, send_counts = [], []
        for q, (above, below) in enumerate(plans):
            mine = [g for g in above + below if self.lo <= g < self.hi] if q != self.rank else []
            send += [g - self.lo for g in mine]
            send_counts.append(len(mine))
        above, below = plans[self.rank]
        wanted = above + below
        recv_counts = [
            0 if q == self.rank else sum(1 for g in wanted if lo <= g < hi)
            for q, (lo, hi) in enumerate(self.rows)
        ]
        pick = torch.tensor(send, dtype=torch.int64, device=local.device)
        rows = local.transpose(0, 1)[pick].reshape(-1, B * W)
        got = self.comm.all_to_all(rows, send_counts, recv_counts, "halo rows").view(-1, B, W)
        # received rows are grouped by source rank, each group in halo order
        start = torch.tensor([0, *recv_counts]).cumsum(0).tolist()
        taken = [0] * self.world
        parts = []
        for g in wanted:
            q = int(self.owner_of_row[g])
            if q == self.rank:
                parts.append(local[:, g - self.lo])
            else:
                parts.append(got[start[q] + taken[q]])
                taken[q] += 1
        a = len(above)
        halo = torch.stack(parts, 1) if parts else local[:, :0]
        return torch.cat([halo[:, :a], local, halo[:, a:]], dim=1), a

    def _row_table(self, width: int) -> torch.Tensor:
        """``[H]`` the row of each global row in this rank's slab extended by ``width`` halo
        rows (:meth:`extend`; -1: not there; a row held twice reads the same either way)."""
        above, below = self.halo(self.rank, width)
        table = torch.full((self.height,), -1, dtype=torch.int64)
        for i, g in enumerate([*above, *range(self.lo, self.hi), *below]):
            table[g] = i
        return table

    # -- the field operations ----------------------------------------------------------------
    def diffuse_evaporate(
        self,
        local: torch.Tensor,
        diffusion: Number | torch.Tensor,
        evaporation: Number | torch.Tensor,
        *,
        backend: str = "auto",
    ) -> torch.Tensor:
        """One NetLogo 8-neighbour diffusion with evaporation of the whole field, on this
        rank's rows: ``[B, h, W]`` → ``[B, h, W]`` (rates: scalars or ``[B]``, as the kernel)."""
        if self.comm is None or self.world == 1:
            self._check_local(local)
            return diffuse_evaporate(
                local, diffusion, evaporation, boundary=self.boundary, backend=backend
            )
        ext, a = self.extend(local, 1)
        out = diffuse_evaporate(
            ext, diffusion, evaporation, boundary=self.boundary, backend=backend
        )
        return out[:, a : a + self.h].contiguous()

    def deposit(
        self,
        local: torch.Tensor,
        pos: torch.Tensor,
        amount: Number | torch.Tensor,
        alive: torch.Tensor | None = None,
        gid: torch.Tensor | None = None,
        *,
        mode: str = "nearest",
    ) -> torch.Tensor:
        """This rank's rows plus what every rank's agents deposit into them.

        Args:
            local: ``[B, h, W]``.
            pos: ``[B, n, 2]`` (x, y) of this rank's agents, anywhere in the field.
            amount: a scalar or broadcasting to ``[B, n]`` (as the kernel's).
            alive: ``[B, n]`` bool (None: all); ``gid`` ``-1`` also marks an empty slot.
            gid: ``[B, n]`` int64 global agent ids: contributions to a cell are added in id
                order, as one process whose agent ``g`` sits at slot ``g`` adds them.
            mode: ``"nearest"`` or ``"bilinear"``.

        Returns:
            ``[B, h, W]``. Every rank must call it (each receives deposits from the others).
        """
        self._check_local(local)
        _check_choice("mode", mode, MODES)
        _check_agents(local, pos)  # the kernels' checks: [B, n, 2], dtype, device, finite
        B, W = local.shape[0], self.width
        n = pos.shape[1]
        amounts, live = _amounts(amount, pos), _alive(alive, pos)
        if gid is None:  # slot order within a rank, ranks in order
            key = torch.arange(n, device=pos.device).expand(B, n) + (self.rank << 40)
        else:
            if gid.dtype != torch.int64 or tuple(gid.shape) != (B, n):
                raise ValueError(f"gid must be a [B, n]={B, n} int64 tensor")
            key, live = gid, live & (gid >= 0)
        if (self.comm is None or self.world == 1) and _in_order(gid):  # the kernel (Triton on
            return stigmergy.deposit(  # CUDA) adds in slot order, which is id order here
                local, pos, amounts, live, mode=mode, boundary=self.boundary
            )
        # the one-process stencil and masses: same cells, same bits
        index, weight = cells_and_weights(pos, self.height, W, mode, self.boundary)
        mass = (amounts * live.to(amounts.dtype)).unsqueeze(-1) * weight  # [B, n, C]
        C = index.shape[-1]
        member = torch.arange(B, device=pos.device).view(B, 1, 1).expand_as(index)
        corner = torch.arange(C, device=pos.device).expand_as(index)
        keep = live.unsqueeze(-1).expand_as(index)
        meta = torch.stack(
            [member[keep], key.unsqueeze(-1).expand_as(index)[keep], corner[keep], index[keep]], 1
        )  # [R, 4] (member, key, corner, flat cell)
        values = mass[keep]
        if self.comm is not None and self.world > 1:
            dest = self.owner_of_row.to(pos.device)[meta[:, 3] // W]
            order = torch.argsort(dest, stable=True)
            counts = torch.bincount(dest, minlength=self.world)
            ones = [1] * self.world
            recv = self.comm.all_to_all(counts.unsqueeze(1), ones, ones, "deposit counts")
            sent, got = counts.tolist(), recv.flatten().tolist()
            meta = self.comm.all_to_all(meta[order], sent, got, "deposits")
            values = self.comm.all_to_all(values[order], sent, got, "deposit amounts")
        # every contribution to this slab, in (member, key, corner) order
        for column in (2, 1, 0):
            order = torch.argsort(meta[:, column], stable=True)
            meta, values = meta[order], values[order]
        cells = self.h * W
        counts = torch.bincount(meta[:, 0], minlength=B)
        width = int(counts.max()) if counts.numel() else 0
        first = torch.cumsum(counts, 0) - counts
        slot = torch.arange(meta.shape[0], device=meta.device) - first[meta[:, 0]]
        where = torch.full((B, width), cells, dtype=torch.int64, device=local.device)
        what = local.new_zeros((B, width))
        where[meta[:, 0], slot] = meta[:, 3] - self.lo * W
        what[meta[:, 0], slot] = values
        flat = torch.cat([local.reshape(B, cells), local.new_zeros(B, 1)], dim=1)
        return flat.scatter_add(1, where, what)[:, :cells].view(B, self.h, W)

    def sense(
        self,
        local: torch.Tensor,
        pos: torch.Tensor,
        heading: torch.Tensor,
        angles: Sequence[float] | torch.Tensor,
        distance: Number | torch.Tensor,
        *,
        mode: str = "nearest",
    ) -> torch.Tensor:
        """The field at ``K`` sensors of each of this rank's agents, read from the slab and as
        many halo rows as the farthest sensor of any rank needs.

        Args:
            local: ``[B, h, W]``; pos: ``[B, n, 2]``; heading: ``[B, n]``; angles: ``[K]``
                radians relative to the heading; distance: a scalar or ``[B]`` (cells).
            mode: ``"nearest"`` or ``"bilinear"``.

        Returns:
            ``[B, n, K]``, the values :func:`~populace.kernels.stigmergy.sense` reads from the
            whole field. Every rank must call it (halo rows travel).
        """
        self._check_local(local)
        _check_choice("mode", mode, MODES)
        _check_agents(local, pos, heading)
        B, n = pos.shape[:2]
        angles = torch.as_tensor(angles, dtype=local.dtype, device=local.device)
        if angles.dim() != 1 or angles.shape[0] == 0:
            raise ValueError(f"angles must be a non-empty [K] sequence, got {tuple(angles.shape)}")
        dist = torch.as_tensor(distance, dtype=local.dtype, device=local.device)
        if dist.dim() > 1 or (dist.dim() == 1 and dist.shape[0] != B):
            raise ValueError(f"distance must be a scalar or [B={B}], got {tuple(dist.shape)}")
        dist = dist.expand(B)
        pts = sensor_points(pos, heading, angles, dist).reshape(B, -1, 2)
        index, weight = cells_and_weights(pts, self.height, self.width, mode, self.boundary)
        if self.comm is None or self.world == 1:  # one slab: the whole field
            at = index
            ext = local
        else:
            row = index // self.width
            width = self._reach(row)
            ext, _ = self.extend(local, width)
            table = self._row_table(width).to(local.device)
            at = table[row] * self.width + index % self.width
        values = ext.reshape(B, -1).gather(1, at.reshape(B, -1)).view(index.shape)
        return (values * weight).sum(-1).view(B, n, -1)

    def _reach(self, row: torch.Tensor) -> int:
        """The halo width (agreed: the largest over the ranks) that holds every ``row``."""
        H = self.height
        above = self.lo - row
        below = row - self.hi + 1
        if self.boundary == "wrap":
            above, below = above % H, below % H
            need = torch.minimum(above, below)
        else:
            need = torch.maximum(above, below)
        inside = (row >= self.lo) & (row < self.hi)
        mine = int(torch.where(inside, 0, need).max()) if row.numel() else 0
        if self.comm is None or self.world == 1:
            return mine
        every = self.comm.all_reduce(torch.tensor([mine]), "max", "sensor reach")
        return int(every[0])


# -- agents in the slab of their row ----------------------------------------------------------
class RowAgents(SlabLayout):
    """Agents kept by the rank owning the row they stand on (the nearest row of ``y``, wrapped
    or clamped as the field's boundary): :class:`~populace.engine.slabs.SlabLayout`'s slots,
    migration and gathers by id, with rows for cell columns (no ghosts: agents read the field,
    not each other).

    Args:
        field: the field's row slabs (its comm is this layout's).
        agents: N, agents in the whole field.
        capacity: slots per rank (default N).
    """

    def __init__(self, field: FieldSlabs, agents: int, capacity: int | None = None) -> None:
        self.field = field
        self.agents = agents
        self.comm = field.comm
        self.world, self.rank = field.world, field.rank
        self.capacity = agents if capacity is None else min(agents, capacity)

    def owner(self, pos: torch.Tensor) -> torch.Tensor:
        """``[...]`` rank owning the row of each position ``[..., 2]`` (x, y)."""
        row = torch.floor(pos[..., 1] + 0.5).long()
        H = self.field.height
        row = torch.remainder(row, H) if self.field.boundary == "wrap" else row.clamp(0, H - 1)
        return self.field.owner_of_row.to(pos.device)[row]

    def neighbourhood(self, gid, fields):
        raise NotImplementedError("agents on a field have no ghosts: they read the field")


@dataclasses.dataclass(frozen=True)
class FieldRows(Slabs):
    """Spec of stigmergy sharding: each rank owns a block of the field's rows and the agents
    standing on them.

    The model's state holds positions ``pos: [B, N, 2]`` (x, y), global ids ``gid: [B, N]``
    int64, other per-agent fields with the agent axis at dim 1, fields declared
    ``tensor_field("B", "H", "W")`` and a ``field_grid`` property ``(H, W, boundary)``; its
    steps use :func:`rows_of`.

    Attributes:
        capacity: agent slots per rank as a multiple of ``N / world`` (at most N).
    """

    def build(self, comm: Comm, model: Any, seeds: Sequence[int]) -> FieldRowShard:
        return FieldRowShard(comm, model, seeds, self)


class FieldRowShard(SlabShard):
    """This rank's rows of every field and the agents on them (layout fixed from the first
    whole state)."""

    kind = "field rows"

    def _layout(self, state: State) -> RowAgents:
        if self.layout is None:
            grid = getattr(state, "field_grid", None)
            if not (isinstance(grid, tuple) and len(grid) == 3):
                raise DistributedError(
                    f"{type(state).__name__} has no field_grid property (H, W, boundary): field "
                    f"rows need the field's shape"
                )
            if not _field_names(state):
                raise DistributedError(
                    f"{type(state).__name__} declares no field tensor_field('B', 'H', 'W')"
                )
            if IDS not in state.tensor_names() or POSITIONS not in state.tensor_names():
                raise DistributedError(
                    f"{type(state).__name__} has no field 'pos' or 'gid': agents on field rows "
                    f"need positions and global ids"
                )
            H, W, boundary = grid
            cap = math.ceil(self.spec.capacity * self.model.agents / self.comm.world)
            self.layout = RowAgents(FieldSlabs(H, W, self.comm, boundary), self.model.agents, cap)
        return self.layout

    def local_state(self, state: State) -> State:
        field = self._layout(state).field
        rows = {n: field.local(getattr(state, n)) for n in _field_names(state)}
        return super().local_state(state).replace(**rows)

    def global_state(self, state: State) -> State:
        layout = self._layout(state)
        names = _field_names(state)
        out = {
            n: layout.gather_by_id(getattr(state, n), state.gid) for n in self._agent_fields(state)
        }
        out.update({n: layout.field.gather(getattr(state, n)) for n in names})
        gid = torch.arange(self.model.agents, device=state.gid.device).expand(state.members, -1)
        for name, t in state.tensors().items():
            if name not in out and name != IDS:
                self.check_replicated(type(state).__name__, name, t)
        return state.replace(gid=gid.contiguous(), **out)


def _in_order(gid: torch.Tensor | None) -> bool:
    """Whether slot order is id order: no ids, or each member's ids rising (-1s anywhere)."""
    if gid is None or gid.shape[1] < 2:
        return True
    later = gid[:, 1:]
    running = torch.cummax(gid, dim=1).values[:, :-1]  # the largest id before each slot
    return bool(((later > running) | (later < 0)).all())


def _field_names(state: State) -> list[str]:
    return [f.name for f in dataclasses.fields(state) if f.metadata.get("shape") == FIELD_SHAPE]


def rows_of(ctx: Any, state: State) -> RowAgents:
    """The row layout of a step (its ``.field`` the field's slabs): the rank's under a
    :class:`FieldRows` shard, else one slab holding every row and agent."""
    shard = getattr(ctx, "shard", None)
    if isinstance(shard, FieldRowShard):
        return shard._layout(state)
    H, W, boundary = state.field_grid
    return RowAgents(FieldSlabs(H, W, None, boundary), state.gid.shape[1])
