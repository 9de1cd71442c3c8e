"""Epidemic models side by side: populace vs starsim, covasim and LASER, one run, one record.

    python -m populace.benchmarks.epi_compare [--scenarios sir network_sir covid]
        [--sizes 10000 100000] [--repeats 3] [--modes 1 default] [--python .venv-peers/bin/python]
        [--populace-python .venv/bin/python] [--timeout 900] [--save benchmarks/results]

Every side of a scenario is a matched model of another framework (``benchmarks/peers/epi_*.py``)
and runs in a process of its own (:mod:`populace.benchmarks.peers.side`): time per step after
the warm-up steps, peak resident memory (``ru_maxrss``) and the outcome, the attack rate
(1 - never-infected / N) at the end. For each size, repeat r runs every side once with seed r,
the sides' order rotating with r, in each threading mode (``1``: one OpenMP/numba thread;
``default``: the libraries' own choice), so the sides share the machine's load. The peers need
their own venv (``make setup-peers``); ``--python`` points at it. The populace side runs with
``--populace-python`` (default: the interpreter running the comparison, so a checkout's own venv
measures that checkout's code).

A scenario is a list of :class:`Side` s with shared parameters; adding a matched model (for
instance SEIR with vaccination, once populace has vaccination) is one more :class:`Scenario` in
:data:`SCENARIOS`. ``matched`` scenarios are expected to agree on the mean attack rate within
``--tolerance`` (2 % of populace's); the others are the closest populace model to a peer's
default and their gap is reported, not judged.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from populace.benchmarks import harness
from populace.benchmarks.peers.side import MODES, spawn
from populace.engine.provenance import now, versions

RESULTS = Path(__file__).parent / "results"


@dataclasses.dataclass(frozen=True)
class Side:
    """One framework's model in a scenario.

    Attributes:
        framework: label in the tables (``populace``, ``starsim``, ...).
        target: ``"module:function"`` in ``benchmarks/peers``.
        params: keyword arguments beyond the common ones (agents, steps, warmup, seed) and the
            scenario's; a callable gets the agent count and returns them.
        graph: the side takes the scenario's graph file (keyword ``graph``).
    """

    framework: str
    target: str
    params: dict[str, Any] | Callable[[int], dict[str, Any]] = dataclasses.field(
        default_factory=dict
    )
    graph: bool = False

    @property
    def isolated(self) -> bool:
        """Peers run without populace's package imported (torch), populace with it."""
        return self.framework != "populace"


@dataclasses.dataclass(frozen=True)
class Scenario:
    """Matched models of one epidemic.

    Attributes:
        name: CLI name.
        steps: days simulated (the epidemic must be over: the record has the active fraction).
        warmup: steps timed apart (JIT compilation, caches).
        sides: the models; the first is populace, the reference of ratios and agreement.
        params: parameters every side gets (for example ``initial``).
        graph_degree: mean degree of the Erdős–Rényi graph written for the sides that take a
            graph file (``Side.graph``; None: no graph).
        matched: whether the attack rates should agree (see the module docstring).
        matching: what was matched, in words (goes into the record).
    """

    name: str
    steps: int
    warmup: int
    sides: tuple[Side, ...]
    params: dict[str, Any] | Callable[[int], dict[str, Any]]
    graph_degree: float | None = None
    matched: bool = True
    matching: str = ""

    def kwargs(self, side: Side, agents: int, seed: int) -> dict[str, Any]:
        own = side.params(agents) if callable(side.params) else side.params
        shared = self.params(agents) if callable(self.params) else self.params
        common = dict(agents=agents, steps=self.steps, warmup=self.warmup, seed=seed)
        return {**common, **shared, **own}


def initial(agents: int) -> int:
    """Initial infections: 0.1 % of the agents (covasim's default 20 of 20,000), at least 10."""
    return max(10, agents // 1000)


SIR_RATES = dict(beta=0.5, gamma=0.25)  # R0 = 2, 4 days infectious
NETWORK = dict(transmissibility=0.05, gamma=0.25)  # per-edge transmissibility 0.174
COVASIM = dict(transmissibility=0.016, gamma=1 / 8, sigma=1 / 3.5)
#: R0 3; half the agents vaccinated before the epidemic, all-or-nothing, efficacy 0.8
SEIR_VACCINATION = dict(beta=0.75, sigma=1 / 3, gamma=0.25, coverage=0.5, efficacy=0.8, leaky=False)

SCENARIOS: dict[str, Scenario] = {
    "sir": Scenario(
        "sir",
        steps=150,
        warmup=5,
        sides=(
            Side("populace", "epi_populace:sir"),
            Side("laser-generic", "epi_laser:sir"),
            Side("starsim", "epi_starsim:sir"),
        ),
        params=lambda n: {**SIR_RATES, "initial": initial(n)},
        matching=(
            "well-mixed SIR, beta 0.5/day, gamma 0.25/day (R0 2), dt 1 day, 0.1% seeded. "
            "populace sir and LASER: infection 1 - exp(-beta I/N) per day; starsim MixingPool "
            "(1 contact/day, beta probperday(0.5)): beta I/N per day. Infectious days "
            "Geometric(0.25) on every side (LASER: numba geometric timer; starsim: dur_inf = "
            "1 + Geometric, as starsim recovers before transmitting)"
        ),
    ),
    "network_sir": Scenario(
        "network_sir",
        steps=200,
        warmup=5,
        sides=(
            Side("populace", "epi_populace:network_sir", graph=True),
            Side("starsim", "epi_starsim:network_sir", graph=True),
        ),
        params=lambda n: {**NETWORK, "initial": initial(n)},
        graph_degree=10.0,
        matching=(
            "SIR on one static Erdős–Rényi graph of mean degree 10 (the same edge list on both "
            "sides), per-contact transmission 0.05/day (starsim probperday), recovery "
            "Geometric(0.25) days (starsim dur_inf = 1 + Geometric), 0.1% seeded"
        ),
    ),
    "seir_vaccination": Scenario(
        "seir_vaccination",
        steps=200,
        warmup=5,
        sides=(
            Side("populace", "epi_populace:seir_vaccination"),
            Side("starsim", "epi_starsim:seir_vaccination"),
        ),
        params=lambda n: {**SEIR_VACCINATION, "initial": initial(n)},
        matching=(
            "well-mixed SEIR, beta 0.75/day, exposed Geometric(1/3) and infectious "
            "Geometric(0.25) days (R0 3), 0.1% seeded; before the epidemic each agent is "
            "vaccinated with probability 0.5, all-or-nothing with efficacy 0.8. populace: the "
            "measles model without births (infection 1 - exp(-beta I/N), vaccine_draw < 0.8 "
            "protects); starsim: SEIR on a MixingPool (beta I/N), dur_exp = 1 + Geometric(1/3) "
            "(starsim turns agents infectious before that day's transmission), dur_inf = "
            "Geometric(0.25) (it recovers them before transmitting), simple_vx's rel_sus x 0 "
            "for a dose that takes. Theory: A = s + (1 - s)(1 - v e)(1 - exp(-R0 A)), 0.441"
        ),
    ),
    "covid": Scenario(
        "covid",
        steps=180,
        warmup=5,
        sides=(
            Side("populace", "epi_populace:network_sir", {**COVASIM, "seir": True}, graph=True),
            Side("covasim", "epi_starsim:covasim"),
        ),
        params=lambda n: {"initial": initial(n)},
        graph_degree=20.0,
        matched=False,
        matching=(
            "covasim 4 defaults (random population: static Poisson(20) contacts, beta 0.016 "
            "per contact-day, lognormal periods, overdispersed infectiousness, viral load, "
            "severity by age, waning immunity) vs populace network_sir SEIR on an Erdős–Rényi "
            "graph of degree 20: T = 0.016/day, latent Geometric(1/3.5) + 1 day (covasim "
            "exp2inf mean 4.5), infectious Geometric(1/8) days (covasim asym2rec/mild2rec mean "
            "8); approximate: populace has no overdispersion, viral load or severity branches"
        ),
    ),
}


def write_graph(agents: int, degree: float, seed: int, folder: Path) -> Path:
    """Save populace's Erdős–Rényi graph as an undirected edge list (``p1 < p2``, int32/64)."""
    import numpy as np
    import torch

    from populace.populations.graphs import erdos_renyi

    layer = erdos_renyi(agents, degree, seed)
    rows = torch.repeat_interleave(torch.arange(agents), layer.crow_indices().diff())
    cols = layer.col_indices()
    upper = rows < cols
    dtype = np.int32 if agents < 2**31 else np.int64
    path = folder / f"er-{agents}-k{degree:g}-s{seed}.npz"
    np.savez(path, p1=rows[upper].numpy().astype(dtype), p2=cols[upper].numpy().astype(dtype))
    return path


def run_scenario(
    scenario: Scenario,
    agents: int,
    repeats: int,
    modes: list[str],
    python: str,
    timeout: float | None,
    folder: Path,
    populace_python: str | None = None,
) -> list[dict[str, Any]]:
    """All runs of one scenario at one size, interleaved (see the module docstring)."""
    runs = []
    for r in range(repeats):
        graph = None
        if scenario.graph_degree is not None:
            graph = write_graph(agents, scenario.graph_degree, r, folder)
        order = (
            scenario.sides[r % len(scenario.sides) :] + scenario.sides[: r % len(scenario.sides)]
        )
        for mode in modes:
            for side in order:
                kwargs = scenario.kwargs(side, agents, seed=r)
                if side.graph:
                    kwargs["graph"] = str(graph)
                exe = python if side.isolated or populace_python is None else populace_python
                rec = spawn(side.target, kwargs, mode, exe, timeout, side.isolated)
                runs.append({**rec, "framework": side.framework, "mode": mode, "seed": r})
                print(_line(scenario.name, agents, runs[-1]), file=sys.stderr, flush=True)
        if graph is not None:
            graph.unlink()
    return runs


def summarise(
    scenario: Scenario, agents: int, runs: list[dict[str, Any]], tolerance: float
) -> dict[str, Any]:
    """Per side and mode: median s/step, peak memory, mean attack rate; ratios and agreement
    against populace (the first side)."""
    sides: dict[str, dict[str, Any]] = {}
    for side in scenario.sides:
        per_mode = {}
        for mode in sorted({r["mode"] for r in runs}):
            ok = [r for r in runs if r["framework"] == side.framework and r["mode"] == mode]
            good = [r for r in ok if r["status"] == "ok"]
            if not good:
                per_mode[mode] = {
                    "status": ok[0]["status"] if ok else "not run",
                    "reason": ok[0].get("reason", "") if ok else "",
                }
                continue
            rates = [r["outcomes"]["attack_rate"] for r in good]
            per_mode[mode] = {
                "status": "ok",
                "runs": len(good),
                "s_per_step": statistics.median(r["s_per_step"] for r in good),
                "peak_rss_bytes": max(r["peak_rss_bytes"] for r in good),
                "attack_rate": statistics.fmean(rates),
                "attack_rate_se": statistics.stdev(rates) / len(rates) ** 0.5
                if len(rates) > 1
                else None,
                "active": max(r["outcomes"]["active"] for r in good),
                "threads": good[0]["threads"],
                "version": good[0]["version"],
            }
        sides[side.framework] = per_mode
    ref = scenario.sides[0].framework
    for framework, per_mode in sides.items():
        for mode, s in per_mode.items():
            base = sides[ref].get(mode, {})
            if framework == ref or s["status"] != "ok" or base.get("status") != "ok":
                continue
            s["populace_speedup"] = s["s_per_step"] / base["s_per_step"]
            s["memory_ratio"] = s["peak_rss_bytes"] / base["peak_rss_bytes"]
            gap = (s["attack_rate"] - base["attack_rate"]) / base["attack_rate"]
            s["attack_rate_gap"] = gap
            ses = [x["attack_rate_se"] for x in (s, base)]
            s["attack_rate_gap_se"] = (
                (ses[0] ** 2 + ses[1] ** 2) ** 0.5 / base["attack_rate"]
                if None not in ses
                else None
            )
            s["agree"] = abs(gap) <= tolerance if scenario.matched else None
    return {
        "scenario": scenario.name,
        "agents": agents,
        "steps": scenario.steps,
        "warmup": scenario.warmup,
        "matched": scenario.matched,
        "matching": scenario.matching,
        "sides": sides,
    }


def compare(
    names: list[str],
    sizes: list[int],
    repeats: int = 3,
    modes: list[str] | None = None,
    python: str = sys.executable,
    timeout: float | None = None,
    tolerance: float = 0.02,
    scenarios: dict[str, Scenario] | None = None,
    populace_python: str | None = None,
) -> dict[str, Any]:
    """Run the scenarios at every size; returns the JSON record (``cases`` and ``runs``).
    ``populace_python`` runs the populace sides (None: ``python``, as the peers)."""
    table = SCENARIOS if scenarios is None else scenarios
    unknown = sorted(set(names) - set(table))
    if unknown:
        raise KeyError(f"unknown scenario(s) {unknown}; valid: {', '.join(table)}")
    modes = list(MODES) if modes is None else modes
    bad = sorted(set(modes) - set(MODES))
    if bad:
        raise ValueError(f"unknown threading mode(s) {bad}; valid: {', '.join(MODES)}")
    if repeats < 1 or any(n < 1 for n in sizes):
        raise ValueError(f"repeats and sizes must be >= 1, got {repeats}, {sizes}")
    load_before = os.getloadavg()
    cases, runs = [], []
    with tempfile.TemporaryDirectory(prefix="epi-graphs-") as tmp:
        for agents in sizes:
            for name in names:
                scenario = table[name]
                got = run_scenario(
                    scenario, agents, repeats, modes, python, timeout, Path(tmp), populace_python
                )
                runs += [{"scenario": name, "agents": agents, **r} for r in got]
                cases.append(summarise(scenario, agents, got, tolerance))
    return {
        "name": "epi_compare",
        "device": "cpu",
        "device_name": _cpu_name(),
        "cores": os.cpu_count(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "versions": versions(),
        "python": python,
        "populace_python": populace_python or python,
        "repeats": repeats,
        "modes": modes,
        "tolerance": tolerance,
        "date": now(),
        "cases": cases,
        "runs": runs,
    }


def _cpu_name() -> str:
    import torch

    from populace.engine.provenance import device_name

    return device_name(torch.device("cpu"))


def _line(name: str, agents: int, run: dict[str, Any]) -> str:
    who = f"{run['framework']:<14} threads={run['mode']:<7} seed={run['seed']}"
    head = f"{name:<12} {agents:>9,} {who}"
    if run["status"] != "ok":
        return f"{head} {run['status']}: {run['reason']}"
    return (
        f"{head} {run['s_per_step'] * 1e3:9.3f} ms/step  "
        f"{run['peak_rss_bytes'] / 2**20:7.0f} MiB  attack {run['outcomes']['attack_rate']:.4f}"
    )


def save(record: dict[str, Any], folder: str | Path = RESULTS) -> Path:
    """Write ``folder/epi_compare-cpu-<date>.json``."""
    return harness.save(record, folder)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m populace.benchmarks.epi_compare")
    p.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    p.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--python", default=sys.executable, help="interpreter of the peers venv")
    p.add_argument(
        "--populace-python", default=sys.executable, help="interpreter of the populace sides"
    )
    p.add_argument("--timeout", type=float, default=None, help="seconds per side run")
    p.add_argument("--tolerance", type=float, default=0.02, help="attack-rate agreement")
    p.add_argument("--save", metavar="DIR", help="write the JSON record into DIR")
    args = p.parse_args(argv)
    record = compare(
        args.scenarios,
        args.sizes,
        args.repeats,
        args.modes,
        args.python,
        args.timeout,
        args.tolerance,
        populace_python=args.populace_python,
    )
    record["command"] = "python -m populace.benchmarks.epi_compare " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    if args.save:
        print(f"saved {save(record, args.save)}", file=sys.stderr)
    print(json.dumps({k: v for k, v in record.items() if k != "runs"}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
