"""Jones' physarum written for field rows: each rank owns a block of the trail's rows and the
agents standing on them.

The same physics, random numbers and initial state as :mod:`populace.models.physarum`: run on
any number of ranks with ``Simulation(..., distributed=FieldRows())`` (or in one process), its
trail and metrics equal those of ``physarum.build`` bit for bit on CPU. Agents sense through
halo rows as wide as the sensor offset, deposit into the rank owning the cell (added in global
id order) and migrate to the rank of their new row; the trail diffuses with one halo row (see
:mod:`populace.engine.field_slabs`). The state keeps each agent's global id (``gid``; -1 marks
an empty slot of a rank).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from populace.engine import Context, Model, State, member_view, static_field, tensor_field
from populace.engine.field_slabs import rows_of
from populace.engine.slabs import POSITIONS
from populace.models import physarum
from populace.models.physarum import PhysarumParams, rotation_rule

NAME = "physarum_slabs"
SUMMARY = "Jones' physarum sharded in field rows over ranks (same results as physarum)"
PARAMS = PhysarumParams


@dataclasses.dataclass(frozen=True)
class SlabPhysarumState(State):
    """Attributes:
    pos: ``[B, N, 2]`` (x, y); heading: ``[B, N]`` radians; gid: ``[B, N]`` global agent id of
    each slot (-1: empty); N is the rank's capacity (every agent in one process).
    trail: ``[B, H, W]`` this rank's rows of the trail (the whole trail in one process).
    """

    pos: torch.Tensor = tensor_field("B", "N", 2)
    heading: torch.Tensor = tensor_field("B", "N")
    gid: torch.Tensor = tensor_field("B", "N", dtype=torch.int64)
    trail: torch.Tensor = tensor_field("B", "H", "W")
    world: int = static_field(200)

    @property
    def field_grid(self) -> tuple[int, int, str]:
        return self.world, self.world, "wrap"


def _init(agents: int, world: int):
    plain = physarum.scatter_uniformly(agents, world)

    def init(params: PhysarumParams, ctx: Context) -> SlabPhysarumState:
        s = plain(params, ctx)  # every agent: the draws of physarum.build
        gid = torch.arange(agents, device=ctx.device).expand(ctx.members, -1).contiguous()
        return SlabPhysarumState(s.pos, s.heading, gid, s.trail, world)

    return init


def sense_turn_move_deposit(
    state: SlabPhysarumState, params: PhysarumParams, ctx: Context
) -> SlabPhysarumState:
    """physarum's step on this rank's rows and agents (halo rows in, migrants out)."""
    layout = rows_of(ctx, state)
    field = layout.field
    S = state.world
    sa = params.sensor_angle * (math.pi / 180)
    angles = torch.stack([torch.zeros_like(sa), sa, -sa])  # front, left, right
    readings = field.sense(state.trail, state.pos, state.heading, angles, params.sensor_offset)
    coin = ctx.rng.uniform_at(state.gid.clamp_min(0), dtype=state.pos.dtype)  # by global id
    rotation = member_view(params.rotation * (math.pi / 180), 2)
    heading = torch.remainder(state.heading + rotation_rule(readings, rotation, coin), 2 * math.pi)
    step = member_view(params.step_size, 3) * torch.stack(
        [torch.cos(heading), torch.sin(heading)], -1
    )
    pos = torch.remainder(state.pos + step + 0.5, S) - 0.5
    valid = state.gid >= 0
    heading = torch.where(valid, heading, 0.0)
    pos = torch.where(valid.unsqueeze(-1), pos, 0.0)
    trail = field.deposit(state.trail, pos, member_view(params.deposit, 2), gid=state.gid)
    trail = field.diffuse_evaporate(trail, params.diffusion, params.decay)
    gid, agents = layout.migrate(state.gid, {POSITIONS: pos, "heading": heading})
    return state.replace(gid=gid, trail=trail, **agents)


def trail_mass(state: SlabPhysarumState, params: PhysarumParams, ctx: Context) -> torch.Tensor:
    """``[B]`` total trail (summed over the gathered trail: physarum's bits)."""
    return rows_of(ctx, state).field.gather(state.trail).sum(dim=(1, 2))


def coverage(state: SlabPhysarumState, params: PhysarumParams, ctx: Context) -> torch.Tensor:
    """``[B]`` fraction of cells whose trail is at least ``coverage_level``."""
    trail = rows_of(ctx, state).field.gather(state.trail)
    covered = trail >= member_view(params.coverage_level, 3)
    return covered.to(trail.dtype).mean(dim=(1, 2))


def build(agents: int = 4000, world: int = 200, **params: float) -> Model:
    """Physarum for field rows (the options and params of :func:`physarum.build`)."""
    plain = physarum.build(agents=agents, world=world, **params)  # checks as physarum does
    return Model(
        name=NAME,
        params=plain.params,
        init=_init(agents, world),
        steps=(sense_turn_move_deposit,),
        metrics={"trail_mass": trail_mass, "coverage": coverage},
        agents=agents,
        options=dict(plain.options),
    )
