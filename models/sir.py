"""Well-mixed stochastic SIR: the first model of the zoo, and the engine's proof.

Each step, every susceptible agent is infected with probability ``1 - exp(-beta * I/N)`` and
every infectious agent recovers with probability ``gamma`` (both from the state at the start of
the step; rates per step). The deterministic limit has final size ``z = 1 - exp(-R0 z)``,
``R0 = beta / gamma``.

Composed from the epidemic modules: :class:`~populace.epi.disease.Disease` (SIR compartments,
one-hot health state, transitions with a selectable gradient estimator, so the model is
differentiable) and :func:`~populace.epi.contact.well_mixed`.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from populace.engine import Context, Model, Params, param
from populace.epi.contact import well_mixed
from populace.epi.disease import Disease, InfectionState
from populace.epi.observation import compartment, flow

NAME = "sir"
SUMMARY = "well-mixed stochastic SIR epidemic (beta, gamma per step); metrics S, I, R, infected"


@dataclasses.dataclass(frozen=True)
class SIRParams(Params):
    beta: float | torch.Tensor = param(
        0.5, low=0, unit="1/step", doc="transmission rate (R0 = beta / gamma)"
    )
    gamma: float | torch.Tensor = param(
        0.25, low=0, high=1, unit="probability/step", doc="recovery (1 / mean infectious steps)"
    )
    initial: float | torch.Tensor = param(
        0.001,
        low=0,
        high=1,
        unit="probability",
        doc="agent infectious at step 0 (when initial_infected is None)",
    )


@dataclasses.dataclass(frozen=True)
class SIRState(InfectionState):
    pass


PARAMS = SIRParams


def build(
    agents: int = 10_000,
    initial_infected: int | None = 10,
    estimator: str = "none",
    temperature: float = 0.1,
    **params: float,
) -> Model:
    """The SIR model with ``agents`` agents.

    Args:
        initial_infected: exactly this many agents infectious at step 0 (chosen at random per
            member); None: each agent is infectious with probability ``initial`` (a fittable
            param).
        estimator: gradient estimator of the transitions (``"none"``, ``"straight_through"``,
            ``"score_function"``): anything but ``"none"`` makes the model differentiable.
        params: override :class:`SIRParams` (beta, gamma, initial).
    """
    if isinstance(agents, bool) or not isinstance(agents, int) or agents < 1:
        raise ValueError(f"agents must be a positive integer, got {agents!r}")
    if initial_infected is not None and not 0 <= initial_infected <= agents:
        raise ValueError(f"initial_infected={initial_infected} must be in [0, agents={agents}]")
    disease = Disease(latent=False, estimator=estimator, temperature=temperature)

    def init(params: SIRParams, ctx: Context) -> SIRState:
        if initial_infected is None:
            return SIRState(**disease.initial(ctx, agents, p=params.initial))
        return SIRState(**disease.initial(ctx, agents, count=initial_infected))

    def infect_and_recover(state: SIRState, params: SIRParams, ctx: Context) -> SIRState:
        hazard = well_mixed(disease.share(state, "I"), params.beta)
        return state.replace(**disease.advance(state, hazard, params, ctx))

    return Model(
        name=NAME,
        params=SIRParams().replace(**params),
        init=init,
        steps=(infect_and_recover,),
        metrics={
            "S": compartment(disease, "S"),
            "I": compartment(disease, "I"),
            "R": compartment(disease, "R"),
            "infected": flow("infected"),
        },
        agents=agents,
        options={"agents": agents, "initial_infected": initial_infected, "estimator": estimator},
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
