"""Compiled steps: a model's step functions fused by ``torch.compile``, checked against eager.

``Simulation(model, compile=...)`` takes one switch: ``True`` compiles every step function,
``False`` runs them eagerly, ``"auto"`` (default) compiles on the device types listed in the
model's ``compile_on`` (where it was measured to win: see ``benchmarks/compile.py``).

A compiled step is ``torch.compile(fn, dynamic=False)`` (on CUDA with at most
:data:`CUDA_GRAPH_AGENTS` agents, ``mode="reduce-overhead"``: the step's kernels replayed as one
CUDA graph). What the compiler cannot see runs eagerly in between the fused pieces:

- random draws: the step sees ``ctx.rng`` as :class:`EagerDraws` (made by :func:`eager_draws`),
  whose methods run outside the compiled graph (the counter-based streams number their draws
  in Python);
- numba kernels: the epidemic days' (:mod:`populace.kernels.transition`) step aside while
  torch.compile traces, so the compiled step is their torch reference; other numpy and numba
  calls are traced as opaque calls (``trace_numpy`` off) and run on the real arrays;
- host synchronisations (``bool(x.any())``, ``.item()``): graph breaks.

Each call that compiles a graph is checked: the step runs again eagerly from the same state and
random streams, and every state field must agree (integer and bool fields exactly, floating
fields within :data:`PROBE_ULPS` units of their dtype's epsilon, as inductor may reorder float
operations and use vectorised ``exp``/``sin``). A step whose compilation fails, whose compiled
result differs, or which recompiles more than :data:`MAX_RECOMPILES` times (a guard on a value
that changes each step) runs eagerly from then on, with a warning naming the step and the
reason. ``Simulation.compile_report`` has one :class:`StepReport` per step.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from populace.engine.context import Context
from populace.engine.rng import Streams
from populace.engine.state import State

#: accepted values of the ``compile`` switch
CHOICES = ("auto", True, False)
#: floating fields of a compiled step's state may differ from eager by this many epsilons
#: (relative to 1 + |eager value|)
PROBE_ULPS = 64
#: graphs a step may compile after its first call before it is run eagerly for good
MAX_RECOMPILES = 4
#: on CUDA, runs with at most this many agents replay each step as a CUDA graph
CUDA_GRAPH_AGENTS = 200_000


class CompileFallback(UserWarning):
    """A step that was to be compiled runs eagerly (its reason is in the message)."""


def check_compile(value: Any) -> str | bool:
    """The ``compile`` switch, refused unless one of :data:`CHOICES`."""
    if not (value == "auto" or value is True or value is False):
        raise ValueError(f"compile must be 'auto', True or False, got {value!r}")
    return value


def wanted(value: str | bool, compile_on: Sequence[str], device: torch.device) -> bool:
    """Whether to compile: ``value`` itself, or for ``"auto"`` whether ``device``'s type is in
    the model's ``compile_on``."""
    value = check_compile(value)
    return device.type in compile_on if value == "auto" else value


def mode_for(device: torch.device, agents: int) -> str | None:
    """``torch.compile`` mode: CUDA graphs (``"reduce-overhead"``) on CUDA for small runs,
    where launching kernels costs more than running them; the default elsewhere."""
    if device.type == "cuda" and agents <= CUDA_GRAPH_AGENTS:
        return "reduce-overhead"
    return None


class EagerDraws:
    """``ctx.rng`` inside a compiled step: the same streams, each draw run eagerly.

    The streams number their draws with Python counters (site, step); traced, those would be
    frozen into the graph. In the class :func:`eager_draws` makes, each of :data:`DRAWS` is a
    graph break that draws exactly as :class:`~populace.engine.rng.Streams` does, so compiled
    and eager steps draw the same numbers.
    """

    def __init__(self, streams: Streams) -> None:
        self.streams = streams
        self.members = streams.members
        self.keys = streams.keys
        self.device = streams.device
        self.agents = streams.agents
        self.seeds = streams.seeds

    def uniform(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self.streams.uniform(*shape, dtype=dtype)

    def normal(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self.streams.normal(*shape, dtype=dtype)

    def integers(self, low: int, high: int, *shape: int) -> torch.Tensor:
        return self.streams.integers(low, high, *shape)

    def permutation(self, n: int) -> torch.Tensor:
        return self.streams.permutation(n)

    def uniform_at(self, index: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self.streams.uniform_at(index, dtype)

    def claim(self, *shape: int) -> tuple[torch.Tensor, int, int]:
        return self.streams.claim(*shape)

    def get_state(self) -> list[int]:
        return self.streams.get_state()

    def set_state(self, state: Sequence[int]) -> None:
        self.streams.set_state(state)

    def select(self, members: Sequence[int]) -> Streams:
        return self.streams.select(members)

    def view(self, agents: tuple[int, int] | None) -> Streams:
        return self.streams.view(agents)


#: the methods of :class:`EagerDraws` that draw or move the streams
DRAWS = (
    "uniform",
    "normal",
    "integers",
    "permutation",
    "uniform_at",
    "claim",
    "get_state",
    "set_state",
    "select",
    "view",
)


@functools.cache
def eager_draws() -> type[EagerDraws]:
    """:class:`EagerDraws` with each of :data:`DRAWS` a graph break (``torch.compiler.disable``),
    made on first use: the decorator imports ``torch._dynamo`` (about a second and 60 MB), which
    an eager run should not pay."""
    wrapped = {name: torch.compiler.disable(getattr(EagerDraws, name)) for name in DRAWS}
    return type("EagerDraws", (EagerDraws,), wrapped)


@dataclasses.dataclass
class StepReport:
    """How one step function runs in a compiled simulation.

    Attributes:
        step: the step function's name.
        compiled: whether it runs compiled now (False: eagerly).
        reason: why it runs eagerly ("" when compiled).
        graphs: graphs compiled for it so far (more than one: graph breaks or recompiles).
        checks: calls checked against eager (one per call that compiled a graph).
        seconds: time spent compiling and checking.
    """

    step: str
    compiled: bool = True
    reason: str = ""
    graphs: int = 0
    checks: int = 0
    seconds: float = 0.0


def _graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def mismatch(compiled: State, eager: State) -> str:
    """The first field of ``compiled`` that disagrees with ``eager`` (see module doc) and by how
    much, or an empty string when all agree."""
    got, want = compiled.tensors(), eager.tensors()
    for name, e in want.items():
        c = got[name].detach()
        e = e.detach()
        if c.shape != e.shape or c.dtype != e.dtype:
            return f"field {name!r} is {c.dtype} {tuple(c.shape)}, eager {e.dtype} {tuple(e.shape)}"
        if not e.is_floating_point():
            if not torch.equal(c, e):
                return f"field {name!r} differs from eager in {int((c != e).sum())} entries"
            continue
        same_nan = torch.isnan(c) & torch.isnan(e)
        tol = PROBE_ULPS * torch.finfo(e.dtype).eps * (1 + e.abs())
        bad = ~(((c - e).abs() <= tol) | same_nan | (c == e))
        if bad.any():
            worst = float((c - e).abs()[bad].max())
            n = int(bad.sum())
            return f"field {name!r} differs from eager by up to {worst:.3g} ({n} entries)"
    got_static, want_static = compiled.statics(), eager.statics()
    if got_static != want_static:
        return f"static fields {got_static} differ from eager {want_static}"
    return ""


@dataclasses.dataclass
class _Compiled:
    """A ``torch.compile`` wrapper of a step function, and the graphs made for its code so far
    (shared by every function of that code: torch.compile caches graphs per code object, so a
    model built again, with new closures, may reuse the graphs of the first)."""

    fn: Callable
    graphs: list[int]


_CACHE: dict[tuple[Callable, str | None], _Compiled] = {}
_GRAPHS: dict[tuple[Any, str | None], list[int]] = {}


def _compiled(fn: Callable, mode: str | None) -> _Compiled:
    """One ``torch.compile`` wrapper per (function, mode), shared by simulations."""
    key = (fn, mode)
    if key not in _CACHE:
        code = (getattr(fn, "__code__", fn), mode)
        _CACHE[key] = _Compiled(
            torch.compile(fn, mode=mode, dynamic=False), _GRAPHS.setdefault(code, [0])
        )
    return _CACHE[key]


class CompiledStep:
    """A step function run compiled, checked against eager, falling back to eager.

    Call it as the step: ``step(state, params, ctx)``; ``ctx.rng`` must be the run's
    :class:`~populace.engine.rng.Streams`.
    """

    def __init__(self, fn: Callable, mode: str | None, report: StepReport) -> None:
        self.fn = fn  # the model's step (named in messages by model.function_name)
        self.mode = mode
        self.report = report
        self.compiled = _compiled(fn, mode)
        self.calls = 0
        self.first_graphs = 0

    def _fall_back(self, reason: str) -> None:
        if not self.report.compiled:  # said once
            return
        self.report.compiled, self.report.reason = False, reason
        warnings.warn(
            f"compiled step {self.report.step!r} runs eagerly: {reason}",
            CompileFallback,
            stacklevel=4,
        )

    def __call__(self, state: State, params: Any, ctx: Context) -> State:
        if not self.report.compiled:
            return self.fn(state, params, ctx)
        streams = ctx.rng
        before = streams.get_state()
        inner = dataclasses.replace(ctx, rng=eager_draws()(streams))
        graphs = _graphs()
        start = time.perf_counter()
        if self.mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        try:
            with torch._dynamo.config.patch(trace_numpy=False):
                out = self.compiled.fn(state, params, inner)
        except Exception as err:  # the compiler's failure: the eager step says if it is ours
            streams.set_state(before)
            self._fall_back(f"the compiled step raised {type(err).__name__}: {str(err)[:300]}")
            self.report.seconds += time.perf_counter() - start
            return self.fn(state, params, ctx)
        self.calls += 1
        new = _graphs() - graphs
        self.compiled.graphs[0] += new
        if not self.compiled.graphs[0]:  # torch.compile skipped it: it ran eagerly
            self._fall_back("torch.compile made no graph of it (it ran eagerly)")
            self.report.seconds += time.perf_counter() - start
            return out
        if new:
            out = self._check(out, state, params, ctx, before, new)
            self.report.seconds += time.perf_counter() - start
        if self.mode == "reduce-overhead" and isinstance(out, State):
            # outputs of a CUDA graph are overwritten by its next replay: the state keeps copies
            out = out.replace(**{k: v.clone() for k, v in out.tensors().items()})
        return out

    def _check(
        self, out: State, state: State, params: Any, ctx: Context, before: list[int], new: int
    ) -> State:
        """``out`` if it agrees with the eager step from the same inputs, else the eager
        result (and eager from then on)."""
        self.report.graphs += new
        self.report.checks += 1
        if self.calls == 1:
            self.first_graphs = new
        elif self.report.graphs - self.first_graphs > MAX_RECOMPILES:
            self._fall_back(
                f"recompiled {self.report.graphs - self.first_graphs} times after its first "
                f"call (a guard on a value that changes between steps, e.g. ctx.step in "
                f"Python control flow)"
            )
        after = ctx.rng.get_state()
        ctx.rng.set_state(before)
        eager = self.fn(state, params, ctx)
        if not isinstance(out, State) or type(out) is not type(eager):
            self._fall_back(f"returned {type(out).__name__} compiled, {type(eager).__name__} eager")
            return eager
        if ctx.rng.get_state() != after:
            self._fall_back(
                f"drew random numbers differently compiled (streams at {after}) and eagerly "
                f"(at {ctx.rng.get_state()})"
            )
            return eager
        why = mismatch(out, eager)
        if why:
            self._fall_back(f"compiled result differs from eager: {why}")
            return eager
        return out


def compile_steps(
    steps: Sequence[Callable], device: torch.device, agents: int, names: Sequence[str]
) -> tuple[tuple[CompiledStep, ...], list[StepReport]]:
    """Compiled versions of ``steps`` and their reports (one per step, in order)."""
    mode = mode_for(device, agents)
    reports = [StepReport(name) for name in names]
    return tuple(CompiledStep(fn, mode, r) for fn, r in zip(steps, reports, strict=True)), reports
