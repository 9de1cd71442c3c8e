"""The flagship demo (``populace demo``, what ``make demo`` runs): :mod:`populace.flagship` end
to end, into a report folder.

1. the synthetic New York (1 % on CPU, all of it on a GPU) with its four contact layers, the
   severity model, and what agents know each week (reported cases per borough);
2. the behaviours' answer tables: the heuristic rule, and the embedded SmolLM2 asked once per
   archetype and week (cached on disk: ``~/.cache/populace/llm.sqlite`` unless told otherwise);
3. a fit of each behaviour (none / heuristic / LLM) to the first wave's cases and deaths per
   borough (cached by digest next to the LLM cache, so a rerun of the same setting fits
   nothing), then its fit ND and rolling 4-week forecasts vs persistence over seeds; with
   ``--waves first,autumn`` the same again on the autumn wave (2020-03..11, waning immunity);
4. the targeted counterfactuals on the best-fitting behaviour of the first wave;
5. ``report/``: ``summary.md``, ``summary.json``, parquet tables and figures.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import polars as pl
import torch

from populace import flagship as fl
from populace.calibration.data import NYC_BOROUGHS
from populace.engine.context import resolve_device
from populace.engine.provenance import device_name, now, versions
from populace.engine.storage import dumps, staged_folder
from populace.models import covid_behavior


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
    seeds: int = 2,
    seed: int = 0,
    samples: int = 1,
    archetypes: tuple[str, ...] = ("age_group", "borough"),
    popsize: int = 10,
    generations: int = 6,
    behaviours: tuple[str, ...] = fl.BEHAVIOURS,
    waves: tuple[str, ...] = ("first",),
    backend: Any = "transformers",
    cache: str | Path | None = None,
    fit_cache: str | Path | None = None,
    device: str = "auto",
    log=print,
) -> dict[str, Any]:
    """Run the flagship and write its report folder; returns the summary record.

    Args:
        out: report folder (created).
        scale: fraction of NYC's 8.33 M residents; default 0.01 on CPU, 1.0 on CUDA.
        seeds: seeds of the scoring and counterfactual runs.
        samples: LLM answers per archetype and week.
        archetypes: attributes whose combinations are the LLM archetypes.
        popsize, generations: the batched fit (candidates per generation, CMA-ES generations).
        behaviours: which of none / heuristic / llm to fit and compare.
        waves: the fit windows (keys of :data:`populace.flagship.WAVES`; ``first`` always
            runs: its table is ``behaviour_models`` and its best model runs the
            counterfactuals). ``autumn`` refits every behaviour on 2020-03..11 with waning
            immunity (about 2.5 times the first wave's days: tens of minutes on CPU).
        backend: LLM backend name or object (``covid_behavior.archetype_query``'s ``backend``).
        cache: the LLM answer cache (default ``~/.cache/populace/llm.sqlite``).
        fit_cache: folder of cached fits, scores and counterfactual tables, keyed by digest
            (default: the LLM cache's folder; False: none).
    """
    unknown = sorted(set(behaviours) - set(fl.BEHAVIOURS))
    if unknown or not behaviours:
        raise ValueError(f"unknown behaviour(s) {unknown}; valid: {', '.join(fl.BEHAVIOURS)}")
    unknown = sorted(set(waves) - set(fl.WAVES))
    if unknown:
        raise ValueError(f"unknown wave(s) {unknown}; valid: {', '.join(fl.WAVES)}")
    waves = ("first",) + tuple(w for w in dict.fromkeys(waves) if w != "first")
    start = time.perf_counter()
    dev = resolve_device(device)
    scale = scale if scale is not None else (1.0 if dev.type == "cuda" else 0.01)
    setting = fl.Setting(
        scale=scale,
        archetype_attributes=tuple(archetypes),
        samples=samples,
        popsize=popsize,
        generations=generations,
        seeds=seeds,
        seed=seed,
        device=dev.type,
    )
    answers = Path(cache) if cache is not None else covid_behavior.default_cache()
    folder = answers.parent if fit_cache is None else None
    if fit_cache not in (None, False):
        folder = Path(fit_cache)

    def query():
        return covid_behavior.archetype_query(
            fl.PROMPT,
            backend=backend,
            samples=samples,
            cache=str(answers),
            fallback="prior",
            prior=0.5,
        )

    seconds, flags, results, llm = {}, {}, {}, {}
    for wave in waves:
        suffix = "" if wave == "first" else f"_{wave}"  # the first wave's timings keep their keys
        t0 = time.perf_counter()
        flags[wave] = flag = fl.prepare(
            dataclasses.replace(setting, wave=wave),
            query if "llm" in behaviours else None,
            log=log,
        )
        seconds[f"prepare{suffix}"] = time.perf_counter() - t0
        log(f"{wave} wave: {flag.population.n:,} agents, {len(flag.labels)} archetypes")
        llm = _add_llm(llm, flag.llm)
        t0 = time.perf_counter()
        results[wave] = compare(flag, behaviours, folder, log)
        seconds[f"fits_and_scores{suffix}"] = time.perf_counter() - t0
    flag, (fits, _, models, best) = flags["first"], results["first"]
    t0 = time.perf_counter()
    cf = cached_counterfactuals(flag, best, fits[best], folder, log)
    seconds["counterfactuals"] = time.perf_counter() - t0

    scores = {w: r[1] for w, r in results.items()}
    write_tables(out, flags, scores, cf)
    figures = write_figures(out, flags, scores, cf, best)
    seconds["total"] = time.perf_counter() - start
    record = {
        "agents": flag.population.n,
        "scale": scale,
        "fit_window": [fl.START, fl.date_of(fl.FIT_DAYS - 1)],
        "forecast_origins": [fl.date_of(o) for o in fl.ORIGINS],
        "seeds": seeds,
        "archetypes": len(flag.labels),
        "archetype_attributes": list(archetypes),
        "behaviour_models": models,
        "best": best,
        "waves": {
            w: {
                "fit_window": [fl.START, fl.date_of(fl.WAVES[w].fit_days - 1)],
                "forecast_origins": [fl.date_of(o) for o in fl.WAVES[w].origins],
                "immunity_days": fl.WAVES[w].immunity,
                "behaviour_models": r[2],
                "best": r[3],
            }
            for w, r in results.items()
        },
        "counterfactuals": cf["summary"],
        "baseline_attack_rate": cf["baseline_attack_rate"],
        "llm": llm,
        "device": dev.type,
        "device_name": device_name(dev),
        "seconds": seconds,
        "versions": versions(),
        "date": now(),
    }
    (out / "summary.json").write_text(dumps(record, indent=2) + "\n")
    (out / "summary.md").write_text(markdown(record, figures))
    return record


def _add_llm(total: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    """The LLM accounting of several waves' tables, summed."""
    return {k: total.get(k, 0) + v for k, v in more.items()}


def compare(flag: fl.Flagship, behaviours: Sequence[str], folder: Path | None, log):
    """Fit and score every behaviour on the flagship's wave: (fits, scores, the summary's
    ``behaviour_models``, the best behaviour by fit ND)."""
    fits, scores = {}, {}
    for name in behaviours:
        fits[name] = fl.fit(flag, name, folder, log=log)
        scores[name] = cached_score(flag, name, fits[name], folder, log)
        log(
            f"{flag.wave.name} wave, {name}: ND {scores[name]['nd_fit']:.3f}, forecast MAE / "
            f"persistence {scores[name]['forecast_relative_mae']:.2f}"
        )
    best = min(behaviours, key=lambda n: scores[n]["nd_fit"])
    models = {}
    for name in behaviours:
        sc = scores[name]
        models[name] = {
            k: sc[k]
            for k in (
                "nd_fit",
                "nd_fit_interval",
                "nd_cases_city",
                "nd_deaths_city",
                "nd_cases_by_borough",
                "nd_deaths_by_borough",
                "forecast_relative_mae",
                "forecast_relative_mae_interval",
                "death_ratio",
                "ascertainment_by_block",
            )
        } | {
            "params": fits[name]["params"],
            "fit_loss": fits[name]["loss"],
            "fit_evaluations": fits[name]["evaluations"],
            "fit_cached": fits[name]["cached"],
        }
        if name != "none":
            models[name]["link"] = fl.link_effect(flag, name, fits[name]["params"])
    return fits, scores, models, best


def _cache_path(folder: Path | None, kind: str, fit: dict[str, Any]) -> Path | None:
    """Where a result derived from ``fit`` is cached: keyed by the fit's digest (setting with its
    seeds, population, data, answer table, code), so a result is reused only where it would be
    computed again bit for bit."""
    if folder is None:
        return None
    return folder / f"flagship-{kind}-{fit['behaviour']}-{fit['digest']}"


def cached_score(flag: fl.Flagship, name: str, fit: dict, folder: Path | None, log) -> dict:
    """:func:`populace.flagship.score` of a fit, or its cached result."""
    path = _cache_path(folder, "score", fit)
    path = None if path is None else path.with_suffix(".json")
    if path is not None and path.exists():
        log(f"score {name}: cached ({path.name})")
        rec = json.loads(path.read_text())
        rec["predicted"] = {
            k: torch.tensor(v, dtype=torch.float64) for k, v in rec["predicted"].items()
        }
        rec["forecasts"] = pl.DataFrame(rec["forecasts"])
        return rec
    sc = fl.score(flag, name, fit["params"])
    if path is not None:
        plain = sc | {
            "predicted": {k: v.tolist() for k, v in sc["predicted"].items()},
            "forecasts": sc["forecasts"].to_dicts(),
        }
        fl.write_json(path, plain)
    return sc


def cached_counterfactuals(
    flag: fl.Flagship, name: str, fit: dict, folder: Path | None, log
) -> dict:
    """:func:`populace.flagship.counterfactuals` of a fit, or its cached result."""
    base = _cache_path(folder, "counterfactuals", fit)
    if base is not None and base.with_suffix(".json").exists():
        log(f"counterfactuals: cached ({base.name})")
        rec = json.loads(base.with_suffix(".json").read_text())
        return rec | {
            "table": pl.DataFrame(rec["table"]),
            "attack_rate_by_area": torch.tensor(rec["attack_rate_by_area"], dtype=torch.float64),
            "metrics": pl.read_parquet(base.with_suffix(".parquet")),
        }
    cf = fl.counterfactuals(flag, name, fit["params"])
    if base is not None:
        base.parent.mkdir(parents=True, exist_ok=True)  # storage makes it for the json only
        cf["metrics"].write_parquet(base.with_suffix(".parquet"))  # before the json: its marker
        plain = {
            "summary": cf["summary"],
            "table": cf["table"].to_dicts(),
            "attack_rate_by_area": cf["attack_rate_by_area"].tolist(),
            "baseline_attack_rate": cf["baseline_attack_rate"],
        }
        fl.write_json(base.with_suffix(".json"), plain)
    return cf


def write_tables(out: Path, flags: dict, waves: dict, cf: dict) -> None:
    """fit (per wave, behaviour, day, borough), forecasts (per wave), counterfactuals, attack
    rates. ``flags``: wave → its flagship; ``waves``: wave → behaviour → score."""
    rows, forecasts = [], []
    for wave, scores in waves.items():
        for name, sc in scores.items():
            for kind in ("cases", "deaths"):
                pred = sc["predicted"][kind]
                obs = flags[wave].data[kind]
                for b, code in enumerate(NYC_BOROUGHS):
                    rows += [
                        {
                            "wave": wave,
                            "behaviour": name,
                            "series": kind,
                            "borough": code,
                            "date": fl.date_of(t),
                            "observed": float(obs[t, b]),
                            "model": float(pred[t, b]),
                        }
                        for t in range(pred.shape[0])
                    ]
            forecasts.append(sc["forecasts"].with_columns(pl.lit(wave).alias("wave")))
    pl.DataFrame(rows).write_parquet(out / "fit.parquet")
    pl.concat(forecasts).write_parquet(out / "forecasts.parquet")
    cf["table"].write_parquet(out / "counterfactuals.parquet")
    cf["metrics"].write_parquet(out / "counterfactual_metrics.parquet")
    codes = flags["first"].population.codebook["area"]
    pl.DataFrame(
        {"area": list(codes), "attack_rate": cf["attack_rate_by_area"].tolist()}
    ).write_parquet(out / "attack_rate_by_area.parquet")


def write_figures(out: Path, flags: dict, waves: dict, cf: dict, best: str) -> list[str]:
    """Fit vs data per wave, the comparison, counterfactual differences, the ZIP map
    (``flags``: wave → its flagship; ``waves``: wave → behaviour → score)."""
    files = []
    for wave, by_behaviour in waves.items():
        suffix = "" if wave == "first" else f"_{wave}"
        for kind in ("cases", "deaths"):
            t = next(iter(by_behaviour.values()))["predicted"][kind].shape[0]
            days, obs = torch.arange(t), flags[wave].data[kind][:t]
            fig, axes = plt.subplots(1, 5, figsize=(18, 3.2), sharex=True)
            for b, (ax, code) in enumerate(zip(axes, NYC_BOROUGHS, strict=True)):
                ax.plot(days, obs[:, b], "k.", ms=2, label="data")
                for name, sc in by_behaviour.items():
                    ax.plot(days, sc["predicted"][kind][:, b], label=name)
                ax.set_title(f"{code} {kind}")
                ax.set_xlabel("day from 2020-03-01")
            axes[0].legend(fontsize=7)
            fig.savefig(out / f"fit_{kind}{suffix}.png", dpi=110, bbox_inches="tight")
            plt.close(fig)
            files.append(f"fit_{kind}{suffix}.png")
    scores = waves["first"]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    names = list(scores)
    x = torch.arange(len(names)).double()
    for j, (key, label) in enumerate(
        [("nd_fit", "fit ND"), ("forecast_relative_mae", "forecast MAE / persistence")]
    ):
        mean = [scores[n][key] for n in names]
        lo = [scores[n][key] - scores[n][f"{key}_interval"][0] for n in names]
        hi = [scores[n][f"{key}_interval"][1] - scores[n][key] for n in names]
        ax.bar(x + 0.38 * j, mean, 0.36, yerr=[lo, hi], label=label, capsize=3)
    ax.set_xticks(x + 0.19, names)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.legend(fontsize=7)
    ax.set_title("behaviour models on NYC data")
    fig.savefig(out / "comparison.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    files.append("comparison.png")
    table = cf["table"].filter((pl.col("borough") != "NYC") & (pl.col("outcome") == "infections"))
    fig, ax = plt.subplots(figsize=(8, 3.4))
    scen = sorted(table["scenario"].unique())
    for j, sc in enumerate(scen):
        part = table.filter(pl.col("scenario") == sc).sort("borough")
        xs = torch.arange(part.height).double() + 0.2 * j
        err = [part["averted"] - part["averted_lo"], part["averted_hi"] - part["averted"]]
        ax.bar(xs, part["averted"], 0.2, yerr=err, label=sc, capsize=2)
    ax.set_xticks(torch.arange(5).double() + 0.3, sorted(NYC_BOROUGHS))
    ax.set_ylabel("infections averted (paired, 90 %)")
    ax.legend(fontsize=7)
    ax.set_title(f"counterfactuals on the {best} model")
    fig.savefig(out / "counterfactuals.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    files.append("counterfactuals.png")
    areas = area_shapes(flags["first"])
    if areas is not None:
        from populace.populations.geography import choropleth

        fig, ax = plt.subplots(figsize=(6, 6))
        choropleth(areas, cf["attack_rate_by_area"], ax=ax, label="attack rate", cmap="Reds")
        ax.set_title(f"first-wave attack rate by ZIP code area\n({best} model)", fontsize=10)
        ax.set_axis_off()
        fig.savefig(out / "attack_rate_map.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        files.append("attack_rate_map.png")
    return files


def area_shapes(flag: fl.Flagship):
    """The ZIP-code areas' polygons in the population's area order (None without the geo
    extra)."""
    if flag.population.areas is not None:
        return flag.population.areas
    try:
        from populace.populations.geography import read_areas
        from populace.populations.nyc import DATA
    except ImportError:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the file holds exactly the shipped areas
        codes = list(flag.population.codebook["area"])
        return read_areas(DATA / "modzcta.geojson", "MODZCTA", codes)


def _interval(x: list[float]) -> str:
    return f"[{x[0]:.3g}, {x[1]:.3g}]"


def _comparison_rows(models: dict[str, Any]) -> list[str]:
    rows = [
        "| behaviour | fit ND (seeds) | cases ND, city | deaths ND, city | forecast MAE / "
        "persistence (seeds) |",
        "|---|--:|--:|--:|--:|",
    ]
    for name, m in models.items():
        rows.append(
            f"| {name} | {m['nd_fit']:.3f} {_interval(m['nd_fit_interval'])} | "
            f"{m['nd_cases_city']:.3f} | {m['nd_deaths_city']:.3f} | "
            f"{m['forecast_relative_mae']:.2f} {_interval(m['forecast_relative_mae_interval'])} |"
        )
    return rows


def _link_rows(models: dict[str, Any]) -> list[str]:
    rows = []
    for name, m in models.items():
        if "link" in m:
            k = m["link"]
            rows.append(
                f"- {name} link: scale {k['link_scale']:.2f}, bias {k['link_bias']:+.2f}; mean "
                f"stay-home share {k['raw_mean']:.3f} raw → {k['acted_mean']:.3f} acted on "
                f"(weekly range {_interval(k['raw_week_range'])} → "
                f"{_interval(k['acted_week_range'])}), effect "
                f"{m['params']['stay_home_effect']:.2f} of non-household contacts."
            )
    return rows


def markdown(r: dict[str, Any], figures: list[str]) -> str:
    lines = [
        "# populace flagship: New York City, behaviour from data, heuristic vs LLM agents",
        "",
        f"- {r['agents']:,} synthetic New Yorkers (scale {r['scale']}) on four contact layers, "
        f"severity by age; fitted to cases and deaths per borough {r['fit_window'][0]} .. "
        f"{r['fit_window'][1]}; on {r['device_name']}.",
        f"- Behaviour: stay home (keep the household, drop a fitted share of other contacts); "
        f"{r['archetypes']} LLM archetypes ({' x '.join(r['archetype_attributes'])}) asked "
        "weekly about their borough's reported cases.",
        "",
    ]
    lines += _comparison_rows(r["behaviour_models"])
    origins = ", ".join(r["forecast_origins"])
    lines += ["", f"Best fit: **{r['best']}**. Forecast origins: {origins}."]
    lines += _link_rows(r["behaviour_models"])
    for wave, w in r["waves"].items():
        if wave == "first":
            continue
        lines += [
            "",
            f"## The {wave} wave: fitted {w['fit_window'][0]} .. {w['fit_window'][1]}, "
            f"immunity {w['immunity_days']:.0f} days (mean), forecasts from "
            f"{', '.join(w['forecast_origins'])}",
            "",
            *_comparison_rows(w["behaviour_models"]),
            "",
            f"Best fit: **{w['best']}**.",
            *_link_rows(w["behaviour_models"]),
        ]
    lines += [
        "",
        f"## Counterfactuals on the {r['best']} model (NYC, paired over seeds, 90 % interval)",
        "",
        "| scenario | infections averted | deaths averted | hospital peak lowered by |",
        "|---|--:|--:|--:|",
    ]
    for sc, v in r["counterfactuals"].items():
        lines.append(
            f"| {sc} | {v['infections_averted']:,.0f} {_interval(v['infections_averted_interval'])}"
            f" | {v['deaths_averted']:,.0f} {_interval(v['deaths_averted_interval'])} | "
            f"{v['hospital_peak_averted']:,.0f} {_interval(v['hospital_peak_averted_interval'])} |"
        )
    llm = r["llm"]
    lines += [
        "",
        "Per borough: `counterfactuals.parquet`.",
        "",
        f"LLM: {llm.get('questions', 0)} questions (archetypes x weeks), "
        f"{llm.get('completions', 0)} completions, {llm.get('cache_hits', 0)} cache hits, "
        f"{llm.get('invalid', 0)} invalid, {llm.get('fallbacks', 0)} fallbacks.",
        "",
        "Files: "
        + ", ".join(
            f"`{f}`"
            for f in [
                *figures,
                "fit.parquet",
                "forecasts.parquet",
                "counterfactuals.parquet",
                "counterfactual_metrics.parquet",
                "attack_rate_by_area.parquet",
                "summary.json",
            ]
        )
        + ".",
        "",
        f"Wall time: {r['seconds']['total']:.0f} s.",
        "",
    ]
    return "\n".join(lines)
