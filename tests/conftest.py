"""Shared fixtures: a tiny deterministic-decay model used to test the engine itself."""

from __future__ import annotations

import dataclasses
import threading
from types import ModuleType

import pytest
import torch

from populace.engine import (
    Context,
    Model,
    Params,
    State,
    member_view,
    param,
    static_field,
    tensor_field,
)


def switch_kernel(monkeypatch, module: ModuleType, name: str, on: bool) -> list[int]:
    """Route a fused kernel's dispatcher ``module.name`` for one test: ``on``, spied (each call
    appends 1 to the returned list, then runs it); off, as if it could not run (it returns
    None, so the caller takes the torch reference)."""
    calls: list[int] = []
    if on:
        fused = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a: calls.append(1) or fused(*a))
    else:
        monkeypatch.setattr(module, name, lambda *a: None)
    return calls


@dataclasses.dataclass(frozen=True)
class DecayParams(Params):
    rate: float | torch.Tensor = param(0.1, low=0, unit="1/step", doc="decay rate")
    noise: float | torch.Tensor = param(0.0, low=0, doc="noise amplitude")


@dataclasses.dataclass(frozen=True)
class DecayState(State):
    x: torch.Tensor = tensor_field("B", "N")
    alive: torch.Tensor = tensor_field("B", "N", dtype="bool")
    label: torch.Tensor = tensor_field("B", "N", dtype=torch.int64)
    size: int = static_field(0)


def decay_model(agents: int = 16) -> Model:
    """x ← x·(1 − rate) + noise·ε: linear, so its gradients and moments are known exactly."""

    def init(params: DecayParams, ctx: Context) -> DecayState:
        x = torch.ones(ctx.members, agents, device=ctx.device, dtype=ctx.dtype)
        alive = torch.ones_like(x, dtype=torch.bool)
        label = torch.arange(agents, device=ctx.device).expand(ctx.members, agents).clone()
        return DecayState(x=x, alive=alive, label=label, size=agents)

    def decay(state: DecayState, params: DecayParams, ctx: Context) -> DecayState:
        eps = ctx.rng.normal(agents, dtype=ctx.dtype)
        rate, noise = member_view(params.rate, 2), member_view(params.noise, 2)
        return state.replace(x=state.x * (1 - rate) + noise * eps)

    return Model(
        name="decay",
        params=DecayParams(),
        init=init,
        steps=(decay,),
        metrics={
            "mean_x": lambda s, p, ctx: s.x.mean(dim=1),
            "alive": lambda s, p, ctx: s.alive.sum(1),
        },
        agents=agents,
    )


@pytest.fixture
def decay() -> Model:
    return decay_model()


@pytest.fixture
def sigkill_child():
    """``run(script, after)``: start ``python -c script``, wait for its first stdout line, let it
    go on ``after`` seconds more, SIGKILL it (bounded: 60 s to its first line)."""
    import signal
    import subprocess
    import sys

    def run(script: str, after: float) -> None:
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        try:
            timer = threading.Timer(60, proc.kill)
            timer.start()
            first = proc.stdout.readline().strip()
            timer.cancel()
            assert first == "ready", f"the child said {first!r}"
            proc.stdout.close()
            try:
                proc.wait(timeout=after)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            proc.kill()
        assert proc.returncode == -signal.SIGKILL, "the child ended before the kill"

    return run
