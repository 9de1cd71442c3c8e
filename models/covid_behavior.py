"""SIR with behaviour: agents isolate given the recent case trend, by a rule or by LLM archetypes.

Every ``query_every`` steps each agent decides whether to isolate (stay home) this period. With
``behavior="heuristic"`` the probability is a rule of this week's cases per 100k, their trend and
the agent's age band. With ``behavior="llm"`` agents are grouped into archetypes (age band ×
borough), the LLM is asked once per archetype (``samples`` times, the mean of the yes/no answers
is the probability), and the answer is broadcast back to the archetype's agents with optional
per-agent heterogeneity. Either way the decision is a stochastic choice per agent
(:mod:`populace.behaviors.choice`), and an isolating agent's contacts drop by
``isolation_effect``: a susceptible agent ``i`` is infected with probability
``1 - exp(-beta dt c_i sum_j c_j I_j / N)``, ``c = 1 - isolation_effect * isolating``.

The population is synthetic (:func:`synthetic_population`: age band × borough with NYC-like
shares), generated here until the NYC population of ``populace.populations`` is available; the
seam is :class:`Population` — any object with the same fields works.

LLM counters (``llm_calls``, ``llm_prompts``, ``llm_cache_hits``, ``llm_invalid``,
``llm_retries``, ``llm_fallbacks``, ``llm_backend_errors``, tokens, ``llm_seconds``) count the work
of one step for the whole ensemble batch, repeated in each member's row; the row of step t+1
reports the query made in step t (metrics are measured on the state a step produced).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from populace.behaviors.choice import bernoulli
from populace.behaviors.llm import (
    Accounting,
    AnswerCache,
    ArchetypeQuery,
    Backend,
    Fallback,
    PromptTemplate,
    Question,
    Sampling,
    YesNo,
    broadcast,
    group_by,
    heterogeneous,
    make_backend,
)
from populace.behaviors.llm.backends import cache_root
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
from populace.engine.context import resolve_device

NAME = "covid_behavior"
SUMMARY = (
    "SIR where agents isolate given the case trend (behavior=heuristic|llm, LLM archetypes "
    "age band x borough); metrics S, I, R, isolating, new_cases, llm_*"
)

SUSCEPTIBLE, INFECTIOUS, RECOVERED = 0, 1, 2
#: days of daily case counts kept for the trend (this week vs the 4-week average).
WINDOW = 28
LLM_METRICS = (
    "calls",
    "prompts",
    "cache_hits",
    "invalid",
    "retries",
    "fallbacks",
    "backend_errors",
    "prompt_tokens",
    "completion_tokens",
    "seconds",
)

AGE_BANDS = ("0-17", "18-34", "35-64", "65+")
AGE_SHARES = (0.21, 0.24, 0.39, 0.16)
#: the heuristic's caution by age band (older agents isolate more readily).
AGE_CAUTION = (0.6, 0.8, 1.0, 1.5)
BOROUGHS = ("Manhattan", "Brooklyn", "Queens", "Bronx", "Staten Island")
BOROUGH_SHARES = (0.19, 0.31, 0.27, 0.17, 0.06)

PROMPT = PromptTemplate(
    system=(
        "You are a resident of New York City aged {age_band} living in {borough}. "
        "Answer as that person would."
    ),
    user=(
        "This week there were {cases_per_100k} new COVID-19 cases per 100,000 people in the "
        "city, {trend} compared with the average of the last four weeks. "
        "Will you stay home and avoid contacts this week?"
    ),
)


@dataclasses.dataclass(frozen=True)
class Population:
    """The agents' attributes; the same for every ensemble member.

    Attributes:
        age_band: ``[N]`` int64 codes into ``age_names``.
        borough: ``[N]`` int64 codes into ``borough_names``.
    """

    age_band: torch.Tensor
    borough: torch.Tensor
    age_names: tuple[str, ...] = AGE_BANDS
    borough_names: tuple[str, ...] = BOROUGHS


def synthetic_population(agents: int, seed: int = 0) -> Population:
    """``agents`` agents with independent age band and borough drawn from NYC-like shares.

    Stand-in for ``populace.populations.nyc`` (issue #6); swap it in via ``build(population=)``.
    """
    g = torch.Generator().manual_seed(seed)
    age = torch.multinomial(torch.tensor(AGE_SHARES), agents, replacement=True, generator=g)
    borough = torch.multinomial(torch.tensor(BOROUGH_SHARES), agents, replacement=True, generator=g)
    return Population(age_band=age, borough=borough)


@dataclasses.dataclass(frozen=True)
class BehaviorParams(Params):
    """Attributes:
    beta: transmission rate per unit time (full contacts).
    gamma: recovery rate per unit time (``gamma * dt <= 1``).
    dt: time step (days).
    isolation_effect: fraction of contacts an isolating agent drops, in [0, 1].
    isolation_base: heuristic: probability to isolate with no cases (before age caution).
    isolation_per_case: heuristic: added probability per weekly case per 100k.
    rising_factor: heuristic: multiplier of the probability when cases are rising.
    """

    beta: float | torch.Tensor = 0.35
    gamma: float | torch.Tensor = 0.1
    dt: float | torch.Tensor = 1.0
    isolation_effect: float | torch.Tensor = 0.7
    isolation_base: float | torch.Tensor = 0.02
    isolation_per_case: float | torch.Tensor = 0.0005
    rising_factor: float | torch.Tensor = 1.5

    def check(self) -> None:
        self.check_range(NAME)
        self.check_range(NAME, ("isolation_effect",), 0, 1)
        if float(self.values("gamma").max() * self.values("dt").max()) > 1:
            raise ParamError(f"{NAME}: gamma * dt > 1 is not a recovery probability")


PARAMS = BehaviorParams


@dataclasses.dataclass(frozen=True)
class BehaviorState(State):
    """Attributes:
    status: ``[B, N]`` int8, 0 susceptible, 1 infectious, 2 recovered.
    isolating: ``[B, N]`` bool, isolating this period.
    cases: ``[B, W]`` float, daily new cases of the last W days (newest last).
    p_isolate: ``[B, K]`` float, the last archetype probabilities (``prior`` before the first
        query, which is what the "previous" fallback would use then anyway).
    llm: ``[B, M]`` float, this step's LLM counters (see ``LLM_METRICS``).
    """

    status: torch.Tensor = tensor_field("B", "N", dtype=torch.int8)
    isolating: torch.Tensor = tensor_field("B", "N", dtype=torch.bool)
    cases: torch.Tensor = tensor_field("B", WINDOW)
    p_isolate: torch.Tensor = tensor_field("B", "K")
    llm: torch.Tensor = tensor_field("B", len(LLM_METRICS))
    agents: int = static_field(0)


def case_trend(cases: torch.Tensor, agents: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This week's cases per 100k and their change (%) from the 4-week weekly average.

    Args:
        cases: ``[B, W]`` daily cases, newest last.

    Returns:
        per_100k ``[B]``, change_pct ``[B]``.
    """
    week = cases[:, -7:].sum(dim=1)
    average = cases.sum(dim=1) / (WINDOW / 7)
    change = 100 * (week - average) / average.clamp_min(1.0)
    return week * 1e5 / agents, change


def heuristic_probability(
    params: BehaviorParams, per_100k: torch.Tensor, change: torch.Tensor, age: torch.Tensor
) -> torch.Tensor:
    """``[B, N]`` isolation probability of the rule: (base + per_case * cases) * caution."""
    base = member_view(params.isolation_base, 1) + member_view(params.isolation_per_case, 1) * (
        per_100k
    )
    rising = torch.where(change > 0, member_view(params.rising_factor, 1), torch.ones_like(change))
    caution = torch.tensor(AGE_CAUTION, dtype=per_100k.dtype, device=per_100k.device)[age]
    return ((base * rising).unsqueeze(1) * caution).clamp(0.0, 1.0)


def _trend_words(change: float) -> str:
    if abs(change) < 10:
        return "about the same"
    return f"{abs(change):.0f}% {'higher' if change > 0 else 'lower'}"


class LLMBehavior:
    """The LLM side of the model: archetypes, query, and this run's accounting."""

    def __init__(
        self, population: Population, query: ArchetypeQuery, offsets: torch.Tensor, spread: float
    ) -> None:
        self.offsets = offsets  # [N] fixed per-agent logit offsets
        self.spread = spread
        self.archetypes = group_by(
            {"age_band": population.age_band, "borough": population.borough},
            {"age_band": population.age_names, "borough": population.borough_names},
        )
        self.query = query

    def probabilities(
        self, per_100k: torch.Tensor, change: torch.Tensor, previous: torch.Tensor
    ) -> tuple[torch.Tensor, Accounting]:
        """``[B, K]`` archetype probabilities; one question per member and archetype.

        Environment values are rounded so members with the same situation share prompts
        (and cache entries).
        """
        questions = []
        for b in range(per_100k.shape[0]):
            env = {
                "cases_per_100k": f"{float(per_100k[b]):.0f}",
                "trend": _trend_words(float(change[b])),
            }
            questions += [Question(labels, env) for labels in self.archetypes.labels]
        values, acc = self.query.ask(questions, previous.reshape(-1).double().cpu())
        return values.view_as(previous).to(previous), acc


def decide_isolation(behavior: str, population: Population, llm: LLMBehavior | None, every: int):
    """The step that redraws isolation decisions every ``every`` steps."""
    age = population.age_band

    def step(state: BehaviorState, params: BehaviorParams, ctx: Context) -> BehaviorState:
        zeros = torch.zeros_like(state.llm)
        if ctx.step % every:
            return state.replace(llm=zeros)
        per_100k, change = case_trend(state.cases, state.agents)
        if behavior == "heuristic":
            probs, p_k, counters = (
                heuristic_probability(params, per_100k, change, age.to(ctx.device)),
                state.p_isolate,
                zeros,
            )
        else:
            p_k, acc = llm.probabilities(per_100k, change, state.p_isolate)
            probs = heterogeneous(broadcast(p_k, llm.archetypes), llm.offsets, llm.spread)
            row = torch.tensor([float(getattr(acc, m)) for m in LLM_METRICS], dtype=ctx.dtype)
            counters = row.to(ctx.device).expand_as(state.llm)
        u = ctx.rng.uniform(state.agents, dtype=probs.dtype)
        choice = bernoulli(probs, u)
        return state.replace(isolating=choice.value.bool(), p_isolate=p_k, llm=counters)

    return step


def transmit(state: BehaviorState, params: BehaviorParams, ctx: Context) -> BehaviorState:
    """Infection with isolation-reduced contacts, then recovery; append today's cases."""
    status = state.status
    contact = 1 - member_view(params.isolation_effect, 2) * state.isolating.to(ctx.dtype)
    infectious = (status == INFECTIOUS).to(ctx.dtype)
    pressure = (contact * infectious).sum(dim=1) / state.agents  # [B]
    force = member_view(params.beta * params.dt, 2) * contact * pressure.unsqueeze(1)
    u = ctx.rng.uniform(state.agents, dtype=ctx.dtype)
    infected = (status == SUSCEPTIBLE) & (u < -torch.expm1(-force))
    recovered = (status == INFECTIOUS) & (u < member_view(params.gamma * params.dt, 2))
    new = infected.sum(dim=1).to(state.cases.dtype)
    cases = torch.cat([state.cases[:, 1:], new.unsqueeze(1)], dim=1)
    status = status + infected.to(torch.int8) + recovered.to(torch.int8)
    return state.replace(status=status, cases=cases)


def count(code: int):
    def metric(state: BehaviorState, params: BehaviorParams) -> torch.Tensor:
        return (state.status == code).sum(dim=1)

    return metric


def llm_metric(column: int):
    def metric(state: BehaviorState, params: BehaviorParams) -> torch.Tensor:
        return state.llm[:, column]

    return metric


def default_cache() -> Path:
    """``$POPULACE_CACHE/llm.sqlite`` (default ``~/.cache/populace``)."""
    return cache_root() / "llm.sqlite"


def build(
    agents: int = 10_000,
    initial_infected: int = 20,
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
    heterogeneity: float = 0.5,
    cache: str | bool = True,
    population: Population | None = None,
    population_seed: int = 0,
    **params: float,
) -> Model:
    """The behaviour model on ``agents`` agents.

    Args:
        behavior: ``"heuristic"`` or ``"llm"``.
        query_every: steps between isolation decisions (and LLM queries).
        backend: ``"transformers" | "vllm" | "openai"`` or a :class:`Backend` object.
        llm_url / llm_model: server and model for ``openai``; model folder for ``vllm``.
        llm_device: where an embedded backend runs: ``"auto"`` (CUDA when available), ``"cpu"``,
            ``"cuda[:i]"``.
        samples: LLM answers per archetype per query.
        fallback / prior: the :class:`Fallback` policy for answers that stay invalid.
        heterogeneity: per-agent spread around the archetype probability (logit scale).
        cache: a path for the answer cache, True for :func:`default_cache`, False for none.
        population: the agents' attributes (default :func:`synthetic_population`).
    """
    if behavior not in ("heuristic", "llm"):
        raise ValueError(f"behavior must be 'heuristic' or 'llm', got {behavior!r}")
    if not 0 <= initial_infected <= agents:
        raise ValueError(f"initial_infected={initial_infected} must be in [0, agents={agents}]")
    if query_every < 1:
        raise ValueError(f"query_every must be >= 1, got {query_every}")
    if not 0 <= prior <= 1:  # also refuses NaN
        raise ValueError(f"prior must be a probability in [0, 1], got {prior}")
    if population is None:
        population = synthetic_population(agents, population_seed)
    elif not isinstance(getattr(population, "age_band", None), torch.Tensor):
        raise ValueError(
            f"population must have an age_band tensor (like Population), got {population!r}"
        )
    if population.age_band.shape != (agents,):
        raise ValueError(f"population has {population.age_band.shape[0]} agents, not {agents}")
    llm = None
    k = 1
    if behavior == "llm":
        if isinstance(backend, str):
            device = str(resolve_device(llm_device))
            backend = make_backend(backend, url=llm_url, model=llm_model, device=device)
        store = None
        if cache:
            store = AnswerCache(default_cache() if cache is True else Path(str(cache)))
        query = ArchetypeQuery(
            backend,
            PROMPT,
            YesNo(),
            samples=samples,
            sampling=Sampling(temperature=temperature, max_tokens=max_tokens, seed=0),
            cache=store,
            max_retries=max_retries,
            fallback=Fallback(policy=fallback, prior=prior),
        )
        g = torch.Generator().manual_seed(population_seed + 1)
        llm = LLMBehavior(population, query, torch.randn(agents, generator=g), heterogeneity)
        k = llm.archetypes.count

    def init(params: BehaviorParams, ctx: Context) -> BehaviorState:
        order = ctx.rng.permutation(agents)
        status = torch.zeros(ctx.members, agents, dtype=torch.int8, device=ctx.device)
        status.scatter_(1, order[:, :initial_infected], INFECTIOUS)
        b = ctx.members
        return BehaviorState(
            status=status,
            isolating=torch.zeros(b, agents, dtype=torch.bool, device=ctx.device),
            cases=torch.zeros(b, WINDOW, dtype=ctx.dtype, device=ctx.device),
            p_isolate=torch.full((b, k), prior, dtype=ctx.dtype, device=ctx.device),
            llm=torch.zeros(b, len(LLM_METRICS), dtype=ctx.dtype, device=ctx.device),
            agents=agents,
        )

    def isolating(state: BehaviorState, params: BehaviorParams) -> torch.Tensor:
        return state.isolating.sum(dim=1)

    def new_cases(state: BehaviorState, params: BehaviorParams) -> torch.Tensor:
        return state.cases[:, -1]

    metrics = {
        "S": count(SUSCEPTIBLE),
        "I": count(INFECTIOUS),
        "R": count(RECOVERED),
        "isolating": isolating,
        "new_cases": new_cases,
    }
    metrics.update({f"llm_{m}": llm_metric(j) for j, m in enumerate(LLM_METRICS)})
    return Model(
        name=NAME,
        params=BehaviorParams().replace(**params),
        init=init,
        steps=(decide_isolation(behavior, population, llm, query_every), transmit),
        metrics=metrics,
        agents=agents,
        options={
            "agents": agents,
            "initial_infected": initial_infected,
            "behavior": behavior,
            "query_every": query_every,
            "backend": backend if isinstance(backend, str) else backend.name,
            "samples": samples,
        },
    )
