"""A live run: a simulation stepping on a thread of its own, steered by commands, read by frames.

The UI never steps the model. It sends commands (play, pause, step, reset, a param change, a new
number of steps per frame) and pulls the latest :class:`Frame` at its own bounded rate; the
simulation thread runs chunks of ``steps_per_frame`` steps with
:meth:`~populace.engine.Simulation.run`, appends their metrics to a :class:`History` and
publishes a new frame after each chunk. What the UI reads from the run's tensors (a density
image, shares by area) it asks the simulation thread to compute between two chunks
(:meth:`LiveRun.compute`), so nothing runs beside a chunk on the device or the CPU's threads.

A live study (``scenarios=``) lays members out as :func:`~populace.engine.study.study` does
(member ``b = s * seeds + k`` runs scenario ``s`` with the stream of seed ``k``), so every
scenario sees the same random numbers and the differences are paired.

A param change is checked against its declaration in the caller's thread (an out-of-bounds
value raises :class:`~populace.engine.ParamError` and is never sent) and takes effect at the
next chunk boundary; a reset starts again from step 0 with the current params and the seed
given. A model that raises stops the run: the frame's status is ``"error"`` and its message
names the step (the simulation is left at the state before that step).
"""

from __future__ import annotations

import dataclasses
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from populace.engine import Model, ModelError, ParamError, Params, Simulation, State
from populace.engine.intervention import apply_all
from populace.engine.rng import member_seed
from populace.engine.study import Scenario, stack_params
from populace.view.history import History

#: what a frame's ``status`` may be.
STATUSES = ("paused", "playing", "finished", "error", "stopped")


@dataclasses.dataclass(frozen=True)
class Frame:
    """What the UI reads: the latest state and everything recorded so far.

    Attributes:
        version: increases with every published frame.
        status: one of :data:`STATUSES`.
        step: the state's step.
        state: the latest state (immutable; on the run's device).
        params: the base params as set by the user (before scenarios apply their
            interventions).
        applied: the params in force in the simulation (per member in a study), on the
            run's device.
        history: recorded steps and metrics (``[T, B]`` per column).
        seed: the run seed.
        steps_per_second: simulation speed over the last chunk (0 before the first).
        error: the error message when ``status == "error"``.
    """

    version: int
    status: str
    step: int
    state: State
    params: Params
    applied: Params
    history: History
    seed: int
    steps_per_second: float = 0.0
    error: str = ""


@dataclasses.dataclass(frozen=True)
class Layout:
    """Members of a live run: one plain ensemble, or baseline + scenarios × seeds."""

    scenarios: tuple[Scenario, ...] = ()
    seeds: int = 1
    baseline: str = "baseline"

    @property
    def names(self) -> list[str]:
        """Scenario names, baseline first (``[]`` for a plain ensemble)."""
        return [self.baseline, *(s.name for s in self.scenarios)] if self.scenarios else []

    @property
    def members(self) -> int:
        return (1 + len(self.scenarios)) * self.seeds if self.scenarios else self.seeds

    def scenario_of(self) -> np.ndarray:
        """``[B]`` scenario index of each member (zeros for a plain ensemble)."""
        return np.arange(self.members) // self.seeds if self.scenarios else np.zeros(self.members)


def study_layout(scenarios: Sequence[Scenario], seeds: int, baseline: str = "baseline") -> Layout:
    """A :class:`Layout` of a live study; names must be unique and ``seeds`` positive."""
    names = [baseline, *(s.name for s in scenarios)]
    if len(set(names)) != len(names):
        raise ValueError(f"scenario names must be unique (baseline is {baseline!r}): {names}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
    return Layout(tuple(scenarios), seeds, baseline)


class LiveRun:
    """A model (or a study of it) running live on its own thread.

    Args:
        model: what to run; its params are the starting point of the controls.
        members: ensemble size B of a plain run (a study has (1 + scenarios) × ``seeds``).
        seed: run seed; member b draws from ``member_seed(seed, b)`` (seed k of a study).
        scenarios: counterfactuals for a live study (empty: a plain ensemble).
        seeds: seeds per scenario of a study.
        device, dtype, check_finite, threads: as for :class:`~populace.engine.Simulation`.
        steps_per_frame: steps per chunk (a frame is published after each).
        until: pause (status ``"finished"``) when the run reaches this step (None: never).
    """

    def __init__(
        self,
        model: Model,
        *,
        members: int = 1,
        seed: int = 0,
        scenarios: Sequence[Scenario] = (),
        seeds: int = 4,
        device: str | torch.device = "auto",
        dtype: torch.dtype = torch.float32,
        check_finite: bool = False,
        threads: int | str | None = "auto",
        steps_per_frame: int = 1,
        until: int | None = None,
    ) -> None:
        self.model = model
        if scenarios:
            self.layout = study_layout(scenarios, seeds)
        else:
            _check_count("members", members, 1)
            self.layout = Layout((), members)
        self.steps_per_frame = _check_count("steps_per_frame", steps_per_frame, 1)
        self.until = None if until is None else _check_count("until", until, 0)
        self._options = {
            "device": device,
            "dtype": dtype,
            "check_finite": check_finite,
            "threads": threads,
        }
        self._cond = threading.Condition()
        self._version = 0
        self._playing = False
        self._pending_steps = 0
        self._pending_reset: int | None = None
        self._pending_params: Params | None = None
        self._jobs: list[_Job] = []
        #: seconds the simulation thread has spent on :meth:`compute` jobs
        self.compute_seconds = 0.0
        self._stopping = False
        # built here, so a model that cannot start raises to the caller
        self._base = model.params
        self.sim, self.history = self._start(seed, self._base)
        self._frame = self._publish("paused", seed=seed)
        self._thread = threading.Thread(target=self._loop, name="populace-live", daemon=True)
        self._thread.start()

    # -- commands (any thread) ---------------------------------------------------------------
    def play(self) -> None:
        """Run chunks until paused, finished (``until``) or stopped by an error."""
        with self._cond:
            if self._frame.status == "error":
                raise RuntimeError(f"the run stopped on an error; reset it first: {self.error}")
            self._playing = True
            self._cond.notify_all()

    def pause(self) -> None:
        """Stop after the chunk in progress."""
        with self._cond:
            self._playing = False
            self._cond.notify_all()

    def step(self, steps: int | None = None) -> None:
        """Advance ``steps`` (default: ``steps_per_frame``) steps, then pause."""
        steps = self.steps_per_frame if steps is None else _check_count("steps", steps, 1)
        with self._cond:
            if self._frame.status == "error":
                raise RuntimeError(f"the run stopped on an error; reset it first: {self.error}")
            self._playing = False
            self._pending_steps += steps
            self._cond.notify_all()

    def reset(self, seed: int | None = None) -> None:
        """Start again from step 0 with the current params (and a new ``seed`` if given)."""
        seed = self._frame.seed if seed is None else _check_count("seed", seed, 0)
        with self._cond:
            self._playing = False
            self._pending_steps = 0
            self._pending_reset = seed
            self._cond.notify_all()

    def set_steps_per_frame(self, steps: int) -> None:
        self.steps_per_frame = _check_count("steps_per_frame", steps, 1)

    def set_params(self, **values: Any) -> Params:
        """Change params from the next chunk on; returns the new base params.

        Raises:
            ParamError: an unknown name, a bad shape, or a value outside the declared bounds
                (named); nothing is sent then.
        """
        base = self._base.replace(**{k: _as_value(v) for k, v in values.items()})
        applied = self._composed(base)  # raises before anything changes
        with self._cond:
            self._base = base
            self._pending_params = applied
            self._cond.notify_all()
        return base

    def stop(self, timeout: float = 10.0) -> None:
        """End the thread (after the chunk in progress); the frame's status becomes stopped."""
        with self._cond:
            self._stopping = True
            self._playing = False
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def compute(self, fn: Callable[[], Any], timeout: float = 300.0) -> Any:
        """``fn()`` run on the simulation thread between two chunks; returns its result.

        What a view reads from the run's tensors (a density image of a million positions, shares
        by area) goes through here, so it never runs beside a chunk: on a GPU it queues behind
        the chunk's kernels anyway, and on a CPU it would compete for the cores' threads.

        Raises:
            TimeoutError: the simulation thread did not get to it within ``timeout`` seconds.
        """
        if threading.current_thread() is self._thread:
            return fn()
        job = _Job(fn)
        with self._cond:
            if self._stopping or not self._thread.is_alive():
                return fn()  # nothing runs beside it any more
            self._jobs.append(job)
            self._cond.notify_all()
        if not job.done.wait(timeout):
            raise TimeoutError(f"the simulation thread did not run {fn!r} within {timeout} s")
        if job.error is not None:
            raise job.error
        return job.result

    # -- reading -----------------------------------------------------------------------------
    def frame(self) -> Frame:
        """The latest frame (no copy, no wait)."""
        return self._frame

    def wait(self, after: int, timeout: float) -> Frame:
        """The first frame with ``version > after``, or the latest one after ``timeout`` s."""
        with self._cond:
            self._cond.wait_for(lambda: self._frame.version > after, timeout)
            return self._frame

    @property
    def error(self) -> str:
        return self._frame.error

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- the simulation thread ------------------------------------------------------------------
    def _composed(self, base: Params) -> Params:
        """The params the simulation runs: the base, or each scenario's interventions applied to
        it and stacked per member; on the device, checked against the declarations."""
        if self.layout.scenarios:
            data = self.model.data
            per = [apply_all(base, sc.interventions, data) for sc in self.layout.scenarios]
            base = stack_params([base, *per], self.layout.seeds, data)
        sim = getattr(self, "sim", None)
        device = sim.device if sim else None
        dtype = self._options["dtype"]
        out = base.to(device, dtype, axes=self.model.data.axis_sizes())
        for name, size in out.members().items():
            if size != self.layout.members:
                raise ParamError(
                    f"parameter {name!r} has {size} per-member values; the view runs "
                    f"{self.layout.members} members"
                )
        out.validate(self.model.name)
        return out

    def _start(self, seed: int, base: Params) -> tuple[Simulation, History]:
        layout = self.layout
        triggers = []
        if layout.scenarios:
            for s, sc in enumerate(layout.scenarios, start=1):
                mask = torch.from_numpy(layout.scenario_of() == s)
                triggers += [dataclasses.replace(t, members=mask) for t in sc.triggers]
        seeds = [member_seed(seed, k) for k in range(layout.members)]
        if layout.scenarios:
            seeds = [member_seed(seed, k) for _ in layout.names for k in range(layout.seeds)]
        sim = Simulation(
            self.model,
            seeds=seeds,
            seed=seed,
            params=self._composed(base),
            triggers=triggers,
            progress=False,
            **self._options,
        )
        names = self.model.metric_columns() + [
            c for rule in triggers for c in rule.columns(self.model.data)
        ]
        history = History(names, layout.members)
        first = sim.run(0)  # records the initial state
        history.append(np.array([0]), _columns(first, history.names))
        return sim, history

    def _publish(self, status: str, *, seed: int, speed: float = 0.0, error: str = "") -> Frame:
        self._version += 1
        self._frame = Frame(
            self._version,
            status,
            self.sim.step,
            self.sim.state,
            self._base,
            self.sim.params,
            self.history,
            seed,
            speed,
            error,
        )
        return self._frame

    def _next(self) -> tuple[str, Any]:
        """Wait for work; return (what, argument) under the lock."""
        with self._cond:
            while True:
                if self._jobs:
                    return "job", self._jobs.pop(0)
                if self._stopping:
                    return "stop", None
                if self._pending_reset is not None:
                    seed, self._pending_reset = self._pending_reset, None
                    self._pending_params = None
                    return "reset", seed
                if self._pending_params is not None:
                    params, self._pending_params = self._pending_params, None
                    return "params", params
                if self._pending_steps:
                    steps, self._pending_steps = self._pending_steps, 0
                    return "steps", steps
                if self._playing:
                    return "play", self.steps_per_frame
                self._cond.wait()

    def _loop(self) -> None:
        while True:
            what, arg = self._next()
            frame = self._frame
            if what == "job":
                start = time.perf_counter()
                arg.run()
                self.compute_seconds += time.perf_counter() - start
                continue
            if what == "stop":
                with self._cond:
                    self._publish("stopped", seed=frame.seed, error=frame.error)
                    jobs, self._jobs = self._jobs, []
                    self._cond.notify_all()
                for job in jobs:  # asked for while stopping: answered, not left waiting
                    job.run()
                return
            if what == "reset":
                self._reset(arg)
                continue
            if what == "params":
                self.sim.params = arg  # checked by set_params; in force from the next step
                with self._cond:
                    self._publish(frame.status, seed=frame.seed, speed=frame.steps_per_second)
                    self._cond.notify_all()
                continue
            steps = arg
            if self.until is not None:
                steps = min(steps, self.until - self.sim.step)
            if steps <= 0:
                with self._cond:
                    self._playing = False
                    self._publish("finished", seed=frame.seed, speed=frame.steps_per_second)
                    self._cond.notify_all()
                continue
            self._advance(steps, frame)

    def _advance(self, steps: int, frame: Frame) -> None:
        start = time.perf_counter()
        try:
            self._run(steps)
        except Exception as err:  # the model's own error: shown, the run stops cleanly
            failed = self._locate(steps, err)
            with self._cond:
                self._playing = False
                self._pending_steps = 0
                self._publish("error", seed=frame.seed, error=failed)
                self._cond.notify_all()
            return
        speed = steps / max(time.perf_counter() - start, 1e-9)
        with self._cond:
            done = self.until is not None and self.sim.step >= self.until
            if done:
                self._playing = False
            status = "finished" if done else "playing" if self._playing else "paused"
            self._publish(status, seed=frame.seed, speed=speed)
            self._cond.notify_all()

    def _run(self, steps: int) -> None:
        result = self.sim.run(steps)
        columns = _columns(result, self.history.names)
        # the first record repeats the last one of the previous chunk (the same state)
        step_ids = np.arange(result.steps[0] + 1, result.steps[1] + 1)
        self.history.append(step_ids, {n: v[1:] for n, v in columns.items()})

    def _locate(self, steps: int, err: Exception) -> str:
        """Replay a failed chunk one step at a time (a failed run leaves the simulation as it
        was, streams included) to stop just before the failing step; the message names it."""
        for _ in range(steps - 1):
            try:
                self._run(1)
            except Exception as again:
                err = again
                break
        return describe_error(err, self.sim.step)

    def _reset(self, seed: int) -> None:
        frame = self._frame
        try:
            self.sim, self.history = self._start(seed, self._base)
        except Exception as err:
            with self._cond:
                self._publish("error", seed=seed, error=describe_error(err, 0))
                self._cond.notify_all()
            return
        with self._cond:
            self._publish("paused", seed=seed, speed=frame.steps_per_second)
            self._cond.notify_all()


class _Job:
    """A function a view asked the simulation thread to run (:meth:`LiveRun.compute`)."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except Exception as err:  # handed to the caller, who raises it
            self.error = err
        finally:
            self.done.set()


def describe_error(err: BaseException, step: int) -> str:
    """One paragraph for the view: where the run stopped, the error, and the innermost frame
    of the model's code that raised it."""
    text = f"{type(err).__name__}: {err}"
    if not isinstance(err, ModelError):  # the engine's own errors already name the step
        text = f"stopped at step {step}: {text}"
    frames = traceback.extract_tb(err.__traceback__)
    if frames:
        last = frames[-1]
        text += f"  (in {last.name}, {Path(last.filename).name}:{last.lineno})"
    return text


def _columns(result: Any, names: list[str]) -> dict[str, np.ndarray]:
    """name → ``[T, B]`` float64 host array of a run's records."""
    return {n: result.series(n).T.to(torch.float64).numpy() for n in names}


def _as_value(value: Any) -> Any:
    """A control's value as a param value: numbers stay, sequences become float64 tensors."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return torch.as_tensor(np.asarray(value, dtype=np.float64))
    return value


def _check_count(what: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        kind = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ValueError(f"{what} must be {kind}, got {value!r}")
    return int(value)
