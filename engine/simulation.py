"""Running a model: the step loop, ensembles, recording, progress, checkpoints."""

from __future__ import annotations

import dataclasses
import io
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
import torch
from tqdm.auto import tqdm

from populace.engine import compiled, storage
from populace.engine.context import Context, resolve_device
from populace.engine.distributed import local_device, shard_for
from populace.engine.intervention import Trigger
from populace.engine.model import Model, ModelError, function_name
from populace.engine.params import Params, _as_tensor
from populace.engine.recorder import Recorder
from populace.engine.rng import Streams, member_seed
from populace.engine.state import State, StateError, load_state_dict, state_dict
from populace.engine.threads import use_threads

CHECKPOINT_FORMAT = "populace-checkpoint/2"
#: ensemble members refused before any work (one run of more is not a sensible batch)
MAX_MEMBERS = 2**20
#: checkpoint entries and what each must be (checked on resume, before anything is used)
CHECKPOINT_FIELDS: dict[str, tuple[type, ...]] = {
    "format": (str,),
    "model": (str,),
    "step": (int,),
    "state": (dict,),
    "params": (dict,),
    "seeds": (list,),
    "rng": (list,),
    "dtype": (str,),
    "device_type": (str,),
    "rules_on": (list,),
    "data": (dict,),
}
CHECKPOINT_DTYPES = ("float16", "bfloat16", "float32", "float64")


class NonFiniteError(FloatingPointError):
    """A state field became NaN or Inf (raised with ``check_finite=True``)."""


def _interactive() -> bool:
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def _check_member_shapes(params: Params, members: int) -> None:
    for name, size in params.members().items():
        if size != members:
            raise ValueError(
                f"parameter {name!r} has {size} per-member values, but the run has "
                f"{members} members"
            )


def _check_finite(state: State, when: str) -> None:
    for name, t in state.tensors().items():
        if t.is_floating_point() or t.is_complex():
            bad = ~torch.isfinite(t).reshape(t.shape[0], -1).all(dim=1)
            if bad.any():
                members = bad.nonzero().flatten().tolist()
                raise NonFiniteError(
                    f"{when}: field {type(state).__name__}.{name} has NaN/Inf (member(s) {members})"
                )


@dataclasses.dataclass
class Result:
    """What one :meth:`Simulation.run` returns.

    Attributes:
        model: model name.
        metrics: polars DataFrame ``(member, step, metric...)``.
        final_state: the state after the last step.
        seeds: the member stream seeds.
        steps: (first, last) step of this run; ``last`` is the final state's step.
        seconds: wall time of the step loop (synchronised at the end).
    """

    model: str
    metrics: pl.DataFrame
    final_state: State
    seeds: list[int]
    steps: tuple[int, int]
    seconds: float
    recorder: Recorder = dataclasses.field(repr=False)

    def series(self, name: str) -> torch.Tensor:
        """``[B, T]`` one metric over the recorded steps (differentiable if params need grad)."""
        return self.recorder.series(name)

    def _repr_html_(self) -> str:
        from populace.engine.display import table

        first, last = self.steps
        members = self.metrics["member"].n_unique() if self.metrics.height else 0
        rows = [[k, f"{v:.6g}"] for k, v in self.final().items()]
        title = (
            f"Result of {self.model!r}: steps {first}..{last}, {members} member(s), "
            f"{self.seconds:.3g} s"
        )
        return table(rows, ["metric (mean over members, last step)", "value"], title=title)

    def final(self) -> dict[str, float]:
        """Each metric at the last recorded step, averaged over members."""
        last = self.metrics.filter(pl.col("step") == pl.col("step").max())
        return {
            n: float(last[n].mean()) for n in self.metrics.columns if n not in ("member", "step")
        }


class Simulation:
    """Runs a model on a device for an ensemble of ``members`` (B) independent streams.

    Args:
        model: what to run.
        members: ensemble size B (ignored when ``seeds`` is given).
        seed: run seed; member b draws from ``member_seed(seed, b)``.
        seeds: explicit member stream seeds (e.g. one member of a larger batch).
        params: parameters to use instead of ``model.params``.
        device: ``"auto" | "cpu" | "cuda[:i]"``.
        dtype: floating dtype (float32 default, float64 for tests).
        record_every: record metrics at the steps that are multiples of k (counted from step 0,
            so a resumed run keeps the phase) and the last state of every run.
        progress: tqdm progress bar; ``None`` shows it only on a terminal or in a notebook.
        check_finite: stop at the first NaN/Inf in a state field, naming step and field.
        chunk: records per host copy.
        triggers: metric-triggered rules (:class:`~populace.engine.intervention.Trigger`); each
            rule's on/off flag per member is recorded as a metric column named by its label.
        threads: CPU threads for torch: ``"auto"`` (the cores this process may use, see
            :func:`~populace.engine.threads.use_threads`), a count, or None (leave torch's).
        distributed: spread the run over the ranks of a torch.distributed process group
            (:mod:`populace.engine.distributed`): None (default) shards the members when a
            process group is initialised (torchrun), False never, ``"members"``, ``"agents"``
            or a :class:`~populace.engine.distributed.Distributed`. A sharded run's metrics
            table is the whole run's on every rank; ``final_state`` is the rank's part
            (:meth:`global_state` gathers it); checkpoints hold the whole run.
        compile: fuse the step functions with ``torch.compile`` (:mod:`~populace.engine.compiled`):
            ``"auto"`` (on the device types in ``model.compile_on``, where it was measured to
            win), True or False. Each compiled graph is checked against the eager step; a step
            that cannot be compiled runs eagerly with a warning. ``compile_report`` says how
            each step runs.
    """

    def __init__(
        self,
        model: Model,
        *,
        members: int = 1,
        seed: int = 0,
        seeds: Sequence[int] | None = None,
        params: Params | None = None,
        device: str | torch.device = "auto",
        dtype: torch.dtype = torch.float32,
        record_every: int = 1,
        progress: bool | None = None,
        check_finite: bool = False,
        chunk: int = 64,
        triggers: Sequence[Trigger] = (),
        threads: int | str | None = "auto",
        distributed: Any = None,
        compile: str | bool = "auto",
    ) -> None:
        compiled.check_compile(compile)
        self.threads = use_threads(threads)
        if seeds is None:
            if isinstance(members, bool) or not isinstance(members, int) or members < 1:
                raise ValueError(f"members must be a positive integer, got {members!r}")
            if members > MAX_MEMBERS:
                raise ValueError(
                    f"members must be at most {MAX_MEMBERS:,} in one run, got {members:,}"
                )
            seeds = [member_seed(seed, b) for b in range(members)]
        for what, v in (("record_every", record_every), ("chunk", chunk)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{what} must be a positive integer, got {v!r}")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be floating, got {dtype}")
        # sharded over ranks: this rank's members (all of them when the agents are sharded)
        self.all_seeds = [int(s) for s in seeds]
        self.shard = shard_for(distributed, model, self.all_seeds)
        if self.shard is not None and compile is True:
            raise ValueError(
                "compile=True is not supported for a run sharded over ranks (its steps "
                "exchange data between ranks); use compile='auto' or False"
            )
        if self.shard is not None:
            seeds, device = self.shard.local_seeds(), local_device(device)
        self.model = model
        self.seed = seed
        self.device = resolve_device(device)
        self.dtype = dtype
        self.record_every = record_every
        self.progress = progress
        self.check_finite = check_finite
        self.chunk = chunk
        self.rng = Streams(seeds, self.device)
        self.axes = model.data.axis_sizes()
        params = params if params is not None else model.params
        self.params = params.to(self.device, dtype, axes=self.axes)
        _check_member_shapes(self.params, len(self.all_seeds))
        self.whole_params = self.params  # what checkpoints hold
        if self.shard is not None:
            self.params = self.shard.local_params(self.params)
            triggers = self.shard.local_triggers(triggers)
        self.params.validate(model.name)
        self.step = 0
        self.data = model.data.to(self.device, dtype)  # once per run, shared by all members
        if self.shard is not None:
            self.data, self.rng = self.shard.local_data(self.data), self.shard.streams(self.rng)
        self.ctx = Context(0, self.rng, self.device, dtype, self.data, self.shard)
        self.triggers = tuple(triggers)
        self.rules_on = [
            rule.initial(self.members, self.params, model.data, self.device) for rule in triggers
        ]
        self._check_triggers()
        self.state = self._init_state()
        if check_finite:
            _check_finite(self.state, "the initial state")
        self.compiled = self.shard is None and compiled.wanted(
            compile, model.compile_on, self.device
        )
        #: one :class:`~populace.engine.compiled.StepReport` per step (empty when eager)
        self.compile_report: list[compiled.StepReport] = []
        self._steps = None
        if self.compiled:
            self._steps, self.compile_report = compiled.compile_steps(
                model.steps,
                self.device,
                self.state.dims.get("N", model.agents),
                [function_name(fn) for fn in model.steps],
            )

    @property
    def members(self) -> int:
        return self.rng.members

    def _check_triggers(self) -> None:
        """Trigger labels are unique and not metric columns; each trigger's value passes the
        same checks as the param it replaces (where it applies)."""
        columns = set(self.model.metric_columns())
        names = [c for rule in self.triggers for c in rule.columns(self.model.data)]
        if len(set(names)) != len(names) or set(names) & columns:
            raise ValueError(f"trigger columns {names} must be unique and not metric names")
        for rule, on in zip(self.triggers, self.rules_on, strict=True):
            _as_tensor(rule.name, rule.value, self.device, self.dtype)
            rule.apply(self.params.at(0), torch.ones_like(on), self.model.data).validate(
                self.model.name
            )

    def _init_state(self) -> State:
        self.rng.begin(-1)
        if self.shard is not None:
            state = self.shard.initial_state(self)
        else:
            state = self.model.init(self.params.at(0), self.ctx)
        if not isinstance(state, State):
            raise ModelError(
                f"model {self.model.name!r}: init returned {type(state).__name__}, not a State"
            )
        if state.members != self.members:
            raise StateError(
                f"model {self.model.name!r}: init built {state.members} members, expected "
                f"{self.members}"
            )
        if state.device.type != self.device.type:
            raise StateError(f"model {self.model.name!r}: init built state on {state.device}")
        return state

    def run(self, steps: int) -> Result:
        """Advance ``steps`` steps from the current one, recording metrics; returns a Result.

        Between recorded steps a model with a :attr:`~populace.engine.model.Model.leap` takes
        them in one call where it can (same numbers as step by step)."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
        keep_graph = torch.is_grad_enabled() and self.params.requires_grad()
        names = self.model.metric_columns()
        names += [c for rule in self.triggers for c in rule.columns(self.model.data)]
        recorder = Recorder(names, self.chunk, keep_graph)
        first, last = self.step, self.step + steps
        state = self.state
        show = self.progress if self.progress is not None else _interactive()
        # a run that fails or is interrupted leaves the simulation as it was before it
        streams, rules_on = self.rng.get_state(), list(self.rules_on)
        start = time.perf_counter()
        try:
            with tqdm(total=steps, disable=not show, desc=self.model.name, leave=False) as bar:
                t, may_leap = first, self._may_leap()
                while t < last:
                    ctx = self.ctx.at(t)
                    params = self._params_at(t, state, ctx)
                    if t % self.record_every == 0:  # the phase counts from step 0 (resumes keep it)
                        recorder.record(t, self._measure(state, params, t))
                    count = self._leap_count(t, last) if may_leap else 0  # 0, 1: step
                    leapt = self.model.leap_over(state, params, ctx, count) if count > 1 else None
                    may_leap = may_leap and (count < 2 or leapt is not None)  # once refused, step
                    if leapt is not None:
                        state, done = leapt, count
                    else:
                        self.rng.begin(t)
                        state, done = self.model.step(state, params, ctx, self._steps), 1
                    if self.check_finite:
                        _check_finite(state, f"step {t}")
                    bar.update(done)
                    t += done
                recorder.record(last, self._measure(state, self._params_at(last, state), last))
                frame = recorder.frame()  # the host copy synchronises the device
                if self.shard is not None:
                    frame = self.shard.frame(frame)  # the whole run's table on every rank
        except BaseException:
            self.rng.set_state(streams)
            self.rules_on = rules_on
            raise
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        self.state, self.step = state, last
        return Result(
            self.model.name, frame, state, self.all_seeds, (first, last), seconds, recorder
        )

    def _may_leap(self) -> bool:
        """Whether the model's leap may take the steps between recorded ones: nothing needs
        them (no triggers, no schedule in the params, no finite check, eager steps, one
        process). The same for every step of a run."""
        return not (
            self.model.leap is None
            or self.triggers
            or self.check_finite
            or self._steps is not None
            or self.shard is not None
            or self.params.at(0) is not self.params  # a schedule somewhere
        )

    def _leap_count(self, step: int, last: int) -> int:
        """How many steps from ``step`` a leap takes: to the next recorded step, or ``last``."""
        return min(last, (step // self.record_every + 1) * self.record_every) - step

    def _params_at(self, step: int, state: State, ctx: Context | None = None) -> Params:
        """Params in force at ``step``: schedules resolved, then triggered rules applied
        (``ctx``: the context at ``step``, if the caller has it)."""
        params = self.params.at(step)
        if not self.triggers:
            return params
        ctx = ctx or self.ctx.at(step)
        for i, rule in enumerate(self.triggers):
            self.rules_on[i] = rule.update(self.rules_on[i], state, params, ctx)
            params = rule.apply(params, self.rules_on[i], self.model.data)
        return params

    def _measure(self, state: State, params: Params, step: int) -> dict[str, torch.Tensor]:
        values = self.model.measure(state, params, self.ctx.at(step))
        if self.shard is not None:
            values = self.shard.reduce(values)
        for rule, on in zip(self.triggers, self.rules_on, strict=True):
            values.update(rule.record(on, self.model.data))
        return values

    # -- checkpoints -----------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write a checkpoint (state, step, params, member seeds, model data digests).

        The counter-based streams need no state beyond the step, so a checkpoint resumes on
        any device. One file: a header line ``populace-checkpoint/2 bytes=N sha256=HEX`` and
        the ``torch.save`` payload it covers, written beside ``path`` and renamed over it, so a
        failure (or a kill) leaves the previous checkpoint whole and no temporary behind.

        A sharded run gathers the whole run and rank 0 writes it: the file is the one a single
        process would write, and resumes on any number of ranks.
        """
        state, rules_on = self.state, self.rules_on
        if self.shard is not None:
            state, rules_on = self.global_state(), self.shard.global_flags(rules_on)
        payload: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.name,
            "step": self.step,
            "state": state_dict(state),
            "params": self.whole_params.as_dict(),
            "seeds": self.all_seeds,
            "rng": self.rng.get_state(),
            "dtype": str(self.dtype).removeprefix("torch."),
            "device_type": self.device.type,
            "rules_on": [on.cpu() for on in rules_on],
            "data": self.model.data.digests(),
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        if self.shard is not None:
            self.shard.comm.on_rank0(
                lambda: storage.write_sealed(path, CHECKPOINT_FORMAT, buffer.getbuffer()),
                f"writing checkpoint {path}",
            )
            return Path(path)
        return storage.write_sealed(path, CHECKPOINT_FORMAT, buffer.getbuffer())

    def global_state(self) -> State:
        """The whole run's current state (gathered from the ranks of a sharded run)."""
        if self.shard is None:
            return self.state
        return self.shard.global_state(self.state)

    @classmethod
    def resume(cls, path: str | os.PathLike, model: Model, **kwargs: Any) -> Simulation:
        """Continue from a checkpoint; the run goes on exactly as if never interrupted (CPU).

        ``kwargs`` are :class:`Simulation` options (device, progress, record_every, triggers,
        ...); the member seeds and dtype come from the checkpoint, and ``params``, if given,
        must equal the checkpoint's. A damaged, truncated or foreign file raises
        :class:`~populace.engine.storage.IntegrityError` naming it before anything is parsed.
        """
        fixed = sorted({"seeds", "seed", "members", "dtype"} & set(kwargs))
        if fixed:
            raise ValueError(f"resume: {fixed} come from the checkpoint; leave them out")
        data = storage.read_sealed(path, CHECKPOINT_FORMAT, "populace checkpoint")
        try:
            payload = torch.load(io.BytesIO(data), weights_only=True)
        except Exception as err:  # intact digest, unreadable payload: not written by save()
            raise storage.IntegrityError(f"{path}: unreadable checkpoint payload ({err})") from None
        cls._check_checkpoint(path, payload)
        if payload["model"] != model.name:
            raise ValueError(
                f"{path}: checkpoint of model {payload['model']!r}, not {model.name!r}"
            )
        dtype = getattr(torch, payload["dtype"])
        sim = cls(model, seeds=payload["seeds"], dtype=dtype, **kwargs)
        if sim.whole_params.as_dict() != payload["params"]:
            raise ValueError(
                f"{path}: checkpoint params {payload['params']} differ from "
                f"{sim.whole_params.as_dict()}"
            )
        model.data.check_digests(payload["data"], str(path))
        try:
            sim.state = load_state_dict(sim.global_state(), payload["state"])
        except StateError as err:
            raise StateError(f"{path}: {err}") from None
        rules_on = sim.rules_on
        if sim.shard is not None:  # checked against the whole run's, then this rank's part
            sim.state = sim.shard.local_state(sim.state)
            rules_on = sim.shard.global_flags(sim.rules_on)
        sim.rng.set_state(payload["rng"])
        if len(payload["rules_on"]) != len(sim.triggers):
            raise ValueError(
                f"{path}: saved with {len(payload['rules_on'])} trigger(s), resumed with "
                f"{len(sim.triggers)}"
            )
        for on, saved in zip(rules_on, payload["rules_on"], strict=True):
            if saved.shape != on.shape:
                raise ValueError(
                    f"{path}: trigger state of shape {tuple(saved.shape)}, the "
                    f"resumed trigger has {tuple(on.shape)}"
                )
        sim.rules_on = [on.to(sim.device) for on in payload["rules_on"]]
        if sim.shard is not None:
            sim.rules_on = sim.shard.local_flags(sim.rules_on)
        sim.step = payload["step"]
        return sim

    @staticmethod
    def _check_checkpoint(path: str | os.PathLike, payload: Any) -> None:
        """Raise naming ``path`` when a checkpoint payload lacks an entry or holds a wrong one."""
        if not isinstance(payload, dict):
            raise storage.IntegrityError(
                f"{path}: checkpoint payload is a {type(payload).__name__}"
            )
        for key, types in CHECKPOINT_FIELDS.items():
            value = payload.get(key)
            if not isinstance(value, types) or isinstance(value, bool):
                raise storage.IntegrityError(
                    f"{path}: checkpoint entry {key!r} is {type(value).__name__}, expected "
                    f"{' or '.join(t.__name__ for t in types)}"
                )
        if payload["format"] != CHECKPOINT_FORMAT:
            raise storage.IntegrityError(f"{path}: format {payload['format']!r} in the payload")
        if payload["step"] < 0:
            raise storage.IntegrityError(f"{path}: step {payload['step']} is negative")
        if payload["dtype"] not in CHECKPOINT_DTYPES:
            raise storage.IntegrityError(f"{path}: dtype {payload['dtype']!r} is not a float dtype")
        state = payload["state"]
        if not isinstance(state.get("tensors"), dict) or not isinstance(state.get("statics"), dict):
            raise storage.IntegrityError(f"{path}: checkpoint state lacks its tensors or statics")
        seeds = payload["seeds"]
        if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise storage.IntegrityError(f"{path}: member seeds {seeds!r} are not integers")
        rng = payload["rng"]
        if len(rng) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in rng):
            raise storage.IntegrityError(f"{path}: stream state {rng!r} is not [step, site]")
        for on in payload["rules_on"]:
            if (
                not isinstance(on, torch.Tensor)
                or on.dtype != torch.bool
                or on.dim() not in (1, 2)
                or on.shape[0] != len(seeds)
            ):
                what = f"{on.dtype} {tuple(on.shape)}" if isinstance(on, torch.Tensor) else on
                raise storage.IntegrityError(
                    f"{path}: a trigger flag is {what}, expected bool ({len(seeds)},) or "
                    f"({len(seeds)}, A)"
                )
        digests = payload["data"]
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in digests.items()):
            raise storage.IntegrityError(f"{path}: model data digests are not name -> hex")


def run(model: Model, steps: int, **kwargs: Any) -> Result:
    """Shortcut: ``Simulation(model, **kwargs).run(steps)``."""
    return Simulation(model, **kwargs).run(steps)
