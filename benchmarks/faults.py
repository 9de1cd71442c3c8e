"""A fault campaign against the project's files and writers, counted by outcome.

``python -m populace.benchmarks.faults [--save DIR]`` damages checkpoints and population
folders (truncations, byte flips, files swapped between two saves), and runs the CLI's writers
against bad targets, absurd sizes, non-finite results and Ctrl-C, then prints one JSON record:
how many cases ended in a clear error (naming the file or flag), a silent result (``silent``:
no error at all; ``silent_wrong``: and the data differ), an error that does not name the file
(``unnamed``), a traceback, a hang, or lost / half-written data. It uses only the public API,
so the same script measures an older checkout (``PYTHONPATH`` pointing at it).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

CAUGHT = (ValueError, KeyError, RuntimeError, FloatingPointError, OSError)  # the CLI's
HANG_S = 40


def _outcome(load, names: list[str], equal) -> str:
    try:
        value = load()
    except CAUGHT as err:
        text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        return "clear" if any(n in text for n in names) else "unnamed"
    except Exception:
        return "traceback"
    return "silent" if equal(value) else "silent_wrong"


def checkpoint_cases(root: Path) -> list[tuple[str, str]]:
    from populace.engine import Simulation
    from populace.models import sir

    model = sir.build(agents=300, initial_infected=10, beta=0.6, gamma=0.2)
    sim = Simulation(model, members=2, seed=3, device="cpu")
    sim.run(5)
    path = sim.save(root / "ck.pt")
    data = path.read_bytes()
    want = sim.run(5).final_state.status

    def equal(resumed):
        return resumed.step == 5 and torch.equal(resumed.run(5).final_state.status, want)

    def load():
        return Simulation.resume(path, model, device="cpu")

    out = []
    step = max(1, len(data) // 200)
    for i in range(0, len(data), step):
        flipped = bytearray(data)
        flipped[i] ^= 1 << (i % 8)
        path.write_bytes(bytes(flipped))
        out.append(("checkpoint flip", _outcome(load, [str(path)], equal)))
    for cut in range(0, len(data), max(1, len(data) // 50)):
        path.write_bytes(data[:cut])
        out.append(("checkpoint truncate", _outcome(load, [str(path)], equal)))
    return out


def population_cases(root: Path) -> list[tuple[str, str]]:
    from populace.populations import Population
    from populace.populations.graphs import erdos_renyi

    def population(seed: int, n: int = 400) -> Population:
        g = torch.Generator().manual_seed(seed)
        return Population(
            attributes={"age": torch.randint(0, 4, (n,), generator=g, dtype=torch.int8)},
            codebook={"age": ("0-17", "18-34", "35-64", "65+")},
            layers={"community": erdos_renyi(n, 4.0, seed=seed)},
            home=torch.rand(n, 2, generator=g, dtype=torch.float64),
            meta={"seed": seed},
        )

    a, b = population(1), population(2)
    a.save(root / "a")
    b.save(root / "b")

    def equal(p):
        return (
            torch.equal(p.attributes["age"], a.attributes["age"])
            and torch.equal(p.home, a.home)
            and torch.equal(p.layers["community"].values(), a.layers["community"].values())
            and torch.equal(
                p.layers["community"].col_indices(), a.layers["community"].col_indices()
            )
            and p.meta == a.meta
        )

    out = []
    for name in ("attributes.parquet", "tensors.safetensors", "meta.json"):
        path = root / "a" / name
        data = path.read_bytes()

        def load():
            return Population.load(root / "a")

        for i in range(0, len(data), max(1, len(data) // 30)):
            flipped = bytearray(data)
            flipped[i] ^= 1 << (i % 8)
            path.write_bytes(bytes(flipped))
            out.append((f"population flip {name}", _outcome(load, [name], equal)))
        for cut in sorted({1, len(data) // 4, len(data) // 2, len(data) - 1}):
            path.write_bytes(data[:cut])
            out.append((f"population truncate {name}", _outcome(load, [name], equal)))
        path.write_bytes((root / "b" / name).read_bytes())
        out.append((f"population swap {name}", _outcome(load, [name], equal)))
        path.write_bytes(data)
    return out


def _cli(argv: list[str], cwd: Path, interrupt_after: float | None = None) -> tuple[str, int, str]:
    """Run ``populace ARGV``: (``ok`` | ``hang``, exit status, stderr)."""
    child = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from populace.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", child, *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if interrupt_after is not None:
            time.sleep(interrupt_after)
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=HANG_S)
        return "ok", proc.returncode, err
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return "hang", -9, ""


def _refuse(token: str) -> None:
    raise ValueError(f"non-standard JSON token {token}")


def _hidden(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".") and p.is_dir()]


def writer_cases(root: Path) -> list[tuple[str, str]]:
    out = []

    def verdict(state, code, err, lost=False, silent=False):
        if state == "hang":
            return "hang"
        if "Traceback" in err:
            return "traceback"
        if lost:
            return "data_lost"
        if silent or code == 0:
            return "silent"
        last = err.strip().splitlines()[-1] if err.strip() else ""
        return "clear" if code == 2 and "error:" in last else "unnamed"  # argparse: usage first

    # --out '' is ignored (old) or refused
    for argv in (
        ["run", "sir", "--agents", "100", "--steps", "2"],
        ["population", "nyc", "--scale", "0.001", "--no-homes", "--layers", "household"],
    ):
        case = root / f"empty-{argv[0]}"
        case.mkdir()
        state, code, err = _cli([*argv, "--out", ""], case)
        out.append((f"{argv[0]} --out ''", verdict(state, code, err)))
    # a non-empty --out: a previous output (or the user's file) must survive
    csv = root / "data.csv"
    csv.write_text("count\n" + "\n".join(str(v) for v in [1, 2, 4, 7, 11, 15, 18, 17]) + "\n")
    for label, argv, keep in (
        (
            "population --out non-empty",
            ["population", "nyc", "--scale", "0.001", "--no-homes", "--layers", "household"],
            "meta.json",
        ),
        (
            "calibrate --out non-empty",
            ["calibrate", "sir", "--data", str(csv), "--target", "count", "--epochs", "3"],
            "params.csv",
        ),
        (
            "calibrate-nyc --out non-empty",
            ["calibrate-nyc", "--agents", "300", "--epochs", "1", "--days", "7", "--seeds", "0"],
            "params.csv",
        ),
    ):
        folder = root / f"nonempty-{argv[0]}"
        folder.mkdir()
        (folder / keep).write_text("the user's earlier result")
        state, code, err = _cli([*argv, "--out", str(folder)], root)
        lost = (folder / keep).read_text() != "the user's earlier result"
        out.append((label, verdict(state, code, err, lost=lost)))
    # non-finite results in JSON outputs
    folder = root / "nan-run"
    argv = ["run", "kuramoto", "--agents", "10", "--steps", "2", "--set", "dt=1e38"]
    state, code, err = _cli([*argv, "--out", str(folder)], root)
    try:
        json.loads((folder / "run.json").read_text(), parse_constant=_refuse)
        standard = True
    except (ValueError, OSError):
        standard = False
    out.append(("run.json with NaN results", "clear" if standard else "silent_wrong"))
    # absurd sizes
    for label, argv in (
        ("--members 1e9", ["run", "sir", "--agents", "10", "--members", "1000000000"]),
        ("--agents 1e12", ["run", "sir", "--agents", "1000000000000"]),
    ):
        state, code, err = _cli(argv, root)
        out.append((label, verdict(state, code, err)))
    big = root / "big.csv"
    big.write_text("count\n" + "1\n" * 1_000_000)
    argv = ["calibrate", "sir", "--data", str(big), "--target", "count", "--epochs", "2"]
    state, code, err = _cli(argv, root)
    out.append(("calibrate with 1e6 rows", verdict(state, code, err)))
    # Ctrl-C while writing
    folder = root / "interrupted"
    argv = ["run", "sir", "--agents", "20000", "--steps", "10000000", "--out", str(folder)]
    state, code, err = _cli(argv, root, interrupt_after=8.0)
    left = folder.exists() or bool([n for n in _hidden(root) if n.startswith(".interrupted")])
    label = "Ctrl-C during run --out"
    ok = code == 130 and err.strip().count("\n") == 0
    out.append((label, verdict(state, code, err, lost=left) if not ok else "clear"))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="populace.benchmarks.faults", description=__doc__)
    p.add_argument("--save", metavar="DIR", help="also write the JSON record into DIR")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for sub in ("ck", "pop", "cli"):
            (root / sub).mkdir()
        cases = checkpoint_cases(root / "ck") + population_cases(root / "pop")
        cases += writer_cases(root / "cli")
    totals = collections.Counter(outcome for _, outcome in cases)
    groups: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for label, outcome in cases:
        groups[label][outcome] += 1
    from populace.engine.provenance import now, versions

    record: dict[str, Any] = {
        "name": "faults",
        "device": "cpu",
        "date": now(),
        "command": "python -m populace.benchmarks.faults",
        "versions": versions(),
        "cases": len(cases),
        "outcomes": dict(totals),
        "by_case": {k: dict(v) for k, v in groups.items()},
    }
    if args.save:
        from populace.benchmarks import harness

        print(f"saved {harness.save(record, args.save)}", file=sys.stderr)
    print(json.dumps(record))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
