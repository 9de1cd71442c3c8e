"""A model: params + model data + initial state + an ordered tuple of pure steps + metrics."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import torch

from populace.engine.context import Context
from populace.engine.data import EMPTY, Data
from populace.engine.params import Params
from populace.engine.state import State

S = TypeVar("S", bound=State)
P = TypeVar("P", bound=Params)

#: ``step(state, params, ctx) -> state``: pure, params already resolved at ``ctx.step``.
Step = Callable[[S, P, Context], S]
#: ``metric(state, params, ctx) -> [B]`` (or ``[B, A]`` for a metric declared with :func:`per`).
Metric = Callable[[S, P, Context], torch.Tensor]

#: device types where ``compile="auto"`` compiles a model's steps unless it says otherwise. None:
#: on the 2-core CPU (benchmarks/results/compile-cpu-*.json) compiled steps win in steady state
#: only for pure-torch steps at 1e5 agents (physarum 1.8x, kuramoto 1.3x) and lose or tie
#: elsewhere, and a first compile (2-12 s, plus ~15 s of inductor start per process) outweighs
#: what runs of fewer than a few thousand steps save; CUDA is not measured yet (``python -m
#: populace.benchmarks.compile --device cuda``). See :mod:`populace.engine.compiled`.
COMPILE_ON: tuple[str, ...] = ()

#: column names of the recorded tables that no metric may take.
INDEX_COLUMNS = ("member", "step", "scenario", "seed")


class ModelError(ValueError):
    """A model is malformed, or one of its steps or metrics returned something wrong."""


@dataclasses.dataclass(frozen=True)
class AxisMetric:
    """A metric with one value per label of a model-data axis: ``fn`` returns ``[B, A]``,
    recorded as columns ``<prefix>_<label>`` (prefix: the metric's name unless given)."""

    axis: str
    fn: Metric
    prefix: str | None = None


def per(axis: str, fn: Metric, prefix: str | None = None) -> AxisMetric:
    """Declare ``fn`` (returning ``[B, A]``) a metric per label of ``axis``.

    Example: ``metrics={"cases": total, "cases_by_borough": per("borough", fn, prefix="cases")}``
    records ``cases`` and ``cases_BX``, ``cases_BK``, ...
    """
    return AxisMetric(axis, fn, prefix)


def function_name(fn: Any) -> str:
    """A step's or metric's name for messages (``qualname`` of functions and factories)."""
    fn = getattr(fn, "fn", fn)
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


@dataclasses.dataclass(frozen=True)
class Model(Generic[S, P]):
    """Everything needed to run a simulation.

    Attributes:
        name: the model's name in the zoo (or the user's choice).
        params: default parameter values (numbers, tensors or schedules).
        init: ``init(params, ctx) -> state`` building the ``[B, ...]`` initial state.
        steps: applied in order each time step.
        metrics: name → ``metric(state, params, ctx) -> [B]`` (or :func:`per` an axis),
            recorded by the simulation.
        agents: number of agents (capacity), for reporting and benchmarks.
        options: the build options that made this model (for run records).
        data: read-only tensors shared by all members (a :class:`Data`, or a dict of tensors),
            reached from steps as ``ctx.data``.
        compile_on: device types (``"cpu"``, ``"cuda"``) where ``Simulation(compile="auto")``
            compiles the steps (:mod:`populace.engine.compiled`): where compiled steps were
            measured to beat eager ones (``benchmarks/compile.py``).
        leap: optional ``leap(state, params, ctx, count) -> state | None``: ``count`` steps
            from ``ctx.step`` in one call, with exactly the numbers of ``count`` calls of
            :attr:`steps` (drawing from ``ctx.rng`` as they would, step by step), or None where
            it cannot run (then the steps run). A simulation leaps between recorded steps when
            nothing needs the steps in between (see :meth:`Simulation.run
            <populace.engine.simulation.Simulation.run>`): for a model of a hundred agents, the
            per-step Python of the step loop costs more than the step.
    """

    name: str
    params: P
    init: Callable[[P, Context], S]
    steps: tuple[Step, ...]
    metrics: Mapping[str, Metric | AxisMetric] = dataclasses.field(default_factory=dict)
    agents: int = 0
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    data: Data = EMPTY
    compile_on: tuple[str, ...] = COMPILE_ON
    leap: Callable[[S, P, Context, int], S | None] | None = None

    def __post_init__(self) -> None:
        if not self.steps:
            raise ModelError(f"model {self.name!r} has no steps")
        if not isinstance(self.params, Params):
            raise ModelError(f"model {self.name!r}: params must be a Params dataclass")
        if not isinstance(self.data, Data):
            object.__setattr__(self, "data", Data(self.data))
        object.__setattr__(self, "steps", tuple(self.steps))
        object.__setattr__(self, "compile_on", tuple(self.compile_on))
        unknown = sorted(set(self.compile_on) - {"cpu", "cuda"})
        if unknown:
            raise ModelError(
                f"model {self.name!r}: compile_on names unknown device type(s) {unknown}; "
                f"valid: cpu, cuda"
            )
        for fn in self.steps:
            if not callable(fn):
                raise ModelError(f"model {self.name!r}: step {fn!r} is not callable")
        if self.leap is not None and not callable(self.leap):
            raise ModelError(f"model {self.name!r}: leap {self.leap!r} is not callable")
        columns = self.metric_columns()
        clash = sorted(set(columns) & set(INDEX_COLUMNS))
        if clash:
            raise ModelError(
                f"model {self.name!r}: metric name(s) {clash} are index columns of the recorded "
                f"table ({', '.join(INDEX_COLUMNS)}); rename them"
            )
        if len(set(columns)) != len(columns):
            raise ModelError(f"model {self.name!r}: metric columns repeat: {columns}")
        sizes = self.data.axis_sizes()
        for name, decl in self.params.declarations().items():
            missing = [a for a in decl.axes if a not in sizes]
            if missing:
                raise ModelError(
                    f"model {self.name!r}: parameter {name!r} runs along axis {missing[0]!r}, "
                    f"which its data does not define; data axes: {sorted(sizes)}"
                )

    def metric_columns(self) -> list[str]:
        """Recorded column names: one per plain metric, one per label of an axis metric."""
        out = []
        for name, fn in self.metrics.items():
            if isinstance(fn, AxisMetric):
                labels = self.data.labels(fn.axis)
                out += [f"{fn.prefix or name}_{label}" for label in labels]
            else:
                out.append(name)
        return out

    def _repr_html_(self) -> str:
        from populace.engine.display import describe_value, table

        rows = [["agents", f"{self.agents:,}"]]
        rows += [[f"option {k}", v] for k, v in self.options.items() if k != "agents"]
        for n, d in self.params.declarations().items():
            value = describe_value(getattr(self.params, n))
            rows.append([f"param {n}", f"{value}  {d.describe()}"])
        rows += [[f"data {r[0]}", " ".join(r[1:])] for r in self.data.rows()]
        rows.append(["steps", " → ".join(function_name(f) for f in self.steps)])
        rows.append(["metrics", ", ".join(self.metric_columns())])
        return table(rows, ["", ""], title=f"Model {self.name!r}")

    def with_params(self, **values: Any) -> Model[S, P]:
        """The same model with some parameter values replaced (names checked)."""
        return dataclasses.replace(self, params=self.params.replace(**values))

    def step(self, state: S, params: P, ctx: Context, fns: tuple[Step, ...] | None = None) -> S:
        """Apply every step once; ``params`` must already be resolved at ``ctx.step``.

        ``fns``: callables run in place of :attr:`steps`, one per step (a simulation's
        compiled steps, each naming its function as ``.fn``).

        Raises:
            ModelError: naming the step function and step number when a step returns anything
                but a state of the same class, or changes the number of members or agents.
        """
        for fn in self.steps if fns is None else fns:
            state = self._checked(fn, state, fn(state, params, ctx), ctx.step)
        return state

    def leap_over(self, state: S, params: P, ctx: Context, count: int) -> S | None:
        """``count`` steps by :attr:`leap` (checked as :meth:`step` checks a step), or None where
        the model has no leap or it cannot run."""
        if self.leap is None:
            return None
        out = self.leap(state, params, ctx, count)
        return None if out is None else self._checked(self.leap, state, out, ctx.step)

    def _checked(self, fn: Callable[..., Any], state: S, out: Any, step: int) -> S:
        """``out``, the state ``fn`` made from ``state``, once it is a state of the same class
        with the same members and agents (:class:`ModelError` naming ``fn`` and the step)."""
        cls = type(state)
        if type(out) is not cls:
            raise ModelError(
                f"model {self.name!r}: step function {function_name(fn)!r} returned "
                f"{type(out).__name__} at step {step}; a step returns a {cls.__name__} "
                f"(state.replace(...))"
            )
        if out.dims is state.dims:  # State.replace kept the validated dims
            return out
        for sym, what in (("B", "ensemble members"), ("N", "agents")):
            if out.dims.get(sym) != state.dims.get(sym):
                raise ModelError(
                    f"model {self.name!r}: step function {function_name(fn)!r} changed the "
                    f"number of {what} ({sym}) from {state.dims.get(sym)} to "
                    f"{out.dims.get(sym)} at step {step}; shapes are fixed (use an "
                    f"alive mask for births and deaths)"
                )
        return out

    def measure(self, state: S, params: P, ctx: Context) -> dict[str, torch.Tensor]:
        """Every metric column of ``state``, each ``[B]``.

        Raises:
            ModelError: naming the metric, its function and the step when a metric returns a
                non-tensor or a wrong shape.
        """
        out = {}
        b = state.members
        for name, fn in self.metrics.items():
            axis = fn.axis if isinstance(fn, AxisMetric) else None
            call = fn.fn if axis else fn
            value = call(state, params, ctx)
            labels = self.data.labels(axis) if axis else ()
            want = (b, len(labels)) if axis else (b,)
            where = (
                f"model {self.name!r}: metric {name!r} (function {function_name(call)!r}) at "
                f"step {ctx.step}"
            )
            if not isinstance(value, torch.Tensor):
                raise ModelError(
                    f"{where} returned {type(value).__name__}; a metric returns a tensor of "
                    f"shape {list(want)}"
                )
            if tuple(value.shape) != want:
                raise ModelError(
                    f"{where} returned shape {tuple(value.shape)}, expected {list(want)}"
                )
            if axis:
                prefix = fn.prefix or name
                out.update({f"{prefix}_{lab}": value[:, k] for k, lab in enumerate(labels)})
            else:
                out[name] = value
        return out
