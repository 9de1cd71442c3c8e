"""Vaccination: who is vaccinated when, and how much that protects.

State (:class:`VaccineState`): ``vaccinated_at: [B, N]`` the day of vaccination (-1: never),
``vaccine_draw: [B, N]`` and ``uptake_draw: [B, N]`` two uniforms per agent drawn at init (so an
agent's response and willingness do not depend on the day it is vaccinated, and every scenario
of a study sees the same ones).

Efficacy, waning and the two semantics of a vaccine's efficacy ``e`` against infection, with
``w(t) = exp(-waning * days since vaccination)``:

- ``"leaky"``: every vaccinated agent's hazard is multiplied by ``1 - e w(t)``;
- ``"all_or_nothing"``: a vaccinated agent is fully protected while
  ``vaccine_draw < e w(t)`` (a fraction ``e`` at first, each losing protection for good at a
  random time when waning), otherwise not at all.

Both give the same mean protection; the final sizes differ (:func:`final_size`: a leaky vaccine
leaves more infections, since its agents stay exposed the whole epidemic). Protection starts on
the day of the dose; gradients reach ``ve_infection`` through the leaky factor only. Efficacy
against severe disease ``e_s`` multiplies a vaccinated agent's probability of severe disease,
once infected, by ``1 - e_s w(t)``.

Who is vaccinated:

- before the epidemic, a share of each age band (``vax_coverage0``, the most willing agents);
- by a campaign (:func:`daily_doses`): ``vax_doses_per_100k`` doses a day, given by strict
  priority between age bands (``vax_priority``: higher first, equal shares, 0 never), to
  willing (``uptake_draw < vax_uptake``) unvaccinated agents living in eligible areas
  (``vax_area`` > 0), random within a band. :func:`campaign` writes the interventions;
- routinely, at an age (:func:`vaccinate` of the agents who reach it, in the measles model).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch

from populace.engine import Context, Params, State, member_view, param, tensor_field
from populace.engine.intervention import SetParam
from populace.epi.course import agent_value
from populace.epi.rationing import priority_quotas, ration
from populace.kernels.meanfield import group_sum

MODES = ("leaky", "all_or_nothing")


@dataclasses.dataclass(frozen=True, kw_only=True)
class VaccineState(State):
    """State fields of vaccination (mix into a model's state).

    Attributes:
        vaccinated_at: ``[B, N]`` day of vaccination, -1 for never.
        vaccine_draw: ``[B, N]`` uniform: the agent's response (all-or-nothing take).
        uptake_draw: ``[B, N]`` uniform: the agent accepts a dose while it is below the uptake.
    """

    vaccinated_at: torch.Tensor = tensor_field("B", "N")
    vaccine_draw: torch.Tensor = tensor_field("B", "N", domain=(0, 1))
    uptake_draw: torch.Tensor = tensor_field("B", "N", domain=(0, 1))


@dataclasses.dataclass(frozen=True)
class EfficacyParams(Params):
    """What a dose does (mix into a model's params)."""

    ve_infection: float | torch.Tensor = param(
        0.6, low=0, high=1, unit="efficacy", doc="vaccine efficacy against infection"
    )
    ve_severe: float | torch.Tensor = param(
        0.8,
        low=0,
        high=1,
        unit="efficacy",
        doc="efficacy against severe disease once infected (x p_severe of the vaccinated)",
    )
    vax_waning: float | torch.Tensor = param(
        0.0, low=0, unit="1/day", doc="efficacy decays as exp(-waning x days since the dose)"
    )


@dataclasses.dataclass(frozen=True)
class VaccineParams(EfficacyParams):
    """Efficacy and the campaign params by age band (the model's data has ``age``)."""

    vax_coverage0: float | torch.Tensor = param(
        0.0,
        low=0,
        high=1,
        unit="share",
        axes=("age",),
        doc="share of the band vaccinated before the epidemic (day 0)",
    )
    vax_doses_per_100k: float | torch.Tensor = param(
        0.0, low=0, unit="doses/day per 100k agents", doc="campaign doses each day"
    )
    vax_priority: float | torch.Tensor = param(
        1.0,
        low=0,
        unit="rank",
        axes=("age",),
        doc="campaign order of the bands: higher first, equal shares, 0 never",
    )
    vax_uptake: float | torch.Tensor = param(
        1.0, low=0, high=1, unit="share", axes=("age",), doc="share of the band that accepts"
    )


def initial(
    ctx: Context, agents: int, coverage: torch.Tensor | float = 0.0
) -> dict[str, torch.Tensor]:
    """:class:`VaccineState` fields at day 0, the most willing agents vaccinated: those whose
    ``uptake_draw < coverage`` (broadcastable to ``[B, N]``, e.g. ``vax_coverage0`` gathered
    by age band with :func:`~populace.epi.course.agent_value`)."""
    vaccine_draw = ctx.rng.uniform(agents, dtype=ctx.dtype)
    uptake_draw = ctx.rng.uniform(agents, dtype=ctx.dtype)
    at = torch.where(uptake_draw < coverage, 0.0, -1.0).to(ctx.dtype)
    return {"vaccinated_at": at, "vaccine_draw": vaccine_draw, "uptake_draw": uptake_draw}


def efficacy_left(state: VaccineState, params: Params, ctx: Context) -> torch.Tensor:
    """``[B, N]``: ``w(t) = exp(-waning * days since the dose)`` for the vaccinated, 0 else."""
    vaccinated = (state.vaccinated_at >= 0).to(state.vaccinated_at.dtype)
    if not _wanes(params):  # no waning, no exponential
        return vaccinated
    days = (ctx.step - state.vaccinated_at).clamp_min(0)
    return torch.exp(-member_view(params.vax_waning, 2) * days) * vaccinated


def _wanes(params: Params) -> bool:
    """Whether protection may wane (a waning rate > 0, or one that needs a gradient)."""
    waning = params.vax_waning
    return waning.requires_grad or bool((waning > 0).any())


def susceptibility(
    state: VaccineState, params: Params, ctx: Context, mode: str = "leaky"
) -> torch.Tensor:
    """``[B, N]`` factor on each agent's hazard of infection (1: unprotected)."""
    if mode not in MODES:
        raise ValueError(f"unknown vaccine mode {mode!r}; valid: {', '.join(MODES)}")
    ve = member_view(params.ve_infection, 2)
    if mode == "all_or_nothing" and not _wanes(params):
        # vaccine_draw >= ve * vaccinated, in two comparisons (the draw is >= 0)
        protected = (state.vaccinated_at >= 0).logical_and_(state.vaccine_draw < ve)
        return protected.logical_not_().to(torch.result_type(ve, state.vaccinated_at))
    protection = ve * efficacy_left(state, params, ctx)
    if mode == "leaky":
        return 1 - protection
    return (state.vaccine_draw >= protection).to(protection.dtype)


def infection_probability(
    state: VaccineState,
    params: Params,
    ctx: Context,
    pressure: torch.Tensor,
    mode: str = "leaky",
) -> torch.Tensor:
    """``[B, N]`` probability of infection today, ``1 - exp(-susceptibility x pressure)``, of
    agents under ``pressure`` (the hazard of an unprotected agent, broadcastable to ``[B, N]``,
    e.g. ``[B, 1]`` well mixed).

    All-or-nothing without waning protects fully or not at all, so the probability is the
    unprotected one or exactly 0: ``1 - exp(-pressure)`` is computed once per member, not per
    agent (the same numbers as the general formula)."""
    if mode == "all_or_nothing" and not _wanes(params) and pressure.shape[-1] == 1:
        ve = member_view(params.ve_infection, 2)
        protected = (state.vaccinated_at >= 0).logical_and_(state.vaccine_draw < ve)
        p = -torch.expm1(-pressure)
        return torch.where(protected, torch.zeros((), dtype=p.dtype, device=p.device), p)
    return -torch.expm1(-susceptibility(state, params, ctx, mode) * pressure)


def severe_factor(state: VaccineState, params: Params, ctx: Context) -> torch.Tensor:
    """``[B, N]`` factor on the probability of severe disease of an infected agent."""
    return 1 - member_view(params.ve_severe, 2) * efficacy_left(state, params, ctx)


def vaccinate(state: VaccineState, chosen: torch.Tensor, ctx: Context) -> dict[str, torch.Tensor]:
    """Fields with ``chosen`` (``[B, N]`` bool) vaccinated today."""
    at = torch.where(chosen, float(ctx.step), state.vaccinated_at).to(state.vaccinated_at.dtype)
    return {"vaccinated_at": at}


def daily_doses(
    state: VaccineState,
    params: Params,
    ctx: Context,
    order: torch.Tensor,
    eligible: torch.Tensor,
    agents: int,
    u: torch.Tensor,
    area: str | None = None,
) -> torch.Tensor:
    """``[B, N]`` bool: who gets today's campaign doses.

    Args:
        order: ``[B, N]`` agents grouped by age band, random within
            (:func:`~populace.epi.rationing.grouped_order` of ``ctx.data.age``).
        eligible: ``[B, N]`` bool, agents a dose may go to (alive, not in hospital...); the
            unvaccinated, willing ones of eligible areas and bands among them are served.
        agents: the population size the dose rate refers to.
        u: ``[B]`` uniforms, for rounding the day's doses (the caller draws them every day,
            doses or not, so a member's random numbers do not depend on the others').
        area: the axis of ``vax_area`` (None: every area).
    """
    age = ctx.data.age
    bands = len(ctx.data.labels("age"))
    willing = state.uptake_draw < agent_value(params, "vax_uptake", ctx)
    ok = eligible & willing & (state.vaccinated_at < 0)
    if area is not None:
        ok = ok & (agent_value(params, "vax_area", ctx) > 0)
    counts = group_sum(ok.to(torch.float64), age, bands)  # [B, A]
    total = member_view(params.vax_doses_per_100k, 1).to(torch.float64) * agents / 1e5
    total = total.expand(ok.shape[0])
    quota = priority_quotas(counts, params.vax_priority, total, u)
    return ration(ok, order, quota, group=age)


def area_field(axis: str) -> tuple:
    """The ``vax_area`` param along a model's area ``axis``, as a
    :func:`dataclasses.make_dataclass` field (the axis name differs between populations)."""
    field = param(
        1.0, low=0, high=1, unit="0/1", axes=(axis,), doc="the area's residents are eligible"
    )
    return ("vax_area", float | torch.Tensor, field)


def campaign(
    doses_per_100k: float,
    start: int,
    end: int | None = None,
    ages: Sequence[str] | None = None,
    areas: Sequence[str] | None = None,
    area: str = "borough",
    sequential: bool = False,
) -> tuple[SetParam, ...]:
    """Interventions of a campaign: ``doses_per_100k`` doses a day from ``start`` (to ``end``).

    Args:
        ages: the bands served (None: all), in priority order when ``sequential``; labels are
            checked against the model's when the study applies them (unknown ones are named
            with the valid ones).
        areas: labels of the ``area`` axis whose residents are eligible (None: all).
        sequential: serve ``ages`` one band after the other (the first first), else together.
    """
    if isinstance(doses_per_100k, bool) or not isinstance(doses_per_100k, (int, float)):
        raise ValueError(f"campaign: doses_per_100k must be a number, got {doses_per_100k!r}")
    if not (math.isfinite(doses_per_100k) and doses_per_100k >= 0):
        raise ValueError(f"campaign: doses_per_100k must be finite and >= 0, got {doses_per_100k}")
    out = [SetParam("vax_doses_per_100k", float(doses_per_100k), start=start, end=end)]
    if ages is not None:
        ages = [ages] if isinstance(ages, str) else list(ages)
        if not ages:
            raise ValueError("campaign: ages is empty; None serves every band")
        out.append(SetParam("vax_priority", 0.0, start=start, end=end))
        for k, band in enumerate(ages):
            rank = float(len(ages) - k) if sequential else 1.0
            out.append(SetParam("vax_priority", rank, start=start, end=end, where={"age": band}))
    if areas is not None:
        areas = [areas] if isinstance(areas, str) else list(areas)
        if not areas:
            raise ValueError("campaign: areas is empty; None serves every area")
        out.append(SetParam("vax_area", 0.0, start=start, end=end))
        out.append(SetParam("vax_area", 1.0, start=start, end=end, where={area: areas}))
    return tuple(out)


def final_size(
    r0: float, coverage: float, efficacy: float, mode: str = "leaky", seeded: float = 0.0
) -> float:
    """Attack rate (share of the whole population) of a well-mixed SIR epidemic after a share
    ``coverage`` was vaccinated before it, in the large-population limit.

    An agent of susceptibility sigma escapes with probability ``exp(-sigma R0 A)``, A the attack
    rate, so ``A = sum_k f_k (1 - exp(-sigma_k R0 A))`` over groups of share f_k:

    - all-or-nothing: ``A = (1 - v e)(1 - exp(-R0 A))``;
    - leaky: ``A = (1 - v)(1 - exp(-R0 A)) + v (1 - exp(-(1 - e) R0 A))``.

    With a share ``seeded`` infected at the start (whatever their vaccine),
    ``A = s + (1 - s) sum_k f_k (1 - exp(-sigma_k R0 A))``. Solved by bisection for the root
    A > 0 (0 when nobody is seeded and the epidemic cannot take off).
    """
    for name, v in (("r0", r0), ("coverage", coverage), ("efficacy", efficacy), ("seeded", seeded)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"final_size: {name} must be a finite number >= 0, got {v!r}")
    if coverage > 1 or efficacy > 1 or seeded > 1:
        raise ValueError(
            f"final_size: coverage, efficacy and seeded must be <= 1, got {coverage}, "
            f"{efficacy}, {seeded}"
        )
    if mode not in MODES:
        raise ValueError(f"unknown vaccine mode {mode!r}; valid: {', '.join(MODES)}")
    if mode == "leaky":
        groups = [(1 - coverage, 1.0), (coverage, 1 - efficacy)]
    else:
        groups = [(1 - coverage * efficacy, 1.0)]

    def excess(a: float) -> float:
        return seeded + (1 - seeded) * sum(f * -math.expm1(-s * r0 * a) for f, s in groups) - a

    # without seeds the root is positive when the slope at 0, R0 sum f sigma, exceeds 1
    if seeded == 0 and r0 * sum(f * s for f, s in groups) <= 1:
        return 0.0
    lo, hi = 1e-300, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if excess(mid) > 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
