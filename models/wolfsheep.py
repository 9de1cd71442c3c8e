"""Wolf-sheep predation with grass, as in the ABM framework comparison suite.

Sheep and wolves walk on a ``width x width`` torus. Each step an animal moves to a uniformly
random one of its 8 Moore neighbour cells, loses one unit of energy and dies below zero;
a sheep on grown grass eats it (``sheep_gain``), a wolf on a cell with a sheep eats one
(``wolf_gain``); then it reproduces with probability ``sheep_reproduce`` / ``wolf_reproduce``,
halving its energy with the newborn (same cell, same energy). Eaten grass regrows after
``regrowth`` steps. The suite's "large" case: 1,000 sheep, 500 wolves, 100 x 100, regrowth 10,
reproduction 0.4 / 0.2.

**Synchronous variant and its conflict resolution.** The Mesa peer
(``benchmarks/peers/wolfsheep.py``) activates all sheep in random order, then all wolves in
random order, then the grass. Here those three phases run as tensor updates over all animals
of a kind at once, in the same order, and conflicts within a phase are resolved by random
priority: every animal draws a uniform key each phase; of the sheep that stand on the same
grown grass cell only the one with the largest key eats, and on a cell with wolves and sheep the
wolf with the largest key eats the sheep with the largest key (one meal per cell per step; the
sequential model lets a second wolf eat a second sheep there, which is rare at the suite's
densities). Animals are slots of a fixed capacity with an ``alive`` mask; newborns take the
lowest free slots, and births beyond capacity are dropped and counted in the ``dropped``
metric (never silently). ``tests/models/test_wolfsheep.py`` compares the mean sheep and wolf
counts over time with the Mesa model's.

**One kernel per step on the CPU.** The model's step (:func:`step`) is the three phases in
turn; on the CPU with numba it is one call of :func:`populace.kernels.predation.step`, which
claims the phases' draws in their order and returns their tensors bit for bit (tested), without
the hundred-odd small tensor ops that cost far more than the work at a few hundred animals.
"""

from __future__ import annotations

import dataclasses

import torch

from populace.engine import (
    Context,
    Model,
    ParamError,
    Params,
    Schedule,
    State,
    claim_slots,
    member_view,
    param,
    static_field,
    tensor_field,
)
from populace.kernels import predation

NAME = "wolfsheep"
SUMMARY = "wolf-sheep predation with grass, ABM comparison suite spec; metrics sheep, wolves, grass"


@dataclasses.dataclass(frozen=True)
class WolfSheepParams(Params):
    sheep_gain: float | torch.Tensor = param(
        5.0, low=0, unit="energy", doc="energy a sheep gains from eating grass"
    )
    wolf_gain: float | torch.Tensor = param(
        13.0, low=0, unit="energy", doc="energy a wolf gains from eating a sheep"
    )
    sheep_reproduce: float | torch.Tensor = param(
        0.4, low=0, high=1, unit="probability/step", doc="a sheep reproduces"
    )
    wolf_reproduce: float | torch.Tensor = param(
        0.2, low=0, high=1, unit="probability/step", doc="a wolf reproduces"
    )
    regrowth: float | torch.Tensor = param(
        10.0,
        low=0,
        unit="steps",
        doc="for eaten grass to grow back (a whole number, one value for all members)",
    )

    def check(self) -> None:
        regrowth = self.values("regrowth")
        per_member = regrowth.dim() > (1 if isinstance(self.regrowth, Schedule) else 0)
        if per_member or (regrowth != regrowth.round()).any():
            raise ParamError(
                f"wolfsheep parameter 'regrowth' must be a whole number of steps, one value for "
                f"all members, got {self.regrowth}"
            )


@dataclasses.dataclass(frozen=True)
class WolfSheepState(State):
    """Attributes:
    sheep_cell, wolf_cell: ``[B, S]`` / ``[B, W]`` int64 flat cell index ``y * width + x``.
    sheep_energy, wolf_energy: ``[B, S]`` / ``[B, W]`` energy.
    sheep_alive, wolf_alive: ``[B, S]`` / ``[B, W]`` bool slot occupancy.
    grown: ``[B, C]`` bool grass grown per cell (C = width^2).
    countdown: ``[B, C]`` int64 steps until eaten grass regrows.
    dropped: ``[B]`` int64 births dropped for lack of capacity, cumulative.
    width: grid side (static).
    """

    sheep_cell: torch.Tensor = tensor_field("B", "S", dtype=torch.int64)
    sheep_energy: torch.Tensor = tensor_field("B", "S")
    sheep_alive: torch.Tensor = tensor_field("B", "S", dtype=torch.bool)
    wolf_cell: torch.Tensor = tensor_field("B", "W", dtype=torch.int64)
    wolf_energy: torch.Tensor = tensor_field("B", "W")
    wolf_alive: torch.Tensor = tensor_field("B", "W", dtype=torch.bool)
    grown: torch.Tensor = tensor_field("B", "C", dtype=torch.bool)
    countdown: torch.Tensor = tensor_field("B", "C", dtype=torch.int64)
    dropped: torch.Tensor = tensor_field("B", dtype=torch.int64)
    width: int = static_field(0)


def populate(width: int, sheep: int, wolves: int, sheep_capacity: int, wolf_capacity: int):
    """``init``: animals on uniform random cells with energy uniform on ``{0..2 gain - 1}``;
    grass grown with probability 1/2, else a countdown uniform on ``{0..regrowth - 1}``."""

    def animals(n: int, capacity: int, gain: torch.Tensor, ctx: Context):
        cell = ctx.rng.integers(0, width * width, capacity)
        top = member_view(2 * gain, 2)
        energy = torch.floor(ctx.rng.uniform(capacity, dtype=ctx.dtype) * top)
        alive = torch.arange(capacity, device=ctx.device) < n
        alive = alive.expand(ctx.members, capacity).clone()
        return cell, energy, alive

    def init(params: WolfSheepParams, ctx: Context) -> WolfSheepState:
        s = animals(sheep, sheep_capacity, params.sheep_gain, ctx)
        w = animals(wolves, wolf_capacity, params.wolf_gain, ctx)
        cells = width * width
        grown = ctx.rng.uniform(cells) < 0.5
        regrowth = int(params.regrowth)
        countdown = torch.where(grown, regrowth, ctx.rng.integers(0, max(regrowth, 1), cells))
        dropped = torch.zeros(ctx.members, dtype=torch.int64, device=ctx.device)
        return WolfSheepState(*s, *w, grown, countdown, dropped, width=width)

    return init


def walk(cell: torch.Tensor, alive: torch.Tensor, width: int, ctx: Context) -> torch.Tensor:
    """``[B, N]`` cells after one step of each ``alive`` (``[B, N]`` bool) slot to a uniformly
    random Moore neighbour on the torus; an empty slot keeps its cell (and its draw goes
    unused, so the kernel need not make it)."""
    cells = width * width
    k = ctx.rng.integers(0, 8, cell.shape[1])
    k = k + (k >= 4)  # 0..8 without 4, the centre of the 3 x 3 window
    # k = 3 (dy + 1) + (dx + 1), decoded without integer division (slow on CPU)
    dy = (k >= 6).to(k.dtype) - (k < 3).to(k.dtype)
    dx = k - 3 * dy - 4
    x = cell % width + dx
    dx = torch.where(x < 0, dx + width, torch.where(x >= width, dx - width, dx))
    new = cell + dy * width + dx
    new = torch.where(new < 0, new + cells, torch.where(new >= cells, new - cells, new))
    return torch.where(alive, new, cell)


def winners(cell: torch.Tensor, candidate: torch.Tensor, key: torch.Tensor, cells: int):
    """Per cell, the candidate with the largest key.

    Args:
        cell: ``[B, N]`` cell of each agent; candidate: ``[B, N]`` bool; key: ``[B, N]`` uniform.

    Returns:
        ``[B, N]`` bool, the winning agent of each cell that has a candidate.
    """
    score = torch.where(candidate, key, -1.0)
    best = torch.full((cell.shape[0], cells), -1.0, device=key.device, dtype=key.dtype)
    best = best.scatter_reduce(1, cell, score, reduce="amax")
    # keys are continuous, so ties (two winners in a cell) have probability ~0
    return candidate & (score == torch.gather(best, 1, cell))


def occupied(cell: torch.Tensor, mask: torch.Tensor, cells: int) -> torch.Tensor:
    """``[B, C]`` bool, cells holding at least one agent of ``mask``."""
    out = torch.zeros(cell.shape[0], cells, dtype=torch.int64, device=cell.device)
    return out.scatter_add(1, cell, mask.to(torch.int64)) > 0


def reproduce(cell, energy, alive, p, ctx: Context):
    """Each alive agent splits with probability ``p``: energy halves, the newborn gets a copy.

    A parent whose newborn finds no free slot keeps its whole energy (the birth is dropped).

    Returns:
        cell, energy, alive (same shapes), dropped ``[B]`` births that found no free slot.
    """
    n = cell.shape[1]
    parent = alive & (ctx.rng.uniform(n, dtype=energy.dtype) < member_view(p, 2))
    wanted = parent.sum(dim=1)
    new, _ = claim_slots(alive, wanted)
    born = new.sum(dim=1)
    # the k-th parent (by slot index) fills the k-th claimed slot; ranks by cumsum, no sort.
    # Column n is a dump for the non-parents' writes and is never read for a claimed slot.
    index = torch.arange(n, device=cell.device).expand_as(cell)
    parent_rank = torch.where(parent, torch.cumsum(parent, dim=1) - 1, n)
    energy = torch.where(parent_rank < born[:, None], energy / 2, energy)
    by_rank = torch.zeros(cell.shape[0], n + 1, dtype=torch.int64, device=cell.device)
    by_rank = by_rank.scatter(1, parent_rank, index)
    slot_rank = torch.where(new, torch.cumsum(new, dim=1) - 1, n)
    source = torch.where(new, torch.gather(by_rank, 1, slot_rank), index)
    cell = torch.gather(cell, 1, source)
    energy = torch.gather(energy, 1, source)
    return cell, energy, alive | new, wanted - born


def sheep_phase(state: WolfSheepState, params: WolfSheepParams, ctx: Context) -> WolfSheepState:
    """Sheep move, pay energy, die, graze (one sheep per grown cell) and reproduce."""
    cells = state.width * state.width
    cell = walk(state.sheep_cell, state.sheep_alive, state.width, ctx)
    energy = state.sheep_energy - 1
    alive = state.sheep_alive & (energy >= 0)
    on_grass = alive & torch.gather(state.grown, 1, cell)
    eats = winners(cell, on_grass, ctx.rng.uniform(cell.shape[1], dtype=energy.dtype), cells)
    energy = energy + eats * member_view(params.sheep_gain, 2)
    grazed = occupied(cell, eats, cells)
    grown = state.grown & ~grazed
    regrowth = params.regrowth.to(state.countdown.dtype)  # a tensor: no host sync on GPU
    countdown = torch.where(grazed, regrowth, state.countdown)
    cell, energy, alive, dropped = reproduce(cell, energy, alive, params.sheep_reproduce, ctx)
    return state.replace(
        sheep_cell=cell,
        sheep_energy=energy,
        sheep_alive=alive,
        grown=grown,
        countdown=countdown,
        dropped=state.dropped + dropped,
    )


def wolf_phase(state: WolfSheepState, params: WolfSheepParams, ctx: Context) -> WolfSheepState:
    """Wolves move, pay energy, die, hunt (one meal per cell) and reproduce."""
    cells = state.width * state.width
    cell = walk(state.wolf_cell, state.wolf_alive, state.width, ctx)
    energy = state.wolf_energy - 1
    alive = state.wolf_alive & (energy >= 0)
    prey_here = occupied(state.sheep_cell, state.sheep_alive, cells)
    hunters = alive & torch.gather(prey_here, 1, cell)
    eats = winners(cell, hunters, ctx.rng.uniform(cell.shape[1], dtype=energy.dtype), cells)
    hunted = occupied(cell, eats, cells)
    sheep_key = ctx.rng.uniform(state.sheep_cell.shape[1], dtype=energy.dtype)
    prey = state.sheep_alive & torch.gather(hunted, 1, state.sheep_cell)
    eaten = winners(state.sheep_cell, prey, sheep_key, cells)
    energy = energy + eats * member_view(params.wolf_gain, 2)
    cell, energy, alive, dropped = reproduce(cell, energy, alive, params.wolf_reproduce, ctx)
    return state.replace(
        wolf_cell=cell,
        wolf_energy=energy,
        wolf_alive=alive,
        sheep_alive=state.sheep_alive & ~eaten,
        dropped=state.dropped + dropped,
    )


def grass_phase(state: WolfSheepState, params: WolfSheepParams, ctx: Context) -> WolfSheepState:
    """Eaten grass counts down and grows back at zero (countdown then resets to regrowth)."""
    ready = ~state.grown & (state.countdown <= 0)
    regrowth = params.regrowth.to(state.countdown.dtype)
    waiting = torch.where(state.grown, state.countdown, state.countdown - 1)
    countdown = torch.where(ready, regrowth, waiting)
    return state.replace(grown=state.grown | ready, countdown=countdown)


def step(state: WolfSheepState, params: WolfSheepParams, ctx: Context) -> WolfSheepState:
    """One step: :func:`sheep_phase`, :func:`wolf_phase`, :func:`grass_phase` in turn, or the
    numba kernel of all three (:func:`populace.kernels.predation.step`: the same draws and
    numbers, bit for bit) where it runs (CPU, no gradient, not inside ``torch.compile``)."""
    fused = predation.step(
        (state.sheep_cell, state.sheep_energy, state.sheep_alive),
        (state.wolf_cell, state.wolf_energy, state.wolf_alive),
        state.grown,
        state.countdown,
        state.dropped,
        (params.sheep_gain, params.wolf_gain, params.sheep_reproduce, params.wolf_reproduce),
        params.regrowth,
        state.width,
        ctx.rng.claim,
    )
    if fused is None:
        for phase in (sheep_phase, wolf_phase, grass_phase):
            state = phase(state, params, ctx)
        return state
    sheep, wolves, grown, countdown, dropped = fused
    return state.replace(
        sheep_cell=sheep[0],
        sheep_energy=sheep[1],
        sheep_alive=sheep[2],
        wolf_cell=wolves[0],
        wolf_energy=wolves[1],
        wolf_alive=wolves[2],
        grown=grown,
        countdown=countdown,
        dropped=dropped,
    )


def sheep_count(state: WolfSheepState, params: WolfSheepParams, ctx: Context) -> torch.Tensor:
    """Metric: ``[B]`` living sheep."""
    return state.sheep_alive.sum(dim=1)


def wolf_count(state: WolfSheepState, params: WolfSheepParams, ctx: Context) -> torch.Tensor:
    """Metric: ``[B]`` living wolves."""
    return state.wolf_alive.sum(dim=1)


def grass_count(state: WolfSheepState, params: WolfSheepParams, ctx: Context) -> torch.Tensor:
    """Metric: ``[B]`` grown grass cells."""
    return state.grown.sum(dim=1)


def dropped(state: WolfSheepState, params: WolfSheepParams, ctx: Context) -> torch.Tensor:
    """Metric: ``[B]`` births dropped so far for lack of a free slot."""
    return state.dropped


PARAMS = WolfSheepParams


def build(
    agents: int = 1_500,
    width: int = 100,
    wolves: int | None = None,
    capacity: int | None = None,
    **params: float,
) -> Model:
    """Wolf-sheep with ``agents`` animals at the start on a ``width x width`` torus.

    Args:
        agents: sheep + wolves at the start.
        wolves: wolves at the start (default: a third of ``agents``, the suite's 1,000 : 500).
        capacity: slots per kind (default: ``max(8 * initial, width^2)`` of each kind); births
            past it are counted in ``dropped``.
        params: override :class:`WolfSheepParams`.
    """
    for name, v in (("agents", agents), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"wolfsheep: {name} must be a positive integer, got {v!r}")
    for name, v in (("wolves", wolves), ("capacity", capacity)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise ValueError(f"wolfsheep: {name} must be an integer, got {v!r}")
    wolves = agents // 3 if wolves is None else wolves
    if not 0 <= wolves <= agents:
        raise ValueError(f"wolfsheep: wolves={wolves} must be in [0, agents={agents}]")
    sheep = agents - wolves
    cells = width * width
    sheep_cap = max(8 * sheep, cells) if capacity is None else capacity
    wolf_cap = max(8 * wolves, cells) if capacity is None else capacity
    if sheep_cap < sheep or wolf_cap < wolves:
        raise ValueError(f"wolfsheep: capacity={capacity} is below the initial {sheep}, {wolves}")
    return Model(
        name=NAME,
        params=WolfSheepParams().replace(**params),
        init=populate(width, sheep, wolves, sheep_cap, wolf_cap),
        steps=(step,),
        metrics={
            "sheep": sheep_count,
            "wolves": wolf_count,
            "grass": grass_count,
            "dropped": dropped,
        },
        agents=agents,
        options={"agents": agents, "width": width, "wolves": wolves, "capacity": capacity},
    )
