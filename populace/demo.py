"""The flagship demo: New York City, LLM archetype behaviour, a baseline and a counterfactual.

``populace demo`` (what ``make demo`` runs):

1. builds the synthetic NYC population (``populations.nyc``; a reduced scale on CPU, full on GPU);
2. groups its agents into archetypes (age group × borough) whose isolation decisions come from
   the embedded SmolLM2 through ``models.covid_behavior`` (one prompt per archetype and member per
   query step, cached on disk: ``~/.cache/populace/llm.sqlite`` unless told otherwise, so a
   rerun asks the model nothing);
3. runs a study: the baseline and a stay-at-home counterfactual (contacts halved from a given
   day), ``seeds`` seeds each, batched with common random numbers;
4. writes a report folder: ``metrics.parquet``, PNG plots, ``summary.md``, ``summary.json``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import polars as pl
import torch

from populace.engine.context import resolve_device
from populace.engine.intervention import ScaleParam
from populace.engine.plotting import plot_series
from populace.engine.provenance import device_name, now, versions
from populace.engine.storage import dumps, staged_folder
from populace.engine.study import Scenario, study
from populace.models import covid_behavior
from populace.populations import nyc


def attack_rate_by(codes: torch.Tensor, susceptible: torch.Tensor, groups: int) -> torch.Tensor:
    """``[G]`` fraction ever infected per group. codes ``[N]``, susceptible ``[M, N]`` 0/1 (M
    members)."""
    ever = (1 - susceptible.double()).mean(dim=0)  # [N]
    size = torch.bincount(codes, minlength=groups).double()
    return torch.bincount(codes, weights=ever, minlength=groups) / size.clamp_min(1)


def flagship(
    out: str | Path = "report", *, overwrite: bool = False, **options: Any
) -> dict[str, Any]:
    """Run the flagship demo into the report folder ``out``; see :func:`run_demo` for options.

    The report is written into a hidden sibling folder and swapped in at the end with its
    ``manifest.json`` (:func:`~populace.engine.storage.staged_folder`): a failure or an
    interrupt leaves nothing behind. A non-empty ``out`` is refused unless ``overwrite``.
    """
    with staged_folder(out, kind="report", overwrite=overwrite, info={"demo": "flagship"}) as tmp:
        return run_demo(tmp, **options)


def run_demo(
    out: Path,
    *,
    scale: float | None = None,
    days: int = 112,
    seeds: int = 2,
    seed: int = 0,
    lockdown_day: int = 14,
    contact_factor: float = 0.5,
    initial_infected: int | None = None,
    query_every: int = 7,
    samples: int = 1,
    backend: Any = "transformers",
    cache: str | Path | None = None,
    device: str = "auto",
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run the flagship demo and write its report folder; returns the summary record.

    Args:
        out: report folder (created).
        scale: fraction of NYC's 8.33 M residents; default 0.01 on CPU, 1.0 on CUDA.
        days: simulated days.
        seeds: seeds per scenario.
        lockdown_day, contact_factor: the counterfactual scales transmission by
            ``contact_factor`` from ``lockdown_day`` on.
        initial_infected: seeded infections (default 0.05 % of agents, at least 5).
        backend: LLM backend name or object (``covid_behavior.build``'s ``backend``).
        cache: the LLM answer cache (default :func:`~populace.models.covid_behavior.default_cache`,
            shared by every run on this machine).
    """
    if isinstance(days, bool) or not isinstance(days, int) or not 0 <= lockdown_day < days:
        raise ValueError(
            f"lockdown_day={lockdown_day} must fall inside the {days} days, or the "
            f"counterfactual would equal the baseline"
        )
    start = time.perf_counter()
    dev = resolve_device(device)
    scale = scale if scale is not None else (1.0 if dev.type == "cuda" else 0.01)

    t0 = time.perf_counter()
    population = nyc(scale=scale, seed=seed, layers=(), homes=True, device="cpu")
    build_seconds = time.perf_counter() - t0
    agents = population.n
    seeded = initial_infected if initial_infected is not None else max(5, agents // 2000)
    out.mkdir(parents=True, exist_ok=True)
    model = covid_behavior.build(
        agents=agents,
        initial_infected=seeded,
        behavior="llm",
        query_every=query_every,
        samples=samples,
        backend=backend,
        cache=True if cache is None else str(cache),
        population=population,
    )
    pairs = model.data.age_group * 100 + model.data.borough
    archetypes = int(torch.unique(pairs).numel())
    lockdown = Scenario("stay_at_home", (ScaleParam("beta", contact_factor, start=lockdown_day),))
    t0 = time.perf_counter()
    result = study(
        model, [lockdown], steps=days, seeds=seeds, seed=seed, device=dev, progress=progress
    )
    run_seconds = time.perf_counter() - t0
    frame = result.metrics.with_columns(
        (pl.col("R") + pl.col("I")).alias("ever_infected"),
        (pl.col("isolating") / agents).alias("isolating_share"),
    )
    frame.write_parquet(out / "metrics.parquet")
    result = dataclasses.replace(result, metrics=frame)

    # figures
    for metric, title in [("I", "infectious agents"), ("isolating_share", "share isolating")]:
        fig = plot_series(frame, metric, by="scenario")
        fig.axes[0].set_title(f"NYC ({agents:,} agents): {title}, mean and 90 % band")
        fig.axes[0].set_xlabel("day")
        fig.savefig(out / f"{metric}.png", dpi=120, bbox_inches="tight")
        plt.close(fig)
    susceptible = result.result.final_state.health[:, 0].cpu()
    base_members = [i for i in range(susceptible.shape[0]) if i // seeds == 0]
    area_codes = population.attributes["area"].long().cpu()
    n_areas = len(population.codebook["area"])
    area_attack = attack_rate_by(area_codes, susceptible[base_members], n_areas)
    if population.areas is not None:
        from populace.populations.geography import choropleth

        fig, ax = plt.subplots(figsize=(6, 6))
        choropleth(population.areas, area_attack, ax=ax, label="attack rate", cmap="Reds")
        ax.set_title("baseline attack rate by ZIP code area (MODZCTA)")
        ax.set_axis_off()
        fig.savefig(out / "attack_rate_map.png", dpi=120, bbox_inches="tight")
        plt.close(fig)

    # numbers
    diff = {
        r["scenario"]: r for r in result.difference("ever_infected", "final").iter_rows(named=True)
    }["stay_at_home"]
    peak = {r["scenario"]: r for r in result.difference("I", "peak_step").iter_rows(named=True)}[
        "stay_at_home"
    ]
    # the llm_* counters hold the whole batch's work per step, repeated in every member's row
    member0 = frame.filter((pl.col("scenario") == result.baseline) & (pl.col("seed") == 0))
    llm = {m: float(member0[f"llm_{m}"].sum()) for m in covid_behavior.LLM_METRICS}
    boroughs = population.codebook["borough"]
    borough_attack = attack_rate_by(
        population.attributes["borough"].long().cpu(), susceptible[base_members], len(boroughs)
    )
    final = (
        frame.filter(pl.col("step") == days)
        .group_by("scenario", maintain_order=True)  # baseline first, as in the study
        .agg((pl.col("ever_infected").mean() / agents).alias("attack_rate"))
    )
    record = {
        "agents": agents,
        "scale": scale,
        "days": days,
        "seeds": seeds,
        "archetypes": archetypes,
        "device": dev.type,
        "device_name": device_name(dev),
        "attack_rate": dict(zip(final["scenario"], final["attack_rate"], strict=True)),
        "ever_infected_difference": {k: diff[k] for k in ("mean", "lo", "hi")},
        "peak_day_shift": {k: peak[k] for k in ("mean", "lo", "hi")},
        "borough_attack_rate_baseline": dict(zip(boroughs, borough_attack.tolist(), strict=True)),
        "llm": llm,
        "seconds": {
            "population": build_seconds,
            "simulation": run_seconds,
            "total": time.perf_counter() - start,
        },
        "versions": versions(),
        "date": now(),
    }
    (out / "summary.json").write_text(dumps(record, indent=2) + "\n")
    files = ["metrics.parquet", "I.png", "isolating_share.png"]
    files += ["attack_rate_map.png"] if population.areas is not None else []
    (out / "summary.md").write_text(_markdown(record, lockdown_day, contact_factor, files))
    return record


def _markdown(r: dict[str, Any], lockdown_day: int, factor: float, files: list[str]) -> str:
    d, p, llm = r["ever_infected_difference"], r["peak_day_shift"], r["llm"]
    lines = [
        "# populace flagship demo: New York City with LLM archetype behaviour",
        "",
        f"- Population: {r['agents']:,} synthetic New Yorkers (scale {r['scale']}), "
        f"{r['days']} days, {r['seeds']} seeds per scenario, on {r['device_name']}.",
        "- Behaviour: every week each archetype (age group × borough) is asked by the embedded "
        "SmolLM2-135M-Instruct whether it stays home given the week's case trend; the answer is "
        "broadcast to the archetype's agents.",
        f"- Counterfactual `stay_at_home`: transmission × {factor} from day {lockdown_day}.",
        "",
        "| scenario | attack rate (mean over seeds) |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.3f} |" for k, v in r["attack_rate"].items()]
    lines += [
        "",
        f"Infections averted by `stay_at_home` (paired over seeds, 90 % interval): "
        f"{-d['mean']:.0f} agents [{-d['hi']:.0f}, {-d['lo']:.0f}].",
        f"Peak day shift: {p['mean']:+.1f} days [{p['lo']:+.1f}, {p['hi']:+.1f}].",
        "",
        f"LLM work ({r['archetypes']} archetypes, all scenarios and seeds): "
        f"{llm['calls']:.0f} completions, {llm['cache_hits']:.0f} cache "
        f"hits, {llm['invalid']:.0f} invalid answers, {llm['fallbacks']:.0f} fallbacks, "
        f"{llm['seconds']:.1f} s in the backend.",
        "",
        "Files: " + ", ".join(f"`{f}`" for f in [*files, "summary.json"]) + ".",
        "",
        f"Wall time: {r['seconds']['total']:.1f} s (population {r['seconds']['population']:.1f} s,"
        f" simulation {r['seconds']['simulation']:.1f} s).",
        "",
    ]
    return "\n".join(lines)
