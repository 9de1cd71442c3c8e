"""Differentiable agent SEIR for COVID-19 in New York City (or a small synthetic stand-in).

Composed from the epidemic modules: :class:`~populace.epi.disease.Disease` (SEIR, one-hot
health state, Bernoulli transitions with the estimator chosen at build time) and a contact
module. Each step (one day), from the state at the start of the step:

- a susceptible agent of borough b is exposed with probability
  ``1 - exp(-beta(t) * beta_borough[b](t) * lambda_i)``, where ``lambda_i`` is the agent's
  infectious contacts over the population's layers divided by the mean degree
  (``population="nyc"`` or ``"random"``), or the infectious fraction (``"well_mixed"``), so
  ``beta / gamma`` is about R0 in every mode;
- an exposed agent becomes infectious with probability ``sigma`` (the onset, counted as a case);
- an infectious agent recovers with probability ``gamma``.

``beta_borough`` is one param along the ``borough`` axis of the model data (BX, BK, MN, QN, SI:
a value, ``[5]``, ``[B, 5]`` or a Schedule of them); so is ``initial``, the probability that a
resident of the borough is infectious at step 0 (a fittable initial condition per borough).
With ``estimator="straight_through"`` (Gumbel-softmax, ``temperature``) gradients reach
``beta``, ``beta_borough``, ``sigma``, ``gamma`` and ``initial`` through the counts;
``"score_function"`` accumulates the trajectory's log-probability in ``log_prob`` for
:func:`populace.behaviors.choice.score_function_surrogate`.

Metrics: S, E, I, R (counts), ``cases`` (onsets this step) and ``cases_<borough>``.
"""

from __future__ import annotations

import dataclasses

import torch

from populace.behaviors.choice import ESTIMATORS
from populace.engine import Context, Data, Model, member_view, param, per_agent
from populace.epi.contact import layered, well_mixed
from populace.epi.disease import Disease, InfectionState, ProgressionParams
from populace.epi.observation import compartment, flow, flow_by
from populace.populations.nyc import BOROUGHS

NAME = "covid_nyc_seir"
SUMMARY = (
    "differentiable agent SEIR on the NYC population (beta, beta_borough, sigma, gamma, "
    "initial; choice estimators); metrics S E I R, cases, cases_<borough>"
)

POPULATIONS = ("nyc", "random", "well_mixed")
NYC_RESIDENTS = 8_332_458  # sum of POP_DENOMINATOR in the shipped MODZCTA table


@dataclasses.dataclass(frozen=True)
class CovidParams(ProgressionParams):
    beta: float | torch.Tensor = param(
        0.6, low=0, unit="1/day", doc="transmission rate (a Schedule for a weekly R(t)); ~R0 gamma"
    )
    beta_borough: float | torch.Tensor = param(
        1.0,
        low=0,
        unit="relative",
        axes=("borough",),
        doc="relative transmission rate of the borough's susceptible residents (x beta)",
    )
    initial: float | torch.Tensor = param(
        0.001,
        low=0,
        high=1,
        unit="probability",
        axes=("borough",),
        doc="agent infectious at step 0 (per borough of residence)",
    )


PARAMS = CovidParams


@dataclasses.dataclass(frozen=True)
class CovidState(InfectionState):
    pass


def exposure(disease: Disease, layers: tuple[str, ...] | None, mean_degree: float):
    """The daily step: exposure, onset and recovery, all from the state at the step's start."""

    def transition(state: CovidState, params: CovidParams, ctx: Context) -> CovidState:
        infectious = disease.share(state, "I")
        if layers is None:  # well mixed: the infectious fraction, [B, 1]
            pressure = well_mixed(infectious, torch.ones((), dtype=ctx.dtype, device=ctx.device))
        else:
            contacts = [ctx.data[n] for n in layers]
            pressure = layered(contacts, infectious, [1.0] * len(contacts)) / mean_degree
        rate = member_view(params.beta, 2) * per_agent(params.beta_borough, ctx.data.borough)
        return state.replace(**disease.advance(state, rate * pressure, params, ctx))

    return transition


def make_population(population: str, agents: int, degree: float, seed: int):
    """(model data with ``borough`` codes and the contact layers, layer names or None, mean
    degree) for a population mode."""
    if population == "nyc":
        from populace.populations.nyc import nyc

        pop = nyc(scale=agents / NYC_RESIDENTS, seed=seed, homes=False)
        data, layers = pop.data(), tuple(pop.layers)
    elif population in ("random", "well_mixed"):
        from populace.populations.graphs import erdos_renyi

        tensors = {"borough": torch.arange(agents) * len(BOROUGHS) // agents}
        layers = None
        if population == "random":
            tensors["contacts"], layers = erdos_renyi(agents, degree, seed), ("contacts",)
        data = Data(tensors, axes={"borough": BOROUGHS})
    else:
        raise ValueError(f"unknown population {population!r}; valid: {', '.join(POPULATIONS)}")
    if layers is None:
        return data, None, 1.0
    n = data["borough"].numel()
    edges = sum(int(data[name].values().numel()) for name in layers)
    if edges == 0:
        raise ValueError(f"population {population!r} of {n} agents has no contacts")
    return data, layers, edges / n


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
        params: override :class:`CovidParams` (beta, beta_borough, sigma, gamma, initial).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; valid: {', '.join(ESTIMATORS)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    data, layers, mean_degree = make_population(population, agents, degree, population_seed)
    n = data["borough"].numel()
    disease = Disease(latent=True, estimator=estimator, temperature=temperature)

    def init(params: CovidParams, ctx: Context) -> CovidState:
        p = per_agent(params.initial, ctx.data.borough)  # [N] or [B, N]
        return CovidState(**disease.initial(ctx, n, p=p if p.dim() == 2 else p.unsqueeze(0)))

    metrics = {c: compartment(disease, c) for c in disease.compartments}
    metrics["cases"] = flow("onset")
    metrics["cases_by_borough"] = flow_by("onset", "borough", prefix="cases")
    return Model(
        name=NAME,
        params=CovidParams().replace(**params),
        init=init,
        steps=(exposure(disease, layers, mean_degree),),
        metrics=metrics,
        agents=n,
        data=data,
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
