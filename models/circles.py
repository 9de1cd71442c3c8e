"""The FLAME GPU 2 "circles" benchmark: particles in a 3D box pushed and pulled by neighbours.

Every agent sums, over the others at distance ``0 < d < radius``,
``k(d) * (x_j - x_i) / d`` with ``k(d) = repulse * sin(-2 pi d / radius)`` (away from
neighbours closer than ``radius / 2``, towards those farther), divides by the number of such
neighbours, and moves by the result. The box is bounded (not periodic), side
``L = (N / density)^(1/3)``; agents are not clamped to it (the cell list clamps their cells).
FLAME GPU's kernel writes the constant as ``3.141``; this one uses pi. Synchronous update.

Metrics: mean drift ``|dx|`` of the last step and mean neighbour count.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from populace.engine import (
    Context,
    Model,
    Params,
    State,
    member_view,
    param,
    static_field,
    tensor_field,
)
from populace.kernels.neighbors import CellGrid, cell_grid
from populace.kernels.swarm import circles_force

NAME = "circles"
SUMMARY = "FLAME GPU 2 circles benchmark, 3D bounded box (repulse); metrics drift, neighbours"


@dataclasses.dataclass(frozen=True)
class CirclesParams(Params):
    repulse: float | torch.Tensor = param(
        0.05, low=0, unit="distance/step", doc="force scale (FLAME GPU's repulse property)"
    )


@dataclasses.dataclass(frozen=True)
class CirclesState(State):
    """Attributes:
    pos: ``[B, N, 3]`` positions.
    drift: ``[B]`` mean displacement length of the last step.
    neighbours: ``[B]`` mean count of neighbours within the radius at the last step.
    box, radius: the bounded box sides and the interaction radius (see ``grid``).
    """

    pos: torch.Tensor = tensor_field("B", "N", 3)
    drift: torch.Tensor = tensor_field("B")
    neighbours: torch.Tensor = tensor_field("B")
    box: tuple[float, ...] = static_field(())
    radius: float = static_field(0.0)
    backend: str = static_field("auto")

    @property
    def grid(self) -> CellGrid:
        """The cell grid (statics stay plain numbers so checkpoints load with weights_only)."""
        return cell_grid(self.box, self.radius, periodic=False)


def random_init(agents: int, grid: CellGrid, backend: str):
    """``init``: positions uniform in the box."""

    def init(params: CirclesParams, ctx: Context) -> CirclesState:
        box = torch.tensor(grid.box, device=ctx.device, dtype=ctx.dtype)
        pos = ctx.rng.uniform(agents, 3, dtype=ctx.dtype) * box
        zero = torch.zeros(ctx.members, device=ctx.device, dtype=ctx.dtype)
        return CirclesState(
            pos, zero, zero.clone(), box=grid.box, radius=grid.radius, backend=backend
        )

    return init


def move(state: CirclesState, params: CirclesParams, ctx: Context) -> CirclesState:
    """One circles step. Shapes: pos ``[B, N, 3]``."""
    force, count = circles_force(state.pos, state.grid, backend=state.backend)
    dx = member_view(params.repulse, 3) * force / count.clamp(min=1)[..., None]
    return state.replace(
        pos=state.pos + dx, drift=dx.norm(dim=-1).mean(dim=1), neighbours=count.mean(dim=1)
    )


def drift(state: CirclesState, params: CirclesParams, ctx: Context) -> torch.Tensor:
    """``[B]`` mean step length of the last step (0 before the first)."""
    return state.drift


def neighbours(state: CirclesState, params: CirclesParams, ctx: Context) -> torch.Tensor:
    """``[B]`` mean neighbour count at the last step (0 before the first)."""
    return state.neighbours


PARAMS = CirclesParams


def build(
    agents: int = 10_000,
    density: float = 1.0,
    radius: float = 2.0,
    backend: str = "auto",
    **params: float,
) -> Model:
    """Circles with ``agents`` agents at ``density`` per unit volume, interaction ``radius``.

    ``params`` override :class:`CirclesParams` (repulse).
    """
    if isinstance(agents, bool) or not isinstance(agents, int) or agents < 1:
        raise ValueError(f"agents must be a positive integer, got {agents!r}")
    if not (isinstance(density, (int, float)) and math.isfinite(density) and density > 0):
        raise ValueError(f"density must be a finite number > 0, got {density!r}")
    grid = cell_grid((agents / density) ** (1 / 3), float(radius), periodic=False, dim=3)
    return Model(
        name=NAME,
        params=CirclesParams().replace(**params),
        init=random_init(agents, grid, backend),
        steps=(move,),
        metrics={"drift": drift, "neighbours": neighbours},
        agents=agents,
        options={"agents": agents, "density": density, "radius": radius, "backend": backend},
    )
