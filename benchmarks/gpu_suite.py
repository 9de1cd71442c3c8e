"""The GPU suite: one command, about 10 minutes on one GPU, one JSON record.

    python -m populace.benchmarks.gpu_suite [--save DIR] [--only NAME ...]
    python -m populace.benchmarks.gpu_suite --tiny --device cpu     # what the tests run

Entries (full size):

- ``circles_1m``: FLAME GPU 2's circles benchmark, 1 M agents (zoo model ``circles``);
- ``vicsek_10m``: Vicsek, 10 M particles (``vicsek``);
- ``ants_10m``: ants, 10 M agents on a 4096 x 4096 world (``ants``);
- ``contagion_8m4_x20``: network SIR, 8.4 M agents, Erdős–Rényi mean degree 20
  (``network_sir``);
- ``nyc_epidemic_day``: one simulated day of a network SIR on the synthetic New York City
  population (8.33 M agents, household/school/work/community layers);
- ``vicsek_largest``: the largest Vicsek population that fits, doubling from 10 M particles
  until the GPU runs out of memory (or ``--largest-cap``).

``--tiny`` runs every entry at a tiny size with the same code, so the suite cannot rot. Zoo
models are looked up by name through :func:`populace.models.module`; an entry whose model is
not in :data:`populace.models.ZOO` (circles and vicsek before issue #4 is merged) is skipped
with the reason printed and recorded. Each entry times ``steps`` steps after one untimed
warm-up step (Triton compilation happens there); building the model and its initial state is
timed apart as ``setup_seconds``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from populace import models
from populace.benchmarks.harness import peak_memory_bytes, sync
from populace.engine import Model, Simulation
from populace.engine.context import resolve_device
from populace.engine.provenance import device_name, now, versions

RESULTS = Path(__file__).parent / "results"


class Missing(Exception):
    """An entry's model is not in this checkout's zoo."""


def zoo(name: str, **kwargs: Any) -> Callable[[torch.device], Model]:
    """A builder of zoo model ``name`` (looked up when the entry runs)."""

    def make(device: torch.device) -> Model:
        if name not in models.ZOO:
            raise Missing(f"model {name!r} is not in populace.models.ZOO of this checkout")
        return models.module(name).build(**kwargs)

    return make


def nyc_epidemic(scale: float) -> Callable[[torch.device], Model]:
    """Network SIR on the synthetic NYC population at ``scale`` (1.0: 8.33 M agents)."""

    def make(device: torch.device) -> Model:
        import warnings

        from populace.populations.nyc import nyc

        with warnings.catch_warnings():  # the borough-marginal rescaling note is known
            warnings.simplefilter("ignore")
            # built on CPU (the tested path, ~1 min at full scale); network_sir moves the
            # layers to the run's device once, at its first step
            pop = nyc(scale=scale, seed=0, homes=False)
        return models.module("network_sir").build(
            agents=pop.n, graph=pop.layers, initial_infected=max(pop.n // 10_000, 1)
        )

    return make


@dataclasses.dataclass(frozen=True)
class Entry:
    """One benchmark: full and tiny builders with their step counts."""

    name: str
    full: Callable[[torch.device], Model]
    tiny: Callable[[torch.device], Model]
    steps: int
    tiny_steps: int = 2


ENTRIES = (
    Entry("circles_1m", zoo("circles", agents=1_000_000), zoo("circles", agents=300), 50),
    Entry("vicsek_10m", zoo("vicsek", agents=10_000_000), zoo("vicsek", agents=300), 50),
    Entry(
        "ants_10m",
        zoo("ants", agents=10_000_000, world=4096),
        zoo("ants", agents=200, world=48),
        50,
    ),
    Entry(
        "contagion_8m4_x20",
        zoo("network_sir", agents=8_400_000, degree=20.0, initial_infected=840),
        zoo("network_sir", agents=2_000, degree=20.0),
        50,
    ),
    Entry("nyc_epidemic_day", nyc_epidemic(1.0), nyc_epidemic(0.001), 1, 1),
)


def time_model(
    make: Callable[[torch.device], Model], steps: int, device: torch.device
) -> dict[str, Any]:
    """Build, warm up one step, then time ``steps`` steps of one member."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    model = make(device)
    sim = Simulation(model, device=device, progress=False, record_every=max(steps, 1))
    sync(device)
    setup = time.perf_counter() - start
    sim.run(1)
    sync(device)
    result = sim.run(steps)
    return {
        "status": "ok",
        "model": model.name,
        "agents": model.agents,
        "options": {k: v for k, v in model.options.items() if isinstance(v, (int, float, str))},
        "steps": steps,
        "setup_seconds": setup,
        "seconds": result.seconds,
        "ms_per_step": 1e3 * result.seconds / steps,
        "agent_steps_per_s": model.agents * steps / result.seconds,
        "peak_memory_bytes": peak_memory_bytes(device),
        "final": result.final(),
    }


def run_entry(entry: Entry, tiny: bool, device: torch.device) -> dict[str, Any]:
    make, steps = (entry.tiny, entry.tiny_steps) if tiny else (entry.full, entry.steps)
    try:
        return {"name": entry.name, **time_model(make, steps, device)}
    except Missing as err:
        return {"name": entry.name, "status": "skipped", "reason": str(err)}
    except torch.cuda.OutOfMemoryError as err:
        torch.cuda.empty_cache()
        return {"name": entry.name, "status": "out of memory", "reason": str(err).splitlines()[0]}


def largest_vicsek(
    start: int, cap: int, device: torch.device, steps: int = 2, budget_s: float = 240.0
) -> dict[str, Any]:
    """Double the Vicsek population from ``start`` until out of memory, ``cap`` or the budget.

    Returns the largest size that ran (with its timing) and why the search stopped.
    """
    name = "vicsek_largest"
    if "vicsek" not in models.ZOO:
        reason = "model 'vicsek' is not in populace.models.ZOO of this checkout"
        return {"name": name, "status": "skipped", "reason": reason}
    best, agents, began = None, start, time.perf_counter()
    stop = f"reached --largest-cap={cap:,}"
    while agents <= cap:
        try:
            best = time_model(zoo("vicsek", agents=agents), steps, device)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            stop = f"out of memory at {agents:,} particles"
            break
        if time.perf_counter() - began > budget_s:
            stop = f"time budget {budget_s:g} s spent"
            break
        agents *= 2
    if best is None:
        return {"name": name, "status": "out of memory", "reason": stop}
    return {"name": name, **best, "stopped_because": stop}


def suite(
    tiny: bool = False,
    device: str = "auto",
    only: list[str] | None = None,
    largest_cap: int | None = None,
) -> dict[str, Any]:
    """Run the suite (entries in ``only``, default all); returns the JSON record."""
    dev = resolve_device(device)
    names = [e.name for e in ENTRIES] + ["vicsek_largest"]
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise KeyError(f"unknown entries {unknown}; valid: {', '.join(names)}")
    out = []
    for entry in ENTRIES:
        if only and entry.name not in only:
            continue
        out.append(run_entry(entry, tiny, dev))
        print(_line(out[-1]), file=sys.stderr, flush=True)
    if not only or "vicsek_largest" in only:
        cap = largest_cap or (1_200 if tiny else 2_560_000_000)
        out.append(largest_vicsek(300 if tiny else 10_000_000, cap, dev))
        print(_line(out[-1]), file=sys.stderr, flush=True)
    return {
        "name": "gpu_suite",
        "tiny": tiny,
        "device": dev.type,
        "device_name": device_name(dev),
        "versions": versions(),
        "date": now(),
        "entries": out,
    }


def _line(rec: dict[str, Any]) -> str:
    if rec["status"] != "ok":
        return f"{rec['name']:<20} {rec['status']}: {rec['reason']}"
    return (
        f"{rec['name']:<20} {rec['agents']:>13,} agents  {rec['ms_per_step']:10.3f} ms/step  "
        f"{rec['agent_steps_per_s']:.3g} agent-steps/s  setup {rec['setup_seconds']:.1f} s"
    )


def save(record: dict[str, Any], folder: str | Path = RESULTS) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = record["date"].replace(":", "").replace("-", "")
    kind = "gpu_suite-tiny" if record["tiny"] else "gpu_suite"
    path = folder / f"{kind}-{record['device']}-{stamp}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m populace.benchmarks.gpu_suite")
    p.add_argument("--tiny", action="store_true", help="every entry at a tiny size (tests)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run these entries only")
    p.add_argument("--largest-cap", type=int, help="stop the Vicsek doubling at this size")
    p.add_argument("--save", metavar="DIR", help="write the JSON record into DIR")
    args = p.parse_args(argv)
    record = suite(args.tiny, args.device, args.only, args.largest_cap)
    record["command"] = "python -m populace.benchmarks.gpu_suite " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    if args.save:
        print(f"saved {save(record, args.save)}", file=sys.stderr)
    print(json.dumps(record))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
