"""Measles-style SEIR with births, deaths, routine and campaign vaccination (the example of
LASER and starsim).

Composed from the modules: :func:`populace.epi.course.seir` (S → E → I → R with durations as
distributions), :mod:`populace.epi.demography` (crude birth and death rates, fixed capacity
with an ``alive`` mask, ages in days), :mod:`populace.epi.vaccination` (all-or-nothing or leaky
efficacy, waning) and well-mixed contact. Each day:

1. deaths, births and ageing; a newborn is susceptible and unvaccinated;
2. routine vaccination: an agent reaching ``routine_age`` days is vaccinated with probability
   ``routine_coverage``; a campaign (supplementary immunisation activity) vaccinates each
   unvaccinated agent aged ``campaign_min_age..campaign_max_age`` days with probability
   ``campaign_rate`` that day (0 outside campaigns: ``SetParam("campaign_rate", 0.1,
   start=100, end=110)`` is a ten-day campaign);
3. transmission: a susceptible agent is infected with probability ``1 - exp(-h)``,
   ``h = v * (beta * I / N + importations / N)`` (``v``: its vaccine factor, N the living),
   then progression (latent and infectious durations as distributions).

``R0 = beta * E[infectious days]`` (:func:`basic_reproduction`). Metrics: S, E, I, R, ``alive``,
``births``, ``deaths``, ``new_infections``, ``vaccinated`` (living vaccinated agents),
``doses``, ``births_dropped``.
"""

from __future__ import annotations

import dataclasses

import torch

from populace.engine import Context, Model, ParamError, member_view, param
from populace.epi import demography, vaccination
from populace.epi.course import CourseState, seir
from populace.epi.durations import Duration, gamma
from populace.epi.observation import compartment, flow

NAME = "measles"
SUMMARY = (
    "measles-style SEIR with births, deaths, routine (at an age) and campaign vaccination; "
    "metrics S E I R, alive, births, deaths, vaccinated, doses"
)


@dataclasses.dataclass(frozen=True)
class MeaslesParams(demography.DemographyParams, vaccination.EfficacyParams):
    beta: float | torch.Tensor = param(
        1.8, low=0, unit="1/day", doc="transmission rate (R0 = beta x mean infectious days)"
    )
    importations: float | torch.Tensor = param(
        0.0, low=0, unit="infections/day", doc="expected infections from outside each day"
    )
    initial_immune: float | torch.Tensor = param(
        0.0, low=0, high=1, unit="share", doc="agents recovered (immune) at day 0"
    )
    initial_vaccinated: float | torch.Tensor = param(
        0.0, low=0, high=1, unit="share", doc="agents vaccinated at day 0 (before the epidemic)"
    )
    routine_coverage: float | torch.Tensor = param(
        0.0, low=0, high=1, unit="probability", doc="an agent reaching routine_age is vaccinated"
    )
    routine_age: float | torch.Tensor = param(
        270.0, low=0, unit="days", doc="age of the routine dose (9 months)"
    )
    campaign_rate: float | torch.Tensor = param(
        0.0, low=0, high=1, unit="probability/day", doc="campaign: an eligible agent is vaccinated"
    )
    campaign_min_age: float | torch.Tensor = param(
        270.0, low=0, unit="days", doc="campaign: youngest eligible age"
    )
    campaign_max_age: float | torch.Tensor = param(
        5 * 365.0, low=0, unit="days", doc="campaign: oldest eligible age"
    )
    ve_infection: float | torch.Tensor = param(
        0.9, low=0, high=1, unit="efficacy", doc="vaccine efficacy against infection"
    )

    def check(self) -> None:
        if (self.values("campaign_min_age") > self.values("campaign_max_age").max()).all():
            raise ParamError(
                f"measles parameter 'campaign_min_age' ({_text(self.campaign_min_age)}) exceeds "
                f"'campaign_max_age' ({_text(self.campaign_max_age)}): nobody is eligible"
            )


def _text(v) -> str:
    t = v.values if hasattr(v, "values") and not isinstance(v, torch.Tensor) else v
    return str(torch.as_tensor(t).tolist())


PARAMS = MeaslesParams


@dataclasses.dataclass(frozen=True, kw_only=True)
class MeaslesState(CourseState, vaccination.VaccineState, demography.DemographyState):
    pass


def build(
    agents: int = 10_000,
    capacity: float = 1.5,
    initial_infected: int = 10,
    latent: Duration | None = None,
    infectious: Duration | None = None,
    vaccine: str = "all_or_nothing",
    mean_age_years: float = 30.0,
    estimator: str = "none",
    temperature: float = 0.1,
    **params,
) -> Model:
    """The measles model with ``agents`` living agents at day 0.

    Args:
        capacity: slots as a multiple of ``agents`` (room for growth; births beyond it are
            dropped and counted in ``births_dropped``).
        latent, infectious: durations (default gamma(10, 2) and gamma(8, 2) days).
        vaccine: ``"all_or_nothing"`` or ``"leaky"``.
        mean_age_years: mean of the initial (exponential) age distribution.
        params: override :class:`MeaslesParams`.
    """
    if isinstance(agents, bool) or not isinstance(agents, int) or agents < 1:
        raise ValueError(f"agents must be a positive integer, got {agents!r}")
    if not capacity >= 1:
        raise ValueError(f"capacity must be >= 1 (a multiple of agents), got {capacity}")
    if vaccine not in vaccination.MODES:
        raise ValueError(f"unknown vaccine {vaccine!r}; valid: {', '.join(vaccination.MODES)}")
    if not 0 <= initial_infected <= agents:
        raise ValueError(f"initial_infected={initial_infected} must be in [0, agents={agents}]")
    slots = int(round(agents * capacity))
    course = seir(latent or gamma(10, 2), infectious or gamma(8, 2), None, estimator, temperature)
    s, r = course.index("S"), course.index("R")

    def init(params: MeaslesParams, ctx: Context) -> MeaslesState:
        demo = demography.initial(ctx, slots, agents, mean_age_years)
        alive = demo["alive"]
        zeros = torch.zeros(ctx.members, slots, dtype=ctx.dtype, device=ctx.device)
        seeds = zeros.scatter(1, ctx.rng.permutation(agents)[:, :initial_infected], 1.0)
        fields = course.initial(params, ctx, slots, p=seeds)
        rows = list((fields["health"] * alive.unsqueeze(1)).unbind(1))  # empty slots: none
        immune = ctx.rng.uniform(slots, dtype=ctx.dtype) < member_view(params.initial_immune, 2)
        moved = rows[s] * immune
        rows[s], rows[r] = rows[s] - moved, rows[r] + moved
        fields["health"] = torch.stack(rows, dim=1)
        vax = vaccination.initial(ctx, slots, member_view(params.initial_vaccinated, 2))
        vax["vaccinated_at"] = torch.where(alive, vax["vaccinated_at"], -1.0)
        return MeaslesState(**fields, **vax, **demo)

    def live(state: MeaslesState, params: MeaslesParams, ctx: Context) -> MeaslesState:
        """Deaths, births, ageing; newborns susceptible, unvaccinated, with fresh draws."""
        demo, (u_death, u_birth) = demography.step(state, params, ctx)
        alive, born = demo["alive"], demo["born"]
        if u_death is None or not bool((demo["died"] | born).any()):  # a day of ageing only
            return state.replace(**demo)
        stays = alive & ~born  # a newborn may take the slot of an agent who died today
        rows = list((state.health * stays.unsqueeze(1)).unbind(1))
        rows[s] = torch.where(born, 1.0, rows[s])
        zero = torch.zeros_like(state.timer)
        return state.replace(
            **demo,
            health=torch.stack(rows, dim=1),
            timer=torch.where(stays, state.timer, zero),
            fate=torch.where(stays, state.fate, zero),
            vaccinated_at=torch.where(stays, state.vaccinated_at, -1.0).to(zero.dtype),
            # the free slot's uniforms of today decided nothing: the newborn's own draws
            vaccine_draw=torch.where(born, u_death.to(zero.dtype), state.vaccine_draw),
            uptake_draw=torch.where(born, u_birth.to(zero.dtype), state.uptake_draw),
        )

    def immunise(state: MeaslesState, params: MeaslesParams, ctx: Context) -> MeaslesState:
        """Routine doses at ``routine_age``, campaign doses to the eligible ages."""
        n = state.dims["N"]
        rates = (params.routine_coverage, params.campaign_rate)
        if not any(bool((r > 0).any()) for r in rates):
            ctx.rng.claim(n)  # the day's draw, not needed: the later draws keep their numbers
            return state
        u = ctx.rng.uniform(n, dtype=ctx.dtype)  # every day, so the streams stay aligned
        age = state.age_days
        unvaccinated = state.alive & (state.vaccinated_at < 0)
        at = member_view(params.routine_age, 2)
        reaching = (age >= at) & (age - 1 < at)
        routine = reaching & (state.uptake_draw < member_view(params.routine_coverage, 2))
        lo, hi = member_view(params.campaign_min_age, 2), member_view(params.campaign_max_age, 2)
        sia = (age >= lo) & (age <= hi) & (u < member_view(params.campaign_rate, 2))
        chosen = unvaccinated & (routine | sia)
        return state.replace(**vaccination.vaccinate(state, chosen, ctx))

    def transmit(state: MeaslesState, params: MeaslesParams, ctx: Context) -> MeaslesState:
        living = state.alive.sum(dim=1, keepdim=True).clamp_min(1).to(ctx.dtype)
        x = course.infectiousness(state, params)
        pressure = member_view(params.beta, 2) * x.sum(dim=1, keepdim=True) / living
        pressure = pressure + member_view(params.importations, 2) / living
        p = vaccination.infection_probability(state, params, ctx, pressure, vaccine)
        return state.replace(**course.advance(state, None, params, ctx, p_infect=p))

    def count(fn):
        def metric(state: MeaslesState, params: MeaslesParams, ctx: Context) -> torch.Tensor:
            return fn(state, ctx).sum(dim=1, dtype=torch.float64)

        return metric

    metrics = {c: compartment(course, c) for c in course.compartments}
    metrics |= {
        "alive": flow("alive"),
        "births": flow("born"),
        "deaths": flow("died"),
        "new_infections": flow("infected"),
        "vaccinated": count(lambda st, c: st.alive & (st.vaccinated_at >= 0)),
        "doses": count(lambda st, c: (st.vaccinated_at == c.step - 1) & (st.vaccinated_at >= 0)),
        "births_dropped": lambda st, p, c: st.births_dropped.to(torch.float64),
    }
    return Model(
        name=NAME,
        params=MeaslesParams().replace(**params),
        init=init,
        steps=(live, immunise, transmit),
        metrics=metrics,
        agents=slots,
        options={
            "agents": agents,
            "capacity": slots,
            "initial_infected": initial_infected,
            "latent": _spec(course.stage("E").duration),
            "infectious": _spec(course.stage("I").duration),
            "vaccine": vaccine,
            "mean_age_years": mean_age_years,
            "estimator": estimator,
        },
    )


def basic_reproduction(model: Model) -> float:
    """``R0 = beta * E[infectious days]`` (a single beta)."""
    beta = torch.as_tensor(model.params.beta)
    if beta.dim() != 0:
        raise ValueError("basic_reproduction: beta must be one value, not per member")
    course = seir(Duration(*model.options["latent"]), Duration(*model.options["infectious"]))
    return float(beta) * course.infectious_days(model.params).item()


def _spec(d: Duration) -> list:
    return [d.kind, d.mean, d.sd]
