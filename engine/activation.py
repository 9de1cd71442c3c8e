"""Activation and conflict resolution: keeping a tensor port of a sequential ABM faithful.

Mesa, NetLogo and most ABM frameworks activate agents one at a time in a random order
(``agents.shuffle_do("step")``): agent k sees everything agents 0..k-1 did in the same step. A
tensor step is synchronous: every agent reads the state at the start of the step. Where agents
interact within a step, the two differ — a synchronous Boltzmann wealth economy ends with a Gini
of about 0.40 where Mesa's sequential one reaches 0.65, because an agent that is given a unit
cannot pass it on in the same step and agents never see cellmates that arrive after them.

The primitives here remove those biases at tensor speed:

- :func:`sequential` — exact random-order sequential activation for agents that interact only
  through the cells they touch (their own cell and the one they move to, say). Agents whose
  cells differ commute, so the step runs in *rounds*: in each round every agent that comes first
  (in the random order) on all of its cells acts, all of them at once. Every cell sees its
  agents in the random order, so the result has exactly the law of Mesa's ``shuffle_do``; the
  number of rounds is the longest chain of agents meeting on cells (about 10 at one agent per
  cell), not N.
- :func:`activate` — random-order activation in ``K`` batches per step, for interactions that
  do not go through cells: each member draws a random order, splits it into K batches, and the
  batches act one after another, each seeing the previous batches' changes. ``K = 1`` is
  synchronous, ``K = N`` exactly sequential; the bias left shrinks like 1/K (only agents of the
  same batch miss each other's changes).
- :func:`arrival_cellmates` — under sequential random-order moves, a uniformly random other
  agent in the cell each agent moves into, at its turn: computed for everyone at once from the
  ranks, without rounds.
- :func:`random_cellmate` — a uniformly random *other* agent in the same cell (Mesa's
  ``random.choice([a for a in cell.agents if a is not self])``); picking "the first agent in the
  cell" or the lowest index instead biases who receives.
- :func:`random_neighbour` — a uniformly random contact in a CSR layer (a network grid's
  ``random.choice(neighbors)``), without materialising neighbour lists.
- :func:`claim` — exclusive claims of cells or resources by random priority: of the agents
  proposing the same target, exactly one (uniformly random) wins. Without it, two agents move
  into the same empty cell or eat the same grass in one synchronous step.

All draws come from the context's per-member streams, so results are reproducible and member b
is the same alone or in a batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from populace.engine.context import Context


def random_rank(ctx: Context, agents: int) -> torch.Tensor:
    """``[B, N]`` int64: each agent's position in a fresh random order per member."""
    order = ctx.rng.permutation(agents)  # [B, N]: order[b, r] = agent of rank r
    return torch.empty_like(order).scatter_(
        1, order, torch.arange(agents, device=order.device).expand_as(order)
    )


def rounds(rank: torch.Tensor, cells: torch.Tensor, n_cells: int) -> torch.Tensor:
    """The round in which each agent acts so that every cell sees its agents in rank order.

    In each round, an agent still to act acts when its rank is the lowest, among the agents
    still to act, on every cell it touches. Agents of one round touch disjoint cells.

    Args:
        rank: ``[B, N]`` int64 distinct ranks per member (:func:`random_rank`).
        cells: ``[B, N, K]`` int64 cells each agent touches, ``0..n_cells-1`` (-1: none).
        n_cells: number of cells C.

    Returns:
        ``[B, N]`` int64 round of each agent (0, 1, ...).
    """
    b, n, k = cells.shape
    if rank.shape != (b, n):
        raise ValueError(f"rank has shape {tuple(rank.shape)}, cells {tuple(cells.shape)}")
    device = rank.device
    member = torch.arange(b, device=device).view(b, 1, 1)
    slot = (member * (n_cells + 1) + torch.where(cells >= 0, cells, n_cells)).reshape(b * n, k)
    free = (cells < 0).reshape(b * n, k)  # touching no cell never blocks
    flat_rank = rank.reshape(b * n)
    out = torch.full((b * n,), -1, dtype=torch.int64, device=device)
    pending = torch.arange(b * n, device=device)  # shrinks: each round handles the rest only
    never = torch.iinfo(torch.int64).max
    r = 0
    while pending.numel():
        s, mine = slot[pending], flat_rank[pending]
        first = torch.full((b * (n_cells + 1),), never, dtype=torch.int64, device=device)
        first.scatter_reduce_(0, s.reshape(-1), mine.repeat_interleave(k), reduce="amin")
        ready = ((first[s] == mine.unsqueeze(1)) | free[pending]).all(dim=1)
        out[pending[ready]] = r
        pending = pending[~ready]
        r += 1
    return out.view(b, n)


def sequential(
    state: Any,
    params: Any,
    ctx: Context,
    act: Callable[[Any, Any, Context, torch.Tensor], Any],
    cells: torch.Tensor,
    n_cells: int,
    rank: torch.Tensor | None = None,
) -> Any:
    """Exact random-order sequential activation, run in rounds of agents on disjoint cells.

    ``act(state, params, ctx, ready)`` is called once per round with ``ready`` (``[B, N]``
    bool): those agents act at once. It must touch only the cells in ``cells`` for each acting
    agent (e.g. leave its cell, enter the next, give to someone there); then the result equals
    acting one agent at a time in ``rank`` order.

    Args:
        cells: ``[B, N, K]`` int64 cells each agent touches this step (-1: none), drawn before
            the step (destinations are the agent's own random choice, so they can be).
        n_cells: number of cells.
        rank: ``[B, N]`` activation order (default: a fresh :func:`random_rank`).
    """
    rank = random_rank(ctx, cells.shape[1]) if rank is None else rank
    when = rounds(rank, cells, n_cells)
    for r in range(int(when.max()) + 1 if when.numel() else 0):
        state = act(state, params, ctx, when == r)
    return state


def arrival_cellmates(
    origin: torch.Tensor, dest: torch.Tensor, rank: torch.Tensor, cells: int, ctx: Context
) -> torch.Tensor:
    """A uniformly random other agent in the cell each agent moves into, at its turn, when
    every agent moves once per step one at a time in ``rank`` order (Mesa's ``shuffle_do`` of
    "move, then meet someone in my new cell").

    At agent a's turn its new cell holds the agents that arrived there earlier in the order and
    those that started there and have not left yet; both follow from the ranks alone, so the
    choice is made for everyone at once: one sort of the step's departures and arrivals by
    (cell, rank), counts along it, one uniform draw per agent. The candidates are numbered
    earlier arrivals first (by rank), then the agents still there (by rank); the draw picks one.

    Args:
        origin, dest: ``[B, N]`` int64 cell before and after the move (``origin != dest``).
        rank: ``[B, N]`` int64 distinct ranks per member, ``0..N-1`` (:func:`random_rank`).
        cells: number of cells C.

    Returns:
        ``[B, N]`` int64 index of the chosen agent, -1 for an agent that meets nobody.
    """
    b, n = origin.shape
    total_agents = b * n
    member = torch.arange(b, device=origin.device).view(b, 1) * cells
    cell_of_arrival = (member + dest).reshape(-1)  # (member, cell) block of each arrival
    cell_of_departure = (member + origin).reshape(-1)
    rank = rank.reshape(-1)
    # departures (even) sort before an arrival of the same rank (odd) in the same block
    keys = torch.cat([cell_of_departure * 2 * n + 2 * rank, cell_of_arrival * 2 * n + 2 * rank + 1])
    order = torch.sort(keys).indices  # [2 B N]
    is_arrival = order >= total_agents
    arrivals_so_far = torch.cumsum(is_arrival, 0)  # inclusive
    departures_so_far = torch.cumsum(~is_arrival, 0)
    blocks = b * cells
    arrival_count = torch.bincount(cell_of_arrival, minlength=blocks)
    departure_count = torch.bincount(cell_of_departure, minlength=blocks)
    arrival_start = torch.cumsum(arrival_count, 0) - arrival_count
    departure_start = torch.cumsum(departure_count, 0) - departure_count
    arrived = order[is_arrival] - total_agents  # agents by (block, rank) of arrival
    departed = order[~is_arrival]  # agents by (block, rank) of departure
    # at each arrival (in sorted order): what its block holds at that moment
    at = is_arrival.nonzero().flatten()
    agent = order[at] - total_agents
    block = cell_of_arrival[agent]
    earlier = arrivals_so_far[at] - 1 - arrival_start[block]
    gone = departures_so_far[at] - departure_start[block]  # left before this arrival
    staying = departure_count[block] - gone
    total = earlier + staying
    u = ctx.rng.uniform(n, dtype=torch.float64).reshape(-1)[agent]
    m = torch.minimum((u * total).long(), (total - 1).clamp_min(0))
    last = max(total_agents - 1, 0)
    from_arrivals = arrived[(arrival_start[block] + m).clamp_max(last)]
    from_staying = departed[(departure_start[block] + gone + m - earlier).clamp(0, last)]
    chosen = torch.where(m < earlier, from_arrivals, from_staying) % n
    out = torch.full((total_agents,), -1, dtype=torch.int64, device=origin.device)
    out[agent] = torch.where(total > 0, chosen, -1)
    return out.view(b, n)


def activation_batches(ctx: Context, agents: int, batches: int) -> torch.Tensor:
    """``[B, N]`` int64: the batch (0..K-1) of each agent in a fresh random order per member.

    Agent of rank r in member b's random permutation acts in batch ``floor(r K / N)``, so batch
    sizes differ by at most one.
    """
    if isinstance(batches, bool) or not isinstance(batches, int) or not 1 <= batches <= agents:
        raise ValueError(f"batches must be an integer in [1, agents={agents}], got {batches!r}")
    return random_rank(ctx, agents) * batches // agents


def activate(
    state: Any,
    params: Any,
    ctx: Context,
    act: Callable[[Any, Any, Context, torch.Tensor], Any],
    batches: int,
) -> Any:
    """Random-order activation: ``act(state, params, ctx, active)`` once per batch, in order.

    Args:
        state: the model state; its agent axis is ``N``.
        act: a pure sub-step acting for the agents where ``active`` (``[B, N]`` bool) is true.
        batches: K (1: synchronous; N: sequential).

    Returns:
        The state after all K batches acted.
    """
    agents = state.dims["N"]
    batch = activation_batches(ctx, agents, batches)
    for k in range(batches):
        state = act(state, params, ctx, batch == k)
    return state


def random_cellmate(cell: torch.Tensor, cells: int, ctx: Context) -> torch.Tensor:
    """A uniformly random other agent in each agent's cell.

    Args:
        cell: ``[B, N]`` int64 cell of each agent in ``0..cells-1``; a negative cell marks an
            absent agent (dead, or not on the grid): it is nobody's cellmate and gets -1.
        cells: number of cells C.

    Returns:
        ``[B, N]`` int64 agent index of the chosen cellmate, -1 for agents alone in their cell.
    """
    b, n = cell.shape
    if cell.dtype != torch.int64:
        raise ValueError(f"cell must be int64, got {cell.dtype}")
    present = cell >= 0
    slot = torch.where(present, cell, torch.full_like(cell, cells))  # absent → bucket C
    member = torch.arange(b, device=cell.device).unsqueeze(1)
    key = (member * (cells + 1) + slot).reshape(-1)  # [B N]
    order = torch.argsort(key, stable=True)  # agents sorted by (member, cell)
    count = torch.bincount(key, minlength=b * (cells + 1))
    start = torch.cumsum(count, 0) - count
    position = torch.empty_like(order).scatter_(0, order, torch.arange(b * n, device=cell.device))
    own = position - start[key]  # rank of each agent inside its cell
    mates = count[key] - 1
    u = ctx.rng.uniform(n, dtype=torch.float64).reshape(-1)
    pick = torch.minimum((u * mates).long(), (mates - 1).clamp_min(0))
    pick = pick + (pick >= own).long()  # skip oneself
    chosen = order[(start[key] + pick).clamp_max(b * n - 1)] % n
    ok = (mates > 0) & present.reshape(-1)
    return torch.where(ok, chosen, torch.full_like(chosen, -1)).view(b, n)


def random_neighbour(
    layer: torch.Tensor, ctx: Context, rows: torch.Tensor | None = None
) -> torch.Tensor:
    """A uniformly random contact in a contact layer: of each agent (row i for agent i), or of
    the row each agent stands on (``rows``: e.g. its cell in a grid graph, for a move to a
    random neighbouring cell).

    Args:
        layer: sparse CSR ``[R, R]``; row r lists r's contacts (weights ignored).
        rows: optional ``[B, N]`` int64 row of each agent (default: agent i's own row i).

    Returns:
        ``[B, N]`` int64 chosen contact (a column index), -1 where the row has no contacts.
    """
    if layer.layout != torch.sparse_csr:
        raise ValueError(f"layer must be a sparse CSR tensor, got {layer.layout}")
    crow, col = layer.crow_indices(), layer.col_indices()
    n = crow.numel() - 1 if rows is None else rows.shape[1]
    start, end = crow[:-1], crow[1:]
    if rows is not None:
        start, end = start[rows], end[rows]  # [B, N]
    degree = end - start
    u = ctx.rng.uniform(n, dtype=torch.float64)  # [B, N]
    offset = torch.minimum((u * degree).long(), (degree - 1).clamp_min(0))
    edge = (start + offset).clamp_max(max(col.numel() - 1, 0))
    chosen = col[edge] if col.numel() else torch.zeros_like(edge)
    return torch.where(degree > 0, chosen, torch.full_like(chosen, -1))


def claim(target: torch.Tensor, targets: int, ctx: Context) -> torch.Tensor:
    """Exclusive claims by random priority: of the agents proposing the same target, one wins.

    Every agent gets a distinct random priority per member (a random permutation rank), so the
    winner of each contested target is uniformly random among its claimants and no two agents
    win the same target.

    Args:
        target: ``[B, N]`` int64 target (cell, resource) each agent claims, ``0..targets-1``;
            negative: no claim.
        targets: number of targets T.

    Returns:
        ``[B, N]`` bool, the agents whose claim won.
    """
    b, n = target.shape
    if target.dtype != torch.int64:
        raise ValueError(f"target must be int64, got {target.dtype}")
    wants = target >= 0
    priority = random_rank(ctx, n)
    slot = torch.where(wants, target, torch.full_like(target, targets))  # no claim → slot T
    best = torch.full((b, targets + 1), -1, dtype=torch.int64, device=target.device)
    best = best.scatter_reduce(1, slot, priority, reduce="amax")
    return wants & (best.gather(1, slot) == priority)
