"""``populace population nyc --scale S --out DIR``: build, summarise and save a population."""

from __future__ import annotations

import argparse
import sys
import time

import polars as pl


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0 < value <= 1):
        raise argparse.ArgumentTypeError(f"--scale must be a number in (0, 1], got {text!r}")
    return value


def cmd_nyc(args: argparse.Namespace) -> None:
    from populace.engine import storage
    from populace.populations.nyc import LAYERS, nyc, summary

    if args.out is not None:  # refused before any work: '', a file, a non-empty folder
        storage.check_target(storage.output_path(args.out, "--out"), args.overwrite)
    layers = LAYERS if args.layers is None else tuple(x for x in args.layers.split(",") if x)
    t0 = time.perf_counter()
    population = nyc(
        scale=args.scale, seed=args.seed, layers=layers, homes=not args.no_homes, device=args.device
    )
    seconds = time.perf_counter() - t0
    tables = summary(population)
    with pl.Config(tbl_rows=20, tbl_hide_dataframe_shape=True):
        for name in ("borough", "age", "layers", "totals"):
            print(tables[name])
    if args.out is not None:
        t1 = time.perf_counter()
        folder = population.save(args.out, overwrite=args.overwrite)
        print(f"saved {folder} in {time.perf_counter() - t1:.2f} s", file=sys.stderr)
    record = {
        "agents": population.n,
        "edges": {r["layer"]: r["edges"] for r in tables["layers"].iter_rows(named=True)},
        "bytes_per_agent": round(population.nbytes() / max(population.n, 1), 1),
        "seconds": round(seconds, 3),
        "stages": population.meta["seconds"],
    }
    print(storage.dumps(record))


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``population`` (with the ``nyc`` builder) to the ``populace`` command."""
    population = subparsers.add_parser("population", help="build a synthetic population")
    which = population.add_subparsers(dest="region", required=True)
    nyc = which.add_parser("nyc", help="New York City (177 MODZCTA areas, ~8.33 M residents)")
    nyc.add_argument("--scale", type=_scale, default=0.01, help="fraction of residents")
    nyc.add_argument("--seed", type=int, default=0)
    nyc.add_argument(
        "--out", metavar="DIR", help="save the population (new or empty folder, see --overwrite)"
    )
    nyc.add_argument(
        "--overwrite", action="store_true", help="replace --out if it holds a populace output"
    )
    nyc.add_argument("--layers", help="comma-separated subset of household,school,work,community")
    nyc.add_argument("--no-homes", action="store_true", help="skip home points (no geo extra)")
    nyc.add_argument("--device", default="cpu")
    nyc.set_defaults(fn=cmd_nyc)
