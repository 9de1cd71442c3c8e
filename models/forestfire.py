"""Forest fire on a bounded grid, as in the ABM framework comparison suite (Mesa's forest fire).

Each cell of a ``width x width`` grid holds a tree with probability ``density``; the trees of the
first column start burning. Each step every burning tree ignites the trees in its von Neumann
neighbourhood (no wrap-around) and burns out. The suite's "large" case: 500 x 500, density 0.9,
100 steps.

**Synchronous variant.** Mesa activates trees in random order, so a tree ignited earlier in a
step may, if activated later in the same step, pass the fire on at once: the fire front moves a
random number of cells per step. Here a tree ignited in step t burns in step t + 1 (the
front moves one cell per step, as in Agents.jl's synchronous version). There are no conflicts to
resolve (ignition is an OR over neighbours), and the set of trees that eventually burn is the
same in both: the trees 4-connected to the first column. ``tests/models/test_forestfire.py``
checks this exactly against a flood fill and against the Mesa peer from the same forest.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from populace.engine import Context, Model, Params, State, param, tensor_field

NAME = "forestfire"
SUMMARY = "forest fire, ABM comparison suite spec (density); metrics fine, burning, burnt"

EMPTY, FINE, BURNING, BURNT = 0, 1, 2, 3


@dataclasses.dataclass(frozen=True)
class ForestFireParams(Params):
    density: float | torch.Tensor = param(
        0.9,
        low=0,
        high=1,
        unit="probability",
        doc="a cell holds a tree at the start (used by init only)",
    )


@dataclasses.dataclass(frozen=True)
class ForestFireState(State):
    """Attributes:
    grid: ``[B, H, W]`` int8, 0 empty, 1 fine tree, 2 burning, 3 burnt out.
    """

    grid: torch.Tensor = tensor_field("B", "H", "W", dtype=torch.int8)


def plant(width: int):
    """``init``: trees with probability ``density``; the first column's trees burn."""

    def init(params: ForestFireParams, ctx: Context) -> ForestFireState:
        u = ctx.rng.uniform(width, width, dtype=ctx.dtype)
        density = params.density.view(-1, 1, 1) if params.density.dim() else params.density
        grid = (u < density).to(torch.int8)  # FINE where a tree stands
        grid[:, :, 0] *= BURNING
        return ForestFireState(grid)

    return init


def ignited(burning: torch.Tensor) -> torch.Tensor:
    """``[B, H, W]`` bool, cells with a burning von Neumann neighbour (bounded grid).

    Args:
        burning: ``[B, H, W]`` bool.
    """
    b = F.pad(burning.to(torch.int8), (1, 1, 1, 1))  # zero border: the grid does not wrap
    return (b[:, :-2, 1:-1] | b[:, 2:, 1:-1] | b[:, 1:-1, :-2] | b[:, 1:-1, 2:]).bool()


def spread(state: ForestFireState, params: ForestFireParams, ctx: Context) -> ForestFireState:
    """One synchronous step: burning trees ignite fine neighbours and burn out."""
    grid = state.grid
    burning = grid == BURNING
    catch = (grid == FINE) & ignited(burning)
    # both transitions add one to the code (BURNING -> BURNT, FINE -> BURNING)
    return state.replace(grid=grid + (burning | catch).to(torch.int8))


def count(code: int):
    def metric(state: ForestFireState, params: ForestFireParams, ctx: Context) -> torch.Tensor:
        return (state.grid == code).sum(dim=(1, 2))

    metric.__name__ = f"count_{code}"
    return metric


def burnt_fraction(state: ForestFireState, params: ForestFireParams, ctx: Context) -> torch.Tensor:
    """``[B]`` share of the trees that are burning or burnt out."""
    trees = (state.grid != EMPTY).sum(dim=(1, 2))
    fire = (state.grid >= BURNING).sum(dim=(1, 2))
    return fire / trees.clamp(min=1)


PARAMS = ForestFireParams


def build(agents: int = 250_000, **params: float) -> Model:
    """Forest fire on a square grid of ``agents`` cells (the agents are the trees and gaps).

    The suite's "large" case is 500 x 500 = 250,000 cells. ``params`` override
    :class:`ForestFireParams` (density).
    """
    if isinstance(agents, bool) or not isinstance(agents, int) or agents < 4:
        raise ValueError(f"forestfire: agents must be an integer >= 4, got {agents!r}")
    width = round(agents**0.5)
    if width * width != agents:
        raise ValueError(
            f"forestfire: agents={agents} cells is not a square grid (e.g. {width * width})"
        )
    return Model(
        name=NAME,
        params=ForestFireParams().replace(**params),
        init=plant(width),
        steps=(spread,),
        metrics={
            "fine": count(FINE),
            "burning": count(BURNING),
            "burnt": count(BURNT),
            "burnt_fraction": burnt_fraction,
        },
        agents=width * width,
        options={"agents": width * width, "width": width},
    )
