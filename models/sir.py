"""Well-mixed stochastic SIR: the first model of the zoo, and the engine's proof.

Each step, every susceptible agent is infected with probability ``1 - exp(-beta * I/N * dt)``
and every infectious agent recovers with probability ``gamma * dt`` (both from the state at the
start of the step). The deterministic limit has final size ``z = 1 - exp(-R0 z)``,
``R0 = beta / gamma``.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from populace.engine import (
    Context,
    Model,
    ParamError,
    Params,
    State,
    member_view,
    static_field,
    tensor_field,
)

NAME = "sir"
SUMMARY = "well-mixed stochastic SIR epidemic (beta, gamma, dt); metrics S, I, R"

SUSCEPTIBLE, INFECTIOUS, RECOVERED = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class SIRParams(Params):
    """Attributes:
    beta: transmission rate per unit time.
    gamma: recovery rate per unit time (``gamma * dt <= 1``).
    dt: time step.
    """

    beta: float | torch.Tensor = 0.5
    gamma: float | torch.Tensor = 0.25
    dt: float | torch.Tensor = 1.0

    def check(self) -> None:
        self.check_range("SIR")
        worst = float(self.values("gamma").max() * self.values("dt").max())
        if worst > 1:
            raise ParamError(f"SIR: gamma * dt = {worst} > 1 is not a recovery probability")


@dataclasses.dataclass(frozen=True)
class SIRState(State):
    """Attributes:
    status: ``[B, N]`` int8, 0 susceptible, 1 infectious, 2 recovered.
    """

    status: torch.Tensor = tensor_field("B", "N", dtype=torch.int8)
    agents: int = static_field(0)


def seed_infections(agents: int, initial_infected: int):
    """``init`` that infects ``initial_infected`` agents chosen at random per member."""

    def init(params: SIRParams, ctx: Context) -> SIRState:
        return SIRState(status=seeded_status(ctx, agents, initial_infected), agents=agents)

    return init


def seeded_status(ctx: Context, agents: int, infected: int, code: int = INFECTIOUS):
    """``[B, N]`` int8 status: 0 (susceptible) but for ``infected`` agents per member, chosen
    at random from each member's stream, set to ``code``."""
    order = ctx.rng.permutation(agents)  # [B, N]
    status = torch.zeros(ctx.members, agents, dtype=torch.int8, device=ctx.device)
    return status.scatter_(1, order[:, :infected], code)


def infect_and_recover(state: SIRState, params: SIRParams, ctx: Context) -> SIRState:
    """One step of S→I and I→R transitions. Shapes: status ``[B, N]``."""
    status = state.status
    infectious = (status == INFECTIOUS).sum(dim=1).to(ctx.dtype)  # [B]
    force = member_view(params.beta * params.dt, 1) * infectious / state.agents
    p_infect = -torch.expm1(-force)  # [B]
    p_recover = params.gamma * params.dt  # checked <= 1 by SIRParams.check
    u = ctx.rng.uniform(state.agents, dtype=ctx.dtype)  # one draw serves both: states exclude
    infected = (status == SUSCEPTIBLE) & (u < p_infect.view(-1, 1))
    recovered = (status == INFECTIOUS) & (u < member_view(p_recover, 2))
    return state.replace(status=status + infected.to(torch.int8) + recovered.to(torch.int8))


def count(code: int):
    """Metric: ``[B]`` agents whose ``status`` (``[B, N]``) equals ``code``."""

    def metric(state: State, params: Params) -> torch.Tensor:
        return (state.status == code).sum(dim=1)

    return metric


PARAMS = SIRParams


def build(agents: int = 10_000, initial_infected: int = 10, **params: float) -> Model:
    """The SIR model with ``agents`` agents, ``initial_infected`` of them infectious at step 0.

    ``params`` override :class:`SIRParams` defaults (beta, gamma, dt).
    """
    if not 0 <= initial_infected <= agents:
        raise ValueError(f"initial_infected={initial_infected} must be in [0, agents={agents}]")
    return Model(
        name=NAME,
        params=SIRParams().replace(**params),
        init=seed_infections(agents, initial_infected),
        steps=(infect_and_recover,),
        metrics={"S": count(SUSCEPTIBLE), "I": count(INFECTIOUS), "R": count(RECOVERED)},
        agents=agents,
        options={"agents": agents, "initial_infected": initial_infected},
    )


def final_size(r0: float) -> float:
    """Solution z > 0 of ``z = 1 - exp(-R0 z)`` (0 for R0 <= 1), to full float64 precision.

    Bisection on ``(0, 1]``, where ``1 - exp(-R0 z) - z`` is positive below the root and negative
    above it; converges even for R0 just above 1, where fixed-point iteration stalls.
    """
    r0 = float(r0)
    if not math.isfinite(r0) or r0 < 0:
        raise ValueError(f"final_size: R0 must be finite and >= 0, got {r0}")
    if r0 <= 1:
        return 0.0
    lo, hi = 0.0, 1.0
    for _ in range(200):  # 2^-200: far below the smallest root float64 can tell from 0 here
        mid = 0.5 * (lo + hi)
        if -math.expm1(-r0 * mid) - mid > 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
