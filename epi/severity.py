"""COVID-like natural history with severity by age, and hospital capacity.

Stages (a :class:`~populace.epi.course.Course`)::

    S → E ─┬─ (1 - p_symptomatic) → I_asym ──────────────────────────────→ R
           └─ p_symptomatic → I_pre → I_mild ─┬─ (1 - p_severe) ─────────→ R
                                              └─ p_severe → H ─┬─────────→ R
                                                               └─ p_critical → ICU ─┬→ R
                                                                                    └─ p_death → D

``p_*`` are conditional probabilities per age band (params along ``age``), so the infection
fatality ratio of a band is ``p_symptomatic p_severe p_critical p_death`` (:func:`ifr`).
I_asym (x ``rel_trans_asym``), I_pre and I_mild transmit; H and ICU patients are in hospital
and do not. R is immune for good, or for a duration (waning, then susceptible again).

Hospital: severe (H) and critical (ICU) patients need a bed. There are ``beds_per_100k`` beds
per 100,000 agents, a hard limit: each day discharged and dead patients free their beds and
waiting patients are admitted, at random, while beds are free (:func:`admit`). A patient who
enters H or ICU without a bed has ``no_bed_factor`` times the probability of becoming critical
or of dying (capped at 1): care is worse when beds run out.

Default durations (days, discretised lognormal of this mean and sd, :func:`durations`) and
default probabilities by age (:func:`prognoses`) are those covasim 4 uses, from Lauer et al.
(2020), Linton et al. (2020), Wölfel et al. (2020), Verity et al. (2020), Ferguson et al.
(2020, Imperial report 9) and O'Driscoll et al. (2021).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

import torch

from populace.engine import Params, member_view, param
from populace.epi.course import Course, Stage
from populace.epi.durations import Duration, lognormal
from populace.epi.rationing import ration

STAGES = ("S", "E", "I_asym", "I_pre", "I_mild", "H", "ICU", "R", "D")
INFECTIOUS = ("I_asym", "I_pre", "I_mild")
SYMPTOMATIC = ("I_mild", "H", "ICU")
IN_HOSPITAL = ("H", "ICU")
#: stages in which a test finds the infection.
DETECTABLE = ("I_asym", "I_pre", "I_mild", "H", "ICU")

#: default durations (mean, sd) in days, covasim's names.
DURATIONS = {
    "exp2inf": (4.5, 1.5),
    "inf2sym": (1.1, 0.9),
    "sym2sev": (6.6, 4.9),
    "sev2crit": (1.5, 2.0),
    "asym2rec": (8.0, 2.0),
    "mild2rec": (8.0, 2.0),
    "sev2rec": (18.1, 6.3),
    "crit2rec": (18.1, 6.3),
    "crit2die": (10.7, 4.8),
}

#: unconditional probabilities by decade of age (0-9, ..., 90+): symptoms, severe and critical
#: disease, death.
BY_DECADE = {
    "symptomatic": (0.50, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.90),
    "severe": (0.0005, 0.00165, 0.0072, 0.0208, 0.0343, 0.0765, 0.1328, 0.20655, 0.2457, 0.2457),
    "critical": (3e-5, 8e-5, 0.00036, 0.00104, 0.00216, 0.00933, 0.03639, 0.08923, 0.1742, 0.1742),
    "death": (2e-5, 2e-5, 0.0001, 0.00032, 0.00098, 0.00265, 0.00766, 0.02439, 0.08292, 0.1619),
}
SEVERITY_PARAMS = ("p_symptomatic", "p_severe", "p_critical", "p_death")


@dataclasses.dataclass(frozen=True)
class SeverityParams(Params):
    """Params of the natural history and the hospital (mix into a model's params)."""

    p_symptomatic: float | torch.Tensor = param(
        0.7, low=0, high=1, unit="probability", axes=("age",), doc="an infection has symptoms"
    )
    p_severe: float | torch.Tensor = param(
        0.05,
        low=0,
        high=1,
        unit="probability",
        axes=("age",),
        doc="a symptomatic case becomes severe (needs a hospital bed)",
    )
    p_critical: float | torch.Tensor = param(
        0.2, low=0, high=1, unit="probability", axes=("age",), doc="a severe case needs ICU"
    )
    p_death: float | torch.Tensor = param(
        0.4, low=0, high=1, unit="probability", axes=("age",), doc="a critical case dies"
    )
    rel_trans_asym: float | torch.Tensor = param(
        1.0, low=0, unit="x", doc="infectiousness of asymptomatic cases (symptomatic: 1)"
    )
    beds_per_100k: float | torch.Tensor = param(
        1e5, low=0, unit="beds per 100k agents", doc="hospital beds, a hard limit (1e5: no limit)"
    )
    no_bed_factor: float | torch.Tensor = param(
        2.0,
        low=1,
        unit="x",
        doc="x probability of becoming critical or dying for patients without a bed",
    )


def durations(**overrides: Duration) -> dict[str, Duration]:
    """The default durations (:data:`DURATIONS`, discretised lognormals), some replaced."""
    unknown = sorted(set(overrides) - set(DURATIONS))
    if unknown:
        raise ValueError(f"unknown duration(s) {unknown}; valid: {', '.join(DURATIONS)}")
    for name, d in overrides.items():
        if not isinstance(d, Duration):
            raise ValueError(
                f"duration {name!r} must be a Duration (fixed, lognormal...), got {d!r}"
            )
    out = {name: lognormal(*ms) for name, ms in DURATIONS.items()}
    return out | overrides


def course(
    days: Mapping[str, Duration] | None = None,
    immunity: Duration | None = None,
    estimator: str = "none",
    temperature: float = 0.1,
) -> Course:
    """The staged course above. ``days``: durations by name (default :func:`durations`);
    ``immunity``: how long R protects (None: for good)."""
    d = durations(**dict(days or {}))
    stages = (
        Stage("S", next="E"),
        Stage("E", d["exp2inf"], next="I_asym", branch="p_symptomatic", alt="I_pre"),
        Stage("I_asym", d["asym2rec"], next="R", infectious="rel_trans_asym"),
        Stage("I_pre", d["inf2sym"], next="I_mild", infectious=1.0),
        Stage(
            "I_mild",
            d["mild2rec"],
            next="R",
            branch="p_severe",
            alt="H",
            alt_duration=d["sym2sev"],
            infectious=1.0,
        ),
        Stage(
            "H", d["sev2rec"], next="R", branch="p_critical", alt="ICU", alt_duration=d["sev2crit"]
        ),
        Stage(
            "ICU", d["crit2rec"], next="R", branch="p_death", alt="D", alt_duration=d["crit2die"]
        ),
        Stage("R", immunity, next="S" if immunity is not None else None),
        Stage("D"),
    )
    return Course(stages, onset="I_mild", estimator=estimator, temperature=temperature)


def _years(label: str) -> range:
    m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", label)
    if m:
        lo, hi = int(m[1]), int(m[2])
        if hi >= lo:
            return range(lo, hi + 1)
    m = re.fullmatch(r"\s*(\d+)\s*\+\s*", label)
    if m:
        return range(int(m[1]), int(m[1]) + 10)
    raise ValueError(f"age band {label!r} is not 'a-b' or 'a+' (years)")


def prognoses(labels: Sequence[str]) -> dict[str, torch.Tensor]:
    """Conditional probabilities per age band (``p_symptomatic``, ``p_severe``, ``p_critical``,
    ``p_death``: ``[A]``) for bands labelled ``"a-b"`` or ``"a+"`` (years): the decade table
    :data:`BY_DECADE` averaged over the band's years (an open band counts ten years), then
    conditioned (severe given symptoms, critical given severe, death given critical)."""
    rows = {k: [] for k in BY_DECADE}
    for label in labels:
        years = _years(label)
        for k, table in BY_DECADE.items():
            rows[k].append(sum(table[min(y // 10, 9)] for y in years) / len(years))
    t = {k: torch.tensor(v, dtype=torch.float64) for k, v in rows.items()}
    return {
        "p_symptomatic": t["symptomatic"],
        "p_severe": t["severe"] / t["symptomatic"],
        "p_critical": t["critical"] / t["severe"],
        "p_death": t["death"] / t["critical"],
    }


def ifr(params: Params) -> torch.Tensor:
    """Infection fatality ratio per age band with a bed for everyone: the product of the four
    conditional probabilities (``[A]`` or ``[B, A]``)."""
    out = torch.as_tensor(getattr(params, SEVERITY_PARAMS[0]), dtype=torch.float64)
    for name in SEVERITY_PARAMS[1:]:
        out = out * torch.as_tensor(getattr(params, name), dtype=torch.float64)
    return out


def capacity(params: Params, agents: int) -> torch.Tensor:
    """``[]`` or ``[B]`` whole beds: ``floor(beds_per_100k * agents / 1e5)``."""
    return torch.floor(torch.as_tensor(params.beds_per_100k) * agents / 1e5)


def admit(
    health: torch.Tensor,
    in_bed: torch.Tensor,
    course: Course,
    order: torch.Tensor,
    beds: torch.Tensor,
) -> torch.Tensor:
    """Who holds a bed after today's discharges and admissions (``[B, N]`` bool).

    Args:
        health: ``[B, C, N]`` today's one-hot health (after the day's moves).
        in_bed: ``[B, N]`` bool, who held a bed yesterday.
        order: ``[B, N]`` random order of agents (admission order among those waiting).
        beds: ``[]`` or ``[B]`` whole beds.
    """
    needs = health[:, [course.index(n) for n in IN_HOSPITAL]].sum(dim=1).detach() > 0.5
    kept = in_bed & needs
    free = (beds.to(torch.float64).expand(needs.shape[0]) - kept.sum(dim=1)).clamp_min(0)
    return kept | ration(needs & ~kept, order, free)


def without_bed(probs: torch.Tensor, in_bed: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``[B, N]`` branch probabilities with ``no_bed_factor`` applied to agents without a bed
    (capped at 1)."""
    worse = (probs * member_view(factor, 2)).clamp(max=1)
    return torch.where(in_bed, probs, worse)
