"""A model: initial state + params + an ordered tuple of pure steps + metric functions."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import torch

from populace.engine.context import Context
from populace.engine.params import Params
from populace.engine.state import State

S = TypeVar("S", bound=State)
P = TypeVar("P", bound=Params)

#: ``step(state, params, ctx) -> state``: pure, params already resolved at ``ctx.step``.
Step = Callable[[S, P, Context], S]
#: ``metric(state, params) -> [B]``.
Metric = Callable[[S, P], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class Model(Generic[S, P]):
    """Everything needed to run a simulation.

    Attributes:
        name: the model's name in the zoo (or the user's choice).
        params: default parameter values (numbers, tensors or schedules).
        init: ``init(params, ctx) -> state`` building the ``[B, ...]`` initial state.
        steps: applied in order each time step.
        metrics: name → ``metric(state, params) -> [B]``, recorded by the simulation.
        agents: number of agents (capacity), for reporting and benchmarks.
        options: the build options that made this model (for run records).
    """

    name: str
    params: P
    init: Callable[[P, Context], S]
    steps: tuple[Step, ...]
    metrics: Mapping[str, Metric] = dataclasses.field(default_factory=dict)
    agents: int = 0
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError(f"model {self.name!r} has no steps")
        if not isinstance(self.params, Params):
            raise TypeError(f"model {self.name!r}: params must be a Params dataclass")

    def _repr_html_(self) -> str:
        from populace.engine.display import describe_value, table

        rows = [["agents", f"{self.agents:,}"]]
        rows += [[f"option {k}", v] for k, v in self.options.items() if k != "agents"]
        rows += [
            [f"param {n}", describe_value(getattr(self.params, n))] for n in self.params.names()
        ]
        rows.append(["steps", " → ".join(getattr(f, "__name__", repr(f)) for f in self.steps)])
        rows.append(["metrics", ", ".join(self.metrics)])
        return table(rows, ["", ""], title=f"Model {self.name!r}")

    def with_params(self, **values: Any) -> Model[S, P]:
        """The same model with some parameter values replaced (names checked)."""
        return dataclasses.replace(self, params=self.params.replace(**values))

    def step(self, state: S, params: P, ctx: Context) -> S:
        """Apply every step once; ``params`` must already be resolved at ``ctx.step``."""
        for fn in self.steps:
            state = fn(state, params, ctx)
        return state

    def measure(self, state: S, params: P) -> dict[str, torch.Tensor]:
        """Every metric of ``state``, each ``[B]``."""
        out = {}
        for name, fn in self.metrics.items():
            value = fn(state, params)
            if value.dim() != 1 or value.shape[0] != state.members:
                raise ValueError(
                    f"metric {name!r} of model {self.name!r} returned shape {tuple(value.shape)}, "
                    f"expected [B]=[{state.members}]"
                )
            out[name] = value
        return out
