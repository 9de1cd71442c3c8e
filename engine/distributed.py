"""Past one process: runs spread over the ranks of a ``torch.distributed`` process group.

Launch with ``torchrun --nproc-per-node N ...`` (gloo on CPU, NCCL on GPUs); a
:class:`~populace.engine.Simulation` then finds the process group and splits its work:

- **members** (the default): each rank runs a contiguous block of the ensemble members (its
  own device, ``cuda:{LOCAL_RANK}`` or the CPU); the metrics table is gathered, so every rank
  returns the single-process table, bit for bit (counter-based streams make member b the same
  number wherever it runs).
- **agents**: the population is split over the ranks (:mod:`populace.engine.partition` for
  models on contact layers, :mod:`populace.engine.slabs` for particles in a periodic box); the
  metrics are reduced over the ranks.

What this module holds: :class:`Comm` (the collectives, each failure one
:class:`DistributedError` naming the rank and the operation, within the group's timeout),
:func:`init` (the process group from torchrun's environment), the start-up handshake (code
version hash, seeds, model, data digests: ranks that differ stop with one clear error),
:class:`MemberShard` (ensemble sharding) and the pieces calibration ensembles need
(:func:`mean_over_members`, :func:`sum_over_members`, :func:`all_reduce_grads`, and
:func:`gather_members` with :func:`average_grads`, which ``populace.calibration`` uses).

Outputs are written by rank 0 alone; checkpoints hold the whole run (gathered), so one saved on
any number of ranks resumes on any other number, or in one process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import importlib.util
import io
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import torch
import torch.distributed as dist

from populace.engine.params import Params, Schedule

#: seconds a collective waits for a peer before every rank stops (env POPULACE_DIST_TIMEOUT)
DEFAULT_TIMEOUT = 300.0
#: the packages whose sources make up the version hash
PACKAGES = (
    "populace",
    "populace.engine",
    "populace.kernels",
    "populace.epi",
    "populace.behaviors",
    "populace.behaviors.llm",
    "populace.populations",
    "populace.calibration",
    "populace.models",
)


class DistributedError(RuntimeError):
    """Ranks disagree (code version, seeds, model, sizes) or a peer rank failed or vanished."""


class Rank0Failed(DistributedError):
    """What rank 0 alone did (check or write an output) failed there (and was said there)."""


# -- process group --------------------------------------------------------------------------
def timeout_seconds() -> float:
    """The collective timeout: ``POPULACE_DIST_TIMEOUT`` seconds, else :data:`DEFAULT_TIMEOUT`."""
    text = os.environ.get("POPULACE_DIST_TIMEOUT", "")
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise DistributedError(f"POPULACE_DIST_TIMEOUT must be a positive number, got {text!r}")
    return value


def launched() -> bool:
    """Whether this process was started by torchrun (or srun with its variables) with > 1 rank."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(backend: str | None = None, timeout: float | None = None) -> Comm:
    """Join the process group described by torchrun's environment (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``, ``LOCAL_RANK``); already joined: the group as it is.

    Args:
        backend: ``"gloo"`` or ``"nccl"`` (default: NCCL when CUDA is there, else gloo).
        timeout: seconds a collective may wait (default :func:`timeout_seconds`).
    """
    if not dist.is_available():
        raise DistributedError("this torch build has no torch.distributed")
    if not dist.is_initialized():
        for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
            if var not in os.environ:
                raise DistributedError(
                    f"no process group and no {var} in the environment: launch with torchrun "
                    f"(torchrun --nproc-per-node N -m populace ...) or call "
                    f"torch.distributed.init_process_group first"
                )
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend not in ("gloo", "nccl"):
            raise DistributedError(f"unknown backend {backend!r}; valid: gloo, nccl")
        seconds = timeout if timeout is not None else timeout_seconds()
        options: dict[str, Any] = {"timeout": datetime.timedelta(seconds=seconds)}
        if backend == "nccl":
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            options["device_id"] = torch.device("cuda", local)
        try:
            dist.init_process_group(backend, **options)
        except (RuntimeError, ValueError) as err:
            raise DistributedError(f"could not join the process group ({backend}): {err}") from None
    return Comm()


def local_device(device: str | torch.device = "auto") -> str | torch.device:
    """``"auto"``/``"cuda"`` → ``cuda:{LOCAL_RANK}`` when CUDA is there (one GPU per rank)."""
    if str(device) in ("auto", "cuda") and torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count()
        return torch.device("cuda", local)
    return device


class Comm:
    """The collectives of one process group, each failure a :class:`DistributedError`.

    Tensors travel on the backend's device (CPU for gloo, this rank's GPU for NCCL) and come
    back on the caller's device.

    Args:
        group: a process group (None: the default group, which must be initialised).
    """

    def __init__(self, group: Any = None) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            raise DistributedError("no torch.distributed process group is initialised")
        self.group = group
        self.rank = dist.get_rank(group)
        self.world = dist.get_world_size(group)
        self.backend = str(dist.get_backend(group))
        if self.backend == "nccl":
            self.device = torch.device("cuda", torch.cuda.current_device())
        else:
            self.device = torch.device("cpu")

    def __repr__(self) -> str:
        return f"Comm(rank {self.rank} of {self.world}, {self.backend})"

    @contextlib.contextmanager
    def guard(self, op: str) -> Iterator[None]:
        """Turn a backend failure of ``op`` into one DistributedError naming rank and op."""
        try:
            yield
        except DistributedError:
            raise
        except (RuntimeError, ConnectionError) as err:  # DistBackendError is a RuntimeError
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DistributedError(
                f"rank {self.rank} of {self.world}: {op} failed: a peer rank stopped, was "
                f"killed or did not answer within the timeout ({first[:300]})"
            ) from None

    # -- tensors ---------------------------------------------------------------------------
    def _out(self, t: torch.Tensor) -> torch.Tensor:
        if t.dtype == torch.bool:
            t = t.to(torch.uint8)
        return t.detach().to(self.device).contiguous()

    def all_reduce(self, t: torch.Tensor, op: str = "sum", what: str = "values") -> torch.Tensor:
        """Elementwise ``sum | max | min`` over the ranks (a new tensor on ``t``'s device)."""
        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
        if op not in ops:
            raise ValueError(f"unknown reduction {op!r}; valid: {', '.join(ops)}")
        buf = self._out(t).clone()
        with self.guard(f"all_reduce({what})"):
            dist.all_reduce(buf, ops[op], group=self.group)
        return buf.to(device=t.device, dtype=t.dtype)

    def all_gather_cat(
        self, t: torch.Tensor, dim: int = 0, sizes: Sequence[int] | None = None, what: str = ""
    ) -> torch.Tensor:
        """Concatenate every rank's ``t`` along ``dim`` in rank order (sizes along ``dim`` may
        differ; pass them when every rank knows them, else they are exchanged first)."""
        if sizes is None:
            sizes = self.all_gather_object(t.shape[dim], f"sizes of {what or 'a gather'}")
        if sizes[self.rank] != t.shape[dim]:
            raise DistributedError(
                f"rank {self.rank}: gathering {what or 'a tensor'} of size {t.shape[dim]} along "
                f"dim {dim}, expected {sizes[self.rank]}"
            )
        big = max(sizes)
        moved = self._out(t).movedim(dim, 0)
        pad = moved.new_zeros((big - moved.shape[0], *moved.shape[1:]))
        padded = torch.cat([moved, pad]).contiguous()
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        with self.guard(f"all_gather({what or 'tensor'})"):
            dist.all_gather(parts, padded, group=self.group)
        whole = torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)]).movedim(0, dim)
        return whole.to(device=t.device, dtype=t.dtype)

    def all_to_all(
        self, send: torch.Tensor, send_counts: Sequence[int], recv_counts: Sequence[int], what: str
    ) -> torch.Tensor:
        """Rows of ``send`` (``[S, ...]``, grouped by destination rank in rank order,
        ``send_counts[q]`` for rank q) exchanged: ``[R, ...]`` grouped by source rank."""
        buf = self._out(send)
        out = torch.empty((sum(recv_counts), *buf.shape[1:]), dtype=buf.dtype, device=buf.device)
        with self.guard(f"all_to_all({what})"):
            dist.all_to_all_single(
                out, buf, list(map(int, recv_counts)), list(map(int, send_counts)), group=self.group
            )
        return out.to(device=send.device, dtype=send.dtype)

    # -- objects ---------------------------------------------------------------------------
    def all_gather_object(self, obj: Any, what: str = "objects") -> list[Any]:
        out: list[Any] = [None] * self.world
        with self.guard(f"all_gather_object({what})"):
            dist.all_gather_object(out, obj, group=self.group)
        return out

    def broadcast_object(self, obj: Any, src: int = 0, what: str = "object") -> Any:
        box = [obj]
        with self.guard(f"broadcast_object({what})"):
            dist.broadcast_object_list(box, src=src, group=self.group)
        return box[0]

    def barrier(self, what: str = "barrier") -> None:
        """Wait for every rank; on gloo a monitored barrier that names the missing ranks."""
        with self.guard(what):
            if self.backend == "gloo":
                seconds = timeout_seconds()
                dist.monitored_barrier(
                    self.group, timeout=datetime.timedelta(seconds=seconds), wait_all_ranks=True
                )
            else:
                dist.barrier(group=self.group)

    def on_rank0(self, fn: Callable[[], Any], what: str) -> Any:
        """Run ``fn`` on rank 0 alone; every rank returns its result, or raises one error
        naming what failed on rank 0 (so no rank goes on while rank 0 has stopped)."""
        result, error = None, None
        if self.rank == 0:
            try:
                result = fn()
            except Exception as err:  # re-raised on rank 0 below, its message sent to the rest
                error = err
        message = None if error is None else f"{type(error).__name__}: {error}"
        message = self.broadcast_object(message, what=f"outcome of {what}")
        if error is not None:
            raise error
        if message is not None:
            raise Rank0Failed(f"rank {self.rank}: {what} failed on rank 0: {message}")
        return result


# -- agreement at start ---------------------------------------------------------------------
def version_hash() -> str:
    """sha256 (16 hex digits) of the populace sources and the torch version: ranks that run
    different code get different hashes."""
    h = hashlib.sha256(f"torch {torch.__version__}".encode())
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        for folder in spec.submodule_search_locations:
            for path in sorted(Path(folder).glob("*.py")):
                h.update(f"{name}/{path.name}\0".encode())
                h.update(path.read_bytes())
    return h.hexdigest()[:16]


_VERSION: str | None = None


def handshake(comm: Comm, facts: Mapping[str, Any]) -> None:
    """Refuse to start unless every rank runs the same code on the same inputs.

    ``facts`` (name → a comparable value: seed, member seeds, model name, data digests, ...)
    are gathered with the version hash; the first fact in which a rank differs from rank 0
    raises :class:`DistributedError` on every rank, naming the fact and the ranks.
    """
    global _VERSION
    if _VERSION is None:
        _VERSION = version_hash()
    mine = {"code version": _VERSION, **facts}
    every = comm.all_gather_object(mine, "start-up facts")
    first = every[0]
    for key in mine:
        odd = [r for r, f in enumerate(every) if f.get(key) != first.get(key)]
        if odd:
            shown = {r: _short(every[r].get(key)) for r in [0, *odd[:3]]}
            hint = (
                " (install the same populace on every node)"
                if key == "code version"
                else " (every rank must be started with the same arguments)"
            )
            raise DistributedError(
                f"ranks disagree on {key}: "
                + ", ".join(f"rank {r}: {v}" for r, v in shown.items())
                + hint
            )


def _short(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        return f"{text[:40]}... (sha {hashlib.sha256(text.encode()).hexdigest()[:10]})"
    return text


def digest(values: Any) -> str:
    """A short digest of a list of numbers (seeds) to compare across ranks."""
    return hashlib.sha256(repr(values).encode()).hexdigest()[:16]


# -- splitting ------------------------------------------------------------------------------
def split(total: int, world: int, rank: int) -> tuple[int, int]:
    """The ``[lo, hi)`` block of ``total`` items of ``rank`` among ``world`` (sizes differ by at
    most one, lower ranks first)."""
    return total * rank // world, total * (rank + 1) // world


def member_slice(params: Params, lo: int, hi: int) -> Params:
    """Params of members ``lo..hi-1``: per-member values (``[B]``, ``[B, *A]``, schedule
    values ``[K, B, ...]``) sliced on their member axis, differentiably; the rest as they are."""
    out: dict[str, Any] = {}
    for name in params.members():
        v = getattr(params, name)
        if isinstance(v, Schedule):
            out[name] = Schedule(v.values[:, lo:hi], v.starts)
        else:
            out[name] = v[lo:hi]
    return params.replace(**out) if out else params


# -- shards ---------------------------------------------------------------------------------
class Shard:
    """How a simulation's work is split over ranks; the base does nothing (one process).

    :class:`~populace.engine.Simulation` calls these hooks; subclasses override what they
    split. ``kind`` names the split in messages and handshakes.
    """

    kind = "none"

    def __init__(self, comm: Comm, model: Any, seeds: Sequence[int]) -> None:
        self.comm = comm
        self.model = model
        self.seeds = list(seeds)

    # set-up
    def facts(self) -> dict[str, Any]:
        """What every rank must agree on before the run."""
        return {
            "shard": self.kind,
            "world size": self.comm.world,
            "model": self.model.name,
            "agents": self.model.agents,
            "member seeds": digest(self.seeds),
            "model data": digest(sorted(self.model.data.digests().items())),
        }

    def local_seeds(self) -> list[int]:
        return self.seeds

    def local_params(self, params: Params) -> Params:
        return params

    def local_triggers(self, triggers: Sequence[Any]) -> list[Any]:
        return list(triggers)

    def local_data(self, data: Any) -> Any:
        return data

    def streams(self, rng: Any) -> Any:
        return rng

    def initial_state(self, sim: Any) -> Any:
        """The rank's initial state (default: the model's init with the rank's context)."""
        return sim.model.init(sim.params.at(0), sim.ctx)

    def whole_initial_state(self, sim: Any) -> Any:
        """The model's init for the whole population, with the draws of one process (for
        shards of agents, which then keep their part)."""
        from populace.engine.context import Context
        from populace.engine.rng import Streams

        rng = Streams(sim.rng.seeds, sim.device)
        rng.begin(-1)
        data = self.model.data.to(sim.device, sim.dtype)
        return sim.model.init(sim.params.at(0), Context(0, rng, sim.device, sim.dtype, data))

    def check_replicated(self, owner: str, name: str, t: torch.Tensor) -> None:
        """Refuse a state field without an agent axis that differs across ranks."""
        every = self.comm.all_gather_cat(t.unsqueeze(0), 0, [1] * self.comm.world, name)
        if not all(torch.equal(every[r], every[0]) for r in range(self.comm.world)):
            raise DistributedError(
                f"state field {owner}.{name} (no agent axis) differs across ranks: a step sums "
                f"over agents into it; a population-sharded model keeps such values per agent "
                f"(with an N axis) or the same on every rank"
            )

    # running
    def reduce(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Metric values of the rank's part → the run's (``[B_local]`` each)."""
        return values

    def frame(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The rank's metrics table → the run's."""
        return frame

    # checkpoints
    def global_state(self, state: Any) -> Any:
        """The whole run's state, on every rank."""
        return state

    def local_state(self, state: Any) -> Any:
        """The rank's part of a whole run's state."""
        return state

    def global_flags(self, flags: list[torch.Tensor]) -> list[torch.Tensor]:
        return flags

    def local_flags(self, flags: list[torch.Tensor]) -> list[torch.Tensor]:
        return flags


def _frame_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_ipc(buffer)
    return buffer.getvalue()


class MemberShard(Shard):
    """Ensemble members split in contiguous blocks over the ranks (:func:`split`)."""

    kind = "members"

    def __init__(self, comm: Comm, model: Any, seeds: Sequence[int]) -> None:
        super().__init__(comm, model, seeds)
        total = len(self.seeds)
        if comm.world > total:
            raise DistributedError(
                f"world size {comm.world} is larger than the {total} ensemble member(s): every "
                f"rank needs at least one (run more members, fewer ranks, or shard the agents)"
            )
        blocks = [split(total, comm.world, r) for r in range(comm.world)]
        self.sizes = [hi - lo for lo, hi in blocks]
        self.lo, self.hi = blocks[comm.rank]

    def local_seeds(self) -> list[int]:
        return self.seeds[self.lo : self.hi]

    def local_params(self, params: Params) -> Params:
        return member_slice(params, self.lo, self.hi)

    def local_triggers(self, triggers: Sequence[Any]) -> list[Any]:
        out = []
        for rule in triggers:
            mask = rule.members
            if mask is not None:
                if mask.shape != (len(self.seeds),):
                    raise DistributedError(
                        f"trigger {rule.label!r}: member mask of shape {tuple(mask.shape)}, the "
                        f"run has {len(self.seeds)} members"
                    )
                rule = dataclasses.replace(rule, members=mask[self.lo : self.hi])
            out.append(rule)
        return out

    def frame(self, frame: pl.DataFrame) -> pl.DataFrame:
        shifted = frame.with_columns(pl.col("member") + self.lo)
        parts = self.comm.all_gather_object(_frame_bytes(shifted), "metrics tables")
        frames = [pl.read_ipc(io.BytesIO(p)) for p in parts]
        if all(f.height == 0 for f in frames):
            return frame
        return pl.concat(frames).sort(["step", "member"], maintain_order=True)

    def global_state(self, state: Any) -> Any:
        tensors = {
            name: self.comm.all_gather_cat(t, 0, self.sizes, f"state field {name}")
            for name, t in state.tensors().items()
        }
        return state.replace(**tensors)

    def local_state(self, state: Any) -> Any:
        return state.select(slice(self.lo, self.hi))

    def global_flags(self, flags: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.comm.all_gather_cat(on, 0, self.sizes, "trigger flags") for on in flags]

    def local_flags(self, flags: list[torch.Tensor]) -> list[torch.Tensor]:
        return [on[self.lo : self.hi] for on in flags]


@dataclasses.dataclass(frozen=True)
class Distributed:
    """How a :class:`~populace.engine.Simulation` is spread over the ranks of a process group.

    Attributes:
        shard: ``"members"`` (ensemble blocks), ``"agents"`` (population blocks over contact
            layers: :class:`populace.engine.partition.Blocks` with defaults), or a spec object
            with ``build(comm, model, seeds) -> Shard`` (``Blocks(axis=...)``, ``Slabs(...)``).
        group: the process group (None: the default one, initialised by :func:`init` or the
            caller).
    """

    shard: Any = "members"
    group: Any = None

    def build(self, model: Any, seeds: Sequence[int]) -> Shard:
        comm = Comm(self.group)
        if self.shard == "members":
            shard: Shard = MemberShard(comm, model, seeds)
        elif self.shard == "agents":
            from populace.engine.partition import Blocks

            shard = Blocks().build(comm, model, seeds)
        elif hasattr(self.shard, "build"):
            shard = self.shard.build(comm, model, seeds)
        else:
            raise ValueError(
                f"unknown shard {self.shard!r}; valid: 'members', 'agents', or a spec such as "
                f"partition.Blocks(...) or slabs.Slabs(...)"
            )
        handshake(comm, shard.facts())
        return shard


def shard_for(distributed: Any, model: Any, seeds: Sequence[int]) -> Shard | None:
    """The shard of a simulation: ``distributed`` is None (a process group if one is
    initialised, else one process), False (one process), True (members), ``"members"``,
    ``"agents"`` or a :class:`Distributed`."""
    if distributed is None:
        if not (dist.is_available() and dist.is_initialized()):
            return None
        distributed = Distributed()
    if distributed is False:
        return None
    if distributed is True:
        distributed = Distributed()
    if (
        isinstance(distributed, str)
        or hasattr(distributed, "build")
        and not isinstance(distributed, Distributed)
    ):
        distributed = Distributed(shard=distributed)
    if not isinstance(distributed, Distributed):
        raise ValueError(
            f"distributed must be None, a bool, 'members', 'agents' or Distributed(...), got "
            f"{type(distributed).__name__}"
        )
    if not (dist.is_available() and dist.is_initialized()):
        raise DistributedError(
            "distributed= was given, but no process group is initialised: launch with torchrun "
            "and call populace.engine.distributed.init() (the CLI does) first"
        )
    return distributed.build(model, seeds)


# -- calibration ensembles ------------------------------------------------------------------
def current() -> Comm | None:
    """The collectives of the initialised default process group (None in one process)."""
    if dist.is_available() and dist.is_initialized():
        return Comm()
    return None


def _comm(comm: Comm | None) -> Comm | None:
    return comm if comm is not None else current()


def sum_over_members(local: torch.Tensor, comm: Comm | None = None) -> torch.Tensor:
    """``[]`` sum of a per-member ``[b_local]`` value over every rank's members, detached, the
    same bits on every rank (and as in one process: summed in member order)."""
    comm = _comm(comm)
    if comm is None:
        return local.detach().sum()
    return comm.all_gather_cat(local.detach(), 0, what="member values").sum()


def mean_over_members(local: torch.Tensor, comm: Comm | None = None) -> torch.Tensor:
    """``[]`` mean of a per-member value (a loss) over every rank's members.

    The value is the whole ensemble's mean, bit for bit as in one process; the gradient flows
    into this rank's members only, weighted ``1 / B``, so after :func:`all_reduce_grads` every
    rank holds the whole ensemble's gradient.
    """
    comm = _comm(comm)
    if comm is None:
        return local.mean()
    whole = comm.all_gather_cat(local.detach(), 0, what="member losses")
    s = local.sum()
    return whole.mean() + (s - s.detach()) / whole.numel()


def all_reduce_grads(tensors: Sequence[torch.Tensor], comm: Comm | None = None) -> None:
    """Sum the ``.grad`` of ``tensors`` over the ranks, in place (None grads count as 0)."""
    comm = _comm(comm)
    if comm is None:
        return
    for t in tensors:
        g = t.grad if t.grad is not None else torch.zeros_like(t)
        t.grad = comm.all_reduce(g, what="gradients")


def gather_members(local: torch.Tensor, comm: Comm | None = None) -> torch.Tensor:
    """``[b_local, ...]`` values of this rank's members → ``[B, ...]`` the whole ensemble's (in
    member order), for a loss that every rank then computes alike, as one process would.

    The value is the gathered tensor, the same bits on every rank. Differentiable: backward
    sends ``world`` x this rank's rows of the gradient into ``local``; after
    :func:`average_grads` every rank holds the one-process gradient, each member counted once
    and every term the ranks compute alike from their replicated inputs (a penalty on the
    params, an observation param used after the gather) counted once too.
    """
    comm = _comm(comm)
    if comm is None:
        return local
    sizes = comm.all_gather_object(local.shape[0], "member counts")
    whole = comm.all_gather_cat(local.detach(), 0, sizes, "member values")
    if not local.requires_grad:
        return whole
    lo, hi = sum(sizes[: comm.rank]), sum(sizes[: comm.rank + 1])
    return torch.cat([whole[:lo], _ScaledGradient.apply(local, comm.world), whole[hi:]])


class _ScaledGradient(torch.autograd.Function):
    """The identity, whose backward multiplies the gradient by ``k``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, k: float) -> torch.Tensor:
        ctx.k = k
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.k, None


def average_grads(tensors: Sequence[torch.Tensor], comm: Comm | None = None) -> None:
    """The ``.grad`` of ``tensors`` averaged over the ranks, in place (None grads count as 0):
    the one-process gradient of a loss built on :func:`gather_members`."""
    comm = _comm(comm)
    if comm is None:
        return
    all_reduce_grads(tensors, comm)
    for t in tensors:
        t.grad = t.grad / comm.world


def member_seeds(seeds: Sequence[int], comm: Comm | None = None) -> list[int]:
    """This rank's block of a run's member seeds (all of them in one process)."""
    comm = _comm(comm)
    if comm is None:
        return list(seeds)
    lo, hi = split(len(seeds), comm.world, comm.rank)
    if hi == lo:
        raise DistributedError(
            f"world size {comm.world} is larger than the {len(seeds)} ensemble member(s)"
        )
    return list(seeds[lo:hi])
