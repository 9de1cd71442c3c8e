"""SIR with behaviour: agents isolate given the recent case trend, by a rule or by LLM archetypes.

Composed from the modules: the disease is :class:`~populace.epi.disease.Disease` (SIR), contact
is :func:`~populace.epi.contact.well_mixed` with per-agent contact weights, and the decision to
isolate comes from one :mod:`~populace.behaviors.decision` behaviour — a heuristic
:class:`~populace.behaviors.decision.Rule` or :class:`~populace.behaviors.decision.LLMArchetypes`.

Every ``query_every`` steps each agent decides whether to isolate (stay home) this period. With
``behavior="heuristic"`` the probability is ``(isolation_base + isolation_per_case * cases per
100k) * (rising_factor if cases rise) * caution[age group]``. With ``behavior="llm"`` agents are
grouped into archetypes (age group × borough), the LLM is asked once per archetype and member
(``samples`` times; the mean of the yes/no answers is the probability), and the answer is
broadcast back to the archetype's agents with optional per-agent heterogeneity. Either way the
decision is a Bernoulli choice per agent, and an isolating agent keeps a fraction
``1 - isolation_effect`` of its contacts: a susceptible agent ``i`` is infected with probability
``1 - exp(-beta c_i sum_j c_j I_j / N)``, ``c = 1 - isolation_effect * isolating``.

The population is a :class:`~populace.populations.Population` with NYC's ``age`` bands and
``borough`` codes: by default the synthetic New York of :func:`populace.populations.nyc`
(without contact layers) at ``agents`` agents, or a given one (``population=``).

LLM counters (``llm_calls``, ``llm_prompts``, ``llm_answers``, ``llm_cache_hits``,
``llm_invalid``, ``llm_retries``, ``llm_fallbacks``, ``llm_lost``, ``llm_backend_errors`` — failed
requests —, tokens, ``llm_seconds``) count the work of one step for the whole ensemble batch,
repeated in each member's row; the row of step t+1 reports the query made in step t (metrics are
measured on the state a step produced). A run where more than ``max_fallback_share`` of the
answers fell back stops with one line (``on_fallback_excess="error"``, the default).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from populace.behaviors.choice import bernoulli
from populace.behaviors.decision import LLM_COUNTERS, Behaviour, LLMArchetypes, Rule, Situation
from populace.behaviors.llm import (
    AnswerCache,
    ArchetypeQuery,
    Backend,
    Fallback,
    PromptTemplate,
    Sampling,
    YesNo,
    make_backend,
)
from populace.behaviors.llm.backends import cache_root
from populace.engine import (
    Context,
    Data,
    Model,
    Params,
    member_view,
    param,
    per_agent,
    tensor_field,
)
from populace.engine.context import resolve_device
from populace.epi.contact import well_mixed
from populace.epi.disease import Disease, InfectionState
from populace.epi.observation import append_cases, case_trend, compartment, flow
from populace.populations import Population
from populace.populations.nyc import BOROUGH_NAMES, BOROUGHS

NAME = "covid_behavior"
SUMMARY = (
    "SIR where agents isolate given the case trend (behavior=heuristic|llm, LLM archetypes "
    "age group x borough); metrics S, I, R, isolating, new_cases, llm_*"
)

#: days of daily case counts kept for the trend (this week vs the 4-week average).
WINDOW = 28
LLM_METRICS = LLM_COUNTERS

#: the behaviour's four age groups, and the NYC age band each of them folds.
AGE_GROUPS = ("0-17", "18-34", "35-64", "65+")
AGE_GROUP_OF = {
    "0-4": "0-17",
    "5-12": "0-17",
    "13-17": "0-17",
    "18-24": "18-34",
    "25-34": "18-34",
    "35-44": "35-64",
    "45-54": "35-64",
    "55-64": "35-64",
    "65-74": "65+",
    "75+": "65+",
}
#: borough names for prompts, in the order of the ``borough`` codes.
BOROUGH_LABELS = tuple({code: name for name, code in BOROUGH_NAMES.items()}[c] for c in BOROUGHS)

PROMPT = PromptTemplate(
    system=(
        "You are a resident of New York City aged {age_group} living in {borough}. "
        "Answer as that person would."
    ),
    user=(
        "This week there were {cases_per_100k} new COVID-19 cases per 100,000 people in the "
        "city, {trend} compared with the average of the last four weeks. "
        "Will you stay home and avoid contacts this week?"
    ),
)


@dataclasses.dataclass(frozen=True)
class BehaviorParams(Params):
    beta: float | torch.Tensor = param(0.35, low=0, unit="1/day", doc="transmission rate")
    gamma: float | torch.Tensor = param(0.1, low=0, high=1, unit="probability/day", doc="recovery")
    initial: float | torch.Tensor = param(
        0.002,
        low=0,
        high=1,
        unit="probability",
        axes=("borough",),
        doc="agent infectious at step 0, per borough (when initial_infected is None)",
    )
    isolation_effect: float | torch.Tensor = param(
        0.7, low=0, high=1, unit="fraction", doc="of contacts an isolating agent drops"
    )
    isolation_base: float | torch.Tensor = param(
        0.02, low=0, high=1, unit="probability", doc="heuristic: isolate with no cases"
    )
    isolation_per_case: float | torch.Tensor = param(
        0.0005, low=0, unit="probability per weekly case/100k", doc="heuristic: added per case"
    )
    rising_factor: float | torch.Tensor = param(
        1.5, low=0, unit="x", doc="heuristic: multiplier while cases are rising"
    )
    caution: float | torch.Tensor = param(
        torch.tensor([0.6, 0.8, 1.0, 1.5]),
        low=0,
        unit="x",
        axes=("age_group",),
        doc="heuristic: caution of each age group (older agents isolate more readily)",
    )


PARAMS = BehaviorParams


@dataclasses.dataclass(frozen=True)
class BehaviorState(InfectionState):
    """Attributes (besides the disease's):
    isolating: ``[B, N]`` bool, isolating this period.
    cases: ``[B, W]`` daily new cases of the last W days (newest last).
    p_isolate: ``[B, K]`` the last archetype probabilities (``prior`` before the first query).
    llm: ``[B, M]`` this step's LLM counters (see ``LLM_METRICS``).
    """

    isolating: torch.Tensor = tensor_field("B", "N", dtype=torch.bool)
    cases: torch.Tensor = tensor_field("B", WINDOW)
    p_isolate: torch.Tensor = tensor_field("B", "K")
    llm: torch.Tensor = tensor_field("B", len(LLM_METRICS))


def synthetic_population(agents: int, seed: int = 0) -> Population:
    """``agents`` agents of the synthetic New York (age band, borough, area, sex; no layers)."""
    from populace.models.covid_nyc_seir import NYC_RESIDENTS
    from populace.populations.nyc import nyc

    return nyc(scale=agents / NYC_RESIDENTS, seed=seed, layers=(), homes=False)


def model_data(population: Population) -> Data:
    """The population's data plus ``age_group`` codes (NYC age bands folded into four)."""
    if not isinstance(population, Population) or not {"age", "borough"} <= set(population.codebook):
        raise ValueError(
            f"population must be a Population with coded 'age' and 'borough', got {population!r}"
        )
    ages = population.codebook["age"]
    unknown = sorted(set(ages) - set(AGE_GROUP_OF))
    if unknown:
        raise ValueError(f"age bands {unknown} have no age group; known: {list(AGE_GROUP_OF)}")
    if tuple(population.codebook["borough"]) != BOROUGHS:
        raise ValueError(f"borough codes {population.codebook['borough']} are not {BOROUGHS}")
    fold = torch.tensor([AGE_GROUPS.index(AGE_GROUP_OF[a]) for a in ages])
    data = population.data(layers=False)
    tensors = dict(data) | {"age_group": fold[data["age"]]}
    return Data(tensors, axes=data.axes | {"age_group": AGE_GROUPS})


def isolation_rule(per_100k, change, caution, base, per_case, rising_factor) -> torch.Tensor:
    """The heuristic before clamping, every argument broadcast: ``(base + per_case * weekly
    cases per 100k) * (rising_factor while cases rise) * caution``."""
    rising = torch.where(change > 0, rising_factor, torch.ones_like(change))
    return (base + per_case * per_100k) * rising * caution


def heuristic(situation: Situation, params: BehaviorParams, ctx: Context) -> torch.Tensor:
    """``[B, N]`` isolation probability of the rule (:func:`isolation_rule`)."""
    rate = isolation_rule(
        situation.values["cases_per_100k"],
        situation.values["change"],
        1.0,
        member_view(params.isolation_base, 1),
        member_view(params.isolation_per_case, 1),
        member_view(params.rising_factor, 1),
    )  # [B]
    return rate.unsqueeze(1) * per_agent(params.caution, ctx.data.age_group)


def trend_words(change: float) -> str:
    if abs(change) < 10:
        return "about the same"
    return f"{abs(change):.0f}% {'higher' if change > 0 else 'lower'}"


def decide_isolation(behaviour: Behaviour, every: int):
    """The step that redraws isolation decisions every ``every`` steps."""

    def decide(state: BehaviorState, params: BehaviorParams, ctx: Context) -> BehaviorState:
        zeros = torch.zeros_like(state.llm)
        if ctx.step % every:
            return state.replace(llm=zeros)
        per_100k, change = case_trend(state.cases, state.dims["N"])
        # rounded so members in the same situation share prompts (and cache entries)
        situation = Situation(
            {"cases_per_100k": per_100k, "change": change, "trend": change},
            {"trend": trend_words},
        )
        decision = behaviour.decide(situation, params, ctx, state.p_isolate)
        u = ctx.rng.uniform(state.dims["N"], dtype=decision.probs.dtype)
        isolating = bernoulli(decision.probs, u).value.bool()
        counters = decision.counters.to(device=ctx.device, dtype=ctx.dtype).expand_as(state.llm)
        return state.replace(isolating=isolating, p_isolate=decision.archetype_probs, llm=counters)

    return decide


def transmit(disease: Disease):
    """Infection with isolation-reduced contacts, then recovery; append today's cases."""

    def step(state: BehaviorState, params: BehaviorParams, ctx: Context) -> BehaviorState:
        contact = 1 - member_view(params.isolation_effect, 2) * state.isolating.to(ctx.dtype)
        hazard = well_mixed(disease.share(state, "I"), params.beta, weight=contact)
        fields = disease.advance(state, hazard, params, ctx)
        cases = append_cases(state.cases, fields["infected"].sum(dim=1))
        return state.replace(**fields, cases=cases)

    return step


def default_cache() -> Path:
    """``$POPULACE_CACHE/llm.sqlite`` (default ``~/.cache/populace``)."""
    return cache_root() / "llm.sqlite"


def archetype_query(
    template: PromptTemplate = PROMPT,
    *,
    backend: str | Backend = "transformers",
    llm_url: str = "http://127.0.0.1:8000/v1",
    llm_model: str = "",
    llm_device: str = "auto",
    samples: int = 3,
    temperature: float = 0.7,
    max_tokens: int = 4,
    max_retries: int = 2,
    fallback: str = "previous",
    prior: float = 0.1,
    max_fallback_share: float = 0.5,
    on_fallback_excess: str = "error",
    llm_timeout: float | None = None,
    llm_retries: int | None = None,
    kv_cache_bytes: int | None = None,
    cache: str | bool = True,
    cache_rebuild: bool = False,
) -> ArchetypeQuery:
    """The yes/no archetype query of ``template`` (options as in :func:`build`)."""
    if isinstance(backend, str):
        device = str(resolve_device(llm_device))
        backend = make_backend(
            backend,
            url=llm_url,
            model=llm_model,
            device=device,
            timeout=llm_timeout,
            retries=llm_retries,
            kv_cache_bytes=kv_cache_bytes,
        )
    store = None
    if cache:
        path = default_cache() if cache is True else Path(str(cache))
        store = AnswerCache(path, rebuild=cache_rebuild)
    return ArchetypeQuery(
        backend,
        template,
        YesNo(),
        samples=samples,
        sampling=Sampling(temperature=temperature, max_tokens=max_tokens, seed=0),
        cache=store,
        max_retries=max_retries,
        fallback=Fallback(
            policy=fallback,
            prior=prior,
            max_share=max_fallback_share,
            on_excess=on_fallback_excess,
        ),
    )


def build(
    agents: int = 10_000,
    initial_infected: int | None = 20,
    behavior: str = "heuristic",
    query_every: int = 7,
    backend: str | Backend = "transformers",
    llm_url: str = "http://127.0.0.1:8000/v1",
    llm_model: str = "",
    llm_device: str = "auto",
    samples: int = 3,
    temperature: float = 0.7,
    max_tokens: int = 4,
    max_retries: int = 2,
    fallback: str = "previous",
    prior: float = 0.1,
    max_fallback_share: float = 0.5,
    on_fallback_excess: str = "error",
    llm_timeout: float | None = None,
    llm_retries: int | None = None,
    kv_cache_bytes: int | None = None,
    heterogeneity: float = 0.5,
    cache: str | bool = True,
    cache_rebuild: bool = False,
    population: Population | None = None,
    population_seed: int = 0,
    estimator: str = "none",
    choice_temperature: float = 0.1,
    **params: float,
) -> Model:
    """The behaviour model on ``agents`` agents.

    Args:
        initial_infected: agents infectious at step 0 (chosen at random); None: each agent
            with the probability ``initial`` of its borough (a fittable param per borough).
        behavior: ``"heuristic"`` or ``"llm"``.
        query_every: steps between isolation decisions (and LLM queries).
        backend: ``"transformers" | "vllm" | "openai"`` or a :class:`Backend` object.
        llm_url / llm_model: server and model for ``openai``; model folder for ``vllm``.
        llm_device: where an embedded backend runs: ``"auto"`` (CUDA when available), ``"cpu"``,
            ``"cuda[:i]"``.
        samples: LLM answers per archetype per query.
        fallback / prior: the :class:`Fallback` policy for answers that stay invalid.
        max_fallback_share / on_fallback_excess: past this share of answers fallen back (over
            the run so far), ``"error"`` stops the run with one line naming the causes (the
            default), ``"warn"`` warns once and goes on.
        llm_timeout / llm_retries: the whole deadline of one request (seconds) and its retries,
            for the ``openai`` backend (None: the backend's defaults).
        kv_cache_bytes: the vLLM backend's KV cache (None: its default).
        heterogeneity: per-agent spread around the archetype probability (logit scale).
        cache: a path for the answer cache, True for :func:`default_cache`, False for none.
        cache_rebuild: a damaged cache file is moved aside and rebuilt instead of refused.
        population: the agents (default :func:`synthetic_population` of ``agents``).
        estimator: gradient estimator of the disease's transitions (``"none"``,
            ``"straight_through"``, ``"score_function"``): anything but ``"none"`` makes the
            epidemic differentiable in beta, gamma, initial and isolation_effect (the isolation
            decisions themselves are plain draws).
        choice_temperature: the straight-through relaxation temperature (``temperature`` is the
            LLM's sampling temperature).
    """
    if behavior not in ("heuristic", "llm"):
        raise ValueError(f"behavior must be 'heuristic' or 'llm', got {behavior!r}")
    if initial_infected is not None and not 0 <= initial_infected <= agents:
        raise ValueError(f"initial_infected={initial_infected} must be in [0, agents={agents}]")
    if query_every < 1:
        raise ValueError(f"query_every must be >= 1, got {query_every}")
    if not 0 <= prior <= 1:  # also refuses NaN
        raise ValueError(f"prior must be a probability in [0, 1], got {prior}")
    if population is None:
        population = synthetic_population(agents, population_seed)
    data = model_data(population)
    if population.n != agents:
        raise ValueError(f"population has {population.n} agents, not {agents}")
    if behavior == "llm":
        query = archetype_query(
            PROMPT,
            backend=backend,
            llm_url=llm_url,
            llm_model=llm_model,
            llm_device=llm_device,
            samples=samples,
            temperature=temperature,
            max_tokens=max_tokens,
            max_retries=max_retries,
            fallback=fallback,
            prior=prior,
            max_fallback_share=max_fallback_share,
            on_fallback_excess=on_fallback_excess,
            llm_timeout=llm_timeout,
            llm_retries=llm_retries,
            kv_cache_bytes=kv_cache_bytes,
            cache=cache,
            cache_rebuild=cache_rebuild,
        )
        g = torch.Generator().manual_seed(population_seed + 1)
        behaviour: Behaviour = LLMArchetypes(
            query,
            data,
            ("age_group", "borough"),
            labels={"borough": BOROUGH_LABELS},
            offsets=torch.randn(agents, generator=g),
            spread=heterogeneity,
        )
    else:
        behaviour = Rule(heuristic)
    k = max(behaviour.archetypes, 1)
    disease = Disease(latent=False, estimator=estimator, temperature=choice_temperature)

    def init(params: BehaviorParams, ctx: Context) -> BehaviorState:
        b = ctx.members
        if initial_infected is None:
            p = per_agent(params.initial, ctx.data.borough)  # [N] or [B, N]
            seeded = disease.initial(ctx, agents, p=p if p.dim() == 2 else p.unsqueeze(0))
        else:
            seeded = disease.initial(ctx, agents, count=initial_infected)
        return BehaviorState(
            **seeded,
            isolating=torch.zeros(b, agents, dtype=torch.bool, device=ctx.device),
            cases=torch.zeros(b, WINDOW, dtype=ctx.dtype, device=ctx.device),
            p_isolate=torch.full((b, k), prior, dtype=ctx.dtype, device=ctx.device),
            llm=torch.zeros(b, len(LLM_METRICS), dtype=ctx.dtype, device=ctx.device),
        )

    def isolating(state: BehaviorState, params: BehaviorParams, ctx: Context) -> torch.Tensor:
        return state.isolating.sum(dim=1)

    def llm_metric(column: int):
        def metric(state: BehaviorState, params: BehaviorParams, ctx: Context) -> torch.Tensor:
            return state.llm[:, column]

        return metric

    metrics = {c: compartment(disease, c) for c in disease.compartments}
    metrics |= {"isolating": isolating, "new_cases": flow("infected")}
    metrics |= {f"llm_{m}": llm_metric(j) for j, m in enumerate(LLM_METRICS)}
    return Model(
        name=NAME,
        params=BehaviorParams().replace(**params),
        init=init,
        steps=(decide_isolation(behaviour, query_every), transmit(disease)),
        metrics=metrics,
        agents=agents,
        data=data,
        options={
            "agents": agents,
            "initial_infected": initial_infected,
            "behavior": behavior,
            "query_every": query_every,
            "backend": backend if isinstance(backend, str) else backend.name,
            "samples": samples,
            "estimator": estimator,
        },
    )
