"""``populace calibrate`` (a model's params fitted to columns of a user's CSV) and
``populace calibrate-nyc`` (the NYC study); each prints one JSON object as its last stdout line.

Bounds of the fitted params come from the model's declarations; by default a model with an
``estimator`` build option is built differentiable (``straight_through``) and one with an
``initial_infected`` option gets ``initial_infected=None``, so its ``initial`` probability is a
param, fitted with the others.

Under torchrun (``torchrun --nproc-per-node N -m populace calibrate ...``) the members of every
evaluation are split over the ranks and every rank makes the same fit; rank 0 alone checks
``--out``, writes the report and prints, the others wait for it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import math

import torch

from populace.calibration.data import read_series
from populace.calibration.fit import CalibrationError, Free, Problem
from populace.calibration.nyc import DAMPING, HOLDS, WEIGHT
from populace.calibration.observation import Series
from populace.calibration.optimize import METHODS, differentiable, multistart
from populace.calibration.posterior import Ensemble
from populace.calibration.report import error_table, params_table, plot_fit, write_report
from populace.engine import distributed, storage

#: default metric and fitted params of the zoo's epidemic models (others: I; beta).
DEFAULT_METRIC = {"covid_nyc_seir": "cases", "covid_behavior": "I"}
DEFAULT_PARAMS = {
    "sir": "beta,gamma,initial",
    "network_sir": "transmissibility,gamma,initial",
    "metapop": "beta,gamma,initial",
    "covid_nyc_seir": "beta,gamma,initial",
    "covid_behavior": "beta,gamma",
}
MIN_ROWS = 3


def add_parser(sub) -> None:
    p = sub.add_parser(
        "calibrate",
        help="fit a model's params to CSV columns; last stdout line is JSON",
    )
    p.add_argument("model", help="model name (see `populace models`)")
    p.add_argument("--data", required=True, help="CSV file")
    p.add_argument("--target", required=True, help="column(s) of observed values, comma-separated")
    p.add_argument("--metric", help="model metric(s) to match, one per target (default per model)")
    p.add_argument("--date-column", help="sort rows by this date column")
    p.add_argument("--start", help="first date of the fit window (with --date-column)")
    p.add_argument("--end", help="last date of the fit window (with --date-column)")
    p.add_argument("--population", type=_positive_int, default=1000, help="agents")
    p.add_argument("--params", help="comma-separated params to fit (default per model)")
    p.add_argument(
        "--per-label",
        default="",
        help="params along an axis (e.g. initial per borough) to fit per label; others get "
        "one value for all labels",
    )
    p.add_argument("--steps-per-row", type=_positive_int, default=1)
    p.add_argument("--members", type=_positive_int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--seeds",
        help="member seeds, one fit each (an ensemble: credible intervals); default --seed",
    )
    p.add_argument("--starts", type=_positive_int, default=3, help="starting points per fit")
    p.add_argument("--loss", default="negbin", help="negbin | poisson | mse_log1p")
    p.add_argument("--multiplier", type=float, default=1.0, help="model metric x this = data (> 0)")
    p.add_argument("--method", choices=METHODS, default="auto")
    p.add_argument("--lr", type=float, default=0.1, help="Adam learning rate (> 0)")
    p.add_argument("--rtol", type=float, help="relative-improvement tolerance of convergence")
    p.add_argument(
        "--max-iterations",
        "--epochs",
        dest="max_iterations",
        type=_positive_int,
        help="cap (epochs or evaluations; --epochs is the old name)",
    )
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a build option or fixed parameter of the model; repeatable",
    )
    add_out_options(p)
    p.set_defaults(fn=cmd_calibrate)
    add_nyc_parser(sub)


def add_nyc_parser(sub) -> None:
    p = sub.add_parser(
        "calibrate-nyc",
        help="fit NYC's first wave per borough, then rolling forecasts; last stdout line is JSON",
    )
    p.add_argument("--agents", type=_positive_int, default=83_000, help="synthetic NYC agents")
    p.add_argument("--members", type=_positive_int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--passes", type=_positive_int, default=2, help="filter/observation rounds")
    p.add_argument(
        "--anchors",
        type=comma_names,
        default="",
        help="ratios the first-wave ascertainment is re-anchored on: fatality,hospitalised",
    )
    p.add_argument(
        "--rolling-anchors",
        type=comma_names,
        default="",
        help="ratios re-anchoring the ascertainment after the first wave, at each origin",
    )
    p.add_argument(
        "--nowcast-rows",
        type=_positive_int,
        default=None,
        help="hold the rate nowcast on the next week's incomplete window of at least N rows",
    )
    p.add_argument(
        "--hold",
        choices=HOLDS,
        default=HOLDS[0],
        help="what forecasts hold after the last filtered week: the reproduction number "
        "(the rate times the susceptible fraction) or the rate",
    )
    p.add_argument(
        "--held-weeks",
        type=_positive_int,
        default=2,
        help="filtered weeks whose rates (reproduction numbers) the held one averages",
    )
    p.add_argument(
        "--rolling-lag",
        type=int,
        default=None,
        help="days from a week's infections to the cases the rolling filter matches it on "
        "(default: the first wave's fitted infection-to-report lag)",
    )
    p.add_argument(
        "--member-spread",
        type=_spread,
        default=None,
        help="factor on the members' deviations from their mean in the forecasts "
        "(default: sqrt(agents / residents), the city's demographic noise)",
    )
    p.add_argument(
        "--damping",
        type=_damping,
        default=DAMPING,
        help="per week, the factor on the forecasts' log growth from the last week's level "
        "(1: none)",
    )
    p.add_argument(
        "--model-weight",
        type=_weight,
        default=WEIGHT,
        help="the model's weight in the forecasts' log-linear pool with persistence "
        "(1: the model alone)",
    )
    p.add_argument("--fit-end", default="2020-06-30", help="last day of the first-wave fit")
    p.add_argument("--origins", type=int, default=9, help="rolling forecast origins (0: none)")
    p.add_argument("--first-origin", default="2020-07-01", help="first forecast origin")
    add_out_options(p)
    p.set_defaults(fn=cmd_calibrate_nyc)


def add_out_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="folder for the report (tables, plot, calibration.json)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out if it holds a populace output"
    )


def _report_folder(args: argparse.Namespace, model: str):
    """The staged report folder of ``--out`` (refused now if unusable), or None."""
    if args.out is None:
        return None
    storage.check_target(storage.output_path(args.out, "--out"), args.overwrite)
    info = {"model": model}
    return storage.staged_folder(args.out, kind="calibration", overwrite=args.overwrite, info=info)


def cmd_calibrate_nyc(args: argparse.Namespace) -> None:
    from populace.calibration.nyc import calibrate_nyc

    staged = _report_folder(args, "covid_nyc_seir")
    with staged if staged is not None else contextlib.nullcontext() as tmp:
        record = calibrate_nyc(
            agents=args.agents,
            members=args.members,
            seed=args.seed,
            passes=args.passes,
            origins=args.origins,
            first_origin=args.first_origin,
            fit_end=args.fit_end,
            anchors=args.anchors,
            rolling_anchors=args.rolling_anchors,
            nowcast_rows=args.nowcast_rows,
            held=args.hold,
            held_weeks=args.held_weeks,
            rolling_lag=args.rolling_lag,
            spread=args.member_spread,
            damping=args.damping,
            weight=args.model_weight,
            out=tmp,
        )
    if args.out is not None:
        print(f"wrote the report to {args.out}")
    keys = ("params", "nd", "nd_by_borough", "converged", "forecast_relative_mae")
    last = {k: record.get(k) for k in keys}
    last |= {
        "forecast_relative_mae_log_linear": record.get("forecast_relative_mae_log_linear"),
        "forecast_origins": record.get("forecast_origins", []),
        "agents": record["agents"],
    }
    print(storage.dumps(last))


def comma_names(text: str) -> tuple[str, ...]:
    """A comma-separated list of names ('' for none)."""
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _number(text: str, ok, expected: str) -> float:
    """``text`` as a finite float that ``ok`` accepts, else an argparse error naming
    ``expected``."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and ok(value)):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def _spread(text: str) -> float:
    return _number(text, lambda v: v >= 0, "a finite number >= 0")


def _damping(text: str) -> float:
    return _number(text, lambda v: 0 < v <= 1, "a number in (0, 1]")


def _weight(text: str) -> float:
    return _number(text, lambda v: 0 <= v <= 1, "a number in [0, 1]")


def calibration_model(name: str, agents: int, settings: list[str]):
    """The model for a fit (as :func:`populace.cli.build_model` builds it), with ``estimator``
    = ``straight_through`` and ``initial_infected`` = None where the build has those options and
    ``settings`` do not set them."""
    from populace import models
    from populace.cli import CLIError, split_settings

    try:
        build = models.builder(name)
    except KeyError as err:
        raise CLIError(err.args[0]) from None
    opts, params = split_settings(name, settings)
    models.check_options(name, opts)
    valid = models.options(name)
    if "estimator" in valid and "estimator" not in opts:
        opts["estimator"] = "straight_through"
    if "initial_infected" in valid and "initial_infected" not in opts:
        opts["initial_infected"] = None
    if "agents" in valid:
        opts["agents"] = agents
    model = build(**opts)
    unknown = sorted(set(params) - set(model.params.names()))
    if unknown:
        raise CLIError(
            f"unknown setting {unknown[0]!r} for model {name!r}; parameters: "
            f"{', '.join(model.params.names())}; options: {', '.join(valid)}"
        )
    return model.with_params(**params) if params else model


def _window(labels: list[str], start: str | None, end: str | None, date_column) -> slice:
    """Rows of the fit window ``start..end`` (ISO dates) among the data's date ``labels``."""
    if start is None and end is None:
        return slice(None)
    if date_column is None:
        raise CalibrationError("--start/--end need --date-column")
    dates = [dt.date.fromisoformat(t) for t in labels]
    try:
        lo = dates[0] if start is None else dt.date.fromisoformat(start)
        hi = dates[-1] if end is None else dt.date.fromisoformat(end)
    except ValueError:
        raise CalibrationError(
            f"--start/--end must be YYYY-MM-DD, got {start!r}, {end!r}"
        ) from None
    if lo < dates[0] or hi > dates[-1] or hi < lo:
        raise CalibrationError(
            f"fit window {lo}..{hi} lies outside the data ({dates[0]}..{dates[-1]})"
        )
    rows = [i for i, d in enumerate(dates) if lo <= d <= hi]
    return slice(rows[0], rows[-1] + 1)


def cmd_calibrate(args: argparse.Namespace) -> None:
    """Fit, report, and print ``{"params", "loss", "nd", "converged", ...}`` as the last stdout
    line (``nd`` null where a target column is all zero: it is undefined)."""
    from populace.cli import CLIError

    comm = distributed.current()  # under torchrun: rank 0 alone checks --out, writes, prints
    if comm is None:
        staged = _report_folder(args, args.model)  # refused before any work
    else:
        staged = comm.on_rank0(
            lambda: _report_folder(args, args.model), f"checking --out {args.out}"
        )
    targets = [t.strip() for t in args.target.split(",")]
    observed_cols, labels = {}, None
    for col in targets:
        values, labels = read_series(args.data, col, args.date_column, MIN_ROWS)
        observed_cols[col] = values
    window = _window(labels, args.start, args.end, args.date_column)
    observed_cols = {c: v[window] for c, v in observed_cols.items()}
    model = calibration_model(args.model, args.population, args.settings)
    metrics = (args.metric or DEFAULT_METRIC.get(args.model, "I")).split(",")
    if len(metrics) == 1 and len(targets) > 1:
        raise CLIError(f"--metric: give one metric per target ({len(targets)} targets)")
    if len(metrics) != len(targets):
        raise CLIError(f"--metric: {len(metrics)} metric(s) for {len(targets)} target(s)")
    series = {c: Series(m.strip()) for c, m in zip(targets, metrics, strict=True)}
    names = [n.strip() for n in (args.params or DEFAULT_PARAMS.get(args.model, "beta")).split(",")]
    for name in names:
        if name not in model.params.names():
            raise CLIError(
                f"--params: model {args.model!r} has no parameter {name!r}; valid: "
                f"{', '.join(model.params.names())}"
            )
    per_label = {n.strip() for n in args.per_label.split(",") if n.strip()}
    unknown = sorted(per_label - set(names))
    if unknown:
        raise CLIError(f"--per-label: {unknown} are not among the fitted params {names}")
    problem = Problem(
        model,
        observed_cols,
        [Free(n, shared=n not in per_label) for n in names],
        series=series,
        loss=args.loss,
        steps_per_row=args.steps_per_row,
        members=args.members,
        seed=args.seed,
        multiplier=args.multiplier,
    )
    method = args.method
    if method == "auto":
        method = "adam" if differentiable(problem) else "nelder_mead"
    options = _method_options(method, args)
    try:
        seeds = [args.seed] if args.seeds is None else [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise CLIError(f"--seeds: expected comma-separated integers, got {args.seeds!r}") from None
    fits = []
    for seed in seeds:
        p = dataclasses.replace(problem, seed=seed)
        runs = multistart(p, method, **options)
        runs[0].seed = seed
        fits.append(runs[0])
    ensemble = Ensemble(problem, fits)
    fit = ensemble.best
    best = dataclasses.replace(problem, seed=fit.seed)
    with torch.no_grad():
        preds, _ = best.predict(best.split(fit.theta.to(best.dtype)))
    errors = error_table(preds, best.observed, "fit")
    nds = errors["nd"].to_list()
    nd = None if any(v is None for v in nds) else sum(nds) / len(nds)
    converged = all(f.converged for f in fits)
    record = {
        "model": args.model,
        "data": str(args.data),
        "target": targets,
        "metric": metrics,
        "method": fit.method,
        "params": fit.values,
        "loss": fit.loss,
        "nd": nd,
        "nd_by_series": dict(zip(errors["series"].to_list(), nds, strict=True)),
        "converged": converged,
        "convergence": [f.convergence() for f in fits],
        "evaluations": sum(f.evaluations for f in fits),
        "seconds": sum(f.seconds for f in fits),
        "seeds": seeds,
        "rows": len(next(iter(observed_cols.values()))),
    }
    tables = {"params": params_table(fits), "errors": errors}
    if len(fits) > 1:
        iv = ensemble.intervals()
        tables["param_intervals"] = iv
        record["intervals"] = iv.to_dicts()
    if staged is not None:
        with staged as out:
            write_report(out, tables, record)
            title = f"{args.model} vs {args.target}"
            plot_fit(best.observed, preds, out / "fit.png", title=title)
        print(f"wrote the report to {args.out}")
    if comm is not None:
        comm.barrier("the end of the calibration")  # no rank reports success before rank 0 wrote
        if comm.rank != 0:
            return
    print(
        storage.dumps(
            {
                "params": fit.values,
                "loss": fit.loss,
                "nd": nd,
                "converged": converged,
                "method": fit.method,
                "iterations": fit.iterations,
                "hit_cap": fit.hit_cap,
            }
        )
    )


def _method_options(method: str, args: argparse.Namespace) -> dict:
    """Starts, tolerance, cap and learning rate of ``method``."""
    from populace.calibration.fit import check_lr

    out: dict = {"starts": args.starts}
    if args.rtol is not None:
        out["rtol"] = args.rtol
    if method == "adam":
        check_lr(args.lr)
        out["lr"] = args.lr
        if args.max_iterations:
            out["max_epochs"] = args.max_iterations
    elif args.max_iterations:
        out["max_evaluations"] = args.max_iterations
    return out
