"""The Vicsek model written for slabs: one slab of the periodic box per rank.

The same physics, random numbers and initial state as :mod:`populace.models.vicsek` (without
``sort_every``): run on any number of ranks with ``Simulation(..., distributed=Slabs())`` (or in
one process), its trajectories and metrics equal those of ``vicsek.build`` bit for bit on CPU.
The state keeps each particle's global id (``gid``; -1 marks an empty slot of a rank) and the
neighbour count of its last alignment; see :mod:`populace.engine.slabs` for the exchanges.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from populace.engine import Context, Model, State, member_view, static_field, tensor_field
from populace.engine.slabs import POSITIONS, layout_of
from populace.kernels.neighbors import CellGrid, cell_grid, wrap
from populace.kernels.swarm import vicsek_align
from populace.models import vicsek
from populace.models.vicsek import VicsekParams, headings

NAME = "vicsek_slabs"
SUMMARY = "Vicsek particles sharded in slabs over ranks (same results as vicsek); order, neighbours"
PARAMS = VicsekParams


@dataclasses.dataclass(frozen=True)
class SlabVicsekState(State):
    """Attributes:
    pos: ``[B, N, 2]`` positions; theta: ``[B, N]`` headings; count: ``[B, N]`` neighbours
    (itself included) at the last alignment; gid: ``[B, N]`` global particle id of each slot
    (-1: empty). N is the rank's capacity (the whole box in one process).
    """

    pos: torch.Tensor = tensor_field("B", "N", 2)
    theta: torch.Tensor = tensor_field("B", "N")
    count: torch.Tensor = tensor_field("B", "N")
    gid: torch.Tensor = tensor_field("B", "N", dtype=torch.int64)
    box: tuple[float, ...] = static_field(())
    radius: float = static_field(0.0)
    backend: str = static_field("auto")

    @property
    def grid(self) -> CellGrid:
        return cell_grid(self.box, self.radius, periodic=True)


def _init(agents: int, grid: CellGrid, backend: str):
    plain = vicsek.random_init(agents, grid, backend)

    def init(params: VicsekParams, ctx: Context) -> SlabVicsekState:
        s = plain(params, ctx)  # the whole box: the draws of vicsek.build
        _, count = vicsek_align(s.pos, headings(s.theta), grid, backend=backend)
        gid = torch.arange(agents, device=ctx.device).expand(ctx.members, -1).contiguous()
        return SlabVicsekState(s.pos, s.theta, count, gid, s.box, s.radius, backend)

    return init


def align_and_move(state: SlabVicsekState, params: VicsekParams, ctx: Context) -> SlabVicsekState:
    """One Vicsek step on this rank's slab (ghosts in, migrants out)."""
    layout = layout_of(ctx, state)
    grid = state.grid
    near = layout.neighbourhood(state.gid, {POSITIONS: state.pos, "theta": state.theta})
    total = torch.zeros_like(state.pos)
    count = torch.zeros_like(state.theta)
    for b, (own, ext) in enumerate(near):  # members hold different particles: one at a time
        t, c = vicsek_align(
            ext[POSITIONS][None], headings(ext["theta"])[None], grid, backend=state.backend
        )
        n = own.numel()
        total[b, :n], count[b, :n] = t[0, own], c[0, own]
    u = ctx.rng.uniform_at(state.gid.clamp_min(0), dtype=ctx.dtype)  # by global id
    theta = torch.atan2(total[..., 1], total[..., 0]) + member_view(params.noise, 2) * (u - 0.5)
    theta = torch.remainder(theta + math.pi, 2 * math.pi) - math.pi
    step = member_view(params.speed * params.dt, 3)
    pos = wrap(state.pos + step * headings(theta), grid)
    valid = state.gid >= 0
    theta = torch.where(valid, theta, 0.0)
    pos = torch.where(valid.unsqueeze(-1), pos, 0.0)
    gid, fields = layout.migrate(state.gid, {POSITIONS: pos, "theta": theta, "count": count})
    return state.replace(gid=gid, **fields)


def order(state: SlabVicsekState, params: VicsekParams, ctx: Context) -> torch.Tensor:
    """``[B]`` order parameter over every particle, in id order (as vicsek's)."""
    theta = layout_of(ctx, state).gather_by_id(state.theta, state.gid)
    return headings(theta).mean(dim=1).norm(dim=-1)


def neighbours(state: SlabVicsekState, params: VicsekParams, ctx: Context) -> torch.Tensor:
    """``[B]`` mean neighbour count (itself included) over every particle."""
    return layout_of(ctx, state).gather_by_id(state.count, state.gid).mean(dim=1)


def build(
    agents: int = 10_000,
    density: float = 4.0,
    radius: float = 1.0,
    backend: str = "auto",
    **params: float,
) -> Model:
    """Vicsek particles for slab sharding (the options and params of :func:`vicsek.build`)."""
    # checks the options and params as vicsek does; the grid below is the one it builds
    plain = vicsek.build(agents=agents, density=density, radius=radius, backend=backend, **params)
    grid = cell_grid(math.sqrt(agents / density), float(radius), periodic=True, dim=2)
    return Model(
        name=NAME,
        params=plain.params,
        init=_init(agents, grid, backend),
        steps=(align_and_move,),
        metrics={"order": order, "neighbours": neighbours},
        agents=agents,
        options=dict(plain.options),
    )
