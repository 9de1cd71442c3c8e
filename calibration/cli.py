"""``populace calibrate``: fit a zoo model's params to one column of a user's CSV."""

from __future__ import annotations

import argparse
import contextlib

import torch

from populace.calibration.baseline import nelder_mead
from populace.calibration.data import read_series
from populace.calibration.fit import Free, Problem, fit_adam
from populace.calibration.report import error_table, params_table, plot_fit, write_report
from populace.engine import storage

#: models whose transitions carry gradients (Adam); the others use Nelder-Mead.
DIFFERENTIABLE = ("covid_nyc_seir",)
#: default metric per model (else "I").
DEFAULT_METRIC = {"covid_nyc_seir": "cases"}
DEFAULT_PARAMS = {"covid_nyc_seir": "beta,initial", "network_sir": "transmissibility"}
#: parameters that are probabilities: fitted inside (0, 1).
PROBABILITIES = ("gamma", "sigma", "initial", "transmissibility", "travel")
MIN_ROWS = 3


def add_parser(sub) -> None:
    p = sub.add_parser(
        "calibrate",
        help="fit a model's params to a CSV column; last stdout line is JSON",
    )
    p.add_argument("model", help="model name (see `populace models`)")
    p.add_argument("--data", required=True, help="CSV file")
    p.add_argument("--target", required=True, help="column of observed values")
    p.add_argument("--metric", help="model metric to match (default: cases or I)")
    p.add_argument("--date-column", help="sort rows by this date column")
    p.add_argument("--population", type=_positive_int, default=1000, help="agents")
    p.add_argument("--params", help="comma-separated params to fit (default per model)")
    p.add_argument("--steps-per-row", type=_positive_int, default=1)
    p.add_argument(
        "--epochs",
        type=_positive_int,
        default=30,
        help="Adam epochs; Nelder-Mead: simulator runs (at least one more than the params)",
    )
    p.add_argument("--members", type=_positive_int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--loss", default="mse_log1p", help="mse_log1p | poisson | negbin")
    p.add_argument("--multiplier", type=float, default=1.0, help="model metric x this = data (> 0)")
    p.add_argument("--method", choices=("auto", "adam", "nelder_mead"), default="auto")
    p.add_argument("--lr", type=float, default=0.1, help="Adam learning rate (> 0)")
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
        help="fit the NYC first wave per borough and forecast July 2020; last stdout line is JSON",
    )
    p.add_argument("--agents", type=_positive_int, default=2000, help="synthetic NYC agents")
    p.add_argument("--members", type=_positive_int, default=2)
    p.add_argument("--epochs", type=_positive_int, default=100)
    p.add_argument(
        "--lr", type=float, default=0.05, help="Adam learning rate of the fitted parameters"
    )
    p.add_argument(
        "--network-lr",
        type=float,
        help="--beta neural: Adam learning rate of the calibrator network (default: LR / 5)",
    )
    p.add_argument(
        "--beta",
        choices=("borough", "city", "neural"),
        default="borough",
        help="weekly rate per borough, city-wide, or from the neural calibrator",
    )
    p.add_argument("--seeds", default="0,1,2", help="member seeds, one fit each (intervals)")
    p.add_argument("--period", type=_positive_int, default=7, help="days per rate piece")
    p.add_argument("--days", type=_positive_int, help="fit only the first DAYS days")
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
    from populace.cli import CLIError

    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise CLIError(f"--seeds: expected comma-separated integers, got {args.seeds!r}") from None
    staged = _report_folder(args, "covid_nyc_seir")
    with staged if staged is not None else contextlib.nullcontext() as tmp:
        record = calibrate_nyc(
            agents=args.agents,
            members=args.members,
            epochs=args.epochs,
            lr=args.lr,
            beta=args.beta,
            seeds=seeds,
            period=args.period,
            days=args.days,
            out=tmp,
            network_lr=args.network_lr,
        )
    if args.out is not None:
        print(f"wrote the report to {args.out}")
    summary = record.get("nd_intervals") or record["nd"]
    print(storage.dumps({"epochs_per_s": record["epochs_per_s"], "nd": summary}))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def cmd_calibrate(args: argparse.Namespace) -> None:
    """Fit, report, and print ``{"params", "loss", "nd"}`` as the last stdout line.

    ``nd`` is null when the target column is all zero (ND = sum|pred - obs| / sum|obs| is
    undefined); the fit itself still runs.
    """
    from populace.cli import CLIError, build_model

    staged = _report_folder(args, args.model)  # refused before any work
    observed, labels = read_series(args.data, args.target, args.date_column, MIN_ROWS)
    model = build_model(args.model, args.population, args.settings)
    metric = args.metric or DEFAULT_METRIC.get(args.model, "I")
    names = (args.params or DEFAULT_PARAMS.get(args.model, "beta")).split(",")
    free = []
    for name in (n.strip() for n in names):
        if name not in model.params.names():
            raise CLIError(
                f"--params: model {args.model!r} has no parameter {name!r}; valid: "
                f"{', '.join(model.params.names())}"
            )
        init = float(getattr(model.params, name))
        free.append(Free(name, init, upper=1.0 if name in PROBABILITIES else None))
    problem = Problem(
        model,
        {metric: observed},
        free,
        loss=args.loss,
        steps_per_row=args.steps_per_row,
        members=args.members,
        seed=args.seed,
        multiplier=args.multiplier,
    )
    method = args.method
    if method == "auto":
        method = "adam" if args.model in DIFFERENTIABLE else "nelder_mead"
    if method == "adam":
        fit = fit_adam(problem, epochs=args.epochs, lr=args.lr)
    else:
        fit = nelder_mead(problem, evaluations=max(args.epochs, len(free) + 1))
    with torch.no_grad():
        preds, _ = problem.predict(problem.split(fit.theta))
    errors = error_table(preds, {metric: observed}, "fit")
    nd = errors["nd"][0]  # None (JSON null) for an all-zero target column: ND is undefined
    record = {
        "model": args.model,
        "data": str(args.data),
        "target": args.target,
        "metric": metric,
        "method": fit.method,
        "params": fit.values,
        "loss": fit.loss,
        "nd": nd,
        "epochs": args.epochs if fit.method == "adam" else None,
        "evaluations": fit.evaluations,
        "seconds": fit.seconds,
        "rows": len(labels),
    }
    if staged is not None:
        with staged as out:
            write_report(out, {"params": params_table([fit]), "errors": errors}, record)
            title = f"{args.model} vs {args.target}"
            plot_fit({metric: observed}, preds, out / "fit.png", title=title)
        print(f"wrote the report to {args.out}")
    print(storage.dumps({"params": fit.values, "loss": fit.loss, "nd": nd}))
