"""Vicsek et al. (1995) self-propelled particles in a periodic square box.

Each step every particle takes the direction of the mean velocity of the particles within
``radius`` of it (itself included) plus uniform noise in ``[-noise/2, noise/2]``, then moves
``speed * dt`` along its new heading (the heading of step t+1 moves the particle, as in most
reproductions of the paper). The update is synchronous. Box side ``L = sqrt(N / density)``.

Metrics: the order parameter ``order = |sum_i v_i| / (N v)`` (1: all aligned; about
``sqrt(pi / (4 N))`` for independent headings) and the mean neighbour count (itself included)
seen by the last alignment.
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
from populace.kernels.neighbors import CellGrid, build_cells, cell_grid, wrap
from populace.kernels.swarm import vicsek_align

NAME = "vicsek"
SUMMARY = (
    "Vicsek self-propelled particles, periodic 2D box (noise, speed); metrics order, neighbours"
)


@dataclasses.dataclass(frozen=True)
class VicsekParams(Params):
    # the 1e-6 lets a float32 2 pi (just above the float64 one) through
    noise: float | torch.Tensor = param(
        0.5,
        low=0,
        high=2 * math.pi + 1e-6,
        unit="radians",
        doc="eta, width of the uniform angular noise (2 pi: headings i.i.d. uniform)",
    )
    speed: float | torch.Tensor = param(0.03, low=0, unit="distance/time", doc="v")
    dt: float | torch.Tensor = param(1.0, low=0, unit="time", doc="time step")


@dataclasses.dataclass(frozen=True)
class VicsekState(State):
    """Attributes:
    pos: ``[B, N, 2]`` positions in ``[0, L)^2``.
    theta: ``[B, N]`` headings in ``[-pi, pi)``.
    neighbours: ``[B]`` mean neighbour count (itself included) at the last alignment.
    box, radius: the periodic box sides and the alignment radius (see ``grid``).
    """

    pos: torch.Tensor = tensor_field("B", "N", 2)
    theta: torch.Tensor = tensor_field("B", "N")
    neighbours: torch.Tensor = tensor_field("B")
    box: tuple[float, ...] = static_field(())
    radius: float = static_field(0.0)
    backend: str = static_field("auto")

    @property
    def grid(self) -> CellGrid:
        """The cell grid (statics stay plain numbers so checkpoints load with weights_only)."""
        return cell_grid(self.box, self.radius, periodic=True)


def headings(theta: torch.Tensor) -> torch.Tensor:
    """``[B, N]`` angles → ``[B, N, 2]`` unit vectors."""
    return torch.stack([torch.cos(theta), torch.sin(theta)], dim=-1)


def random_init(agents: int, grid: CellGrid, backend: str):
    """``init`` placing particles uniformly in the box with uniform headings."""

    def init(params: VicsekParams, ctx: Context) -> VicsekState:
        box = torch.tensor(grid.box, device=ctx.device, dtype=ctx.dtype)
        pos = ctx.rng.uniform(agents, 2, dtype=ctx.dtype) * box
        theta = (ctx.rng.uniform(agents, dtype=ctx.dtype) * 2 - 1) * math.pi
        _, count = vicsek_align(pos, headings(theta), grid, backend=backend)
        return VicsekState(
            pos, theta, count.mean(dim=1), box=grid.box, radius=grid.radius, backend=backend
        )

    return init


def align_and_move(state: VicsekState, params: VicsekParams, ctx: Context) -> VicsekState:
    """One Vicsek step. Shapes: pos ``[B, N, 2]``, theta ``[B, N]``."""
    total, count = vicsek_align(state.pos, headings(state.theta), state.grid, backend=state.backend)
    u = ctx.rng.uniform(state.theta.shape[1], dtype=ctx.dtype)
    theta = torch.atan2(total[..., 1], total[..., 0]) + member_view(params.noise, 2) * (u - 0.5)
    theta = torch.remainder(theta + math.pi, 2 * math.pi) - math.pi
    step = member_view(params.speed * params.dt, 3)
    pos = wrap(state.pos + step * headings(theta), state.grid)
    return state.replace(pos=pos, theta=theta, neighbours=count.mean(dim=1))


def sort_by_cell(every: int):
    """Step reordering the agents by cell every ``every`` steps (memory locality, no physics).

    Neighbours then sit close in memory, so the kernel's gathers become near-sequential. Which
    agent gets which random draw changes, so trajectories differ from an unsorted run (same
    statistics, still reproducible).
    """

    def step(state: VicsekState, params: VicsekParams, ctx: Context) -> VicsekState:
        if ctx.step % every:
            return state
        return state.take_agents(build_cells(state.pos, state.grid).order)

    return step


def order(state: VicsekState, params: VicsekParams, ctx: Context) -> torch.Tensor:
    """``[B]`` Vicsek order parameter ``|mean_i (cos theta_i, sin theta_i)|``."""
    return headings(state.theta).mean(dim=1).norm(dim=-1)


def neighbours(state: VicsekState, params: VicsekParams, ctx: Context) -> torch.Tensor:
    """``[B]`` mean neighbour count (itself included)."""
    return state.neighbours


PARAMS = VicsekParams


def build(
    agents: int = 10_000,
    density: float = 4.0,
    radius: float = 1.0,
    backend: str = "auto",
    sort_every: int = 0,
    **params: float,
) -> Model:
    """The Vicsek model: ``agents`` particles at ``density`` per unit area, alignment ``radius``.

    ``params`` override :class:`VicsekParams` defaults (noise, speed, dt); ``backend`` picks the
    neighbour kernel (``"auto" | "triton" | "torch"``); ``sort_every > 0`` reorders agents by
    cell every that many steps (:func:`sort_by_cell`).
    """
    if isinstance(sort_every, bool) or not isinstance(sort_every, int) or sort_every < 0:
        raise ValueError(f"sort_every must be an integer >= 0, got {sort_every!r}")
    if isinstance(agents, bool) or not isinstance(agents, int) or agents < 1:
        raise ValueError(f"agents must be a positive integer, got {agents!r}")
    if not (isinstance(density, (int, float)) and math.isfinite(density) and density > 0):
        raise ValueError(f"density must be a finite number > 0, got {density!r}")
    grid = cell_grid(math.sqrt(agents / density), float(radius), periodic=True, dim=2)
    return Model(
        name=NAME,
        params=VicsekParams().replace(**params),
        init=random_init(agents, grid, backend),
        steps=((sort_by_cell(sort_every),) if sort_every else ()) + (align_and_move,),
        metrics={"order": order, "neighbours": neighbours},
        agents=agents,
        options={
            "agents": agents,
            "density": density,
            "radius": radius,
            "backend": backend,
            "sort_every": sort_every,
        },
    )


def random_order(agents: int) -> float:
    """Expected order parameter of ``agents`` independent uniform headings: ``sqrt(pi/(4N))``."""
    return math.sqrt(math.pi / (4 * agents))
