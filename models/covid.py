"""COVID-19 policies: severity by age, hospital capacity, vaccination, testing, tracing,
quarantine and layer closure by area, on any population.

Composed from the epidemic modules:

- natural history :func:`populace.epi.severity.course` (S, E, I_asym, I_pre, I_mild, H, ICU, R,
  D; durations as distributions; probabilities of symptoms, severe and critical disease and
  death per age band; waning of immunity with ``immunity``) and its hospital (beds, a hard
  limit; worse care without a bed);
- contact: the population's CSR layers (household, school, work, community...), each scaled by
  a param named after it that runs along the area axis (``SetParam("school", 0.0, start=20,
  where={"borough": "BX"})`` closes the Bronx's schools), plus an optional mixing channel
  ``mixed`` (``mixing="well_mixed"``, or ``"age"`` with ``contact_matrix`` between age bands);
  the layers' pressure is divided by their mean degree, so ``beta`` is a rate per day for an
  agent with the mean number of contacts, as is the mixing channel's;
- :mod:`populace.epi.vaccination` (campaigns by age band and area, doses per day, leaky or
  all-or-nothing efficacy against infection, efficacy against severe disease, waning),
  :mod:`populace.epi.testing` (tests by symptom status, capacity, delay, sensitivity, isolation
  per layer), :mod:`populace.epi.tracing` (tracing per layer, delay, quarantine per layer) and,
  with ``transmission_log=True``, :mod:`populace.epi.transmission` (who infected whom).

Each day: today's doses; tests, diagnoses, tracing and quarantines (from the state at the start
of the day); then transmission, progression and hospital admissions. A susceptible agent i is
infected with probability ``1 - exp(-h_i)``,
``h_i = beta * susceptibility[age_i] * v_i * (sum_l f_il sum_j A^l_ij f_jl x_j / k + m_i)``:
``v_i`` its vaccine factor, ``x`` infectiousness (1, or ``rel_trans_asym``), ``f_il`` its
contact factor on layer l (the layer's scale in its area x isolation or quarantine), ``k`` the
layers' mean degree and ``m_i`` the mixing channel.

Every intervention is a declared param, so the Scenario / study API drives it: campaigns
(:func:`populace.epi.vaccination.campaign`), testing rates, tracing coverage, closures, with
``SetParam`` / ``ScaleParam`` / ``Trigger`` and ``where=`` on their axes (``age``, the area axis,
``layer``).

Metrics: every stage; ``I`` (infectious), ``hospitalised`` (beds held), ``new_infections``,
``new_deaths``, ``new_diagnoses`` (reported cases), ``tests``, ``isolating``, ``quarantined``,
``vaccinated``, ``doses``; per label of each axis in ``by`` (default age and area):
``new_infections_<label>``, ``new_deaths_<label>``, ``new_diagnoses_<label>``, ``D_<label>``,
``hospitalised_<label>``. With a stay-home behaviour (``behaviour=``), ``staying_home``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import torch

from populace.behaviors import stay_home
from populace.behaviors.choice import ESTIMATORS
from populace.engine import (
    Context,
    Data,
    Model,
    ParamError,
    Params,
    member_view,
    param,
    tensor_field,
)
from populace.epi import severity, testing, tracing, transmission, vaccination
from populace.epi.contact import (
    age_mixed,
    check_matrix,
    layer_scale,
    layered,
    proportionate_matrix,
    well_mixed,
)
from populace.epi.course import CourseState, agent_value
from populace.epi.durations import Duration, geometric
from populace.epi.observation import (
    compartment,
    compartment_by,
    compartments,
    entries,
    entries_by,
    flow,
    flow_by,
)
from populace.epi.rationing import grouped_order, random_order
from populace.populations import Population

NAME = "covid"
SUMMARY = (
    "COVID-19 policies on any population: severity by age, hospital beds, vaccination, testing, "
    "tracing, quarantine, closures by area, age mixing; metrics by stage, age and area"
)

POPULATIONS = ("synthetic", "well_mixed", "nyc")
MIXING = ("none", "well_mixed", "age")
MIXED = "mixed"  # the layer-axis label of the mixing channel
NYC_RESIDENTS = 8_332_458


@dataclasses.dataclass(frozen=True)
class CovidParams(
    stay_home.StayHomeParams,
    severity.SeverityParams,
    vaccination.VaccineParams,
    testing.DiagnosisParams,
    tracing.TracingParams,
):
    beta: float | torch.Tensor = param(
        0.3,
        low=0,
        unit="1/day",
        doc="transmission rate per day of infectiousness at the mean number of contacts",
    )
    susceptibility: float | torch.Tensor = param(
        1.0, low=0, unit="x", axes=("age",), doc="relative susceptibility of the band"
    )
    initial: float | torch.Tensor = param(
        0.001,
        low=0,
        high=1,
        unit="probability",
        doc="agent exposed at day 0 (initial_infected None)",
    )

    #: labels of the ``layer`` axis (a class attribute, set by :func:`params_class`).
    layer_labels = ()

    def check(self) -> None:
        """The mixing channel has no contact list: it cannot be traced."""
        labels = type(self).layer_labels
        if MIXED in labels:
            k = labels.index(MIXED)
            if (self.values("trace_coverage")[..., k] > 0).any():
                traceable = [x for x in labels if x != MIXED]
                raise ParamError(
                    f"covid parameter 'trace_coverage': layer {MIXED!r} is well mixed, its "
                    f"contacts cannot be traced; traceable layers: {traceable or 'none'}"
                )


def params_class(layers: Sequence[str], area: str, mixing: str) -> type[CovidParams]:
    """The params of a build: one scale per contact channel along ``area`` (``school``,
    ``work``... and ``mixed``), ``vax_area``, and ``contact_matrix`` with age mixing."""
    taken = set(CovidParams.names()) | {"vax_area", "contact_matrix"}
    for name in layers:
        if not name.isidentifier() or name in taken or hasattr(Params, name):
            raise ValueError(
                f"layer name {name!r} must be an identifier, not a parameter or Params attribute"
            )
    fields = [
        (
            n,
            float | torch.Tensor,
            param(1.0, low=0, unit="x", axes=(area,), doc=f"contacts on layer {n!r} in the area"),
        )
        for n in layers
    ]
    fields.append(vaccination.area_field(area))
    if mixing == "age":
        fields.append(
            (
                "contact_matrix",
                float | torch.Tensor,
                param(
                    1.0,
                    low=0,
                    unit="contacts/day",
                    axes=("age", "age"),
                    doc="M[a, c]: daily contacts of a band-a agent with band c (mixed channel)",
                ),
            )
        )
    cls = dataclasses.make_dataclass("CovidLayerParams", fields, bases=(CovidParams,), frozen=True)
    labels = tuple(layers)
    cls.layer_labels = labels
    return cls


#: the params of the default build (synthetic population: household and community layers).
PARAMS = params_class(("household", "community"), "borough", "none")


@dataclasses.dataclass(frozen=True, kw_only=True)
class CovidState(
    stay_home.StayHomeState,
    CourseState,
    vaccination.VaccineState,
    testing.DiagnosisState,
    tracing.QuarantineState,
):
    """Besides the modules' fields: ``in_bed: [B, N]`` bool, holds a hospital bed;
    ``order: [B, N]`` a random order of agents (beds and tests when short);
    ``age_order: [B, N]`` agents grouped by age band, random within (doses)."""

    in_bed: torch.Tensor = tensor_field("B", "N", dtype=torch.bool)
    order: torch.Tensor = tensor_field("B", "N", dtype=torch.int64)
    age_order: torch.Tensor = tensor_field("B", "N", dtype=torch.int64)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CovidLogState(CovidState, transmission.TransmissionState):
    """:class:`CovidState` with the transmission log."""


def synthetic_population(
    agents: int,
    seed: int = 0,
    degree: float = 8.0,
    layers: Sequence[str] = ("household", "community"),
) -> Population:
    """``agents`` agents with NYC's borough x age band shares, households (NYC sizes, an adult
    head, within a borough) and an Erdős–Rényi ``community`` layer of mean ``degree``; cheap
    to build (no geography). ``layers`` picks which of the two to keep (() for none)."""
    from populace.populations.contacts import clique_layer
    from populace.populations.graphs import erdos_renyi
    from populace.populations.households import form_households
    from populace.populations.nyc import ADULT_BANDS, AGE_BANDS, BOROUGHS, borough_marginals

    unknown = [x for x in layers if x not in ("household", "community")]
    if unknown:
        raise ValueError(f"unknown synthetic layer(s) {unknown}; valid: household, community")
    if isinstance(agents, bool) or not isinstance(agents, int) or agents < 1:
        raise ValueError(f"agents must be a positive integer, got {agents!r}")
    table = borough_marginals().filter(group="age")
    joint = torch.zeros(len(BOROUGHS), len(AGE_BANDS), dtype=torch.float64)
    for rec in table.iter_rows(named=True):
        joint[BOROUGHS.index(rec["borough"]), AGE_BANDS.index(rec["subgroup"])] = rec["population"]
    g = torch.Generator().manual_seed(seed)
    cell = torch.multinomial(joint.flatten() / joint.sum(), agents, replacement=True, generator=g)
    cell = torch.sort(cell).values  # agents ordered by borough, then band
    borough, age = cell // len(AGE_BANDS), cell % len(AGE_BANDS)
    adult = age >= AGE_BANDS.index(ADULT_BANDS[0])
    household = form_households(borough, adult, generator=g)
    built = {}
    if "household" in layers:
        built["household"] = clique_layer(household)
    if "community" in layers:
        built["community"] = erdos_renyi(agents, degree, g)
    return Population(
        attributes={
            "borough": borough.to(torch.int8),
            "age": age.to(torch.int8),
            "household": household,
        },
        codebook={"borough": BOROUGHS, "age": AGE_BANDS},
        layers=built,
        meta={"source": "synthetic (NYC borough x age shares)", "seed": seed, "degree": degree},
    )


def make_population(population: str | Population, agents: int, seed: int, degree: float):
    if isinstance(population, Population):
        return population
    if population == "nyc":
        from populace.populations.nyc import nyc

        return nyc(scale=agents / NYC_RESIDENTS, seed=seed, homes=False)
    if population == "synthetic":
        return synthetic_population(agents, seed, degree)
    if population == "well_mixed":
        return synthetic_population(agents, seed, degree, layers=())
    raise ValueError(
        f"unknown population {population!r}; valid: {', '.join(POPULATIONS)} or a Population"
    )


def model_data(pop: Population, area: str, mixing: str) -> tuple[Data, tuple[str, ...], float]:
    """(model data with a ``layer`` axis, the CSR layer names, their mean degree)."""
    for name in ("age", area):
        if name not in pop.codebook:
            raise ValueError(
                f"the population needs a coded attribute {name!r} (its coded attributes: "
                f"{sorted(pop.codebook)})"
            )
    layers = tuple(pop.layers)
    labels = layers + ((MIXED,) if mixing != "none" else ())
    if not labels:
        raise ValueError("the population has no contact layers: give mixing='well_mixed' or 'age'")
    data = pop.data()
    data = Data(dict(data), axes=data.axes | {"layer": labels})
    degree = 1.0
    if layers:
        edges = sum(float(pop.layers[n].values().sum()) for n in layers)
        if edges == 0:
            raise ValueError(f"the population's layers {list(layers)} have no contacts")
        degree = edges / pop.n
    return data, layers, degree


def severity_defaults(
    labels: Sequence[str], given: Mapping[str, object]
) -> dict[str, torch.Tensor]:
    """Per-band probabilities of :func:`~populace.epi.severity.prognoses` for the params not
    given; age labels that are not year bands need all four given."""
    missing = [n for n in severity.SEVERITY_PARAMS if n not in given]
    if not missing:
        return {}
    try:
        table = severity.prognoses(labels)
    except ValueError as err:
        raise ValueError(
            f"{err}: give {', '.join(missing)} for these age bands ({', '.join(labels)})"
        ) from None
    return {n: table[n].to(torch.get_default_dtype()) for n in missing}


COURSE_INDEX = {name: k for k, name in enumerate(severity.STAGES)}


def rows(state: CovidState, names: Sequence[str]) -> torch.Tensor:
    """``[B, N]`` bool: agents in any of the stages ``names``."""
    h = state.health.detach()
    return sum(h[:, COURSE_INDEX[x]] for x in names) > 0.5


def decide_stay_home(state: CovidState, params: CovidParams, ctx: Context) -> CovidState:
    """Step: each agent's weekly stay-home draw (:mod:`populace.behaviors.stay_home`)."""
    return state.replace(**stay_home.decide(state, params, ctx))


def doses(vaccine_area: str | None):
    """Step: today's campaign doses."""

    def vaccinate(state: CovidState, params: CovidParams, ctx: Context) -> CovidState:
        u = ctx.rng.uniform(dtype=torch.float64)  # [B], every day: the streams stay aligned
        if not bool((params.vax_doses_per_100k > 0).any()):  # a day without doses costs nothing
            return state
        n = state.dims["N"]
        dead_or_in = rows(state, ("H", "ICU", "D"))
        chosen = vaccination.daily_doses(
            state, params, ctx, state.age_order, ~dead_or_in, n, u, area=vaccine_area
        )
        return state.replace(**vaccination.vaccinate(state, chosen, ctx))

    return vaccinate


def screen_and_trace(layers: tuple[str, ...]):
    """Step: tests, results, isolation, tracing over the CSR layers, quarantines."""

    def step(state: CovidState, params: CovidParams, ctx: Context) -> CovidState:
        n = state.dims["N"]
        alive = ~rows(state, ("D",))
        fields = testing.diagnose(
            state,
            params,
            ctx,
            symptomatic=rows(state, severity.SYMPTOMATIC),
            detectable=rows(state, severity.DETECTABLE),
            quarantined=tracing.quarantined(state, ctx),
            alive=alive,
            order=state.order,
            agents=n,
        )
        state = state.replace(**fields)
        exempt = (
            (state.diagnosed > 0) | testing.isolating(state, ctx) | rows(state, ("H", "ICU", "D"))
        )
        fields = tracing.trace_and_quarantine(
            state,
            params,
            ctx,
            diagnosed=state.diagnosed,
            layers=[ctx.data[name] for name in layers],
            layer_codes=range(len(layers)),
            exempt=exempt,
        )
        return state.replace(**fields)

    return step


def transmit(
    course,
    layers: tuple[str, ...],
    degree: float,
    area: str,
    mixing: str,
    mode: str,
    log: bool,
    keep: tuple[str, ...] | None = None,
):
    """Step: infection over the channels, progression, hospital admissions (and the log).
    ``keep``: with a stay-home behaviour, the channels agents at home keep."""
    channels = layers + ((MIXED,) if mixing != "none" else ())

    def step(state: CovidState, params: CovidParams, ctx: Context) -> CovidState:
        n = state.dims["N"]
        codes = ctx.data[area]
        factors = tracing.layer_factors(
            testing.isolating(state, ctx),
            tracing.quarantined(state, ctx),
            params,
            range(len(channels)),
        )
        factors = [
            f * layer_scale(getattr(params, name), codes)
            for f, name in zip(factors, channels, strict=True)
        ]
        if keep is not None:
            cuts = stay_home.contact_factors(state, params, channels, keep, ctx.dtype)
            factors = [f if c is None else f * c for f, c in zip(factors, cuts, strict=True)]
        x = course.infectiousness(state, params)
        pressure = torch.zeros_like(x)
        if layers:
            csr = [ctx.data[name] for name in layers]
            pressure = layered(csr, x, [1.0] * len(layers), factors[: len(layers)]) / degree
        mix_factor = factors[-1] if mixing != "none" else None
        matrix = None
        one = torch.ones((), dtype=x.dtype, device=x.device)
        if mixing == "well_mixed":
            pressure = pressure + well_mixed(x, one, mix_factor.expand_as(x))
        elif mixing == "age":
            matrix = params.contact_matrix
            pressure = pressure + age_mixed(x, ctx.data.age, matrix, one, mix_factor.expand_as(x))
        rate = member_view(params.beta, 2) * agent_value(params, "susceptibility", ctx)
        hazard = rate * vaccination.susceptibility(state, params, ctx, mode) * pressure
        moves = course.move(state, hazard, ctx)
        in_bed = severity.admit(
            moves.health, state.in_bed, course, state.order, severity.capacity(params, n)
        )
        probs = course.branch_probs(params, ctx)
        probs["I_mild"] = probs["I_mild"] * vaccination.severe_factor(state, params, ctx)
        for stage in ("H", "ICU"):
            probs[stage] = severity.without_bed(probs[stage], in_bed, params.no_bed_factor)
        fields = course.settle(moves, probs, ctx)
        if log:
            u = ctx.rng.uniform(n, dtype=x.dtype)
            where = transmission.Channels(
                infectiousness=x,
                layers=[ctx.data[name] for name in layers],
                factors=factors[: len(layers)],
                norm=degree,
                mixing=None if mixing == "none" else mixing,
                mix_factor=mix_factor,
                matrix=matrix,
                age=ctx.data.age if mixing == "age" else None,
            )
            source, channel = transmission.attribute(fields["infected"], where, u)
            fields |= transmission.record(state, fields["infected"], source, channel, ctx)
        return state.replace(**fields, in_bed=in_bed)

    return step


VACCINE_ORDERS = ("random", "degree")


def with_behaviour(
    data: Data, behaviour: stay_home.StayHome, channels: Sequence[str], agents: int
) -> Data:
    """The model data plus the behaviour's ``stay_home_table`` and ``archetype`` axis."""
    if behaviour.archetype.numel() != agents:
        raise ValueError(
            f"behaviour: {behaviour.archetype.numel()} archetype codes for {agents} agents"
        )
    unknown = [c for c in behaviour.keep if c not in channels]
    if unknown:
        raise ValueError(
            f"behaviour keeps channel(s) {unknown} the model does not have; its channels: "
            f"{list(channels)}"
        )
    tensors = dict(data) | {
        "archetype": behaviour.archetype,
        "stay_home_table": behaviour.table.to(torch.float64),
    }
    return Data(tensors, axes=data.axes | {"archetype": behaviour.labels})


def contacts_per_agent(data: Data, layers: Sequence[str]) -> torch.Tensor:
    """``[N]`` float64 contacts of every agent, summed over the CSR layers."""
    if not layers:
        raise ValueError("vaccine_order='degree' needs contact layers; the population has none")
    return sum(torch.diff(data[name].crow_indices()).to(torch.float64) for name in layers)


def _spec(d: Duration) -> list:
    """A duration as JSON: ``[kind, mean, sd]`` (``Duration(*spec)`` rebuilds it)."""
    return [d.kind, d.mean, d.sd]


def _count(fn, label: str):
    def metric(state: CovidState, params: CovidParams, ctx: Context) -> torch.Tensor:
        return fn(state, ctx).sum(dim=1, dtype=torch.float64)

    metric.__qualname__ = label
    return metric


def build(
    agents: int = 10_000,
    population: str | Population = "synthetic",
    mixing: str = "none",
    area: str = "borough",
    vaccine: str = "leaky",
    initial_infected: int | None = 10,
    immunity: float | Duration | None = None,
    durations: Mapping[str, Duration] | None = None,
    by: Sequence[str] | None = None,
    transmission_log: bool = False,
    estimator: str = "none",
    temperature: float = 0.1,
    degree: float = 8.0,
    population_seed: int = 0,
    behaviour: stay_home.StayHome | None = None,
    vaccine_order: str = "random",
    metrics: Sequence[str] | None = None,
    **params,
) -> Model:
    """The COVID policy model.

    Args:
        agents: population size for the generated populations (a given one keeps its own).
        population: ``"synthetic"`` (NYC borough x age shares, households, a random community
            layer of mean ``degree``), ``"well_mixed"`` (the same agents, no layers: mixing
            must be ``"well_mixed"`` or ``"age"``), ``"nyc"`` (the synthetic NYC at scale
            ``agents / 8.33 M``, layers household, school, work, community) or a
            :class:`~populace.populations.Population` with coded ``age`` and ``area``.
        mixing: the mixing channel ``mixed``: ``"none"``, ``"well_mixed"`` or ``"age"``
            (``contact_matrix`` between age bands; default: in proportion to band sizes, which
            is well mixed).
        area: the coded attribute closures and campaigns target (``borough``, ``area``...).
        vaccine: efficacy semantics, ``"leaky"`` or ``"all_or_nothing"``.
        initial_infected: agents exposed at day 0 (None: each with probability ``initial``).
        immunity: how long recovery protects: None (for good), a mean in days (geometric) or
            a :class:`~populace.epi.durations.Duration`; then R → S and reinfection.
        durations: replace default stage durations by name (``exp2inf``, ``mild2rec``, ...).
        by: axes of the per-label metrics (default: age and ``area``; () for none).
        transmission_log: record who infected whom (one host sync per step).
        estimator, temperature: gradient estimator of the infection and branch choices.
        behaviour: a stay-home behaviour (:class:`~populace.behaviors.stay_home.StayHome`: a
            weekly table of answers per archetype, the archetype of every agent, the channels
            kept at home); None: nobody stays home of their own accord. Its link
            (``link_scale``, ``link_bias``), ``stay_home_effect`` and ``stay_home_hold`` are
            params like any other.
        vaccine_order: within an age band, campaign doses go ``"random"``-ly or to the
            most connected first (``"degree"``: contacts summed over the CSR layers).
        metrics: record only these metrics (names as in the model's ``metrics``, e.g.
            ``"new_infections_by_borough"`` for the per-borough columns; None: all). A fit that
            reads two series need not pay for twenty.
        params: any param of the build (layer scales by layer name, ``p_severe``, ...).
    """
    if mixing not in MIXING:
        raise ValueError(f"unknown mixing {mixing!r}; valid: {', '.join(MIXING)}")
    if vaccine not in vaccination.MODES:
        raise ValueError(f"unknown vaccine {vaccine!r}; valid: {', '.join(vaccination.MODES)}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; valid: {', '.join(ESTIMATORS)}")
    if vaccine_order not in VACCINE_ORDERS:
        raise ValueError(
            f"unknown vaccine_order {vaccine_order!r}; valid: {', '.join(VACCINE_ORDERS)}"
        )
    if isinstance(immunity, (int, float)) and not isinstance(immunity, bool):
        immunity = geometric(float(immunity))
    elif immunity is not None and not isinstance(immunity, Duration):
        raise ValueError(f"immunity must be None, a mean in days or a Duration, got {immunity!r}")
    pop = make_population(population, agents, population_seed, degree)
    data, layers, mean_degree = model_data(pop, area, mixing)
    n = pop.n
    channels = layers + ((MIXED,) if mixing != "none" else ())
    if behaviour is not None:
        data = with_behaviour(data, behaviour, channels, n)
    first = contacts_per_agent(data, layers) if vaccine_order == "degree" else None
    if initial_infected is not None and not 0 <= initial_infected <= n:
        raise ValueError(f"initial_infected={initial_infected} must be in [0, agents={n}]")
    course = severity.course(durations, immunity, estimator, temperature)
    cls = params_class(channels, area, mixing)
    ages = data.labels("age")
    defaults = severity_defaults(ages, params)
    if mixing == "age":
        if "contact_matrix" in params:
            check_matrix(torch.as_tensor(params["contact_matrix"]), ages, "contact_matrix")
        else:
            defaults["contact_matrix"] = proportionate_matrix(data.age, len(ages))
    model_params = cls().replace(**defaults).replace(**params)
    course.check_params(model_params)
    by = ("age", area) if by is None else tuple(by)
    for axis in by:
        data.labels(axis)  # unknown axes named with the valid ones
    state_cls = CovidLogState if transmission_log else CovidState

    def init(params: CovidParams, ctx: Context) -> CovidState:
        if initial_infected is None:
            fields = course.initial(params, ctx, n, p=params.initial)
        else:
            fields = course.initial(params, ctx, n, count=initial_infected)
        extra = {}
        if transmission_log:
            extra = transmission.initial(fields["infected"])
        return state_cls(
            **fields,
            **vaccination.initial(ctx, n, agent_value(params, "vax_coverage0", ctx)),
            **testing.initial(ctx, n),
            **tracing.initial(ctx, n),
            **stay_home.initial(ctx, n),
            in_bed=torch.zeros(ctx.members, n, dtype=torch.bool, device=ctx.device),
            order=random_order(ctx, n),
            age_order=grouped_order(ctx, ctx.data.age, first),
            **extra,
        )

    all_metrics = {c: compartment(course, c) for c in course.compartments}
    all_metrics["I"] = compartments(course, severity.INFECTIOUS, "I")
    all_metrics |= {
        "hospitalised": flow("in_bed"),
        "new_infections": flow("infected"),
        "new_deaths": entries(course, "D"),
        "new_diagnoses": flow("diagnosed"),
        "tests": lambda s, p, c: s.tests.to(torch.float64),
        "isolating": _count(testing.isolating, "isolating"),
        "quarantined": _count(tracing.quarantined, "quarantined"),
        "staying_home": _count(lambda s, c: s.staying_home, "staying_home"),
        "vaccinated": _count(lambda s, c: s.vaccinated_at >= 0, "vaccinated"),
        "doses": _count(
            lambda s, c: (s.vaccinated_at == c.step - 1) & (s.vaccinated_at >= 0), "doses"
        ),
    }
    for axis in by:
        all_metrics |= {
            f"new_infections_by_{axis}": flow_by("infected", axis, prefix="new_infections"),
            f"new_deaths_by_{axis}": entries_by(course, "D", axis, prefix="new_deaths"),
            f"new_diagnoses_by_{axis}": flow_by("diagnosed", axis, prefix="new_diagnoses"),
            f"D_by_{axis}": compartment_by(course, "D", axis, prefix="D"),
            f"hospitalised_by_{axis}": flow_by("in_bed", axis, prefix="hospitalised"),
        }
    if metrics is not None:
        unknown = sorted(set(metrics) - set(all_metrics))
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; valid: {', '.join(all_metrics)}")
        all_metrics = {k: v for k, v in all_metrics.items() if k in set(metrics)}
    return Model(
        name=NAME,
        params=model_params,
        init=init,
        steps=(
            *((decide_stay_home,) if behaviour is not None else ()),
            doses(area),
            screen_and_trace(layers),
            transmit(
                course,
                layers,
                mean_degree,
                area,
                mixing,
                vaccine,
                transmission_log,
                None if behaviour is None else behaviour.keep,
            ),
        ),
        metrics=all_metrics,
        agents=n,
        data=data,
        options={
            "agents": n,
            "population": population if isinstance(population, str) else "Population",
            "mixing": mixing,
            "area": area,
            "vaccine": vaccine,
            "initial_infected": initial_infected,
            "immunity": None if immunity is None else _spec(immunity),
            "durations": {
                k: _spec(d) for k, d in severity.durations(**dict(durations or {})).items()
            },
            "layers": list(layers),
            "mean_degree": mean_degree,
            "transmission_log": transmission_log,
            "estimator": estimator,
            "behaviour": None if behaviour is None else behaviour.source or "table",
            "archetypes": None if behaviour is None else list(behaviour.labels),
            "vaccine_order": vaccine_order,
        },
    )


def basic_reproduction(model: Model) -> float:
    """R0 of a build with uniform mixing (``population="well_mixed"``, mixing well mixed or
    proportionate by age, one susceptibility): ``beta * sum_a share_a * days_a``, days_a the
    infectiousness-weighted days of an infection in band a
    (:meth:`~populace.epi.course.Course.infectious_days`). On contact layers, the mean degree
    normalisation makes this only a rough guide (clustering, degree spread)."""
    p = model.params.to("cpu", torch.float64, axes=model.data.axis_sizes())
    for name in ("beta", "rel_trans_asym"):
        if getattr(p, name).dim() != 0:
            raise ValueError(f"basic_reproduction: {name!r} must be one value, not per member")
    days_by_name = {k: Duration(*v) for k, v in model.options["durations"].items()}
    course = severity.course(days_by_name, None)
    days = course.infectious_days(p)  # [A]
    share = torch.bincount(model.data.age, minlength=days.numel()).to(torch.float64)
    share = share / share.sum()
    susc = torch.as_tensor(p.susceptibility, dtype=torch.float64)
    return float(p.beta * (share * susc * days).sum())
