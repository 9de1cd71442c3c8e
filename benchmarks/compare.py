"""The ABM framework comparison suite: populace, our Mesa 3 peers and Mesa's official examples
side by side; with ``--epi-sizes``, the epidemic peers (starsim, covasim, LASER) in the same run.

    python -m populace.benchmarks.compare [--sizes small large] [--models flocking ...]
        [--device auto] [--mesa-limit 120] [--mesa-max-agents 1000000] [--no-official]
        [--epi-sizes 10000 100000 --epi-python .venv-peers/bin/python] [--save DIR]

For each suite model and size, times ``steps`` steps of the populace zoo model (after one
untimed warm-up step) and of its Mesa peer (``benchmarks/peers``) built with the same sizes and
parameters, and reports seconds per step of each and their ratio (Mesa / populace: how many
times faster populace is on this machine). Both run in this process, one after the other, so
the ratio is measured side by side. The populace run repeats (same seed) until a second of steps
is timed and its median counts (``repeats`` in the record): a small model's 100 steps take
milliseconds, the length of a scheduler's slice on a busy machine. Mesa stops being practical
at the scaled-up sizes: a Mesa run stops after ``--mesa-limit`` seconds (its time per step is
then taken over the steps it finished, and the record says so), and Mesa is not built at all
above ``--mesa-max-agents`` agents (the record gives the reason). The suite's outcome
statistics (Schelling similarity, ForestFire burnt fraction, ...) of both sides go into the
record as well.

Mesa's official example of a suite model (``mesa.examples``: Schelling, WolfSheep, boid
flockers, Boltzmann wealth; ``benchmarks/peers/mesa_official.py`` says how each is mapped onto
the suite's sizes) runs as a third side, in a process of its own
(:func:`populace.benchmarks.peers.side.spawn`), under the same ``--mesa-limit``; its ratio is
its time per step over populace's.

A suite model missing from ``populace.models.ZOO`` (Boltzmann until the zoo has ``boltzmann``)
is reported as missing with the reason, and only its Mesa sides run. A suite model without a
peer of ours (Boltzmann: the official example is the peer) reports its Mesa peer as not run.

``--epi-sizes`` also runs :mod:`populace.benchmarks.epi_compare` (every epidemic scenario, each
side in its own process) and puts its record under ``epidemic``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from populace import models
from populace.benchmarks import harness
from populace.benchmarks.peers.side import spawn
from populace.engine.context import resolve_device
from populace.engine.provenance import device_name, now, versions

RESULTS = Path(__file__).parent / "results"


@dataclasses.dataclass(frozen=True)
class SuiteModel:
    """One model of the suite.

    Attributes:
        model: populace zoo name.
        peer: class name in ``benchmarks/peers/<module>`` (None: no peer of ours).
        steps: steps per run (the suite's).
        sizes: size label → keyword arguments shared by ``build`` (options and params) and the
            Mesa peer's constructor.
        outcomes: statistics reported by both sides (populace metric = Mesa method name).
        official: function of ``benchmarks/peers/mesa_official.py`` running Mesa's official
            example at a size (None: Mesa ships no such example).
    """

    model: str
    peer: str | None
    steps: int
    sizes: dict[str, dict[str, Any]]
    outcomes: tuple[str, ...]
    official: str | None = None


#: The suite. "small"/"large" follow the suite's declared large specs (see the issue) and a
#: quarter-area small case; "x100"/"x10000" multiply the agents at constant density.
SUITE: dict[str, SuiteModel] = {
    "flocking": SuiteModel(
        "boids",
        "Flocking",
        100,
        {
            "small": dict(agents=300, extent=100.0, visual_distance=5.0),
            "large": dict(agents=300, extent=100.0, visual_distance=15.0),
            "x100": dict(agents=30_000, extent=1_000.0, visual_distance=5.0),
            "x10000": dict(agents=3_000_000, extent=10_000.0, visual_distance=5.0),
        },
        ("order",),
        official="flocking",
    ),
    "schelling": SuiteModel(
        "schelling",
        "Schelling",
        20,
        {
            "small": dict(agents=2_000, width=50, radius=2, min_similar=8),
            "large": dict(agents=8_000, width=100, radius=2, min_similar=8),
            "x100": dict(agents=800_000, width=1_000, radius=2, min_similar=8),
            "x10000": dict(agents=80_000_000, width=10_000, radius=2, min_similar=8),
        },
        ("similarity", "happy"),
        official="schelling",
    ),
    "wolfsheep": SuiteModel(
        "wolfsheep",
        "WolfSheep",
        100,
        {
            "small": dict(agents=150, width=30, regrowth=10),
            "large": dict(agents=1_500, width=100, regrowth=10),
            "x100": dict(agents=150_000, width=1_000, regrowth=10),
            "x10000": dict(agents=15_000_000, width=10_000, regrowth=10),
        },
        ("sheep", "wolves"),
        official="wolfsheep",
    ),
    "forestfire": SuiteModel(
        "forestfire",
        "ForestFire",
        100,
        {
            "small": dict(agents=10_000, density=0.9),
            "large": dict(agents=250_000, density=0.9),
            "x100": dict(agents=25_000_000, density=0.9),
            "x10000": dict(agents=2_500_000_000, density=0.9),
        },
        ("burnt_fraction",),
    ),
    # Mesa's official Boltzmann wealth example is the peer; small = its defaults, large = 10,000
    # agents at its density of one per cell. The populace side runs once the zoo has `boltzmann`
    # (options width, height; metric gini).
    "boltzmann": SuiteModel(
        "boltzmann",
        None,
        100,
        {
            "small": dict(agents=100, width=10, height=10),
            "large": dict(agents=10_000, width=100, height=100),
            "x100": dict(agents=1_000_000, width=1_000, height=1_000),
            "x10000": dict(agents=100_000_000, width=10_000, height=10_000),
        },
        ("gini",),
        official="boltzmann",
    ),
}


#: the populace side repeats its run until this many seconds of steps are timed, and reports
#: the median: 100 steps of a small model take ~20 ms, within the scheduler's noise on a busy
#: machine, while the Mesa side's one run takes seconds
MIN_SECONDS = 1.0
MAX_REPEATS = 25


def run_populace(
    suite: SuiteModel, size: dict[str, Any], steps: int, device: torch.device, seed: int
) -> dict[str, Any]:
    """Time the populace side (the median of repeated runs, see :data:`MIN_SECONDS`); a model
    missing from the zoo gives ``status: missing``."""
    if suite.model not in models.ZOO:
        return {
            "status": "missing",
            "reason": f"model {suite.model!r} is not in populace.models.ZOO of this checkout",
        }
    params_names = set(models.module(suite.model).PARAMS.names())
    options = {k: v for k, v in size.items() if k != "agents" and k not in params_names}
    params = {k: float(v) for k, v in size.items() if k in params_names}
    runs: list[float] = []
    try:
        while not runs or (sum(runs) < MIN_SECONDS and len(runs) < MAX_REPEATS):
            rec = harness.bench_model(
                suite.model,
                agents=size["agents"],
                steps=steps,
                device=str(device),
                seed=seed,
                warmup=1,
                options=options,
                params=params,
            )
            runs.append(rec["seconds"])
    except torch.cuda.OutOfMemoryError as err:
        torch.cuda.empty_cache()
        return {"status": "out of memory", "reason": str(err).splitlines()[0]}
    seconds = statistics.median(runs)
    return {
        "status": "ok",
        "seconds": seconds,
        "steps": steps,
        "repeats": runs,
        "s_per_step": seconds / steps,
        "peak_memory_bytes": rec["peak_memory_bytes"],
        "outcomes": {k: rec["final"][k] for k in suite.outcomes},
    }


def _too_many(size: dict[str, Any], max_agents: int) -> dict[str, Any]:
    return {
        "status": "not run",
        "reason": f"{size['agents']:,} agents is above --mesa-max-agents={max_agents:,}",
    }


def run_mesa(
    suite: SuiteModel, size: dict[str, Any], steps: int, seed: int, limit: float, max_agents: int
) -> dict[str, Any]:
    """Time the Mesa peer, stopping after ``limit`` seconds of steps."""
    if suite.peer is None:
        return {"status": "not run", "reason": "no Mesa peer of ours: the official example is"}
    if size["agents"] > max_agents:
        return _too_many(size, max_agents)
    try:
        from populace.benchmarks.peers import peer
    except ImportError as err:  # pragma: no cover - depends on the environment
        return {"status": "not run", "reason": f"mesa does not import ({err}); pip install mesa"}
    cls = getattr(peer(suite.model), suite.peer)
    start = time.perf_counter()
    model = cls(**size, seed=seed)
    setup = time.perf_counter() - start
    done, start = 0, time.perf_counter()
    while done < steps:
        model.step()
        done += 1
        if time.perf_counter() - start > limit:
            break
    seconds = time.perf_counter() - start
    out = {
        "status": "ok" if done == steps else "stopped",
        "setup_seconds": setup,
        "seconds": seconds,
        "steps": done,
        "s_per_step": seconds / done,
        "outcomes": {k: getattr(model, k)() for k in suite.outcomes} if done == steps else {},
    }
    if done < steps:
        out["reason"] = f"stopped after {done} of {steps} steps (--mesa-limit={limit:g} s)"
    return out


def run_official(
    suite: SuiteModel, size: dict[str, Any], steps: int, seed: int, limit: float, max_agents: int
) -> dict[str, Any]:
    """Time Mesa's official example in a child process (same limits as our peer)."""
    if suite.official is None:
        return {"status": "not run", "reason": "Mesa ships no official example of this model"}
    if size["agents"] > max_agents:
        return _too_many(size, max_agents)
    kwargs = {**size, "steps": steps, "seed": seed, "limit": limit}
    return spawn(f"mesa_official:{suite.official}", kwargs, mode="1", timeout=20 * limit + 600)


def compare(
    names: list[str],
    sizes: list[str],
    device: str = "auto",
    seed: int = 0,
    mesa_limit: float = 120.0,
    mesa_max_agents: int = 1_000_000,
    steps: int | None = None,
    overrides: dict[str, dict[str, dict[str, Any]]] | None = None,
    official: bool = True,
) -> dict[str, Any]:
    """Run the suite; returns the JSON record (``cases``: one per model and size).
    ``official``: also time Mesa's official examples.

    ``steps`` replaces each model's step count; ``overrides[name][size]`` replaces the size's
    arguments (the tests use both to run the suite at tiny sizes).
    """
    dev = resolve_device(device)
    unknown = sorted(set(names) - set(SUITE))
    if unknown:
        raise KeyError(f"unknown suite model(s) {unknown}; valid: {', '.join(SUITE)}")
    cases = []
    for name in names:
        suite = SUITE[name]
        for label in sizes:
            size = (overrides or {}).get(name, {}).get(label) or suite.sizes.get(label)
            if size is None:
                raise KeyError(f"unknown size {label!r}; valid: {', '.join(suite.sizes)}")
            n = steps or suite.steps
            ours = run_populace(suite, size, n, dev, seed)
            theirs = run_mesa(suite, size, n, seed, mesa_limit, mesa_max_agents)
            if official:
                shipped = run_official(suite, size, n, seed, mesa_limit, mesa_max_agents)
            else:
                shipped = {"status": "not run", "reason": "--no-official"}
            ok = ours["status"] == "ok" and theirs["status"] in ("ok", "stopped")
            ok_official = ours["status"] == "ok" and shipped["status"] in ("ok", "stopped")
            cases.append(
                {
                    "suite": name,
                    "size": label,
                    "model": suite.model,
                    "arguments": size,
                    "agents": size["agents"],
                    "steps": n,
                    "populace": ours,
                    "mesa": theirs,
                    "mesa_official": shipped,
                    "ratio": theirs["s_per_step"] / ours["s_per_step"] if ok else None,
                    "official_ratio": shipped["s_per_step"] / ours["s_per_step"]
                    if ok_official
                    else None,
                }
            )
            print(_line(cases[-1]), file=sys.stderr, flush=True)
    try:
        mesa_version = metadata.version("mesa")
    except metadata.PackageNotFoundError:
        mesa_version = None
    return {
        "name": "compare",
        "device": dev.type,
        "device_name": device_name(dev),
        "threads": torch.get_num_threads(),
        "versions": {**versions(), "mesa": mesa_version},
        "date": now(),
        "cases": cases,
    }


def _line(case: dict[str, Any]) -> str:
    def side(rec: dict[str, Any]) -> str:
        if "s_per_step" in rec:
            return f"{rec['s_per_step'] * 1e3:.3g} ms/step ({rec['status']})"
        return f"{rec['status']}: {rec['reason']}"

    ratio = f"x{case['ratio']:.3g}" if case["ratio"] else "no ratio"
    return (
        f"{case['suite']:<10} {case['size']:<6} populace {side(case['populace'])}; "
        f"mesa {side(case['mesa'])}; {ratio}; official {side(case['mesa_official'])}"
    )


def save(record: dict[str, Any], folder: str | Path = RESULTS) -> Path:
    """Write ``folder/compare-<device>-<date>.json``."""
    return harness.save(record, folder)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m populace.benchmarks.compare")
    p.add_argument("--models", nargs="+", default=list(SUITE), choices=list(SUITE))
    p.add_argument("--sizes", nargs="+", default=["small", "large"])
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i] (populace side)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mesa-limit", type=float, default=120.0, help="seconds per Mesa run")
    p.add_argument("--mesa-max-agents", type=int, default=1_000_000)
    p.add_argument("--no-official", action="store_true", help="skip Mesa's official examples")
    p.add_argument("--epi-sizes", nargs="+", type=int, help="also run the epidemic peers")
    p.add_argument("--epi-repeats", type=int, default=3)
    p.add_argument("--epi-python", default=sys.executable, help="interpreter of the peers venv")
    p.add_argument("--save", metavar="DIR", help="write the JSON record into DIR")
    args = p.parse_args(argv)
    record = compare(
        args.models,
        args.sizes,
        args.device,
        args.seed,
        args.mesa_limit,
        args.mesa_max_agents,
        official=not args.no_official,
    )
    if args.epi_sizes:
        from populace.benchmarks import epi_compare

        epi = epi_compare.compare(
            list(epi_compare.SCENARIOS), args.epi_sizes, args.epi_repeats, python=args.epi_python
        )
        record["epidemic"] = epi
    record["command"] = "python -m populace.benchmarks.compare " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    if args.save:
        print(f"saved {save(record, args.save)}", file=sys.stderr)
    print(json.dumps(record))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
