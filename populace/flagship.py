"""The flagship: a calibrated NYC epidemic on the contact network, with stay-home behaviour from
no one, a heuristic rule or LLM archetypes, compared on real data, then targeted counterfactuals.

One model (:mod:`populace.models.covid`) composed from the modules: the synthetic New York
(:func:`populace.populations.nyc`: 177 ZIP-code areas, age x sex, households, schools,
workplaces, community) and its four contact layers, the natural history with severity by age
(:mod:`populace.epi.severity`: hospital, ICU, death) and a stay-home behaviour
(:mod:`populace.behaviors.stay_home`): agents at home keep their household and drop the fitted
fraction ``stay_home_effect`` of their school, work and community contacts.

What agents know when they decide is the *observed* epidemic (:func:`situations`): each week,
the reported cases per 100k in their borough over the last 7 days and the change from the
4 weeks before. So the behaviour's answers do not depend on the simulation: the LLM is asked once
per archetype and week (``archetypes x weeks x samples`` completions, cached on disk), whatever
the number of agents or runs. Three behaviours:

- ``none``: nobody stays home (transmission alone);
- ``heuristic``: the rule of :func:`populace.models.covid_behavior.heuristic` (a base rate, a
  rate per weekly case, more while cases rise, caution by age group) on the same situations;
- ``llm``: the yes/no answers of the LLM archetypes (age group x borough by default) to
  "will you stay home this week?".

The answer table goes through a calibratable link ``q = sigmoid(link_scale * logit(p) +
link_bias)`` fitted jointly with transmission (``beta``, the seeding ``initial``) and
``stay_home_effect``: the behaviour supplies the shape across archetypes and weeks, the data its
strength. Reported cases are the model's infections after a fixed incubation-and-reporting delay
times an ascertainment per 28-day block (profiled out in closed form); reported deaths are the
model's deaths (severity by age) times a ratio profiled out within [1, 3] (NYC's first-wave
fatality ran above the age-specific prognoses), so the deaths bound the epidemic's size. The
fit is a batched search (:func:`populace.calibration.batched.search`: a Latin-hypercube
design, then CMA-ES generations; every candidate one member of one simulation, common random
numbers) minimising the mean over boroughs of the cases and deaths ND of weekly totals
(normalised deviation, ``sum |pred - obs| / sum obs``).

Two fit windows (:data:`WAVES`): the ``first`` wave (2020-03-01 .. 06-30, forecasts from
2020-07-01 and 07-29) and the ``autumn`` wave (2020-03-01 .. 11-30: both waves in one run, with a
year's mean waning immunity so recovered agents are reinfected, a death ratio per 153 days, and
forecasts from 2020-12-01 and 12-29). Each fitted model is then scored (:func:`score`): ND over
the fit window and rolling 4-week forecasts from origins after it (the behaviour held at the
origin's week, the ascertainment re-anchored on the 14 days before the origin), relative to
persistence, with intervals over seeds. The best model of the first wave runs the
counterfactuals (:func:`counterfactuals`): schools closed in one borough, a vaccine to the 65+
first or to the most connected first, a stay-home order triggered per borough by its own
prevalence; paired differences per borough.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import torch

from populace.behaviors.llm import PromptTemplate, Question
from populace.behaviors.stay_home import WEEK, StayHome
from populace.calibration.batched import Bound, search
from populace.calibration.data import NYC_BOROUGHS, nyc_series
from populace.calibration.forecast import weekly as weekly_totals
from populace.calibration.observation import delay_weights
from populace.engine import Model, Simulation, member_seed, storage
from populace.engine.intervention import SetParam, Trigger
from populace.engine.study import Scenario, study
from populace.kernels.meanfield import group_sum
from populace.models import covid, covid_behavior
from populace.populations import Population

START = "2020-03-01"
#: the model starts LEAD days before the data (2020-02-09): the virus spread in New York weeks
#: before the first reported case, and infection-to-death takes three weeks or more.
LEAD = 21
HORIZON = 28
BLOCK = 28  # days per ascertainment level
#: days per death ratio (the fatality of the first wave's full hospitals and care homes is not
#: the autumn's): one ratio over the first wave's 122 days, a second from 2020-08-01 on
DEATH_BLOCK = 153


@dataclasses.dataclass(frozen=True)
class Wave:
    """A fit window and its forecast origins.

    Attributes:
        name: ``first`` or ``autumn``.
        fit_days: data rows fitted, from row 0 (2020-03-01); every run starts ``LEAD`` days
            before row 0, so a later wave's runs carry the immunity of the earlier ones.
        origins: data rows of the rolling 4-week forecasts (after the fit window).
        immunity: mean days a recovery protects (geometric; None: for good). The autumn wave
            comes back on waning and reinfection (:mod:`populace.epi.severity`).
    """

    name: str
    fit_days: int
    origins: tuple[int, ...]
    immunity: float | None = None

    @property
    def days(self) -> int:
        """Data rows a wave reads: to its last origin's horizon."""
        return self.origins[-1] + HORIZON


#: first wave: 2020-03-01 .. 2020-06-30, origins 2020-07-01 and 2020-07-29; autumn wave: the
#: same start to 2020-11-30 (both waves, a year's waning immunity), origins 2020-12-01 and
#: 2020-12-29
WAVES = {
    "first": Wave("first", 122, (122, 150)),
    "autumn": Wave("autumn", 275, (275, 303), immunity=365.0),
}
FIT_DAYS = WAVES["first"].fit_days
ORIGINS = WAVES["first"].origins
CASE_DELAY = 8.0  # mean days from infection to a reported case (incubation + testing)
DEATH_RATIO = (1.0, 3.0)  # observed over the prognoses' deaths: the range allowed
BEHAVIOURS = ("none", "heuristic", "llm")
#: what fits and scores read (the other metrics cost a third of a step)
FIT_METRICS = ("new_infections_by_borough", "new_deaths_by_borough")
#: what the counterfactual study records
STUDY_METRICS = (
    "I",
    "H",
    "D",
    "staying_home",
    "vaccinated",
    "new_infections",
    "new_deaths",
    "hospitalised",
    "new_infections_by_borough",
    "new_deaths_by_borough",
    "hospitalised_by_borough",
)
NYC_RESIDENTS = covid.NYC_RESIDENTS
#: borough codes of the data and the population, and their names for prompts.
BOROUGH_NAMES = dict(zip(NYC_BOROUGHS, covid_behavior.BOROUGH_LABELS, strict=True))

#: short on purpose: on CPU the LLM's cost is the prompt tokens it reads
PROMPT = PromptTemplate(
    system="You are a New Yorker aged {age_group} living in {borough}.",
    user=(
        "Last week {borough} had {cases_per_100k} new COVID-19 cases per 100,000 people "
        "({trend} the month before). Will you stay home this week?"
    ),
)


def rounded(x: float) -> str:
    """A count as people read it: two significant digits (1234 → "1200", 37 → "37")."""
    if x < 10:
        return f"{x:.0f}"
    return f"{float(f'{x:.2g}'):.0f}"


def trend_words(change: float) -> str:
    """``"about as many as"``, ``"45% more than"``, ``"15% fewer than"`` (a change in %)."""
    if abs(change) < 10:
        return "about as many as"
    return f"{rounded(abs(change))}% {'more' if change > 0 else 'fewer'} than"


def date_of(day: int) -> str:
    """ISO date of data row ``day`` (row 0: 2020-03-01; model day ``LEAD`` is data row 0)."""
    return (dt.date.fromisoformat(START) + dt.timedelta(days=day)).isoformat()


def table_weeks(wave: str = "first") -> int:
    """Weeks of answers the runs of ``wave`` read: model days 0 .. its last forecast origin."""
    return (LEAD + WAVES[wave].origins[-1]) // WEEK + 1


def observed(days: int) -> dict[str, torch.Tensor]:
    """``cases`` and ``deaths`` → ``[T, 5]`` float64 daily counts per borough from 2020-03-01."""
    end = date_of(days - 1)
    out = {}
    for kind in ("cases", "deaths"):
        frame = nyc_series(kind, START, end)
        out[kind] = torch.stack([frame[b].to_torch().double() for b in NYC_BOROUGHS], dim=1)
    return out


def residents(pop: Population) -> torch.Tensor:
    """``[5]`` NYC residents per borough represented by the population (agents x multiplier)."""
    counts = torch.bincount(pop.attributes["borough"].long(), minlength=len(NYC_BOROUGHS))
    return counts.double() * NYC_RESIDENTS / pop.n


def situations(cases: torch.Tensor, people: torch.Tensor, weeks: int) -> dict[str, torch.Tensor]:
    """What agents know at the start of each week: ``per_100k`` ``[W, 5]`` reported cases per
    100k residents of the borough in the 7 days before, and ``change`` ``[W, 5]`` (%) from the
    mean week of the 28 days before those (one case added to both, so a start from no cases is
    a rise). cases ``[T, 5]`` from day 0; days before 0 count 0."""
    if cases.shape[0] < (weeks - 1) * WEEK:
        raise ValueError(f"situations: {cases.shape[0]} days of cases for {weeks} weeks")
    padded = torch.cat([torch.zeros(35, cases.shape[1], dtype=cases.dtype), cases])
    per_100k, change = [], []
    for w in range(weeks):
        end = 35 + w * WEEK  # the first day of week w, in padded rows
        last = padded[end - 7 : end].sum(dim=0)
        before = padded[end - 35 : end - 7].sum(dim=0) / 4
        per_100k.append(last / people * 1e5)
        change.append(((last + 1) / (before + 1) - 1) * 100)
    return {"per_100k": torch.stack(per_100k), "change": torch.stack(change)}


def archetypes(pop: Population, attributes: Sequence[str]) -> tuple[torch.Tensor, list[dict]]:
    """(``[N]`` int64 archetype of every agent, each archetype's labels by attribute).

    ``attributes`` from ``age_group`` (four groups), ``age`` (ten bands), ``borough``, ``sex``;
    the archetypes are the combinations that occur."""
    fold = {g: k for k, g in enumerate(covid_behavior.AGE_GROUPS)}
    columns, names = [], []
    for a in attributes:
        if a == "age_group":
            bands = pop.codebook["age"]
            codes = torch.tensor([fold[covid_behavior.AGE_GROUP_OF[b]] for b in bands])
            columns.append(codes[pop.attributes["age"].long()])
            names.append(covid_behavior.AGE_GROUPS)
        elif a in pop.codebook:
            columns.append(pop.attributes[a].long())
            labels = pop.codebook[a]
            names.append([BOROUGH_NAMES.get(x, x) for x in labels] if a == "borough" else labels)
        else:
            raise ValueError(
                f"unknown archetype attribute {a!r}; valid: age_group, "
                f"{', '.join(sorted(pop.codebook))}"
            )
    if not columns:
        raise ValueError("archetypes need at least one attribute")
    key = torch.zeros(pop.n, dtype=torch.int64)
    for col, labels in zip(columns, names, strict=True):
        key = key * len(labels) + col
    combos, codes = torch.unique(key, return_inverse=True)
    labels_of = []
    for c in combos.tolist():
        entry = {}
        for a, labels in zip(reversed(attributes), reversed(names), strict=True):
            entry[a] = str(labels[c % len(labels)])
            c //= len(labels)
        labels_of.append(dict(reversed(list(entry.items()))))
    return codes, labels_of


def borough_of(entry: Mapping[str, str]) -> int | None:
    """Index (in ``NYC_BOROUGHS``) of an archetype's borough, None when it has none."""
    if "borough" not in entry:
        return None
    return list(BOROUGH_NAMES.values()).index(entry["borough"])


def seen(
    known: Mapping[str, torch.Tensor], labels: Sequence[Mapping[str, str]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(cases per 100k, change %), each ``[W, K]``: what archetype k sees in week w — its
    borough's, or the city's when it has no borough."""
    where = [borough_of(entry) for entry in labels]
    cases = [known["city_per_100k"] if b is None else known["per_100k"][:, b] for b in where]
    change = [known["city_change"] if b is None else known["change"][:, b] for b in where]
    return torch.stack(cases, dim=1), torch.stack(change, dim=1)


def heuristic_table(known: Mapping[str, torch.Tensor], labels: Sequence[Mapping[str, str]]):
    """``[W, K]`` stay-home probability of the heuristic rule
    (:func:`populace.models.covid_behavior.isolation_rule` with the defaults of its
    ``BehaviorParams``) per week and archetype."""
    p = covid_behavior.BehaviorParams()
    caution = torch.as_tensor(p.caution, dtype=torch.float64)
    groups = [entry.get("age_group") for entry in labels]
    per_archetype = torch.tensor(
        [float(caution[covid_behavior.AGE_GROUPS.index(g)]) if g else 1.0 for g in groups],
        dtype=torch.float64,
    )
    cases, change = seen(known, labels)
    rule = covid_behavior.isolation_rule(
        cases,
        change,
        per_archetype,
        torch.tensor(float(p.isolation_base), dtype=torch.float64),
        torch.tensor(float(p.isolation_per_case), dtype=torch.float64),
        torch.tensor(float(p.rising_factor), dtype=torch.float64),
    )
    return rule.clamp(max=1.0)


def llm_table(known: Mapping[str, torch.Tensor], labels: Sequence[Mapping[str, str]], query):
    """(``[W, K]`` stay-home probability per week and archetype, the query's accounting): one
    batch of ``W x K`` questions (x ``samples`` completions), answers cached by the query.

    The probability is the posterior mean of the yes-share under a Jeffreys prior,
    ``(yes + 1/2) / (samples + 1)``: one sampled answer is 0.25 or 0.75, not a certainty the
    link could not scale."""
    weeks = known["per_100k"].shape[0]
    cases, change = seen(known, labels)
    questions = []
    for w in range(weeks):
        for k, entry in enumerate(labels):
            env = {
                "cases_per_100k": rounded(float(cases[w, k])),
                "trend": trend_words(float(change[w, k])),
            }
            questions.append(Question({"age_group": "adult", "borough": "New York"} | entry, env))
    values, acc = query.ask(questions)
    samples = getattr(query, "samples", 1)
    shrunk = (values * samples + 0.5) / (samples + 1)
    return shrunk.view(weeks, len(labels)), acc


@dataclasses.dataclass(frozen=True)
class Setting:
    """What a flagship run is made of (its digest keys the fit cache).

    Attributes:
        scale: fraction of NYC's residents.
        population_seed: seed of the synthetic population.
        archetype_attributes: attributes whose combinations are the LLM archetypes.
        samples: LLM answers per archetype and week.
        popsize, generations: the batched search (candidates per generation; CMA-ES
            generations after the design).
        seeds: seeds of the scoring and counterfactual runs.
        seed: run seed.
        device: where the simulations run.
        wave: the fit window and forecast origins (a key of ``WAVES``).
    """

    scale: float = 0.01
    population_seed: int = 0
    archetype_attributes: tuple[str, ...] = ("age_group", "borough")
    samples: int = 1
    popsize: int = 10
    generations: int = 6
    seeds: int = 2
    seed: int = 0
    device: str = "cpu"
    wave: str = "first"

    def __post_init__(self) -> None:
        if self.wave not in WAVES:
            raise ValueError(f"unknown wave {self.wave!r}; valid: {', '.join(WAVES)}")


@dataclasses.dataclass
class Flagship:
    """The composed pieces: population, observed data, what agents know, the behaviours."""

    setting: Setting
    population: Population
    data: dict[str, torch.Tensor]
    people: torch.Tensor
    known: dict[str, torch.Tensor]
    labels: list[dict]
    archetype: torch.Tensor
    tables: dict[str, torch.Tensor]
    llm: dict[str, float]

    @property
    def multiplier(self) -> float:
        return NYC_RESIDENTS / self.population.n

    @property
    def wave(self) -> Wave:
        return WAVES[self.setting.wave]

    def behaviour(self, name: str) -> StayHome | None:
        if name == "none":
            return None
        names = [" / ".join(e.values()) for e in self.labels]
        return StayHome(self.tables[name], self.archetype, tuple(names), source=name)

    def model(self, name: str, metrics: Sequence[str] | None = None, **params: Any) -> Model:
        """The covid model with behaviour ``name`` (params given override the defaults;
        ``metrics``: record only these, see :func:`populace.models.covid.build`)."""
        return covid.build(
            metrics=metrics,
            population=self.population,
            area="borough",
            by=("borough",),
            initial_infected=None,
            behaviour=self.behaviour(name),
            vaccine_order="degree",
            immunity=self.wave.immunity,
            **params,
        )


def prepare(setting: Setting, query_factory: Callable[[], Any] | None, log=print) -> Flagship:
    """Build the population, read the data, make every behaviour's table (asks the LLM when
    ``query_factory`` is given, else the ``llm`` behaviour is left out)."""
    from populace.populations.nyc import nyc

    pop = nyc(scale=setting.scale, seed=setting.population_seed, homes=False)
    data = observed(WAVES[setting.wave].days)
    people = residents(pop)
    weeks = table_weeks(setting.wave)
    cases = torch.cat([torch.zeros(LEAD, 5, dtype=torch.float64), data["cases"]])  # model time
    known = situations(cases, people, weeks)
    city = situations(cases.sum(dim=1, keepdim=True), people.sum().reshape(1), weeks)
    known |= {"city_per_100k": city["per_100k"][:, 0], "city_change": city["change"][:, 0]}
    codes, labels = archetypes(pop, setting.archetype_attributes)
    tables = {"heuristic": heuristic_table(known, labels)}
    llm = {"completions": 0, "cache_hits": 0, "invalid": 0, "fallbacks": 0, "questions": 0}
    if query_factory is not None:
        t0 = time.perf_counter()
        table, acc = llm_table(known, labels, query_factory())
        tables["llm"] = table
        llm = {
            "questions": weeks * len(labels),
            "completions": acc.calls,
            "answers": acc.answers,
            "cache_hits": acc.cache_hits,
            "invalid": acc.invalid,
            "retries": acc.retries,
            "fallbacks": acc.fallbacks,
            "backend_errors": acc.backend_errors,
            "seconds": time.perf_counter() - t0,
        }
        log(
            f"LLM: {weeks} weeks x {len(labels)} archetypes x {setting.samples} samples: "
            f"{acc.calls} completions, {acc.cache_hits} cached, {acc.invalid} invalid"
        )
    return Flagship(setting, pop, data, people, known, labels, codes, tables, llm)


# --- observation and scores -------------------------------------------------------------


def borough_rows(metrics: pl.DataFrame, prefix: str, members: int) -> torch.Tensor:
    """``[B, T, 5]`` per-borough metric ``<prefix>_<borough>`` by member and step."""
    cols = [f"{prefix}_{b}" for b in NYC_BOROUGHS]
    frame = metrics.sort("member", "step").select(cols)
    values = frame.to_torch(dtype=pl.Float64)
    return values.reshape(members, -1, len(cols))


def unit_cases(infections: torch.Tensor, multiplier: float) -> torch.Tensor:
    """``[B, T, 5]`` cases if every infection were reported after the delay (NYC scale)."""
    w = delay_weights(CASE_DELAY, cv=0.5, max_delay=21).to(infections)  # [D]
    x = infections.permute(0, 2, 1).reshape(-1, 1, infections.shape[1])  # [B*5, 1, T]
    padded = torch.nn.functional.pad(x, (w.numel() - 1, 0))
    out = torch.nn.functional.conv1d(padded, w.flip(0).view(1, 1, -1))
    return out.view(infections.shape[0], 5, -1).permute(0, 2, 1) * multiplier


def ascertainment(unit: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` city ascertainment per 28-day block, in closed form (the Poisson MLE of a
    level per block: observed over expected). unit ``[B, T, 5]``, obs ``[T, 5]``."""
    b, t = unit.shape[0], obs.shape[0]
    out = torch.zeros(b, t, dtype=unit.dtype)
    for start in range(0, t, BLOCK):
        sl = slice(start, min(start + BLOCK, t))
        level = obs[sl].sum() / unit[:, sl].sum(dim=(1, 2)).clamp_min(1e-9)
        out[:, sl] = level.clamp(max=1.0).unsqueeze(1)
    return out


def nd(pred: torch.Tensor, obs: torch.Tensor, days: int = 1) -> torch.Tensor:
    """``[B, 5]`` normalised deviation per borough, ``sum_t |pred - obs| / sum_t obs``, of the
    daily values (``days=1``) or of their totals over whole blocks of ``days`` (the partial
    block at the end left out). pred ``[B, T, 5]``, obs ``[T, 5]``."""
    if days > 1:
        pred = weekly_totals(pred.transpose(-1, -2), days).transpose(-1, -2)
        obs = weekly_totals(obs.transpose(-1, -2), days).transpose(-1, -2)
    return (pred - obs).abs().sum(dim=1) / obs.sum(dim=0).clamp_min(1.0)


def fit_predictions(
    infections: torch.Tensor, deaths: torch.Tensor, data: Mapping[str, torch.Tensor], mult: float
) -> dict[str, torch.Tensor]:
    """Expected reported ``cases`` and ``deaths`` ``[B, T, 5]`` over the data's T days, from the
    model's ``infections`` and ``deaths`` ``[B, LEAD + >= T, 5]`` (model days from 0).

    Cases: the infections after the reporting delay times an ``ascertainment`` ``[B, T]``
    profiled out per 28-day block. Deaths: the model's own (severity by age) times a
    ``death_ratio`` profiled out within ``DEATH_RATIO`` = [1, 3]: New York's first-wave
    fatality (care homes, full hospitals) ran above the age-specific prognoses, never below, so
    the deaths bound the size of the epidemic from below and above. One ratio per
    ``DEATH_BLOCK`` days (``[B, T]``; the first wave has one)."""
    t = data["cases"].shape[0]
    unit = unit_cases(infections, mult)[:, LEAD : LEAD + t]
    asc = ascertainment(unit, data["cases"])
    dead = deaths[:, LEAD : LEAD + t] * mult
    ratio = torch.zeros(dead.shape[0], t, dtype=dead.dtype)
    for start in range(0, t, DEATH_BLOCK):
        sl = slice(start, min(start + DEATH_BLOCK, t))
        level = data["deaths"][sl].sum() / dead[:, sl].sum(dim=(1, 2)).clamp_min(1e-9)
        ratio[:, sl] = level.clamp(*DEATH_RATIO).unsqueeze(1)
    return {
        "cases": asc.unsqueeze(2) * unit,
        "deaths": ratio.unsqueeze(2) * dead,
        "ascertainment": asc,
        "death_ratio": ratio,
    }


def objective(pred: Mapping[str, torch.Tensor], data: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``[B]`` the fit's loss: mean over boroughs of (cases ND + deaths ND) / 2, of weekly
    totals (a model death at 1 % stands for 100: daily counts are mostly sampling noise)."""
    cases = nd(pred["cases"], data["cases"], WEEK)
    return 0.5 * (cases + nd(pred["deaths"], data["deaths"], WEEK)).mean(1)


# --- the fit ------------------------------------------------------------------------------


def bounds(name: str, agents: int) -> list[Bound]:
    """The free params of behaviour ``name`` and their search boxes (the seeding at least three
    agents exposed on average: fewer and small populations fit an epidemic that never starts)."""
    low = min(max(1e-5, 3.0 / agents), 1e-3)
    out = [Bound("beta", 0.2, 2.0), Bound("initial", low, 3e-3, log=True)]
    if name != "none":
        out += [
            Bound("stay_home_effect", 0.0, 1.0),
            Bound("link_bias", -6.0, 10.0),
            Bound("link_scale", 0.0, 4.0),
        ]
    return out


def simulate(
    flag: Flagship, name: str, values: Mapping[str, torch.Tensor], days: int, seeds: Sequence[int]
) -> pl.DataFrame:
    """The per-borough infections and deaths of one batched run: member b has ``values[k][b]``
    (``[B]`` each)."""
    model = flag.model(name, metrics=FIT_METRICS)
    params = model.params.replace(**values)
    sim = Simulation(
        model, seeds=list(seeds), params=params, progress=False, device=flag.setting.device
    )
    return sim.run(days).metrics


def losses_of(flag: Flagship, name: str, days: int | None = None):
    """The batched objective of behaviour ``name`` over the first ``days`` data rows (default:
    the wave's fit window): ``{param: [P]}`` → ``[P]`` losses, every candidate on the same
    random numbers (common seed)."""
    days = flag.wave.fit_days if days is None else days
    data = {k: v[:days] for k, v in flag.data.items()}

    def evaluate(values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        count = next(iter(values.values())).numel()
        seeds = [member_seed(flag.setting.seed, 0)] * count
        metrics = simulate(flag, name, values, LEAD + days - 1, seeds)
        inf = borough_rows(metrics, "new_infections", count)
        dead = borough_rows(metrics, "new_deaths", count)
        return objective(fit_predictions(inf, dead, data, flag.multiplier), data)

    return evaluate


@functools.lru_cache(maxsize=1)
def code_digest() -> bytes:
    """sha256 of the source of every package a flagship run is made of (engine, kernels, epi,
    behaviors, populations, calibration, models and this file): any code change, a new fit."""
    import populace.behaviors
    import populace.calibration
    import populace.engine
    import populace.epi
    import populace.kernels
    import populace.models
    import populace.populations

    h = hashlib.sha256(Path(__file__).read_bytes())
    packages = (
        populace.engine,
        populace.kernels,
        populace.epi,
        populace.behaviors,
        populace.populations,
        populace.calibration,
        populace.models,
    )
    for package in packages:
        folder = Path(package.__file__).parent
        for path in sorted(folder.rglob("*.py")):
            h.update(str(path.relative_to(folder)).encode())
            h.update(path.read_bytes())
    return h.digest()


def digest(flag: Flagship, name: str) -> str:
    """Key of a fit: the setting, the population, the data, the behaviour's table, the code
    (:func:`code_digest`)."""
    h = hashlib.sha256()
    h.update(json.dumps(dataclasses.asdict(flag.setting), sort_keys=True).encode())
    meta = {k: v for k, v in flag.population.meta.items() if k != "seconds"}  # timings vary
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for t in (flag.data["cases"], flag.data["deaths"], flag.tables.get(name, torch.zeros(0))):
        h.update(t.numpy().tobytes())
    h.update(name.encode())
    h.update(code_digest())
    return h.hexdigest()[:20]


def fit(flag: Flagship, name: str, cache: Path | None, log=print) -> dict[str, Any]:
    """Fit behaviour ``name`` (or reuse the cached fit of the same digest)."""
    key = digest(flag, name)
    path = None if cache is None else cache / f"flagship-fit-{name}-{key}.json"
    if path is not None and path.exists():
        record = json.loads(path.read_text())
        log(f"fit {name}: cached ({path.name})")
        return record | {"cached": True}
    s = flag.setting
    t0 = time.perf_counter()
    found = search(
        losses_of(flag, name),
        bounds(name, flag.population.n),
        popsize=s.popsize,
        generations=s.generations,
        seed=s.seed,
        log=lambda m: log(f"fit {name}: {m}"),
    )
    record = {
        "behaviour": name,
        "params": found.best,
        "loss": found.loss,
        "evaluations": found.evaluations,
        "history": found.history,
        "seconds": time.perf_counter() - t0,
        "digest": key,
    }
    if path is not None:
        write_json(path, record)
    return record | {"cached": False}


def write_json(path: Path, record: Mapping[str, Any]) -> None:
    """A cache record written whole or not at all (:func:`populace.engine.storage.write_file`)."""
    storage.write_file(path, [storage.dumps(record).encode()])


# --- scores: fit ND and rolling forecasts ----------------------------------------------------


def weekly(x: torch.Tensor) -> torch.Tensor:
    """``[..., T // 7, 5]`` totals of whole weeks of ``[..., T, 5]`` daily values."""
    return weekly_totals(x.transpose(-1, -2), WEEK).transpose(-1, -2)


def score(flag: Flagship, name: str, params: Mapping[str, float]) -> dict[str, Any]:
    """Fit ND and rolling-forecast error of fitted behaviour ``name``, per seed.

    One run of ``origins x seeds`` members (the wave's) to the last origin + 28 days; member
    (o, s) holds the behaviour at origin o's week. ND over the fit window (cases and deaths, member
    mean over seeds and per seed); at each origin the cases ascertainment of each borough is
    re-anchored on the 14 days before it (at most 1) and the next four weekly totals are compared
    with the data and with persistence (the last week repeated)."""
    s, wave = flag.setting, flag.wave
    fit_days = wave.fit_days
    days = LEAD + wave.days
    members = [(o, k) for o in wave.origins for k in range(s.seeds)]
    count = len(members)
    values = {n: torch.full((count,), float(v), dtype=torch.float64) for n, v in params.items()}
    hold = [(LEAD + o) // WEEK for o, _ in members]
    values["stay_home_hold"] = torch.tensor(hold, dtype=torch.float64)
    seeds = [member_seed(s.seed + 1, k) for _, k in members]
    metrics = simulate(flag, name, values, days - 1, seeds)
    inf = borough_rows(metrics, "new_infections", count)
    dead = borough_rows(metrics, "new_deaths", count)
    fit_data = {k: v[:fit_days] for k, v in flag.data.items()}
    first = [i for i, (o, _) in enumerate(members) if o == wave.origins[0]]
    pred = fit_predictions(inf[first], dead[first], fit_data, flag.multiplier)
    nd_cases = nd(pred["cases"], fit_data["cases"], WEEK)  # [S, 5]
    nd_deaths = nd(pred["deaths"], fit_data["deaths"], WEEK)
    city = {  # daily, citywide: the ND of the calibration issue
        k: nd(pred[k].sum(dim=2, keepdim=True), fit_data[k].sum(dim=1, keepdim=True))[:, 0]
        for k in ("cases", "deaths")
    }
    unit = unit_cases(inf, flag.multiplier)[:, LEAD:]  # [B, T, 5] in data rows
    obs = flag.data["cases"]
    rows = []
    for i, (o, k) in enumerate(members):
        before = slice(o - 14, o)
        # the ascertainment of the last 14 days, at most 1 (as in the fit): a model with fewer
        # infections than the data's cases forecasts all of them reported, not a blow-up
        level = obs[before].sum(dim=0) / unit[i, before].sum(dim=0).clamp_min(1e-9)  # [5]
        level = level.clamp(max=1.0)
        ahead = weekly(unit[i, o : o + HORIZON] * level)  # [4, 5]
        truth = weekly(obs[o : o + HORIZON])
        last = obs[o - WEEK : o].sum(dim=0)
        model_ae = (ahead - truth).abs().mean()
        persistence_ae = (last - truth).abs().mean()
        rows.append(
            {
                "behaviour": name,
                "origin": date_of(o),
                "seed": k,
                "model_mae": float(model_ae),
                "persistence_mae": float(persistence_ae),
                "relative_mae": float(model_ae / persistence_ae.clamp_min(1e-9)),
            }
        )
    forecasts = pl.DataFrame(rows)
    per_seed = forecasts.group_by("seed").agg(pl.col("relative_mae").mean()).sort("seed")
    rel = per_seed["relative_mae"].to_torch()
    per_seed_nd = (nd_cases.mean(1) + nd_deaths.mean(1)) / 2
    return {
        "nd_fit": float(per_seed_nd.mean()),
        "nd_fit_interval": [float(per_seed_nd.min()), float(per_seed_nd.max())],
        "nd_cases_city": float(city["cases"].mean()),
        "nd_deaths_city": float(city["deaths"].mean()),
        "nd_cases_by_borough": dict(zip(NYC_BOROUGHS, nd_cases.mean(0).tolist(), strict=True)),
        "nd_deaths_by_borough": dict(zip(NYC_BOROUGHS, nd_deaths.mean(0).tolist(), strict=True)),
        "forecast_relative_mae": float(rel.mean()),
        "forecast_relative_mae_interval": [float(rel.min()), float(rel.max())],
        "death_ratio": pred["death_ratio"].mean(0)[::DEATH_BLOCK].tolist(),
        "ascertainment_by_block": pred["ascertainment"].mean(0)[::BLOCK].tolist(),
        "predicted": {k: pred[k].mean(0) for k in ("cases", "deaths")},
        "forecasts": forecasts,
    }


def link_effect(flag: Flagship, name: str, params: Mapping[str, float]) -> dict[str, float]:
    """How the fitted link moved the raw answers: mean raw p and mean acted-on q over the fit
    window's weeks (population-weighted), and the fitted scale and bias."""
    from populace.behaviors.stay_home import link

    table = flag.tables[name][: (LEAD + flag.wave.fit_days) // WEEK + 1]
    p = covid.CovidParams().replace(
        link_scale=float(params["link_scale"]), link_bias=float(params["link_bias"])
    )
    weights = torch.bincount(flag.archetype, minlength=table.shape[1]).double()
    raw = (table * weights).sum(1) / weights.sum()  # [W] population share, raw answers
    acted = (link(table, p) * weights).sum(1) / weights.sum()
    return {
        "raw_mean": float(raw.mean()),
        "acted_mean": float(acted.mean()),
        "raw_week_range": [float(raw.min()), float(raw.max())],
        "acted_week_range": [float(acted.min()), float(acted.max())],
        "link_scale": float(params["link_scale"]),
        "link_bias": float(params["link_bias"]),
    }


# --- counterfactuals ---------------------------------------------------------------------


def prevalence_by_borough(state, params, ctx) -> torch.Tensor:
    """``[B, 5]`` share of each borough's agents infectious (the stay-home order's trigger)."""
    from populace.epi import severity

    infectious = covid.rows(state, severity.INFECTIOUS).to(torch.float64)
    size = torch.bincount(ctx.data.borough, minlength=5).to(infectious)
    return group_sum(infectious, ctx.data.borough, 5) / size


def scenarios(
    closed_borough: str = "BX",
    closure_day: int = LEAD + 15,
    vaccine_day: int = LEAD + 14,
    doses_per_100k: float = 300.0,
    order_on: float = 0.01,
    order_off: float = 0.003,
    order_factor: float = 0.3,
) -> list[Scenario]:
    """The targeted counterfactuals (days are model days: ``LEAD + 15`` is 2020-03-16)."""
    from populace.epi.vaccination import campaign

    order = tuple(
        Trigger(
            layer,
            order_factor,
            prevalence_by_borough,
            on_above=order_on,
            off_below=order_off,
            label=f"order_{layer}",
            axis="borough",
        )
        for layer in ("work", "community")
    )
    return [
        Scenario(
            f"schools_closed_{closed_borough}",
            (SetParam("school", 0.0, start=closure_day, where={"borough": closed_borough}),),
        ),
        Scenario(
            "vaccine_65_first",
            campaign(doses_per_100k, vaccine_day, ages=("75+", "65-74"), sequential=True),
        ),
        Scenario("vaccine_most_connected_first", campaign(doses_per_100k, vaccine_day)),
        Scenario("stay_home_order_by_borough", triggers=order),
    ]


def counterfactuals(
    flag: Flagship, name: str, params: Mapping[str, float], days: int | None = None
) -> dict[str, Any]:
    """Run the baseline and :func:`scenarios` on fitted behaviour ``name``: paired differences
    per borough (infections, deaths, hospital peak; NYC scale) with 90 % intervals over seeds,
    and the baseline attack rate by ZIP-code area."""
    s = flag.setting
    days = flag.wave.fit_days if days is None else days
    model = flag.model(name, metrics=STUDY_METRICS, **{k: float(v) for k, v in params.items()})
    result = study(
        model,
        scenarios(),
        steps=LEAD + days - 1,
        seeds=s.seeds,
        seed=s.seed + 2,
        progress=False,
        device=s.device,
    )
    mult = flag.multiplier
    out: dict[str, Any] = {}
    rows = []
    for b in NYC_BOROUGHS + ("NYC",):
        cols = {
            "infections": (f"new_infections_{b}", "sum"),
            "deaths": (f"new_deaths_{b}", "sum"),
            "hospital_peak": (f"hospitalised_{b}", "peak"),
        }
        if b == "NYC":
            cols = {
                "infections": ("new_infections", "sum"),
                "deaths": ("new_deaths", "sum"),
                "hospital_peak": ("hospitalised", "peak"),
            }
        for what, (col, how) in cols.items():
            for r in result.difference(col, how).iter_rows(named=True):
                rows.append(
                    {
                        "scenario": r["scenario"],
                        "borough": b,
                        "outcome": what,
                        "averted": -r["mean"] * mult,
                        "averted_lo": -r["hi"] * mult,
                        "averted_hi": -r["lo"] * mult,
                    }
                )
    table = pl.DataFrame(rows)
    for sc in result.scenarios[1:]:
        city = table.filter((pl.col("scenario") == sc) & (pl.col("borough") == "NYC"))
        entry = {}
        for r in city.iter_rows(named=True):
            entry[f"{r['outcome']}_averted"] = r["averted"]
            entry[f"{r['outcome']}_averted_interval"] = [r["averted_lo"], r["averted_hi"]]
        out[sc] = entry
    state = result.result.final_state
    seeds = s.seeds
    ever = (state.health[:seeds, covid.COURSE_INDEX["S"]] < 0.5).double().mean(0)  # [N]
    area = flag.population.attributes["area"].long()
    areas = len(flag.population.codebook["area"])
    size = torch.bincount(area, minlength=areas).double()
    attack = torch.bincount(area, weights=ever, minlength=areas) / size.clamp_min(1)
    return {
        "summary": out,
        "table": table,
        "attack_rate_by_area": attack,
        "metrics": result.metrics,
        "baseline_attack_rate": float(ever.mean()),
    }
