"""Jones (2010) physarum transport networks: agents that follow and lay a trail self-organise
into a network of trail "veins".

Each step every agent reads the trail at three sensors ``sensor_offset`` cells ahead (front,
front-left, front-right at ``±sensor_angle``), then turns (Jones' sensory rule):

- front strongest: keep going; front weakest: turn ``±rotation`` at random;
- else turn ``rotation`` towards the stronger side;

then moves ``step_size`` forward and deposits ``deposit`` on its new cell. The trail then
diffuses (8 neighbours; ``diffusion = 8/9`` is Jones' 3x3 mean filter) and decays by
``decay``. The world wraps (a torus).

Not modelled: Jones' occupancy rule (one agent per cell, a blocked agent turns at random), which
serialises agents; here any number of agents may share a cell.

Since diffusion on a torus conserves mass, the trail mass obeys
``M(t+1) = (1 - decay) * (M(t) + N * deposit)``: it settles at ``N * deposit * (1 - decay) /
decay`` whatever the agents do. Metrics: ``trail_mass``, ``coverage`` (fraction of cells with
trail >= ``coverage_level``).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from populace.engine import (
    Context,
    Model,
    ParamError,
    Params,
    Schedule,
    State,
    member_view,
    param,
    static_field,
    tensor_field,
)
from populace.kernels.stigmergy import deposit, diffuse_evaporate, sense

NAME = "physarum"
SUMMARY = "Jones (2010) physarum transport network; metrics trail_mass, coverage"


@dataclasses.dataclass(frozen=True)
class PhysarumParams(Params):
    sensor_angle: float | torch.Tensor = param(
        22.5,
        unit="degrees",
        doc="between the front sensor and each side sensor (Jones: 22.5; one value for all "
        "members)",
    )
    rotation: float | torch.Tensor = param(45.0, unit="degrees", doc="turn angle (Jones: 45)")
    sensor_offset: float | torch.Tensor = param(
        9.0, low=0, unit="cells", doc="distance of the sensors ahead (Jones: 9)"
    )
    step_size: float | torch.Tensor = param(
        1.0, low=0, unit="cells/step", doc="distance moved (Jones: 1)"
    )
    deposit: float | torch.Tensor = param(
        5.0, low=0, unit="trail/step", doc="trail laid per agent (Jones: 5)"
    )
    diffusion: float | torch.Tensor = param(
        8 / 9,
        low=0,
        high=1,
        unit="fraction/step",
        doc="trail a cell shares with its 8 neighbours (8/9: Jones' 3x3 mean filter)",
    )
    decay: float | torch.Tensor = param(
        0.1, low=0, high=1, unit="fraction/step", doc="trail lost (Jones: 0.1)"
    )
    coverage_level: float | torch.Tensor = param(
        5.0, low=0, unit="trail", doc="trail at or above which a cell counts as covered"
    )

    def check(self) -> None:
        lead = 1 if isinstance(self.sensor_angle, Schedule) else 0
        if self.values("sensor_angle").dim() > lead:
            raise ParamError("physarum: sensor_angle is one value for all members, not [B]")


@dataclasses.dataclass(frozen=True)
class PhysarumState(State):
    """Attributes:
    pos: ``[B, N, 2]`` (x, y) in cell units on a torus of ``world`` cells per side.
    heading: ``[B, N]`` radians.
    trail: ``[B, H, W]`` trail per cell.
    """

    pos: torch.Tensor = tensor_field("B", "N", 2)
    heading: torch.Tensor = tensor_field("B", "N")
    trail: torch.Tensor = tensor_field("B", "H", "W")
    world: int = static_field(200)


def scatter_uniformly(agents: int, world: int):
    """``init``: agents at uniform random positions and headings, no trail."""

    def init(params: PhysarumParams, ctx: Context) -> PhysarumState:
        dt = ctx.dtype
        return PhysarumState(
            pos=world * ctx.rng.uniform(agents, 2, dtype=dt) - 0.5,
            heading=2 * math.pi * ctx.rng.uniform(agents, dtype=dt),
            trail=torch.zeros(ctx.members, world, world, device=ctx.device, dtype=dt),
            world=world,
        )

    return init


def rotation_rule(readings: torch.Tensor, rotation: torch.Tensor, coin: torch.Tensor):
    """Jones' sensory rule. ``readings [B, N, 3]`` = (front, left, right); ``coin [B, N]``
    uniform on [0, 1); ``rotation`` radians, left positive. Returns the turn ``[B, N]``."""
    front, left, right = readings.unbind(-1)
    zero = torch.zeros_like(front)
    turn = torch.where(left > right, rotation + zero, torch.where(right > left, -rotation, zero))
    turn = torch.where(
        (front < left) & (front < right), torch.where(coin < 0.5, 1, -1) * rotation, turn
    )
    return torch.where((front > left) & (front > right), zero, turn)


def sense_turn_move_deposit(
    state: PhysarumState, params: PhysarumParams, ctx: Context
) -> PhysarumState:
    """One Jones step for all agents, then diffusion and decay of the trail.

    Shapes: pos ``[B, N, 2]``, heading ``[B, N]``, trail ``[B, H, W]``.
    """
    B, N = state.heading.shape
    S, dt = state.world, state.pos.dtype
    sa = params.sensor_angle * (math.pi / 180)
    angles = torch.stack([torch.zeros_like(sa), sa, -sa])  # front, left, right
    readings = sense(state.trail, state.pos, state.heading, angles, params.sensor_offset)
    coin = ctx.rng.uniform(N, dtype=dt)
    rotation = member_view(params.rotation * (math.pi / 180), 2)
    heading = torch.remainder(state.heading + rotation_rule(readings, rotation, coin), 2 * math.pi)
    step = member_view(params.step_size, 3) * torch.stack(
        [torch.cos(heading), torch.sin(heading)], -1
    )
    pos = torch.remainder(state.pos + step + 0.5, S) - 0.5  # torus of cells centred at 0..S-1
    trail = deposit(state.trail, pos, member_view(params.deposit, 2))
    trail = diffuse_evaporate(trail, params.diffusion, params.decay)
    return state.replace(pos=pos, heading=heading, trail=trail)


def trail_mass(state: PhysarumState, params: PhysarumParams, ctx: Context) -> torch.Tensor:
    """``[B]`` total trail."""
    return state.trail.sum(dim=(1, 2))


def coverage(state: PhysarumState, params: PhysarumParams, ctx: Context) -> torch.Tensor:
    """``[B]`` fraction of cells whose trail is at least ``coverage_level``."""
    covered = state.trail >= member_view(params.coverage_level, 3)
    return covered.to(state.trail.dtype).mean(dim=(1, 2))


def steady_mass(agents: int, deposit: float, decay: float) -> float:
    """The fixed point ``N * deposit * (1 - decay) / decay`` of the trail mass."""
    return agents * deposit * (1 - decay) / decay


PARAMS = PhysarumParams


def build(agents: int = 4000, world: int = 200, **params: float) -> Model:
    """Jones' physarum with ``agents`` agents on a ``world x world`` torus.

    ``params`` override :class:`PhysarumParams` defaults.
    """
    if world < 3:
        raise ValueError(f"physarum: world must be >= 3, got {world}")
    if agents < 1:
        raise ValueError(f"physarum: agents must be >= 1, got {agents}")
    return Model(
        name=NAME,
        params=PhysarumParams().replace(**params),
        init=scatter_uniformly(agents, world),
        steps=(sense_turn_move_deposit,),
        metrics={"trail_mass": trail_mass, "coverage": coverage},
        agents=agents,
        options={"agents": agents, "world": world},
    )
