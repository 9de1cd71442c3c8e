"""Population sharding over contact layers: contiguous agent blocks, local CSR rows, halos.

Rank r holds agents ``bounds[r] <= i < bounds[r+1]`` of the whole population (agents ordered
so that blocks keep most contacts local: the NYC population is ordered by area, so blocks
snapped to area boundaries cut few edges). Each rank keeps its rows of every CSR layer; the
columns they reference outside its block are its *halo*. A step that needs neighbours'
values (the infectious state behind a contact pressure) exchanges just the halo with one
``all_to_all`` (:meth:`BlockShard.exchange`) and computes on the extended vector
``[halo below | own agents | halo above]``, which is in global order, so every row sums its
contacts in the same order as in one process: results are bit for bit those of one process.

A model step wraps its contact call in :func:`over_halo`::

    pressure = over_halo(ctx, layered, layers, infectious, scales)

which in one process is just ``layered(layers, infectious, scales)``.

What a sharded run assumes (checked where it can be):

- Dense model data whose first dim is the agent count is per agent (sliced to the block);
  other dense data (lookup tables) is shared; CSR ``[N, N]`` layers become local layers.
- State fields with an agent axis ``N`` are split along it; fields without one must stay the
  same on every rank (a step that sums over agents into such a field is refused when the state
  is gathered, naming the field).
- Metrics are totals over agents (counts): each is summed over the ranks (or as given in
  ``Blocks(reduce=...)``); the initial state is built by the model's ``init`` on the whole
  population and then split, so an initial count drawn by permutation is the same as in one
  process.
- Random numbers: the rank draws with a view of its agents (:class:`~populace.engine.Streams`
  ``agents=``), so each agent gets its own numbers on any rank.
- No gradients across ranks: a tensor that needs grad is refused at the halo.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from populace.engine.context import Context
from populace.engine.data import Data
from populace.engine.distributed import Comm, DistributedError, Shard, digest
from populace.engine.rng import Streams
from populace.engine.state import AGENT_AXIS, State

REDUCTIONS = ("sum", "max", "min")


# -- blocks ---------------------------------------------------------------------------------
def block_bounds(agents: int, world: int, codes: torch.Tensor | None = None) -> list[int]:
    """``world + 1`` increasing bounds of contiguous agent blocks of near-equal size.

    Args:
        agents: N.
        world: number of ranks.
        codes: optional ``[N]`` non-decreasing area codes: bounds snap to the nearest change of
            code, so no area is split.

    Raises:
        DistributedError: more ranks than agents (or than areas with ``codes``); codes that are
            not ordered.
    """
    if world > agents:
        raise DistributedError(
            f"world size {world} is larger than the {agents} agents: every rank needs at least "
            f"one (run fewer ranks, or shard the members)"
        )
    ideal = [agents * r // world for r in range(world + 1)]
    if codes is None:
        return ideal
    codes = codes.detach().cpu()
    if codes.shape != (agents,):
        raise DistributedError(f"block codes have shape {tuple(codes.shape)}, expected ({agents},)")
    if agents > 1 and bool((codes[1:] < codes[:-1]).any()):
        raise DistributedError(
            "agents are not ordered by the block axis: order the population by area (each area "
            "one contiguous run of agents) or partition without an axis"
        )
    changes = torch.nonzero(codes[1:] != codes[:-1]).flatten() + 1  # first agent of each area
    cuts = torch.cat([torch.tensor([0]), changes, torch.tensor([agents])])
    if cuts.numel() - 1 < world:
        raise DistributedError(
            f"world size {world} is larger than the {cuts.numel() - 1} areas; areas are not split"
        )
    bounds = [0]
    for r in range(1, world):
        # the area start nearest to the ideal bound, leaving room for the ranks still to come
        k = int(torch.searchsorted(cuts, torch.tensor(ideal[r])))
        options = [c for c in (k - 1, k) if 0 <= c < cuts.numel()]
        best = min(options, key=lambda c: abs(int(cuts[c]) - ideal[r]))
        best = max(best, int(torch.searchsorted(cuts, torch.tensor(bounds[-1]), right=True)))
        best = min(best, cuts.numel() - 1 - (world - r))
        bounds.append(int(cuts[best]))
    bounds.append(agents)
    return bounds


@dataclasses.dataclass(frozen=True)
class Halo:
    """One rank's view of the layers: its block, what it receives and what it sends.

    Attributes:
        start, stop: the rank's block of global agent indices.
        below, above: ``[H_lo]`` / ``[H_hi]`` int64 global ids of the halo agents held by lower
            / higher ranks (sorted); the extended vector is ``[below | own | above]``.
        recv_counts: halo agents received from each rank (rank order).
        send: ``[S]`` int64 local indices of own agents sent, grouped by destination rank.
        send_counts: agents sent to each rank.
    """

    start: int
    stop: int
    below: torch.Tensor
    above: torch.Tensor
    recv_counts: list[int]
    send: torch.Tensor
    send_counts: list[int]

    @property
    def agents(self) -> int:
        return self.stop - self.start

    @property
    def extended(self) -> int:
        """M: agents of the extended vector."""
        return self.below.numel() + self.agents + self.above.numel()

    def ids(self) -> torch.Tensor:
        """``[M]`` global ids of the extended vector (increasing)."""
        own = torch.arange(self.start, self.stop, dtype=torch.int64)
        return torch.cat([self.below, own, self.above])


def _columns_of(layers: Sequence[torch.Tensor], lo: int, hi: int) -> torch.Tensor:
    """Sorted unique columns referenced by rows ``lo..hi-1`` of any layer."""
    parts = []
    for layer in layers:
        crow, col = layer.crow_indices(), layer.col_indices()
        parts.append(col[int(crow[lo]) : int(crow[hi])])
    return torch.unique(torch.cat(parts)) if parts else torch.zeros(0, dtype=torch.int64)


def plan(layers: Sequence[torch.Tensor], bounds: Sequence[int], rank: int) -> Halo:
    """The halo of ``rank`` for CSR ``layers`` (on the host) split at ``bounds``."""
    start, stop = bounds[rank], bounds[rank + 1]
    world = len(bounds) - 1
    mine = _columns_of(layers, start, stop)
    below, above = mine[mine < start], mine[mine >= stop]
    edges = torch.tensor(list(bounds), dtype=torch.int64)
    owner = torch.searchsorted(edges, torch.cat([below, above]), right=True) - 1
    recv_counts = torch.bincount(owner, minlength=world).tolist()
    sends, send_counts = [], []
    for q in range(world):
        if q == rank:
            send_counts.append(0)
            continue
        theirs = _columns_of(layers, bounds[q], bounds[q + 1])
        wanted = theirs[(theirs >= start) & (theirs < stop)] - start
        sends.append(wanted)
        send_counts.append(wanted.numel())
    send = torch.cat(sends) if sends else torch.zeros(0, dtype=torch.int64)
    return Halo(start, stop, below, above, recv_counts, send, send_counts)


def _csr(crow, col, values, size) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, size, check_invariants=False)


def local_layer(layer: torch.Tensor, halo: Halo) -> torch.Tensor:
    """``[M, M]`` CSR: the rank's rows of ``layer`` at their place in the extended vector,
    columns renumbered into it (order within each row kept); the halo rows are empty."""
    crow, col, values = layer.crow_indices(), layer.col_indices(), layer.values()
    lo, hi = int(crow[halo.start]), int(crow[halo.stop])
    ids = halo.ids()
    local_col = torch.searchsorted(ids, col[lo:hi])
    h = halo.below.numel()
    m = halo.extended
    own = crow[halo.start : halo.stop + 1] - lo
    local_crow = torch.cat(
        [
            torch.zeros(h, dtype=torch.int64),
            own,
            torch.full((m - h - halo.agents,), hi - lo, dtype=torch.int64),
        ]
    )
    return _csr(local_crow, local_col, values[lo:hi], (m, m))


def cut_statistics(layers: Sequence[torch.Tensor], bounds: Sequence[int]) -> dict[str, Any]:
    """What a split costs, without running it: cut edges and halo sizes per rank.

    Returns:
        ``edges`` (all layers), ``cut_edges`` (edges whose ends sit on different ranks),
        ``cut_fraction``, ``halo`` (agents each rank receives per exchange), ``halo_max``,
        ``halo_total``.
    """
    edges = cut = 0
    edges_t = torch.tensor(list(bounds), dtype=torch.int64)
    for layer in layers:
        crow, col = layer.crow_indices(), layer.col_indices()
        rows = torch.repeat_interleave(torch.arange(crow.numel() - 1), crow.diff())
        owner_row = torch.searchsorted(edges_t, rows, right=True)
        owner_col = torch.searchsorted(edges_t, col, right=True)
        edges += col.numel()
        cut += int((owner_row != owner_col).sum())
    world = len(bounds) - 1
    halo = []
    for r in range(world):
        mine = _columns_of(layers, bounds[r], bounds[r + 1])
        halo.append(int(((mine < bounds[r]) | (mine >= bounds[r + 1])).sum()))
    return {
        "ranks": world,
        "edges": edges,
        "cut_edges": cut,
        "cut_fraction": cut / edges if edges else 0.0,
        "halo": halo,
        "halo_max": max(halo),
        "halo_total": sum(halo),
    }


# -- agent fields ---------------------------------------------------------------------------
def agent_dims(state: State) -> dict[str, int]:
    """field → the dim of its agent axis ``N``, for the fields that have one."""
    out = {}
    for f in dataclasses.fields(state):
        shape = f.metadata.get("shape")
        if not shape or AGENT_AXIS not in shape:
            continue
        if shape.count(AGENT_AXIS) > 1:
            raise DistributedError(
                f"{type(state).__name__}.{f.name} has {shape.count(AGENT_AXIS)} agent axes "
                f"{shape}: a pairwise field cannot be split by agents"
            )
        out[f.name] = shape.index(AGENT_AXIS)
    return out


# -- the shard ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Blocks:
    """Spec of population sharding in contiguous agent blocks over the model's CSR layers.

    Attributes:
        axis: a model-data axis whose agent codes are ordered (``"area"``): blocks snap to its
            boundaries (None: blocks of equal size).
        reduce: metric column → ``"sum"`` (default for every metric), ``"max"`` or ``"min"``.
    """

    axis: str | None = None
    reduce: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def build(self, comm: Comm, model: Any, seeds: Sequence[int]) -> BlockShard:
        return BlockShard(comm, model, seeds, self)


class BlockShard(Shard):
    """Agents ``bounds[rank]..bounds[rank+1]-1`` and their rows of every CSR layer."""

    kind = "agents"

    def __init__(self, comm: Comm, model: Any, seeds: Sequence[int], spec: Blocks) -> None:
        super().__init__(comm, model, seeds)
        data: Data = model.data
        self.layers = [n for n, t in data.items() if t.layout == torch.sparse_csr]
        if not self.layers:
            raise DistributedError(
                f"model {model.name!r} has no contact layers (CSR model data): its agents meet "
                f"through sums over the whole population, which agent blocks do not compute; "
                f"shard its members instead"
            )
        n = model.agents or data[self.layers[0]].shape[0]
        if n < 1:
            raise DistributedError(
                f"model {model.name!r} declares no agents (Model(agents=...)); population "
                f"sharding needs the agent count"
            )
        self.total = n
        for name in self.layers:
            if tuple(data[name].shape) != (n, n):
                raise DistributedError(
                    f"model data {name!r} is a CSR layer of size {tuple(data[name].shape)}; "
                    f"population sharding needs [{n}, {n}] contact layers"
                )
        bad = sorted(set(spec.reduce.values()) - set(REDUCTIONS))
        if bad:
            raise ValueError(f"unknown metric reduction(s) {bad}; valid: {', '.join(REDUCTIONS)}")
        unknown = sorted(set(spec.reduce) - set(model.metric_columns()))
        if unknown:
            raise ValueError(f"reduce= names unknown metric(s) {unknown}")
        codes = data[spec.axis] if spec.axis is not None else None
        self.spec = spec
        self.bounds = block_bounds(n, comm.world, codes)
        self.halo = plan([data[k] for k in self.layers], self.bounds, comm.rank)
        self.sizes = [b - a for a, b in zip(self.bounds, self.bounds[1:], strict=False)]

    def facts(self) -> dict[str, Any]:
        return {**super().facts(), "agent blocks": digest(self.bounds)}

    # set-up --------------------------------------------------------------------------------
    def local_data(self, data: Data) -> Data:
        h = self.halo
        out = {}
        for name, t in data.items():
            if t.layout == torch.sparse_csr:
                out[name] = local_layer(t.cpu(), h).to(t.device)
            elif t.layout == torch.strided and t.dim() >= 1 and t.shape[0] == self.total:
                out[name] = t[h.start : h.stop]
            else:
                out[name] = t
        local = Data(out, data.axes)
        local._digests = data.digests()
        return local

    def streams(self, rng: Streams) -> Streams:
        return rng.view((self.halo.start, self.halo.stop))

    def initial_state(self, sim: Any) -> State:
        """The model's init on the whole population (same draws as in one process), split."""
        state = self.whole_initial_state(sim)
        return self.local_state(state) if isinstance(state, State) else state

    # running -------------------------------------------------------------------------------
    def reduce(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Sum (or max/min) each metric over the ranks: one all_reduce per reduction and dtype."""
        out = dict(values)
        groups: dict[tuple[str, torch.dtype], list[str]] = {}
        for name, v in values.items():
            how = self.spec.reduce.get(name, "sum")
            groups.setdefault((how, v.dtype), []).append(name)
        for (how, _), names in groups.items():
            stacked = torch.stack([values[k].detach() for k in names])
            total = self.comm.all_reduce(stacked, how, what=f"metrics {names}")
            out.update({k: total[i] for i, k in enumerate(names)})
        return out

    def local_triggers(self, triggers: Sequence[Any]) -> list[Any]:
        """Triggers read the whole population's metric (reduced over the ranks)."""
        return [dataclasses.replace(rule, metric=self._reduced(rule.metric)) for rule in triggers]

    def _reduced(self, metric: Callable) -> Callable:
        def whole(state, params, ctx):
            return self.comm.all_reduce(metric(state, params, ctx), what="a trigger metric")

        whole.__qualname__ = getattr(metric, "__qualname__", "trigger metric")
        return whole

    # halo ----------------------------------------------------------------------------------
    def exchange(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., n]`` values of own agents → ``[..., M]`` values of the extended vector."""
        h = self.halo
        if x.shape[-1] != h.agents:
            raise DistributedError(
                f"halo exchange of a tensor of shape {tuple(x.shape)}; this rank holds "
                f"{h.agents} agents (last dim)"
            )
        if x.requires_grad:
            raise DistributedError(
                "population-sharded runs carry no gradients across ranks; shard the members "
                "for calibration (Distributed('members'))"
            )
        lead = x.shape[:-1]
        rows = x.reshape(-1, h.agents).T  # [n, K]
        got = self.comm.all_to_all(rows[h.send.to(x.device)], h.send_counts, h.recv_counts, "halo")
        nb = h.below.numel()
        ext = torch.cat([got[:nb], rows, got[nb:]])  # [M, K] in global order
        return ext.T.reshape(*lead, h.extended)

    def extend(self, obj: Any) -> Any:
        """``obj`` with every per-agent tensor (dim >= 2, last dim n) extended by the halo, in
        one exchange per dtype; lists, tuples and dicts are walked."""
        found: list[torch.Tensor] = []
        n = self.halo.agents

        def collect(o):
            if isinstance(o, torch.Tensor):
                if o.layout == torch.strided and o.dim() >= 2 and o.shape[-1] == n:
                    found.append(o)
            elif isinstance(o, (list, tuple)):
                for v in o:
                    collect(v)
            elif isinstance(o, dict):
                for v in o.values():
                    collect(v)

        collect(obj)
        done: dict[int, torch.Tensor] = {}
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for t in found:
            by_dtype.setdefault(t.dtype, []).append(t)
        for group in by_dtype.values():
            flat = torch.cat([t.reshape(-1, n) for t in group])
            ext = self.exchange(flat)
            i = 0
            for t in group:
                k = t.numel() // n
                done[id(t)] = ext[i : i + k].reshape(*t.shape[:-1], self.halo.extended)
                i += k

        def rebuild(o):
            if isinstance(o, torch.Tensor):
                return done.get(id(o), o)
            if isinstance(o, list):
                return [rebuild(v) for v in o]
            if isinstance(o, tuple):
                return tuple(rebuild(v) for v in o)
            if isinstance(o, dict):
                return {k: rebuild(v) for k, v in o.items()}
            return o

        return rebuild(obj)

    def owned(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., M]`` → ``[..., n]``: the own agents' part of an extended vector."""
        nb = self.halo.below.numel()
        return x[..., nb : nb + self.halo.agents]

    # checkpoints ---------------------------------------------------------------------------
    def global_state(self, state: State) -> State:
        dims = agent_dims(state)
        out = {}
        for name, t in state.tensors().items():
            if name in dims:
                out[name] = self.comm.all_gather_cat(t, dims[name], self.sizes, f"field {name}")
                continue
            self.check_replicated(type(state).__name__, name, t)
        return state.replace(**out)

    def local_state(self, state: State) -> State:
        h = self.halo
        dims = agent_dims(state)
        return state.replace(
            **{n: getattr(state, n).narrow(d, h.start, h.agents) for n, d in dims.items()}
        )


def over_halo(ctx: Context, fn: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
    """``fn(*args, **kwargs)`` on a population-sharded rank: per-agent tensor arguments
    (dim >= 2, last dim the rank's agents) extended by the halo, the result cut back to the
    rank's agents. Without a block shard, just ``fn(*args, **kwargs)``.

    For functions over CSR layers such as :func:`populace.epi.contact.layered`, whose layers a
    sharded run has already replaced by the rank's local layers.
    """
    shard = getattr(ctx, "shard", None)
    if not isinstance(shard, BlockShard):
        return fn(*args, **kwargs)
    args, kwargs = shard.extend((args, kwargs))
    return shard.owned(fn(*args, **kwargs))
