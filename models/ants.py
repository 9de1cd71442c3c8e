"""NetLogo "Ants": a colony forages from three food piles, recruiting nest-mates with a
diffusing, evaporating chemical trail.

Semantics of the NetLogo model library's Ants (Wilensky, 1997), tensorized:

- the world is ``world x world`` patches (71: pxcor -35..35), not wrapping; the nest is every
  patch within distance 5 of the centre, with a nest scent ``200 - distance`` everywhere;
- three food piles of radius 5 centred at ``(0.6 m, 0)``, ``(-0.6 m, -0.6 m)``,
  ``(-0.8 m, 0.8 m)`` with ``m = max-pxcor`` ((21, 0), (-21, -21), (-28, 28) at 71), each patch
  holding 1 or 2 food;
- ant ``i`` leaves the nest at step ``i`` (NetLogo's ``if who >= ticks [stop]`` lets it go one
  tick later); from then on, each tick, a searching ant on food picks one unit up and turns
  around, else follows the chemical uphill (45 deg sensors, 1 patch ahead) when the chemical
  under it is in ``[follow_min, follow_max)``; a carrying ant in the nest drops its food and
  turns around, else drops ``drop`` chemical on its patch and climbs the nest scent. Every ant
  then wiggles (``rt random 40 lt random 40``), turns around if the patch ahead is outside the
  world, and moves 1;
- the chemical diffuses (8 neighbours, rate ``diffusion``, closed edges) and evaporates.

Differences from NetLogo, on purpose: all ants act on the state at the start of the tick
(NetLogo asks them one after another); when several ants reach one food patch in the same tick,
lower-index ants are served first and each unit of food goes to one ant only; a sensor
outside the world reads 0 (NetLogo's ``nobody``).

Metrics: ``food_pile1..3`` (food left in each pile), ``returned`` (food brought to the nest).
Model data: ``nest_scent`` and ``nest`` (:func:`nest_fields`), shared by all members.
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
from populace.kernels.stigmergy import deposit, diffuse_evaporate, sense, sensor_points

NAME = "ants"
SUMMARY = "NetLogo Ants: foraging with a diffusing chemical trail; metrics food per pile, returned"

NEST_RADIUS = 5.0
PILE_RADIUS = 5.0
#: pile centres as fractions of max-pxcor, in NetLogo's order (pile 1 is the nearest).
PILES = ((0.6, 0.0), (-0.6, -0.6), (-0.8, 0.8))


@dataclasses.dataclass(frozen=True)
class AntsParams(Params):
    diffusion: float | torch.Tensor = param(
        0.5,
        low=0,
        high=1,
        unit="fraction/step",
        doc="chemical a patch shares with its 8 neighbours (NetLogo's diffusion-rate / 100)",
    )
    evaporation: float | torch.Tensor = param(
        0.1,
        low=0,
        high=1,
        unit="fraction/step",
        doc="chemical lost (NetLogo's evaporation-rate / 100)",
    )
    drop: float | torch.Tensor = param(
        60.0, low=0, unit="chemical/step", doc="chemical a carrying ant drops on its patch"
    )
    follow_min: float | torch.Tensor = param(
        0.05,
        low=0,
        unit="chemical",
        doc="a searching ant follows the trail when the chemical on its patch lies in "
        "[follow_min, follow_max)",
    )
    follow_max: float | torch.Tensor = param(
        2.0, unit="chemical", doc="upper end (excluded) of that range, >= follow_min"
    )
    wiggle: float | torch.Tensor = param(
        40.0,
        low=0,
        unit="degrees",
        doc="each tick an ant turns right and left by random wiggle degrees each",
    )
    sense_angle: float | torch.Tensor = param(
        45.0, unit="degrees", doc="angle of the left and right sensors (one value for all members)"
    )

    def check(self) -> None:
        if self.values("follow_min").max() > self.values("follow_max").min():
            raise ParamError("ants: follow_min must not exceed follow_max")
        if self.values("sense_angle").dim() > (1 if isinstance(self.sense_angle, Schedule) else 0):
            raise ParamError("ants: sense_angle is one value for all members, not [B]")


@dataclasses.dataclass(frozen=True)
class AntsState(State):
    """Attributes:
    pos: ``[B, N, 2]`` (x, y) in patch units, patch ``(row r, col c)`` centred at ``(c, r)``.
    heading: ``[B, N]`` radians, direction ``(cos, sin)``.
    carrying: ``[B, N]`` bool, the ant carries food.
    chemical: ``[B, H, W]`` trail chemical per patch.
    food: ``[B, H, W]`` int32 food units per patch.
    pile: ``[B, H, W]`` int8, the pile (1..3) a patch belongs to, 0 for none.
    returned: ``[B]`` int64, food units brought back to the nest.
    world: patches per side; max_food: most food on one patch at the start.
    """

    pos: torch.Tensor = tensor_field("B", "N", 2)
    heading: torch.Tensor = tensor_field("B", "N")
    carrying: torch.Tensor = tensor_field("B", "N", dtype="bool")
    chemical: torch.Tensor = tensor_field("B", "H", "W")
    food: torch.Tensor = tensor_field("B", "H", "W", dtype=torch.int32)
    pile: torch.Tensor = tensor_field("B", "H", "W", dtype=torch.int8)
    returned: torch.Tensor = tensor_field("B", dtype=torch.int64)
    world: int = static_field(71)
    max_food: int = static_field(2)


def patch_offsets(world: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``[H, W]`` x and y of each patch centre relative to the world's centre."""
    centre = (world - 1) / 2
    axis = torch.arange(world, device=device, dtype=dtype) - centre
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return x, y


def nest_fields(world: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[H*W]`` float64 nest scent ``200 - distance`` and ``[H*W]`` bool nest patches (the
    model's data ``nest_scent`` and ``nest``)."""
    x, y = patch_offsets(world, None, torch.float64)
    distance = torch.hypot(x, y).flatten()
    return 200 - distance, distance < NEST_RADIUS


def pile_map(world: int, device=None) -> torch.Tensor:
    """``[H, W]`` int8: pile number 1..3 of each patch, 0 elsewhere (later piles win ties)."""
    x, y = patch_offsets(world, device, torch.float64)
    top = (world - 1) / 2  # max-pxcor
    pile = torch.zeros(world, world, dtype=torch.int8, device=device)
    for k, (fx, fy) in enumerate(PILES, start=1):
        pile[torch.hypot(x - fx * top, y - fy * top) < PILE_RADIUS] = k
    return pile


def setup(agents: int, world: int):
    """``init``: ants in the nest with random headings; 1 or 2 food per pile patch."""

    def init(params: AntsParams, ctx: Context) -> AntsState:
        B, dev, dt = ctx.members, ctx.device, ctx.dtype
        centre = (world - 1) / 2
        pile = pile_map(world, dev).expand(B, world, world)
        units = ctx.rng.integers(1, 3, world, world).to(torch.int32)  # one-of [1 2]
        return AntsState(
            pos=torch.full((B, agents, 2), centre, device=dev, dtype=dt),
            heading=2 * math.pi * ctx.rng.uniform(agents, dtype=dt),
            carrying=torch.zeros(B, agents, dtype=torch.bool, device=dev),
            chemical=torch.zeros(B, world, world, device=dev, dtype=dt),
            food=torch.where(pile > 0, units, 0),
            pile=pile,
            returned=torch.zeros(B, dtype=torch.int64, device=dev),
            world=world,
            max_food=2,
        )

    return init


def _patch_index(points: torch.Tensor, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat patch index ``r * world + c`` of points ``[..., 2]`` and whether it is inside."""
    cr = torch.floor(points + 0.5).long()
    inside = ((cr >= 0) & (cr < world)).all(-1)
    cr = cr.clamp(0, world - 1)
    return cr[..., 1] * world + cr[..., 0], inside


def _uphill(readings: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Turn (radians, left positive) of NetLogo's uphill rule; readings ``[B, N, 3]`` are
    (ahead, right, left)."""
    ahead, right, left = readings.unbind(-1)
    turn = torch.where(right > left, -angle, angle)
    return torch.where((right > ahead) | (left > ahead), turn, torch.zeros_like(turn))


def _take_food(food, cell, wants, rounds: int):
    """Serve ants ``wants [B, N]`` standing on patches ``cell [B, N]``: per round, the
    lowest-index ant still waiting on each patch with food left takes one unit."""
    B, N = cell.shape
    flat = food.reshape(B, -1)
    index = torch.arange(N, device=cell.device).expand(B, N)
    taken = torch.zeros_like(wants)
    for _ in range(rounds):
        waiting = wants & ~taken & (flat.gather(1, cell) > 0)
        key = torch.where(waiting, index, N)
        first = torch.full_like(flat, N, dtype=torch.int64).scatter_reduce(
            1, cell, key, "amin", include_self=True
        )
        won = waiting & (first.gather(1, cell) == index)
        flat = flat - torch.zeros_like(flat).scatter_add(1, cell, won.to(flat.dtype))
        taken = taken | won
    return flat.view_as(food), taken


def forage(state: AntsState, params: AntsParams, ctx: Context) -> AntsState:
    """One NetLogo tick of every ant, then diffusion and evaporation of the chemical.

    Shapes: pos ``[B, N, 2]``, heading/carrying ``[B, N]``, fields ``[B, H, W]``.
    """
    B, N = state.heading.shape
    S, dt = state.world, state.pos.dtype
    pos, heading, carrying = state.pos, state.heading, state.carrying
    active = (torch.arange(N, device=pos.device) <= ctx.step).expand(B, N)
    cell, _ = _patch_index(pos, S)

    # searching ants on food pick it up and turn around
    searching = active & ~carrying
    food, took = _take_food(state.food, cell, searching, state.max_food)
    # carrying ants in the nest drop it and turn around
    nest_scent, nest = ctx.data.nest_scent, ctx.data.nest
    in_nest = nest[cell]
    arrived = active & carrying & in_nest
    heading = heading + math.pi * (took | arrived).to(dt)
    returned = state.returned + arrived.sum(dim=1)

    # three sensors one patch ahead: (ahead, right, left); outside the world reads 0
    angle = params.sense_angle * (math.pi / 180)
    angles = torch.stack([torch.zeros_like(angle), -angle, angle])
    one = torch.ones(B, dtype=dt, device=pos.device)
    probe, inside = _patch_index(sensor_points(pos, heading, angles, one), S)
    chem_ahead = sense(state.chemical, pos, heading, angles, one, boundary="closed")
    chem_ahead = torch.where(inside, chem_ahead, 0)
    nest_ahead = torch.where(inside, nest_scent[probe], 0)

    here = state.chemical.reshape(B, -1).gather(1, cell)
    follow = (
        searching
        & ~took
        & (here >= member_view(params.follow_min, 2))
        & (here < member_view(params.follow_max, 2))
    )
    homing = active & carrying & ~arrived
    turn = torch.where(follow, _uphill(chem_ahead, angle), 0)
    turn = torch.where(homing, _uphill(nest_ahead, angle), turn)
    heading = heading + turn

    # carrying ants outside the nest mark their patch before moving
    chemical = deposit(state.chemical, pos, member_view(params.drop, 2), homing, boundary="closed")

    # wiggle: rt random w, lt random w; turn around at the world's edge; forward 1
    w = member_view(params.wiggle, 2)
    u = ctx.rng.uniform(2, N, dtype=dt)
    wiggle = torch.floor(u[:, 1] * w) - torch.floor(u[:, 0] * w)
    heading = heading + torch.where(active, wiggle * (math.pi / 180), 0)
    step = torch.stack([torch.cos(heading), torch.sin(heading)], -1)
    _, can_move = _patch_index(pos + step, S)
    heading = torch.where(active & ~can_move, heading + math.pi, heading)
    step = torch.stack([torch.cos(heading), torch.sin(heading)], -1)
    # the clamp only matters in a corner, where turning around may still face outward
    moved = (pos + step).clamp(-0.5, S - 0.5 - 1e-3)
    pos = torch.where(active.unsqueeze(-1), moved, pos)

    chemical = diffuse_evaporate(chemical, params.diffusion, params.evaporation, boundary="closed")
    return state.replace(
        pos=pos,
        heading=torch.remainder(heading, 2 * math.pi),
        carrying=(carrying | took) & ~arrived,
        chemical=chemical,
        food=food,
        returned=returned,
    )


def food_in_pile(k: int):
    def metric(state: AntsState, params: AntsParams, ctx: Context) -> torch.Tensor:
        return (state.food * (state.pile == k)).sum(dim=(1, 2))

    metric.__doc__ = f"``[B]`` food units left in pile {k}."
    return metric


def food_returned(state: AntsState, params: AntsParams, ctx: Context) -> torch.Tensor:
    """``[B]`` food units brought back to the nest."""
    return state.returned


PARAMS = AntsParams


def build(agents: int = 125, world: int = 71, **params: float) -> Model:
    """The Ants model: ``agents`` ants on a ``world x world`` patch grid (NetLogo: 125, 71).

    ``params`` override :class:`AntsParams` defaults.
    """
    if world < 31:
        raise ValueError(f"ants: world={world} is too small for the nest and piles (>= 31)")
    if agents < 1:
        raise ValueError(f"ants: agents must be >= 1, got {agents}")
    nest_scent, nest = nest_fields(world)
    return Model(
        name=NAME,
        params=AntsParams().replace(**params),
        init=setup(agents, world),
        steps=(forage,),
        metrics={
            "food_pile1": food_in_pile(1),
            "food_pile2": food_in_pile(2),
            "food_pile3": food_in_pile(3),
            "returned": food_returned,
        },
        agents=agents,
        options={"agents": agents, "world": world},
        data={"nest_scent": nest_scent, "nest": nest},
    )
