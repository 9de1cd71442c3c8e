"""NYC calibration floors: the first-wave fit (ND per borough) and rolling-origin forecasts.

    python -m populace.benchmarks.calibration_nyc --agents 83000 --origins 9

Runs :func:`populace.calibration.nyc.calibrate_nyc` (1 % population by default) and writes its
record, plus the command, machine, threads and date, to
``benchmarks/results/calibration-nyc-<device>-<date>.json`` (and the report tables into a folder
of the same name). The floors of issue 16: ND of the fit <= 0.25 citywide and <= 0.35 in every
borough; the mean relative MAE of the 4-week forecasts vs persistence < 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from populace.calibration.cli import comma_names
from populace.calibration.nyc import calibrate_nyc

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=83_000)
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument(
        "--anchors", type=comma_names, default="", help="first-wave anchor ratios, comma-separated"
    )
    parser.add_argument(
        "--rolling-anchors", type=comma_names, default="", help="anchor ratios after the wave"
    )
    parser.add_argument("--nowcast-rows", type=int, default=None)
    parser.add_argument("--origins", type=int, default=9)
    parser.add_argument("--max-updates", type=int, default=3, help="filter updates per week")
    parser.add_argument("--out", default=str(RESULTS), help="results folder ('' = do not write)")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    folder = Path(args.out) / f"calibration-nyc-cpu-{stamp}" if args.out else None
    record = calibrate_nyc(
        agents=args.agents,
        members=args.members,
        seed=args.seed,
        passes=args.passes,
        origins=args.origins,
        max_updates=args.max_updates,
        anchors=args.anchors,
        rolling_anchors=args.rolling_anchors,
        nowcast_rows=args.nowcast_rows,
        out=folder,
        log=lambda text: print(f"[{time.perf_counter() - began:7.0f} s] {text}", file=sys.stderr),
    )
    floors = {
        "nd_city_le_0.25": record["nd"] <= 0.25,
        "nd_every_borough_le_0.35": all(v <= 0.35 for v in record["nd_by_borough"].values()),
    }
    if "forecast_relative_mae" in record:
        floors["forecast_relative_mae_lt_1"] = record["forecast_relative_mae"] < 1.0
    record |= {
        "command": "python -m populace.benchmarks.calibration_nyc "
        + " ".join(argv or sys.argv[1:]),
        "threads": torch.get_num_threads(),
        "total_seconds": time.perf_counter() - began,
        "floors": floors,
    }
    if folder is not None:
        path = folder.with_suffix(".json")
        path.write_text(json.dumps(record, indent=2) + "\n")
        (folder / "calibration.json").write_text(json.dumps(record, indent=2) + "\n")
    print(
        json.dumps(
            {k: record[k] for k in ("nd", "nd_by_borough", "floors")}
            | {"forecast_relative_mae": record.get("forecast_relative_mae")}
        )
    )
    return record


if __name__ == "__main__":
    main()
