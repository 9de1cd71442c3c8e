"""Counterfactual studies: baseline + scenarios × seeds, batched on the ensemble axis.

Member ``b = s * seeds + k`` runs scenario ``s`` with stream ``member_seed(seed, k)``: every
scenario sees the same random numbers for seed ``k`` (common random numbers), so scenario
differences are paired and their intervals are narrower than unpaired ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
import torch

from populace.engine.data import EMPTY, Data
from populace.engine.intervention import Intervention, Trigger, apply_all
from populace.engine.model import Model
from populace.engine.params import ParamError, Params, Schedule, _as_tensor
from populace.engine.rng import member_seed
from populace.engine.simulation import Result, Simulation


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A named set of interventions (and triggered rules) applied to the model's params."""

    name: str
    interventions: tuple[Intervention, ...] = ()
    triggers: tuple[Trigger, ...] = ()


def stack_params(per_scenario: Sequence[Params], repeats: int, data: Data = EMPTY) -> Params:
    """One Params whose values are per member: scenario ``s`` repeated ``repeats`` times.

    Fields equal in every scenario stay as they are; the others become ``[B]`` (or ``[B, *A]``
    for axis params) tensors, or schedules with ``[K, B, ...]`` values over the union of
    breakpoints.
    """
    first = per_scenario[0]
    decls = first.declarations()
    sizes = data.axis_sizes()
    out: dict[str, Any] = {}
    for name in first.names():
        values = [getattr(p, name) for p in per_scenario]
        if all(v is values[0] for v in values):
            continue
        axes = decls[name].axes
        shaped = [_as_tensor(name, v, None, None, axes, sizes) for v in values]
        for v in shaped:
            piece = v.values[0] if isinstance(v, Schedule) else v
            if piece.dim() != len(axes):
                raise ParamError(
                    f"study: scenario values of {name!r} must not be per member already "
                    f"(shape {tuple(piece.shape)})"
                )
        starts = sorted({s for v in shaped if isinstance(v, Schedule) for s in v.starts} | {0})

        def value_at(v, s):
            return v.at(s) if isinstance(v, Schedule) else v

        grid = torch.stack(
            [
                torch.stack(torch.broadcast_tensors(*[value_at(v, s) for v in shaped]))
                for s in starts
            ]
        )  # [K, S, *A]
        grid = grid.repeat_interleave(repeats, dim=1)  # [K, B, *A]
        out[name] = grid[0] if len(starts) == 1 else Schedule(grid, tuple(starts))
    return first.replace(**out)


@dataclasses.dataclass
class StudyResult:
    """Results of a study.

    Attributes:
        metrics: polars DataFrame ``(scenario, seed, step, metric...)``.
        scenarios: scenario names, baseline first.
        seeds: number of seeds per scenario.
        result: the underlying simulation result (member axis = scenario × seed).
    """

    metrics: pl.DataFrame
    scenarios: list[str]
    seeds: int
    result: Result = dataclasses.field(repr=False)

    @property
    def baseline(self) -> str:
        return self.scenarios[0]

    def __repr__(self) -> str:
        metrics = [c for c in self.metrics.columns if c not in ("scenario", "seed", "step")]
        steps = self.metrics["step"].max() if self.metrics.height else 0
        return (
            f"StudyResult({len(self.scenarios)} scenarios {self.scenarios} x {self.seeds} seeds, "
            f"steps 0..{steps}, metrics {metrics})"
        )

    def _repr_html_(self) -> str:
        from populace.engine.display import table

        metrics = [c for c in self.metrics.columns if c not in ("scenario", "seed", "step")]
        rows = []
        for m in metrics:
            if self.metrics[m].dtype.is_numeric():
                d = self.difference(m, "final")
                rows += [
                    [m, r["scenario"], f"{r['mean']:.4g}", f"[{r['lo']:.4g}, {r['hi']:.4g}]"]
                    for r in d.iter_rows(named=True)
                ]
        title = (
            f"Study: {len(self.scenarios)} scenarios × {self.seeds} seeds (vs {self.baseline!r})"
        )
        return table(rows, ["metric", "scenario", "final diff (paired)", "90 % interval"], title)

    def summary(self, metric: str, level: float = 0.9) -> pl.DataFrame:
        """Per scenario and step: mean and central ``level`` interval over seeds."""
        lo, hi = (1 - level) / 2, (1 + level) / 2
        return (
            self.metrics.group_by("scenario", "step", maintain_order=True)
            .agg(
                pl.col(metric).mean().alias("mean"),
                pl.col(metric).quantile(lo, "linear").alias("lo"),
                pl.col(metric).quantile(hi, "linear").alias("hi"),
            )
            .sort("scenario", "step")
        )

    def outcome(self, metric: str, reduce: str = "final") -> pl.DataFrame:
        """One value per (scenario, seed), in the table's order: the metric's ``final``,
        ``peak``, ``peak_step`` (the first step at the peak) or ``sum`` over steps."""
        col = pl.col(metric)
        aggs = {
            "final": col.sort_by("step").last(),
            "peak": col.max(),
            "peak_step": pl.col("step").filter(col == col.max()).min(),  # the first of ties
            "sum": col.sum(),
        }
        if reduce not in aggs:
            raise ValueError(f"unknown reduce {reduce!r}; valid: {list(aggs)}")
        groups = self.metrics.group_by("scenario", "seed", maintain_order=True)
        return groups.agg(aggs[reduce].alias(metric))

    def difference(
        self, metric: str, reduce: str = "final", level: float = 0.9, paired: bool = True
    ) -> pl.DataFrame:
        """Scenario − baseline of an outcome, with a ``level`` interval over seeds, one row per
        scenario other than the baseline.

        Paired (default) compares seed k with seed k of the baseline (common random numbers);
        unpaired compares with a different seed of the baseline (shifted by one), for contrast.
        """
        out = self.outcome(metric, reduce)
        base = out.filter(pl.col("scenario") == self.baseline).select(
            pl.col("seed"), pl.col(metric).alias("base")
        )
        if not paired:
            base = base.with_columns(((pl.col("seed") + 1) % self.seeds).alias("seed"))
        lo, hi = (1 - level) / 2, (1 + level) / 2
        diff = (pl.col(metric) - pl.col("base")).cast(pl.Float64)
        return (
            out.filter(pl.col("scenario") != self.baseline)
            .join(base, on="seed")
            .with_columns(diff.alias("diff"))
            .group_by("scenario", maintain_order=True)
            .agg(
                pl.col("diff").mean().alias("mean"),
                pl.col("diff").std().alias("std"),
                pl.col("diff").quantile(lo, "linear").alias("lo"),
                pl.col("diff").quantile(hi, "linear").alias("hi"),
            )
            .sort("scenario")
        )

    def save(self, path: str | Path) -> Path:
        """Write the metrics table as parquet (atomically: a failure leaves no partial file)."""
        import io

        from populace.engine import storage

        buffer = io.BytesIO()
        self.metrics.write_parquet(buffer)
        return storage.write_file(path, [buffer.getbuffer()])


def study(
    model: Model,
    scenarios: Sequence[Scenario],
    *,
    steps: int,
    seeds: int = 8,
    seed: int = 0,
    baseline: str = "baseline",
    **sim_options: Any,
) -> StudyResult:
    """Run the baseline and every scenario for ``seeds`` seeds each, as one batched simulation.

    Args:
        model: the model; its params are the baseline.
        scenarios: counterfactuals (their names must be unique and not ``baseline``).
        steps: steps to run.
        seeds: seeds per scenario (common to all scenarios).
        seed: run seed from which member stream seeds derive.
        sim_options: passed to :class:`~populace.engine.simulation.Simulation`.
    """
    names = [baseline] + [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise ValueError(f"scenario names must be unique (baseline is {baseline!r}): {names}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
    fixed = sorted({"members", "seeds", "params", "triggers"} & set(sim_options))
    if fixed:
        raise ValueError(
            f"study: {fixed} are set by the study (members = scenarios x seeds); leave them out"
        )
    all_scenarios = [Scenario(baseline), *scenarios]
    per = [apply_all(model.params, sc.interventions, model.data) for sc in all_scenarios]
    params = stack_params(per, seeds, model.data)
    members = len(all_scenarios) * seeds
    triggers = []
    for s, sc in enumerate(all_scenarios):
        mask = torch.zeros(members, dtype=torch.bool)
        mask[s * seeds : (s + 1) * seeds] = True
        triggers += [dataclasses.replace(t, members=mask) for t in sc.triggers]
    stream_seeds = [member_seed(seed, k) for _ in all_scenarios for k in range(seeds)]
    sim = Simulation(model, seeds=stream_seeds, params=params, triggers=triggers, **sim_options)
    result = sim.run(steps)
    frame = result.metrics.with_columns(
        (pl.col("member") // seeds)
        .replace_strict(dict(enumerate(names)), return_dtype=pl.String)
        .alias("scenario"),
        (pl.col("member") % seeds).alias("seed"),
    )
    cols = ["scenario", "seed", "step"] + [
        c for c in frame.columns if c not in ("member", "scenario", "seed", "step")
    ]
    return StudyResult(frame.select(cols), names, seeds, result)
