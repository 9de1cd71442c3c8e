"""The step context: what a step may know besides state and params."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from populace.engine.data import EMPTY, Data
from populace.engine.rng import Streams


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; ``"cuda"`` without a GPU is an error."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}; valid: auto, cpu, cuda[:i]")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but torch sees no CUDA GPU")
    return dev


@dataclasses.dataclass(frozen=True)
class Context:
    """Passed to every step and to a model's ``init``.

    Attributes:
        step: index of the step being computed (0 for init and the first step).
        rng: per-member random streams.
        device: where the state lives.
        dtype: floating dtype of the run.
        data: the model's read-only data on ``device`` (``ctx.data.age``, ``ctx.data["home"]``).
        shard: this rank's part of a run sharded over ranks (None: one process); see
            :mod:`populace.engine.distributed`.
    """

    step: int
    rng: Streams
    device: torch.device
    dtype: torch.dtype
    data: Data = EMPTY
    shard: Any = None

    @property
    def members(self) -> int:
        return self.rng.members

    def at(self, step: int) -> Context:
        """This context at another step (copied without ``dataclasses.replace``'s field walk:
        the simulation asks for one every step)."""
        if step == self.step:
            return self
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__, step=step)
        return out
