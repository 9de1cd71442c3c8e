"""Schelling segregation on a periodic grid, as in the ABM framework comparison suite.

Two groups of agents live on a ``width x width`` torus, one agent per cell at most. An agent is
happy when at least ``min_similar`` of the occupied cells in its Moore neighbourhood of radius
``radius`` hold agents of its own group; an unhappy agent moves to a random empty cell. The
suite's "large" case: 100 x 100, 8,000 agents, radius 2, ``min_similar = 8``, 20 steps.

**Synchronous variant and its conflict resolution.** The suite (and the Mesa peer in
``benchmarks/peers/schelling.py``) activates agents one by one in random order, so a later agent
sees the moves of earlier ones and may move into a cell vacated in the same step. Here every
agent judges its happiness from the grid at the start of the step, and the unhappy agents are
matched to the empty cells of the start of the step by random priority: the unhappy agents and
the empty cells are each put in an independent uniformly random order and the k-th mover takes
the k-th empty cell, for ``k < min(#unhappy, #empty)``. Each empty cell receives at most one
agent (single occupancy holds by construction), each mover lands on a uniformly random empty
cell, and when there are more unhappy agents than empty cells a uniformly random subset of them
moves. ``tests/models/test_schelling.py`` checks that the final similarity and happy fraction
match the sequential Mesa model's within stated tolerances.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

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
from populace.kernels import segregation

NAME = "schelling"
SUMMARY = "Schelling segregation, ABM comparison suite spec (torus, radius, min_similar)"

EMPTY, GROUP_A, GROUP_B = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class SchellingParams(Params):
    min_similar: float | torch.Tensor = param(
        8.0, low=0, unit="neighbours", doc="an agent is happy with at least this many of its group"
    )


@dataclasses.dataclass(frozen=True)
class SchellingState(State):
    """Attributes:
    grid: ``[B, H, W]`` int8, 0 empty, 1 group A, 2 group B.
    moved: ``[B]`` int64, agents that moved in the last step.
    radius: Moore neighbourhood radius (static).
    """

    grid: torch.Tensor = tensor_field("B", "H", "W", dtype=torch.int8)
    moved: torch.Tensor = tensor_field("B", dtype=torch.int64)
    radius: int = static_field(1)


def neighbour_counts(grid: torch.Tensor, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Same-group and occupied neighbour counts on a torus (self excluded).

    Args:
        grid: ``[B, H, W]`` int8 cell codes.
        radius: Moore radius (the window is ``(2 radius + 1)^2`` cells).

    Returns:
        similar: ``[B, H, W]`` float32, neighbours of the cell's own group (0 on empty cells).
        occupied: ``[B, H, W]`` float32, occupied neighbours.

    On the CPU with numba, one kernel call (:func:`populace.kernels.segregation.counts`, equal
    exactly: the counts are small integers) runs instead of the torch ops below.
    """
    if min(grid.shape[-2:]) < 2 * radius + 1:
        raise ValueError(
            f"schelling: grid {tuple(grid.shape[-2:])} is smaller than the neighbourhood "
            f"window {2 * radius + 1} (radius {radius}); neighbours would be counted twice"
        )
    fused = segregation.counts(grid, radius)
    if fused is not None:
        return fused
    H, W = grid.shape[-2:]
    onehot = torch.stack([grid == GROUP_A, grid == GROUP_B], dim=1).float()  # [B, 2, H, W]
    padded = F.pad(onehot, (radius,) * 4, mode="circular")
    # separable box sum (much faster than a grouped conv2d on CPU; exact for small counts)
    rows = sum(padded[..., :, i : i + W] for i in range(2 * radius + 1))
    counts = sum(rows[..., j : j + H, :] for j in range(2 * radius + 1)) - onehot  # self removed
    similar = torch.where(
        grid == GROUP_A, counts[:, 0], torch.where(grid == GROUP_B, counts[:, 1], 0.0)
    )
    return similar, counts.sum(dim=1)


def random_placement(width: int, agents: int, radius: int):
    """``init``: agents on uniformly random distinct cells, the first half group A."""

    def init(params: SchellingParams, ctx: Context) -> SchellingState:
        cells = width * width
        order = ctx.rng.permutation(cells)  # [B, cells]
        codes = torch.zeros(ctx.members, cells, dtype=torch.int8, device=ctx.device)
        groups = torch.full((ctx.members, agents), GROUP_B, dtype=torch.int8, device=ctx.device)
        groups[:, : agents // 2] = GROUP_A
        codes.scatter_(1, order[:, :agents], groups)
        moved = torch.zeros(ctx.members, dtype=torch.int64, device=ctx.device)
        return SchellingState(codes.view(-1, width, width), moved, radius=radius)

    return init


def unhappy(state: SchellingState, params: SchellingParams) -> torch.Tensor:
    """``[B, H, W]`` bool, occupied cells whose agent wants to move."""
    similar, _ = neighbour_counts(state.grid, state.radius)
    return (state.grid != EMPTY) & (similar < member_view(params.min_similar, 3))


def relocate(state: SchellingState, params: SchellingParams, ctx: Context) -> SchellingState:
    """One synchronous step: unhappy agents move to empty cells by random matching.

    On the CPU with numba, one kernel call (:func:`populace.kernels.segregation.step`: the same
    draws and moves, exactly) runs instead of the torch ops below.
    """
    fused = segregation.step(state.grid, state.radius, params.min_similar, ctx.rng.claim)
    if fused is not None:
        return state.replace(grid=fused[0], moved=fused[1])
    B, H, W = state.grid.shape
    flat = state.grid.reshape(B, H * W)
    movers = unhappy(state, params).reshape(B, H * W)
    empty = flat == EMPTY
    # random order of the movers (then everyone else), and of the empty cells (then the rest)
    # (stable: equal uniforms keep cell order, so the kernel's order is the same)
    mover_order = torch.argsort(
        torch.where(movers, ctx.rng.uniform(H * W), 2.0), dim=1, stable=True
    )
    empty_order = torch.argsort(torch.where(empty, ctx.rng.uniform(H * W), 2.0), dim=1, stable=True)
    moves = torch.minimum(movers.sum(1), empty.sum(1))  # [B]
    valid = torch.arange(H * W, device=flat.device) < moves.view(-1, 1)  # [B, cells] by rank
    arriving = torch.where(valid, torch.gather(flat, 1, mover_order), 0).to(torch.int8)
    # both orders are permutations, so each cell is written exactly once by each scatter
    incoming = torch.zeros_like(flat).scatter_(1, empty_order, arriving)
    vacated = torch.zeros_like(movers).scatter_(1, mover_order, valid)
    new = torch.where(vacated, EMPTY, flat)
    new = torch.where(incoming != EMPTY, incoming, new).to(torch.int8)
    return state.replace(grid=new.view(B, H, W), moved=moves.to(torch.int64))


def similarity(state: SchellingState, params: SchellingParams, ctx: Context) -> torch.Tensor:
    """``[B]`` mean over agents of the same-group share of their occupied neighbours.

    Agents without neighbours count as fully similar (nobody around them differs).
    """
    similar, occupied = neighbour_counts(state.grid, state.radius)
    agents = state.grid != EMPTY
    share = torch.where(occupied > 0, similar / occupied.clamp(min=1), 1.0)
    return (share * agents).sum(dim=(1, 2)) / agents.sum(dim=(1, 2)).clamp(min=1)


def happy(state: SchellingState, params: SchellingParams, ctx: Context) -> torch.Tensor:
    """``[B]`` fraction of agents that are happy."""
    agents = (state.grid != EMPTY).sum(dim=(1, 2))
    return 1 - unhappy(state, params).sum(dim=(1, 2)) / agents.clamp(min=1)


def moved(state: SchellingState, params: SchellingParams, ctx: Context) -> torch.Tensor:
    """``[B]`` agents moved in the last step."""
    return state.moved


PARAMS = SchellingParams


def build(agents: int = 8_000, width: int = 100, radius: int = 2, **params: float) -> Model:
    """Schelling with ``agents`` agents on a ``width x width`` torus, neighbourhood ``radius``.

    ``params`` override :class:`SchellingParams` (min_similar).
    """
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"schelling: width must be a positive integer, got {width!r}")
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 1:
        raise ValueError(f"schelling: radius must be a positive integer, got {radius!r}")
    if width < 2 * radius + 1:
        raise ValueError(f"schelling: width={width} is smaller than the window 2*radius+1")
    if not 0 < agents <= width * width:
        raise ValueError(f"schelling: agents={agents} must be in [1, width^2={width * width}]")
    return Model(
        name=NAME,
        params=SchellingParams().replace(**params),
        init=random_placement(width, agents, radius),
        steps=(relocate,),
        metrics={"similarity": similarity, "happy": happy, "moved": moved},
        agents=agents,
        options={"agents": agents, "width": width, "radius": radius},
    )
