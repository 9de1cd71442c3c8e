"""Boids flocking as in the ABM framework comparison suite ("Flocking", Agents.jl).

Each bird looks at the other birds within ``visual_distance`` (periodic square box of side
``extent``) and, with ``n`` neighbours:

- cohere   = cohere_factor   * sum(x_j - x_i) / n
- separate = separate_factor * sum(x_i - x_j over d < separation) / n
- match    = match_factor    * sum(v_j) / n

then ``v <- normalise(v + cohere + separate + match)`` and ``x <- x + speed * v``. Defaults
are the suite's: cohere 0.03, separation 1, separate 0.015, match 0.05, speed 1, visual
distance 5 ("small") or 15 ("large").

The update is synchronous: every bird steers from the state at the start of the step. The suite
updates birds one by one in random order; that sequential order is not a GPU model, so
trajectories differ from Agents.jl/Mesa while the rule per bird is the same.
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
    State,
    member_view,
    param,
    static_field,
    tensor_field,
)
from populace.kernels import flight
from populace.kernels.neighbors import CellGrid, cell_grid, wrap
from populace.kernels.swarm import boids_steer

NAME = "boids"
SUMMARY = "boids flocking, ABM comparison suite spec (cohere, separate, match); metrics order"


@dataclasses.dataclass(frozen=True)
class BoidsParams(Params):
    speed: float | torch.Tensor = param(1.0, low=0, unit="distance/step", doc="distance moved")
    cohere_factor: float | torch.Tensor = param(
        0.03, low=0, doc="weight of the pull towards neighbours' centre"
    )
    separation: float | torch.Tensor = param(
        1.0,
        low=0,
        unit="distance",
        doc="neighbours closer than this repel (one value for all members)",
    )
    separate_factor: float | torch.Tensor = param(0.015, low=0, doc="weight of the repulsion")
    match_factor: float | torch.Tensor = param(
        0.05, low=0, doc="weight of the alignment with neighbours' velocities"
    )

    def check(self) -> None:
        if self.values("separation").numel() != 1:
            raise ParamError(
                f"boids separation must be one value for all members (it sets the kernel's "
                f"threshold), got {self.separation}"
            )


@dataclasses.dataclass(frozen=True)
class BoidsState(State):
    """Attributes:
    pos: ``[B, N, 2]`` positions in ``[0, extent)^2``.
    vel: ``[B, N, 2]`` unit velocities.
    neighbours: ``[B]`` mean neighbour count (self excluded) at the last step.
    box, radius: the periodic box sides and the visual distance (see ``grid``).
    """

    pos: torch.Tensor = tensor_field("B", "N", 2)
    vel: torch.Tensor = tensor_field("B", "N", 2)
    neighbours: torch.Tensor = tensor_field("B")
    box: tuple[float, ...] = static_field(())
    radius: float = static_field(0.0)
    backend: str = static_field("auto")

    @property
    def grid(self) -> CellGrid:
        """The cell grid (statics stay plain numbers so checkpoints load with weights_only)."""
        return cell_grid(self.box, self.radius, periodic=True)


def random_init(agents: int, grid: CellGrid, backend: str):
    """``init``: uniform positions, uniform random unit velocities."""

    def init(params: BoidsParams, ctx: Context) -> BoidsState:
        box = torch.tensor(grid.box, device=ctx.device, dtype=ctx.dtype)
        pos = ctx.rng.uniform(agents, 2, dtype=ctx.dtype) * box
        angle = ctx.rng.uniform(agents, dtype=ctx.dtype) * 2 * math.pi
        vel = torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1)
        zero = torch.zeros(ctx.members, device=ctx.device, dtype=ctx.dtype)
        return BoidsState(pos, vel, zero, box=grid.box, radius=grid.radius, backend=backend)

    return init


def turn(pos, vel, sums, params: BoidsParams, grid: CellGrid):
    """The torch reference of the turn and move: ``(pos, vel)`` ``[B, N, 2]`` from the
    neighbour sums (``boids_steer``'s cohere, separate, match and count)."""
    cohere, separate, match, count = sums
    n = count.clamp(min=1)[..., None]
    steer = (
        member_view(params.cohere_factor, 3) * cohere
        + member_view(params.separate_factor, 3) * separate
        + member_view(params.match_factor, 3) * match
    ) / n
    new = vel + steer
    # |v| from float64 squares (exact for float32 birds), rounded once to the dtype. torch's CPU
    # square root is not correctly rounded (about 1 in 140 roots off by an ulp, float32 and
    # float64 alike); rounding a float64 root to float32 hides that unless the root lies within
    # a float64 ulp of a float32 rounding boundary (about once in 10^10), so a float32 kernel
    # with a correctly rounded root gives the same numbers
    wide = new.to(torch.float64)
    norm = torch.sqrt(wide[..., 0] * wide[..., 0] + wide[..., 1] * wide[..., 1])
    norm = norm.to(new.dtype)[..., None]
    # a bird whose steering cancels its velocity exactly keeps its old heading
    new = torch.where(norm > 0, new / norm.clamp(min=torch.finfo(new.dtype).tiny), vel)
    return wrap(pos + member_view(params.speed, 3) * new, grid), new


def flock(state: BoidsState, params: BoidsParams, ctx: Context) -> BoidsState:
    """One synchronous boids step. Shapes: pos, vel ``[B, N, 2]``.

    With numba on the CPU the turn and move run as one kernel call
    (:func:`populace.kernels.flight.turn`: the same numbers as :func:`turn`)."""
    separation = float(params.separation)
    sums = boids_steer(state.pos, state.vel, state.grid, separation, backend=state.backend)
    grid = state.grid
    factors = (params.cohere_factor, params.separate_factor, params.match_factor, params.speed)
    moved = None
    if state.backend in ("auto", "numba"):
        moved = flight.turn(state.pos, state.vel, sums, factors, grid.box, grid.periodic)
    pos, vel = moved if moved is not None else turn(state.pos, state.vel, sums, params, grid)
    return state.replace(pos=pos, vel=vel, neighbours=sums[3].mean(dim=1))


def order(state: BoidsState, params: BoidsParams, ctx: Context) -> torch.Tensor:
    """``[B]`` polarisation ``|mean_i v_i|`` (1: all birds fly the same way)."""
    return state.vel.mean(dim=1).norm(dim=-1)


def neighbours(state: BoidsState, params: BoidsParams, ctx: Context) -> torch.Tensor:
    """``[B]`` mean neighbour count at the last step (0 before the first)."""
    return state.neighbours


PARAMS = BoidsParams


def build(
    agents: int = 300,
    extent: float = 100.0,
    visual_distance: float = 5.0,
    backend: str = "auto",
    **params: float,
) -> Model:
    """Flocking with ``agents`` birds in a periodic ``extent x extent`` box.

    ``visual_distance``: 5 for the suite's "small" case, 15 for "large". ``params`` override
    :class:`BoidsParams` (speed, cohere_factor, separation, separate_factor, match_factor).
    """
    if isinstance(agents, bool) or not isinstance(agents, int) or agents < 1:
        raise ValueError(f"agents must be a positive integer, got {agents!r}")
    grid = cell_grid(float(extent), float(visual_distance), periodic=True, dim=2)
    return Model(
        name=NAME,
        params=BoidsParams().replace(**params),
        init=random_init(agents, grid, backend),
        steps=(flock,),
        metrics={"order": order, "neighbours": neighbours},
        agents=agents,
        options={
            "agents": agents,
            "extent": extent,
            "visual_distance": visual_distance,
            "backend": backend,
        },
    )
