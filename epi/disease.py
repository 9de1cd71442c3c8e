"""Disease natural history: SIR / SEIR compartments as one-hot agent state, with differentiable
transitions.

Each agent is in exactly one compartment. The state holds ``health: [B, C, N]`` — a one-hot
over the C compartments per agent, exactly 0 or 1 forward — so counts are sums and, with a
gradient estimator (:mod:`populace.behaviors.choice`), gradients reach the params through them.

Each step, from the state at the start of the step and with one uniform draw per agent (an
agent's transitions exclude each other):

- a susceptible agent is infected with probability ``1 - exp(-hazard)``, ``hazard: [B, N]`` from
  a contact module (:mod:`populace.epi.contact`); it becomes exposed (SEIR) or infectious (SIR);
- an exposed agent becomes infectious with probability ``sigma`` (the onset);
- an infectious agent recovers with probability ``gamma``.

A model composes this with a contact module::

    disease = Disease(latent=True, estimator="straight_through")
    def step(state, params, ctx):
        return state.replace(**disease.advance(state, hazard(state, params, ctx), params, ctx))
"""

from __future__ import annotations

import dataclasses

import torch

from populace.behaviors.choice import ESTIMATORS, bernoulli
from populace.engine import Context, Params, State, member_view, param, tensor_field
from populace.kernels import transition

#: ``backend`` of :class:`Disease` and :class:`~populace.epi.course.Course`: ``"auto"`` runs
#: the fused CPU kernel (:mod:`populace.kernels.transition`) without a gradient estimator when
#: it can, ``"torch"`` always the reference; both give the same numbers.
BACKENDS = ("auto", "torch")

SIR = ("S", "I", "R")
SEIR = ("S", "E", "I", "R")


@dataclasses.dataclass(frozen=True, kw_only=True)
class InfectionState(State):
    """State fields of a :class:`Disease` (mix into a model's state).

    Attributes:
        health: ``[B, C, N]`` one-hot compartment of each agent (0/1 floats).
        infected: ``[B, N]`` 0/1, agents infected in the last step.
        onset: ``[B, N]`` 0/1, agents that became infectious in the last step.
        log_prob: ``[B]`` log-probability of every choice so far (score-function estimator).
    """

    health: torch.Tensor = tensor_field("B", "C", "N", domain=(0, 1))
    infected: torch.Tensor = tensor_field("B", "N", domain=(0, 1))
    onset: torch.Tensor = tensor_field("B", "N", domain=(0, 1))
    log_prob: torch.Tensor = tensor_field("B")


@dataclasses.dataclass(frozen=True)
class ProgressionParams(Params):
    """Progression params of a :class:`Disease` (mix into a model's params)."""

    sigma: float | torch.Tensor = param(
        0.3, low=0, high=1, unit="probability/step", doc="E → I (1 / mean latent steps)"
    )
    gamma: float | torch.Tensor = param(
        0.2, low=0, high=1, unit="probability/step", doc="I → R (1 / mean infectious steps)"
    )


def seed(
    ctx: Context,
    agents: int,
    choose,
    *,
    p: torch.Tensor | None = None,
    count: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Agents infected at step 0: ``[B, N]`` 0/1 and the ``[B]`` log-probability of the draws.

    Args:
        choose: ``choose(probs, u) -> (value, log_prob or None)``, the caller's Bernoulli
            choice (with its gradient estimator).
        p: probability of each agent (``[]``, ``[B]`` or ``[B, N]``), drawn with ``choose``.
        count: or exactly ``count`` agents per member, chosen at random.
    """
    if (p is None) == (count is None):
        raise ValueError("give exactly one of p (a probability) or count")
    b = ctx.members
    zeros = torch.zeros(b, agents, dtype=ctx.dtype, device=ctx.device)
    log_prob = torch.zeros(b, dtype=ctx.dtype, device=ctx.device)
    if count is not None:
        if not 0 <= count <= agents:
            raise ValueError(f"initial count {count} must lie in [0, agents={agents}]")
        order = ctx.rng.permutation(agents)[:, :count]
        return zeros.scatter(1, order, 1.0), log_prob
    u = ctx.rng.uniform(agents, dtype=ctx.dtype)
    probs = (member_view(p, 2) if p.dim() < 2 else p).expand(b, agents)
    seeded, lp = choose(probs, u)
    return seeded, log_prob if lp is None else lp.sum(dim=1)


@dataclasses.dataclass(frozen=True)
class Disease:
    """SIR (``latent=False``) or SEIR natural history with geometric durations.

    Attributes:
        latent: include the exposed compartment E.
        estimator: gradient estimator of every transition (``"none"``, ``"straight_through"``,
            ``"score_function"``).
        temperature: straight-through relaxation temperature.
        backend: ``"auto"`` or ``"torch"`` (see :data:`BACKENDS`).
    """

    latent: bool = False
    estimator: str = "none"
    temperature: float = 0.1
    backend: str = "auto"

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise ValueError(
                f"unknown estimator {self.estimator!r}; valid: {', '.join(ESTIMATORS)}"
            )
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        check_backend(self.backend)

    @property
    def compartments(self) -> tuple[str, ...]:
        return SEIR if self.latent else SIR

    def index(self, name: str) -> int:
        """Position of compartment ``name`` on the C axis."""
        if name not in self.compartments:
            raise KeyError(f"unknown compartment {name!r}; valid: {', '.join(self.compartments)}")
        return self.compartments.index(name)

    def _choose(self, probs: torch.Tensor, u: torch.Tensor):
        """(value, log_prob or None): a Bernoulli choice by ``u < probs``."""
        if self.estimator == "none":  # plain sampling: no checks or likelihood needed
            return (u < probs).to(u.dtype), None
        c = bernoulli(probs, u, estimator=self.estimator, temperature=self.temperature)
        return c.value, c.log_prob if self.estimator == "score_function" else None

    def initial(
        self, ctx: Context, agents: int, *, p: torch.Tensor | None = None, count: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Initial :class:`InfectionState` fields: agents infectious at step 0.

        Args:
            p: probability of each agent being infectious (``[]``, ``[B]`` or ``[B, N]``);
                Bernoulli draws, differentiable with the estimator.
            count: or exactly ``count`` infectious agents per member, chosen at random.
        """
        sick, log_prob = seed(ctx, agents, self._choose, p=p, count=count)
        zeros = torch.zeros_like(sick)
        rows = {name: zeros for name in self.compartments}
        rows["S"], rows["I"] = 1 - sick, sick
        health = torch.stack([rows[c] for c in self.compartments], dim=1)
        return {"health": health, "infected": zeros, "onset": zeros, "log_prob": log_prob}

    def advance(
        self, state: InfectionState, hazard: torch.Tensor, params: Params, ctx: Context
    ) -> dict[str, torch.Tensor]:
        """One step of infection and progression; returns the new :class:`InfectionState` fields.

        Args:
            hazard: ``[B, N]`` (or broadcastable, e.g. ``[B, 1]``) force of infection of this
                step on each agent, >= 0.
            params: carries ``gamma`` (and ``sigma`` when latent), resolved at the step.
        """
        h = state.health
        b, _, n = h.shape
        if self.estimator == "none" and self.backend == "auto":
            fused = self._fused(state, hazard, params, ctx)
            if fused is not None:
                return fused
        u = ctx.rng.uniform(n, dtype=h.dtype)
        s = h[:, self.index("S")]
        i = h[:, self.index("I")]
        p_infect = (-torch.expm1(-hazard)).expand(b, n)
        infect, lp_s = self._choose(p_infect, u)
        recover, lp_i = self._choose(member_view(params.gamma, 2).expand(b, n), u)
        new_inf, new_rec = s * infect, i * recover
        log_prob = state.log_prob
        at_risk = []
        if lp_s is not None:
            at_risk += [s * lp_s, i * lp_i]
        rows = {"S": s - new_inf, "R": h[:, self.index("R")] + new_rec}
        if self.latent:
            e = h[:, self.index("E")]
            onset_c, lp_e = self._choose(member_view(params.sigma, 2).expand(b, n), u)
            onset = e * onset_c
            rows["E"] = e + new_inf - onset
            rows["I"] = i + onset - new_rec
            if lp_e is not None:
                at_risk.append(e * lp_e)
        else:
            onset = new_inf
            rows["I"] = i + new_inf - new_rec
        if at_risk:  # only the choices of agents at risk enter the trajectory's likelihood
            log_prob = log_prob + sum(at_risk).sum(dim=1)
        health = torch.stack([rows[c] for c in self.compartments], dim=1)
        return {"health": health, "infected": new_inf, "onset": onset, "log_prob": log_prob}

    def _fused(
        self, state: InfectionState, hazard: torch.Tensor, params: Params, ctx: Context
    ) -> dict[str, torch.Tensor] | None:
        """:meth:`advance` by the fused kernel (same numbers), or None where it cannot run
        (the random streams then stand where they stood)."""
        h = state.health
        sigma = member_view(params.sigma, 2) if self.latent else None
        with torch.no_grad():  # the kernel gives no gradient: one buffer, the rest in place
            p_infect = hazard.neg().expm1_().neg_()  # -expm1(-hazard), the same bits
        probs = (p_infect, sigma, member_view(params.gamma, 2))
        before = ctx.rng.get_state()
        got = transition.markov(h, *probs, ctx.rng.claim(h.shape[2]))
        if got is None:
            ctx.rng.set_state(before)
            return None
        health, infected, onset = got
        return {"health": health, "infected": infected, "onset": onset, "log_prob": state.log_prob}

    def share(self, state: InfectionState, name: str) -> torch.Tensor:
        """``[B, N]`` 0/1: agents in compartment ``name``."""
        return state.health[:, self.index(name)]


def check_backend(backend: str) -> None:
    """Refuse a ``backend`` outside :data:`BACKENDS`."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
