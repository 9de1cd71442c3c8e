"""Running a model: the step loop, ensembles, recording, progress, checkpoints."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
import torch
from tqdm.auto import tqdm

from populace.engine.context import Context, resolve_device
from populace.engine.intervention import Trigger
from populace.engine.model import Model
from populace.engine.params import ParamError, Params, Schedule, _as_tensor
from populace.engine.recorder import Recorder
from populace.engine.rng import Streams, member_seed
from populace.engine.state import State, StateError, load_state_dict, state_dict
from populace.engine.threads import use_threads

CHECKPOINT_FORMAT = "populace-checkpoint/1"


class NonFiniteError(FloatingPointError):
    """A state field became NaN or Inf (raised with ``check_finite=True``)."""


def _interactive() -> bool:
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def _check_member_shapes(params: Params, members: int) -> None:
    for name in params.names():
        v = getattr(params, name)
        t, lead = (v.values, 1) if isinstance(v, Schedule) else (v, 0)
        if t.dim() > lead and t.shape[lead] != members:
            raise ValueError(
                f"parameter {name!r} has {t.shape[lead]} per-member values, but the run has "
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
        record_every: record metrics every k steps (and always the first and last state).
        progress: tqdm progress bar; ``None`` shows it only on a terminal or in a notebook.
        check_finite: stop at the first NaN/Inf in a state field, naming step and field.
        chunk: records per host copy.
        triggers: metric-triggered rules (:class:`~populace.engine.intervention.Trigger`); each
            rule's on/off flag per member is recorded as a metric column named by its label.
        threads: CPU threads for torch: ``"auto"`` (the cores this process may use, see
            :func:`~populace.engine.threads.use_threads`), a count, or None (leave torch's).
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
    ) -> None:
        self.threads = use_threads(threads)
        if seeds is None:
            if isinstance(members, bool) or not isinstance(members, int) or members < 1:
                raise ValueError(f"members must be a positive integer, got {members!r}")
            seeds = [member_seed(seed, b) for b in range(members)]
        for what, v in (("record_every", record_every), ("chunk", chunk)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{what} must be a positive integer, got {v!r}")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be floating, got {dtype}")
        self.model = model
        self.seed = seed
        self.device = resolve_device(device)
        self.dtype = dtype
        self.record_every = record_every
        self.progress = progress
        self.check_finite = check_finite
        self.chunk = chunk
        self.rng = Streams(seeds, self.device)
        self.params = (params if params is not None else model.params).to(self.device, dtype)
        _check_member_shapes(self.params, self.rng.members)
        self.params.check()
        self.step = 0
        self.ctx = Context(0, self.rng, self.device, dtype)
        self.triggers = tuple(triggers)
        labels = [t.label for t in self.triggers]
        clash = set(labels) & set(model.metrics) or len(set(labels)) != len(labels)
        if clash:
            raise ValueError(f"trigger labels {labels} must be unique and not metric names")
        self._check_triggers()
        self.state = self._init_state()
        if check_finite:
            _check_finite(self.state, "the initial state")
        self.rules_on = [
            torch.zeros(self.members, dtype=torch.bool, device=self.device) for _ in labels
        ]

    @property
    def members(self) -> int:
        return self.rng.members

    def _check_triggers(self) -> None:
        """Each trigger's value passes the same checks as the param it replaces."""
        everyone = torch.ones(self.members, dtype=torch.bool, device=self.device)
        for rule in self.triggers:
            if rule.name not in self.params.names():
                raise ParamError(
                    f"trigger on unknown parameter {rule.name!r}; valid: {self.params.names()}"
                )
            _as_tensor(rule.name, rule.value, self.device, self.dtype)
            rule.apply(self.params.at(0), everyone).check()

    def _init_state(self) -> State:
        state = self.model.init(self.params.at(0), self.ctx)
        if not isinstance(state, State):
            raise TypeError(f"model {self.model.name!r}: init must return a State")
        if state.members != self.members:
            raise StateError(
                f"model {self.model.name!r}: init built {state.members} members, expected "
                f"{self.members}"
            )
        if state.device.type != self.device.type:
            raise StateError(f"model {self.model.name!r}: init built state on {state.device}")
        return state

    def run(self, steps: int) -> Result:
        """Advance ``steps`` steps from the current one, recording metrics; returns a Result."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
        keep_graph = torch.is_grad_enabled() and self.params.requires_grad()
        names = list(self.model.metrics) + [t.label for t in self.triggers]
        recorder = Recorder(names, self.chunk, keep_graph)
        first, last = self.step, self.step + steps
        state = self.state
        show = self.progress if self.progress is not None else _interactive()
        # a run that fails or is interrupted leaves the simulation as it was before it
        streams, rules_on = self.rng.get_state(), list(self.rules_on)
        start = time.perf_counter()
        try:
            with tqdm(total=steps, disable=not show, desc=self.model.name, leave=False) as bar:
                for t in range(first, last):
                    params = self._params_at(t, state)
                    if (t - first) % self.record_every == 0:
                        recorder.record(t, self._measure(state, params))
                    state = self.model.step(state, params, self.ctx.at(t))
                    if self.check_finite:
                        _check_finite(state, f"step {t}")
                    bar.update(1)
                recorder.record(last, self._measure(state, self._params_at(last, state)))
                frame = recorder.frame()  # the host copy synchronises the device
        except BaseException:
            self.rng.set_state(streams)
            self.rules_on = rules_on
            raise
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        self.state, self.step = state, last
        return Result(
            self.model.name, frame, state, self.rng.seeds, (first, last), seconds, recorder
        )

    def _params_at(self, step: int, state: State) -> Params:
        """Params in force at ``step``: schedules resolved, then triggered rules applied."""
        params = self.params.at(step)
        for i, rule in enumerate(self.triggers):
            self.rules_on[i] = rule.update(self.rules_on[i], state, params)
            params = rule.apply(params, self.rules_on[i])
        return params

    def _measure(self, state: State, params: Params) -> dict[str, torch.Tensor]:
        values = self.model.measure(state, params)
        values.update({t.label: on for t, on in zip(self.triggers, self.rules_on, strict=True)})
        return values

    # -- checkpoints -----------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write a checkpoint (state, step, params, member seeds, generator states)."""
        path = Path(path)
        payload: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.name,
            "step": self.step,
            "state": state_dict(self.state),
            "params": self.params.as_dict(),
            "seeds": self.rng.seeds,
            "rng": self.rng.get_state(),
            "dtype": str(self.dtype).removeprefix("torch."),
            "device_type": self.device.type,
            "rules_on": [on.cpu() for on in self.rules_on],
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def resume(cls, path: str | os.PathLike, model: Model, **kwargs: Any) -> Simulation:
        """Continue from a checkpoint; the run goes on exactly as if never interrupted (CPU).

        ``kwargs`` are :class:`Simulation` options (device, progress, record_every, triggers,
        ...); the member seeds and dtype come from the checkpoint, and ``params``, if given,
        must equal the checkpoint's.
        """
        fixed = sorted({"seeds", "seed", "members", "dtype"} & set(kwargs))
        if fixed:
            raise ValueError(f"resume: {fixed} come from the checkpoint; leave them out")
        payload = torch.load(Path(path), weights_only=True)
        if payload.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: not a populace checkpoint ({payload.get('format')!r})")
        if payload["model"] != model.name:
            raise ValueError(
                f"{path}: checkpoint of model {payload['model']!r}, not {model.name!r}"
            )
        dtype = getattr(torch, payload["dtype"])
        sim = cls(model, seeds=payload["seeds"], dtype=dtype, **kwargs)
        if sim.params.as_dict() != payload["params"]:
            raise ValueError(
                f"{path}: checkpoint params {payload['params']} differ from {sim.params.as_dict()}"
            )
        if sim.device.type != payload["device_type"]:
            raise ValueError(
                f"{path}: generator states were saved on {payload['device_type']}, resuming on "
                f"{sim.device.type} would change the random streams"
            )
        sim.state = load_state_dict(sim.state, payload["state"])
        sim.rng.set_state(payload["rng"])
        if len(payload["rules_on"]) != len(sim.triggers):
            raise ValueError(
                f"{path}: saved with {len(payload['rules_on'])} trigger(s), resumed with "
                f"{len(sim.triggers)}"
            )
        sim.rules_on = [on.to(sim.device) for on in payload["rules_on"]]
        sim.step = payload["step"]
        return sim


def run(model: Model, steps: int, **kwargs: Any) -> Result:
    """Shortcut: ``Simulation(model, **kwargs).run(steps)``."""
    return Simulation(model, **kwargs).run(steps)
