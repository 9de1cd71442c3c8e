"""Differentiable agent SEIR for COVID-19 in New York City (or a small synthetic stand-in).

Every agent is in one of S, E, I, R, held as four ``[B, N]`` float fields that are exactly 0 or 1
forward. Each step (one day), from the state at the start of the step:

- a susceptible agent is exposed with probability ``1 - exp(-beta(t) * r_b(t) * lambda_i)``,
  where ``r_b`` is the relative rate ``beta_<b>`` of the agent's borough b (default 1) and
  ``lambda_i`` is the agent's infectious contacts over the population's layers divided by the mean
  degree (``population="nyc"`` or ``"random"``), or the infectious fraction (``"well_mixed"``), so
  ``beta / gamma`` is about R0 in every mode;
- an exposed agent becomes infectious with probability ``sigma`` (the onset, counted as a case);
- an infectious agent recovers with probability ``gamma``.

The three transitions are Bernoulli choices from :mod:`populace.behaviors.choice` with the
estimator chosen at build time: ``"straight_through"`` (Gumbel-softmax, ``temperature``) lets
gradients reach ``beta``, ``sigma``, ``gamma`` and ``initial`` through the counts;
``"score_function"`` accumulates the log-probability of every choice in the state's ``log_prob``
(``[B]``), which :func:`populace.behaviors.choice.score_function_surrogate` turns into an unbiased
gradient. The initial infectious agents are Bernoulli(``initial``) choices too, so the initial
infections are calibratable.

Metrics: S, E, I, R (counts), ``cases`` (onsets this step), ``cases_<borough>`` per borough
(BX, BK, MN, QN, SI; in ``"random"``/``"well_mixed"`` agents get borough codes by blocks).
"""

from __future__ import annotations

import dataclasses

import torch

from populace.behaviors.choice import ESTIMATORS, bernoulli
from populace.engine import (
    Context,
    Model,
    Params,
    State,
    member_view,
    static_field,
    tensor_field,
)
from populace.kernels.graph import contact_pressure

NAME = "covid_nyc_seir"
SUMMARY = (
    "differentiable agent SEIR on the NYC population (beta, sigma, gamma, initial, "
    "beta_<borough>; "
    "choice estimators); metrics S E I R, cases, cases_<borough>"
)

BOROUGHS = ("BX", "BK", "MN", "QN", "SI")
POPULATIONS = ("nyc", "random", "well_mixed")
NYC_RESIDENTS = 8_332_458  # sum of POP_DENOMINATOR in the shipped MODZCTA table


@dataclasses.dataclass(frozen=True)
class CovidParams(Params):
    """Attributes:
    beta: transmission rate per day (a Schedule for a weekly R(t)); beta/gamma ~ R0.
    sigma: per-day probability that an exposed agent becomes infectious (1 / latent days).
    gamma: per-day probability that an infectious agent recovers (1 / infectious days).
    initial: probability that an agent is infectious at step 0.
    beta_BX, beta_BK, beta_MN, beta_QN, beta_SI: relative transmission rate of the borough's
        susceptible residents (multiplies ``beta``; a Schedule gives a per-borough weekly R(t)).
    """

    beta: float | torch.Tensor = 0.6
    sigma: float | torch.Tensor = 0.3
    gamma: float | torch.Tensor = 0.2
    initial: float | torch.Tensor = 0.001
    beta_BX: float | torch.Tensor = 1.0
    beta_BK: float | torch.Tensor = 1.0
    beta_MN: float | torch.Tensor = 1.0
    beta_QN: float | torch.Tensor = 1.0
    beta_SI: float | torch.Tensor = 1.0

    def check(self) -> None:
        self.check_range("covid SEIR")
        self.check_range("covid SEIR", ("sigma", "gamma", "initial"), 0, 1, "a probability")


PARAMS = CovidParams


@dataclasses.dataclass(frozen=True)
class CovidState(State):
    """Attributes:
    susceptible, exposed, infectious, recovered: ``[B, N]`` 0/1 floats (one of them is 1).
    onsets: ``[B, N]`` 0/1 float, agents that became infectious during the last step.
    log_prob: ``[B]`` summed log-probability of every choice so far (score-function estimator).
    """

    susceptible: torch.Tensor = tensor_field("B", "N")
    exposed: torch.Tensor = tensor_field("B", "N")
    infectious: torch.Tensor = tensor_field("B", "N")
    recovered: torch.Tensor = tensor_field("B", "N")
    onsets: torch.Tensor = tensor_field("B", "N")
    log_prob: torch.Tensor = tensor_field("B")
    agents: int = static_field(0)


def _choose(probs: torch.Tensor, u: torch.Tensor, estimator: str, temperature: float):
    """Bernoulli choice; "none" still returns the log-probabilities (for score_function runs)."""
    return bernoulli(probs, u, estimator=estimator, temperature=temperature)


def seed_infections(agents: int, estimator: str, temperature: float):
    def init(params: CovidParams, ctx: Context) -> CovidState:
        u = ctx.rng.uniform(agents, dtype=ctx.dtype)
        p = member_view(params.initial, 2).expand(ctx.members, agents)
        c = _choose(p, u, estimator, temperature)
        zeros = torch.zeros(ctx.members, agents, dtype=ctx.dtype, device=ctx.device)
        return CovidState(
            susceptible=1 - c.value,
            exposed=zeros,
            infectious=c.value,
            recovered=zeros,
            onsets=zeros,
            log_prob=c.log_prob.sum(dim=1) if estimator == "score_function" else zeros[:, 0],
            agents=agents,
        )

    return init


def borough_rates(params: CovidParams, borough: torch.Tensor) -> torch.Tensor:
    """Per-agent relative transmission rate from the ``beta_<borough>`` params.

    Args:
        borough: ``[N]`` int64 borough codes (indices into :data:`BOROUGHS`).

    Returns:
        ``[N]`` (scalar params) or ``[B, N]`` (per-member params), differentiable.
    """
    rates = torch.broadcast_tensors(*(getattr(params, f"beta_{b}") for b in BOROUGHS))
    return torch.stack(rates, dim=-1)[..., borough]  # [5] or [B, 5] -> [N] or [B, N]


def transition(
    layers: list[torch.Tensor] | None,
    mean_degree: float,
    estimator: str,
    temperature: float,
    borough: torch.Tensor,
):
    """The daily step: exposure, onset and recovery, all from the state at the step's start."""
    moved: dict[tuple, list[torch.Tensor]] = {}
    codes: dict[torch.device, torch.Tensor] = {}

    def pressure(state: CovidState, ctx: Context) -> torch.Tensor:
        if layers is None:  # well mixed: the infectious fraction, [B, 1]
            return state.infectious.mean(dim=1, keepdim=True)
        key = (ctx.device, ctx.dtype)
        if key not in moved:  # move the static layers once per device
            moved[key] = [layer.to(device=ctx.device, dtype=ctx.dtype) for layer in layers]
        return contact_pressure(moved[key], state.infectious) / mean_degree

    def step(state: CovidState, params: CovidParams, ctx: Context) -> CovidState:
        b, n = ctx.members, state.agents
        if ctx.device not in codes:
            codes[ctx.device] = borough.to(ctx.device)
        rate = member_view(params.beta, 2) * borough_rates(params, codes[ctx.device])
        hazard = rate * pressure(state, ctx)
        p_expose = (-torch.expm1(-hazard)).expand(b, n)
        u = ctx.rng.uniform(n, dtype=ctx.dtype)  # one draw per agent: its states exclude
        expose = _choose(p_expose, u, estimator, temperature)
        onset = _choose(member_view(params.sigma, 2).expand(b, n), u, estimator, temperature)
        recover = _choose(member_view(params.gamma, 2).expand(b, n), u, estimator, temperature)
        s, e, i = state.susceptible, state.exposed, state.infectious
        new_e, new_i, new_r = s * expose.value, e * onset.value, i * recover.value
        # only the choices of agents at risk enter the likelihood of the trajectory
        log_prob = state.log_prob
        if estimator == "score_function":  # other estimators need no likelihood graph
            at_risk = s * expose.log_prob + e * onset.log_prob + i * recover.log_prob
            log_prob = log_prob + at_risk.sum(dim=1)
        return state.replace(
            susceptible=s - new_e,
            exposed=e + new_e - new_i,
            infectious=i + new_i - new_r,
            recovered=state.recovered + new_r,
            onsets=new_i,
            log_prob=log_prob,
        )

    return step


def count(field: str):
    def metric(state: CovidState, params: CovidParams) -> torch.Tensor:
        return getattr(state, field).sum(dim=1)

    return metric


def borough_cases(borough_of: torch.Tensor, code: int):
    """Metric: onsets of the last step among residents of borough ``code`` (``[B]``)."""
    cache: dict = {}

    def metric(state: CovidState, params: CovidParams) -> torch.Tensor:
        key = (state.device, state.onsets.dtype)
        if key not in cache:
            cache[key] = (borough_of == code).to(device=state.device, dtype=state.onsets.dtype)
        return state.onsets @ cache[key]

    return metric


def make_population(population: str, agents: int, degree: float, seed: int):
    """(contact layers or None, ``[N]`` borough codes, mean degree) for a population mode."""
    if population == "nyc":
        from populace.populations.nyc import BOROUGHS as NYC_BOROUGHS
        from populace.populations.nyc import nyc

        if tuple(NYC_BOROUGHS) != BOROUGHS:  # the metric names rely on this order
            raise RuntimeError(f"NYC borough codes changed: {NYC_BOROUGHS}")
        pop = nyc(scale=agents / NYC_RESIDENTS, seed=seed, homes=False)
        layers = list(pop.layers.values())
        borough = pop.attributes["borough"].to(torch.int64)
    elif population in ("random", "well_mixed"):
        from populace.populations.graphs import erdos_renyi

        borough = torch.arange(agents) * len(BOROUGHS) // agents
        layers = None if population == "well_mixed" else [erdos_renyi(agents, degree, seed)]
    else:
        raise ValueError(f"unknown population {population!r}; valid: {', '.join(POPULATIONS)}")
    if layers is None:
        return None, borough, 1.0
    n = borough.numel()
    edges = sum(int(layer.values().numel()) for layer in layers)
    if edges == 0:
        raise ValueError(f"population {population!r} of {n} agents has no contacts")
    return layers, borough, edges / n


def build(
    agents: int = 10_000,
    population: str = "nyc",
    estimator: str = "straight_through",
    temperature: float = 0.1,
    degree: float = 10.0,
    population_seed: int = 0,
    **params: float,
) -> Model:
    """The SEIR model on ``agents`` agents.

    Args:
        population: ``"nyc"`` (synthetic NYC at scale ``agents / 8.33 M``, its four contact
            layers), ``"random"`` (Erdős–Rényi of mean ``degree``) or ``"well_mixed"``.
        estimator: gradient estimator of every transition: ``"straight_through"``,
            ``"score_function"`` or ``"none"``.
        temperature: Gumbel-softmax temperature of the straight-through estimator. Its bias
            grows with the temperature through the infection feedback: at N = 1000, 10 days,
            the beta gradient is 4x the finite-difference value at 1.0, 1.2x at 0.25 and within
            error at 0.1 (tests/calibration/test_gradients.py), hence the default 0.1.
        population_seed: seed of the population / graph (the same for every member).
        params: override :class:`CovidParams` (beta, sigma, gamma, initial, beta_<borough>).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; valid: {', '.join(ESTIMATORS)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    layers, borough, mean_degree = make_population(population, agents, degree, population_seed)
    n = borough.numel()
    metrics = {
        "S": count("susceptible"),
        "E": count("exposed"),
        "I": count("infectious"),
        "R": count("recovered"),
        "cases": count("onsets"),
    }
    for code, name in enumerate(BOROUGHS):
        metrics[f"cases_{name}"] = borough_cases(borough, code)
    return Model(
        name=NAME,
        params=CovidParams().replace(**params),
        init=seed_infections(n, estimator, temperature),
        steps=(transition(layers, mean_degree, estimator, temperature, borough),),
        metrics=metrics,
        agents=n,
        options={
            "agents": n,
            "population": population,
            "estimator": estimator,
            "temperature": temperature,
            "degree": degree,
            "population_seed": population_seed,
            "mean_degree": mean_degree,
            "scale": n / NYC_RESIDENTS,
        },
    )
