"""Births, deaths and ageing at fixed capacity.

Agents live in ``capacity`` slots with an ``alive`` mask (shapes stay static). Each day every
living agent dies with probability ``death_rate / 1000 / 365`` and gives birth with probability
``birth_rate / 1000 / 365`` (crude rates per 1000 per year, one uniform each), so the expected
population grows by the factor ``1 + (birth_rate - death_rate) / 365000`` a day. Newborns take
the lowest free slots (:func:`~populace.engine.claim_slots`); births that do not fit are
dropped and counted. Ages are in days.

A model resets a dead agent's other fields itself (its health column becomes all zeros, so
compartment counts only count the living).
"""

from __future__ import annotations

import dataclasses

import torch

from populace.engine import Context, Params, State, claim_slots, member_view, param, tensor_field

DAYS_PER_YEAR = 365.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class DemographyState(State):
    """State fields of demography (mix into a model's state).

    Attributes:
        alive: ``[B, N]`` bool, the slot holds a living agent.
        age_days: ``[B, N]`` age in days (0 in empty slots).
        born: ``[B, N]`` bool, born in the last step.
        died: ``[B, N]`` bool, died (of any cause) in the last step.
        births_dropped: ``[B]`` births in the last step that found no free slot.
    """

    alive: torch.Tensor = tensor_field("B", "N", dtype=torch.bool)
    age_days: torch.Tensor = tensor_field("B", "N")
    born: torch.Tensor = tensor_field("B", "N", dtype=torch.bool)
    died: torch.Tensor = tensor_field("B", "N", dtype=torch.bool)
    births_dropped: torch.Tensor = tensor_field("B")


@dataclasses.dataclass(frozen=True)
class DemographyParams(Params):
    """Crude birth and death rates (mix into a model's params)."""

    birth_rate: float | torch.Tensor = param(
        0.0, low=0, high=365_000, unit="per 1000 per year", doc="births per living agent"
    )
    death_rate: float | torch.Tensor = param(
        0.0, low=0, high=365_000, unit="per 1000 per year", doc="deaths per living agent"
    )


def daily(rate: torch.Tensor) -> torch.Tensor:
    """A crude rate per 1000 per year as a probability per day."""
    return rate / 1000.0 / DAYS_PER_YEAR


def initial(
    ctx: Context, capacity: int, agents: int, mean_age_years: float
) -> dict[str, torch.Tensor]:
    """Fields for ``agents`` living agents in the first slots of ``capacity``, ages exponential
    with mean ``mean_age_years`` (a stable population whose mortality does not depend on age),
    capped at 100 years."""
    if not 0 < agents <= capacity:
        raise ValueError(f"agents={agents} must lie in [1, capacity={capacity}]")
    if not mean_age_years > 0:
        raise ValueError(f"mean_age_years must be > 0, got {mean_age_years}")
    b = ctx.members
    u = ctx.rng.uniform(capacity, dtype=torch.float64)
    alive = torch.zeros(b, capacity, dtype=torch.bool, device=ctx.device)
    alive[:, :agents] = True
    age = (-torch.log1p(-u) * mean_age_years * DAYS_PER_YEAR).clamp(max=100 * DAYS_PER_YEAR)
    age = torch.where(alive, torch.floor(age), torch.zeros_like(age)).to(ctx.dtype)
    none = torch.zeros_like(alive)
    dropped = torch.zeros(b, dtype=ctx.dtype, device=ctx.device)
    return {"alive": alive, "age_days": age, "born": none, "died": none, "births_dropped": dropped}


def step(
    state: DemographyState, params: Params, ctx: Context
) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """One day of deaths, births and ageing.

    Returns:
        the new :class:`DemographyState` fields, and the day's two ``[B, N]`` uniforms (death,
        birth). A newborn's slot was free, so its two uniforms decided nothing: the model may
        give them to the newborn as fresh draws (its own attributes), drawing nothing more.
        With both rates 0 for every member nobody dies or is born: the uniforms are not drawn
        (their draw sites are skipped, so later draws keep their numbers) and are None.
    """
    n = state.dims["N"]
    if not any(bool((r > 0).any()) for r in (params.death_rate, params.birth_rate)):
        return _ageing(state, ctx), (None, None)
    u_death = ctx.rng.uniform(n, dtype=state.age_days.dtype)
    u_birth = ctx.rng.uniform(n, dtype=state.age_days.dtype)
    alive = state.alive
    died = alive & (u_death < member_view(daily(params.death_rate), 2))
    mothers = alive & (u_birth < member_view(daily(params.birth_rate), 2))
    survivors = alive & ~died
    wanted = mothers.sum(dim=1)
    if bool((wanted > 0).any()):
        born, overflow = claim_slots(survivors, wanted)
    else:  # a day without births (no slots to look for)
        born, overflow = torch.zeros_like(alive), torch.zeros_like(wanted, dtype=torch.bool)
    got = born.sum(dim=1)
    age = (state.age_days + 1) * survivors
    fields = {
        "alive": survivors | born,
        "age_days": age,
        "born": born,
        "died": died,
        "births_dropped": torch.where(overflow, wanted - got, 0).to(state.births_dropped.dtype),
    }
    return fields, (u_death, u_birth)


def _ageing(state: DemographyState, ctx: Context) -> dict[str, torch.Tensor]:
    """The fields of a day without deaths or births (what :func:`step` gives with rates 0)."""
    n = state.dims["N"]
    ctx.rng.claim(n)  # the death and birth draws
    ctx.rng.claim(n)
    none = torch.zeros_like(state.alive)
    return {
        "alive": state.alive,
        "age_days": (state.age_days + 1).mul_(state.alive),  # (age + 1) * alive
        "born": none,
        "died": none,
        "births_dropped": torch.zeros_like(state.births_dropped),
    }
