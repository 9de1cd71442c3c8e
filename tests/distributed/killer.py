"""A SIR model whose rank 1 kills itself (SIGKILL) at step ``kill_at`` of a torchrun run."""

from __future__ import annotations

import dataclasses
import os
import signal

from populace.models import sir


def build(agents: int = 200, kill_at: int = 3):
    model = sir.build(agents=agents, initial_infected=4)

    def die(state, params, ctx):
        if os.environ.get("RANK") == "1" and ctx.step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return state

    return dataclasses.replace(model, steps=(*model.steps, die))
