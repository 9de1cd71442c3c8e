"""Lines of code of three small models written both ways (populace and Mesa 3), and a check that
both versions of each run and agree on a basic outcome.

Lines of code: non-blank lines that are not comments or docstrings, counted over the whole file
(imports, the model, and the small ``__main__`` run of each file).

    python benchmarks/loc/check.py                   # table + outcomes (about a minute on CPU)
    python benchmarks/loc/check.py --save benchmarks/results

Outcomes compared (mean over seeds, with its standard error): the final Gini of Boltzmann
wealth (100 agents, 10 x 10 grid, 100 steps), the attack rate of the SEIR (1,000 agents, beta
0.5, sigma 0.3, gamma 0.2, 200 steps) and the consensus time of the voter model (50 agents on a
random 4-regular graph; steps until everyone holds one opinion).
"""

from __future__ import annotations

import argparse
import ast
import datetime
import importlib.util
import io
import json
import platform
import statistics
import sys
import time
import tokenize
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
MODELS = ("boltzmann", "seir", "voter")


def lines_of_code(path: Path) -> int:
    """Non-blank lines of ``path`` holding code: comments and docstrings do not count."""
    source = path.read_text()
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    code: set[int] = set()
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in skip and tok.type != tokenize.ENDMARKER:
            code.update(range(tok.start[0], tok.end[0] + 1))
    return len(code - docstrings)


def load(name: str):
    """The module ``benchmarks/loc/<name>.py`` (these files are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"loc_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mean_se(values) -> tuple[float, float]:
    values = [float(v) for v in values]
    return statistics.mean(values), statistics.stdev(values) / len(values) ** 0.5


def consensus_steps(share: torch.Tensor, limit: int) -> torch.Tensor:
    """``[B]`` first step at which ``share`` (``[B, T]``, step 0 first) is 0 or 1; ``limit`` + 1
    for runs that never reach it."""
    done = (share == 0) | (share == 1)
    first = done.int().argmax(dim=1)
    return torch.where(done.any(dim=1), first, torch.full_like(first, limit + 1))


def mesa_runs(model_cls, seeds: int, steps: int, outcome, stop=None) -> list[float]:
    """``outcome(model, steps_run)`` of Mesa runs seeded 0..seeds-1, each run for ``steps``
    steps or until ``stop(model)``."""
    out = []
    for seed in range(seeds):
        model, ran = model_cls(seed=seed), 0
        while ran < steps and not (stop is not None and stop(model)):
            model.step()
            ran += 1
        out.append(outcome(model, ran))
    return out


def outcomes(seeds: int = 32, mesa_seeds: int = 32) -> dict[str, dict]:
    """Both versions of each model run side by side: outcome mean and standard error."""
    from populace.engine import Simulation

    out = {}
    pb, mb = load("populace_boltzmann"), load("mesa_boltzmann")
    gini = Simulation(pb.boltzmann(), members=seeds, seed=0).run(100).series("gini")[:, -1]
    theirs = mesa_runs(mb.Boltzmann, mesa_seeds, 100, lambda m, _: mb.gini(m))
    out["boltzmann"] = {"outcome": "final Gini", "populace": mean_se(gini), "mesa": mean_se(theirs)}

    ps, ms = load("populace_seir"), load("mesa_seir")
    attack = Simulation(ps.seir(), members=seeds, seed=0).run(200).series("R")[:, -1] / 1000
    theirs = mesa_runs(ms.SEIR, mesa_seeds, 200, lambda m, _: m.count("R") / 1000)
    out["seir"] = {"outcome": "attack rate", "populace": mean_se(attack), "mesa": mean_se(theirs)}

    pv, mv = load("populace_voter"), load("mesa_voter")
    limit = 300
    share = Simulation(pv.voter(), members=seeds, seed=0).run(limit).series("share")
    ours = consensus_steps(share, limit)
    theirs = mesa_runs(
        mv.VoterModel,
        mesa_seeds,
        limit,
        lambda m, step: step if mv.share(m) in (0, 1) else limit + 1,
        stop=lambda m: mv.share(m) in (0, 1),
    )
    out["voter"] = {"outcome": "consensus step", "populace": mean_se(ours), "mesa": mean_se(theirs)}
    return out


def counts() -> dict[str, dict[str, int]]:
    return {
        m: {side: lines_of_code(HERE / f"{side}_{m}.py") for side in ("populace", "mesa")}
        for m in MODELS
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=64, help="populace members per model")
    parser.add_argument("--mesa-seeds", type=int, default=64, help="Mesa runs per model")
    parser.add_argument("--save", type=Path, help="folder for a JSON record")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    record = {"lines_of_code": counts(), "outcomes": outcomes(args.seeds, args.mesa_seeds)}
    print(f"{'model':<10} {'populace':>8} {'mesa':>5}   outcome: populace | mesa (mean ± se)")
    for m in MODELS:
        n, o = record["lines_of_code"][m], record["outcomes"][m]
        (a, sa), (b, sb) = o["populace"], o["mesa"]
        print(
            f"{m:<10} {n['populace']:>8} {n['mesa']:>5}   {o['outcome']}: "
            f"{a:.3f} ± {sa:.3f} | {b:.3f} ± {sb:.3f}"
        )
    record |= {
        "device": "cpu",
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/loc/check.py", *(argv or sys.argv[1:])]),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%z")
        path = args.save / f"loc-cpu-{stamp}.json"
        path.write_text(json.dumps(record, indent=1))
        print(f"saved {path}")
    return record


if __name__ == "__main__":
    main()
