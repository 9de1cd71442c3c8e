"""The ``populace`` command line: ``models``, ``run``, ``bench``, ``demo``, ``population``,
``calibrate`` and ``calibrate-nyc``."""

from __future__ import annotations

import argparse
import ast
import importlib
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import torch

from populace import models
from populace.calibration import cli as calibration_cli
from populace.engine import Model
from populace.populations import cli as population_cli

#: sizes refused before any work (an ensemble larger than this cannot be built in memory)
MAX_AGENTS = 2**31 - 1
MAX_MEMBERS = 2**16
MAX_AGENT_SLOTS = 2**34  # agents x members of one run


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def int_at_least(flag: str, low: int, high: int | None = None):
    """argparse type: an integer >= ``low`` (and <= ``high``), with an error naming the flag."""
    what = "a positive integer" if low == 1 else f"an integer >= {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"{flag} must be {what}, got {text!r}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{flag} must be at most {high:,}, got {text!r}")
        return value

    return parse


def positive_int(flag: str, high: int | None = None):
    return int_at_least(flag, 1, high)


def non_negative_int(flag: str):
    return int_at_least(flag, 0)


def parse_value(text: str) -> Any:
    """A Python literal (number, bool, list) or nan/inf, else the text itself; lists become
    tensors. (A nan or inf then meets the parameter's own check, which names it.)"""
    if text.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"):
        return float(text)
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    if isinstance(value, (list, tuple)):
        return torch.tensor(value, dtype=torch.float64)
    return value


def split_settings(name: str, pairs: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--set`` pairs → (build options, params): a name of the build function's keyword
    arguments is an option, any other a parameter (checked by :func:`build_model`)."""
    opts, params = {}, {}
    valid_opts = set(models.options(name)) - {"agents"}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise CLIError(f"--set expects name=value, got {pair!r}")
        (opts if key in valid_opts else params)[key] = parse_value(text)
    return opts, params


def _unknown_settings(name: str, params: dict[str, Any], valid_params) -> None:
    unknown = sorted(set(params) - set(valid_params))
    if unknown:
        valid_opts = sorted(set(models.options(name)) - {"agents"})
        raise CLIError(
            f"unknown setting {unknown[0]!r} for model {name!r}; parameters: "
            f"{', '.join(sorted(valid_params))}; options: {', '.join(valid_opts)}"
        )


def build_model(name: str, agents: int, pairs: list[str]):
    """The model ``name`` (zoo name, FILE.py:FUNCTION or package.module:FUNCTION) built with
    ``agents`` and the ``--set`` options, its params replaced by the ``--set`` params."""
    try:
        build = models.builder(name)
    except KeyError as err:
        raise CLIError(err.args[0]) from None
    opts, params = split_settings(name, pairs)
    zoo = ":" not in name
    if zoo:  # the zoo declares its params: refuse a typo before building anything
        _unknown_settings(name, params, models.module(name).PARAMS.names())
    models.check_options(name, opts)
    if "agents" in models.options(name):
        opts["agents"] = agents
    model = build(**opts)
    if not isinstance(model, Model):
        raise CLIError(
            f"model {name!r}: the build function returned {type(model).__name__}, "
            f"not a populace Model"
        )
    _unknown_settings(name, params, model.params.names())
    return model.with_params(**params) if params else model


def add_run_options(p: argparse.ArgumentParser, steps_default: int) -> None:
    p.add_argument(
        "model",
        help="zoo name (see `populace models`), FILE.py:FUNCTION or package.module:FUNCTION; "
        "`populace run MODEL --help` lists its options and parameters",
    )
    p.add_argument("--agents", type=positive_int("--agents", MAX_AGENTS), default=10_000)
    p.add_argument("--steps", type=non_negative_int("--steps"), default=steps_default)
    p.add_argument("--seed", type=non_negative_int("--seed"), default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    p.add_argument(
        "--members",
        type=positive_int("--members", MAX_MEMBERS),
        default=1,
        help="ensemble members (independent seeds) run as one batch",
    )
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter or build option; repeatable",
    )
    p.add_argument(
        "--threads",
        type=positive_int("--threads"),
        help="CPU threads (default: the cores this process may use; sets POPULACE_THREADS)",
    )


#: ``--compile`` values -> Simulation's ``compile`` switch
COMPILE = {"auto": "auto", "on": True, "off": False}


def add_compile_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--compile",
        choices=tuple(COMPILE),
        default="auto",
        help="fuse the steps with torch.compile: on, off, or auto (where measured to win: "
        "the model's compile_on device types); a step that cannot be compiled runs eagerly "
        "with a warning",
    )


def cmd_models(args: argparse.Namespace) -> None:
    summaries = models.summaries()
    width = max(map(len, summaries))
    for name, summary in summaries.items():
        print(f"{name:<{width}}  {summary}")


def _comm():
    """The process group's collectives under torchrun (None in one process)."""
    from populace.engine import distributed

    return distributed.current()


def _shard(name: str) -> Any:
    if name == "slabs":
        from populace.engine.slabs import Slabs

        return Slabs()
    if name == "rows":
        from populace.engine.field_slabs import FieldRows

        return FieldRows()
    return name


def cmd_run(args: argparse.Namespace) -> None:
    from populace.engine import Simulation, storage
    from populace.engine.provenance import device_name, now, versions

    comm = _comm()  # under torchrun: rank 0 alone checks --out, writes and prints
    rank0 = comm is None or comm.rank == 0
    out = None
    if args.out is not None:  # refused before any work: '', a file, a non-empty folder

        def check():
            return storage.check_target(storage.output_path(args.out, "--out"), args.overwrite)

        out = check() if comm is None else comm.on_rank0(check, f"checking --out {args.out}")
    if args.agents * args.members > MAX_AGENT_SLOTS:
        raise CLIError(
            f"--agents {args.agents} x --members {args.members} = "
            f"{args.agents * args.members:.3g} agent slots; one run holds at most "
            f"{MAX_AGENT_SLOTS:.3g}"
        )
    model = build_model(args.model, args.agents, args.settings)
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    sim = Simulation(
        model,
        members=args.members,
        seed=args.seed,
        device=args.device,
        dtype=dtype,
        record_every=args.record_every,
        check_finite=args.check_finite,
        progress=None if not args.json and rank0 else False,
        distributed=None if comm is None else _shard(args.shard),
        compile=COMPILE[args.compile],
    )
    if out is None:
        result = sim.run(args.steps)
    else:
        info = {"model": model.name, "agents": args.agents, "members": args.members}
        with storage.staged_folder(out, kind="run", overwrite=args.overwrite, info=info) as tmp:
            result = sim.run(args.steps)
            record = {
                "model": model.name,
                "agents": args.agents,
                "steps": args.steps,
                "members": args.members,
                "seed": args.seed,
                "seeds": result.seeds,
                "options": dict(model.options),
                "params": sim.params.as_dict(),
                "device": sim.device.type,
                "device_name": device_name(sim.device),
                "dtype": args.dtype,
                "versions": versions(),
                "date": now(),
                "seconds": result.seconds,
                "final": result.final(),
                "compiled": {r.step: r.reason or "compiled" for r in sim.compile_report},
            }
            if comm is not None:
                record["world_size"], record["shard"] = comm.world, args.shard
            result.metrics.write_parquet(tmp / "metrics.parquet")
            (tmp / "run.json").write_text(storage.dumps(record, indent=2) + "\n")
    if comm is not None:
        comm.barrier("the end of the run")  # no rank reports success before rank 0 wrote
        if not rank0:
            return
    final = result.final()
    bad = storage.non_finite_paths(final)
    if bad:
        print(
            f"populace: warning: final metric(s) {', '.join(bad)} are NaN/Inf; JSON output "
            f'holds null for them and lists them under "non_finite" (--check-finite finds '
            f"the step)",
            file=sys.stderr,
        )
    if args.json:
        print(storage.dumps({**final, "seconds": result.seconds}))
    else:
        print(
            f"{model.name}: {args.agents} agents x {args.members} member(s), "
            f"{args.steps} steps on {sim.device.type} in {result.seconds:.3f} s"
        )
        for key, value in final.items():
            print(f"  {key:<12} {value:.6g}  (mean over members, step {args.steps})")
        if out is not None:
            print(f"  wrote {out}/metrics.parquet and {out}/run.json")


def cmd_verify(args: argparse.Namespace) -> None:
    from populace.engine import storage
    from populace.engine.simulation import CHECKPOINT_FORMAT

    path = Path(args.path)
    if path.is_file():
        data = storage.read_sealed(path, CHECKPOINT_FORMAT, "populace checkpoint or folder")
        print(f"{path}: intact checkpoint ({len(data)} bytes)")
    else:
        manifest = storage.verify_folder(path)
        print(f"{path}: intact {manifest['kind']} folder ({len(manifest['files'])} files)")


def cmd_bench(args: argparse.Namespace) -> None:
    from populace.benchmarks import KERNEL_BENCHES, harness

    if args.model == "llm":  # `populace bench llm`: the LLM backends, not a zoo model
        from populace.behaviors.llm.bench import bench_llm
        from populace.engine.context import resolve_device
        from populace.engine.provenance import device_name

        device = resolve_device(args.device)
        record = bench_llm(
            args.backend,
            archetypes=args.archetypes,
            samples=args.samples,
            max_tokens=args.max_tokens,
            rounds=args.rounds,
            model=args.llm_model,
            url=args.llm_url,
            device=str(device),
        )
        record["device_name"] = device_name(device)
        harness.emit(record, args.save)
        return
    try:
        models.builder(args.model)
    except KeyError as err:
        raise CLIError(f"{err.args[0]}; kernel benchmarks: {', '.join(KERNEL_BENCHES)}") from None
    model = build_model(args.model, args.agents, args.settings)
    record = harness.bench_model(
        model,
        steps=args.steps,
        members=args.members,
        device=args.device,
        seed=args.seed,
        warmup=args.warmup,
        compile=COMPILE[args.compile],
    )
    harness.emit(record, args.save)


def cmd_demo(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")  # a command line writes PNG files; no window
    from populace.demo import flagship
    from populace.engine.storage import dumps

    record = flagship(
        args.out,
        overwrite=args.overwrite,
        scale=args.scale,
        seeds=args.seeds,
        seed=args.seed,
        samples=args.samples,
        archetypes=tuple(args.archetypes.split(",")),
        popsize=args.popsize,
        generations=args.generations,
        behaviours=tuple(args.behaviours.split(",")),
        waves=tuple(args.waves.split(",")),
        cache=args.cache,
        fit_cache=False if args.no_fit_cache else args.fit_cache,
        device=args.device,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    print((Path(args.out) / "summary.md").read_text())
    print(f"report written to {Path(args.out).resolve()}/")
    print(dumps({k: record[k] for k in ("agents", "best", "seconds")}))


def cmd_view(args: argparse.Namespace) -> None:
    try:
        from populace.view import LiveRun
        from populace.view.server import serve
    except ImportError as err:
        raise CLIError(
            f"populace view needs the 'view' extra: pip install 'populace[view]' ({err})"
        ) from None
    model = build_model(args.model, args.agents, args.settings)
    options = {
        "members": args.members,
        "seed": args.seed,
        "device": args.device,
        "steps_per_frame": args.steps_per_frame,
        "until": args.steps or None,
    }
    LiveRun(model, **options).stop()  # a model that cannot start fails here, not in the page
    try:
        serve(
            model,
            host=args.host,
            port=args.port,
            announce=lambda url: print(f"populace view: {url}", flush=True),
            fps=args.fps,
            **options,
        )
    except KeyboardInterrupt:
        pass


def _positive_fps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"--fps must be a positive number, got {text!r}")
    return value


def add_view_parser(sub) -> None:
    view = sub.add_parser(
        "view",
        help="watch and steer a model live in the browser (play/pause/step/reset, sliders, "
        "live charts); prints the URL",
    )
    add_run_options(view, steps_default=0)
    view._option_string_actions["--steps"].help = "pause when the run reaches this step (0: never)"
    view.add_argument("--host", default="127.0.0.1", help="address to listen on")
    view.add_argument(
        "--port", type=positive_int("--port"), default=None, help="default: a free port"
    )
    view.add_argument("--steps-per-frame", type=positive_int("--steps-per-frame"), default=1)
    view.add_argument("--fps", type=_positive_fps, default=4.0, help="most frames drawn per second")
    view.set_defaults(fn=cmd_view)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="populace", description="agent-based models of populations")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list the model zoo").set_defaults(fn=cmd_models)

    run = sub.add_parser("run", help="run a model and record its metrics")
    add_run_options(run, steps_default=100)
    run.add_argument("--out", help="folder for metrics.parquet and run.json (new or empty)")
    run.add_argument(
        "--overwrite", action="store_true", help="replace --out if it holds a populace output"
    )
    run.add_argument(
        "--json",
        action="store_true",
        help="last stdout line: JSON of final metrics (mean over members) + seconds",
    )
    run.add_argument("--record-every", type=positive_int("--record-every"), default=1)
    run.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    run.add_argument(
        "--check-finite",
        action="store_true",
        help="stop at the first NaN/Inf, naming the step and field",
    )
    run.add_argument(
        "--shard",
        choices=("members", "agents", "slabs", "rows"),
        default="members",
        help="under torchrun: split the ensemble members (default), the agents of a model on "
        "contact layers, a swarm's box in slabs (vicsek_slabs) or a stigmergy field in rows "
        "(physarum_slabs) over the ranks",
    )
    add_compile_option(run)
    run.set_defaults(fn=cmd_run)

    bench = sub.add_parser(
        "bench",
        help="time a zoo model (or a kernel family: stigmergy, swarm, contagion); "
        "last stdout line is JSON",
    )
    add_run_options(bench, steps_default=100)
    bench.add_argument("--warmup", type=non_negative_int("--warmup"), default=2)
    bench.add_argument("--save", metavar="DIR", help="also write the JSON record into DIR")
    add_compile_option(bench)
    llm = bench.add_argument_group("bench llm", "options of `populace bench llm`")
    llm.add_argument("--backend", default="transformers", help="transformers | vllm | openai")
    llm.add_argument("--archetypes", type=positive_int("--archetypes"), default=8)
    llm.add_argument("--samples", type=positive_int("--samples"), default=1)
    llm.add_argument("--max-tokens", type=positive_int("--max-tokens"), default=4)
    llm.add_argument("--rounds", type=positive_int("--rounds"), default=2)
    llm.add_argument("--llm-model", default="", help="GGUF file / vllm model folder / served name")
    llm.add_argument("--llm-url", default="", help="OpenAI-compatible base URL (…/v1)")
    bench.set_defaults(fn=cmd_bench)
    demo = sub.add_parser(
        "demo",
        help="flagship: calibrated NYC epidemic, none/heuristic/LLM behaviour compared on data, "
        "targeted counterfactuals, report",
    )
    demo.add_argument("--out", default="report", help="report folder (must be new or empty)")
    demo.add_argument(
        "--overwrite", action="store_true", help="replace --out if it holds a populace output"
    )
    demo.add_argument(
        "--scale",
        type=float,
        default=None,
        help="fraction of NYC (default 0.01 on CPU, 1.0 on CUDA)",
    )
    demo.add_argument("--seeds", type=positive_int("--seeds"), default=2)
    demo.add_argument("--seed", type=non_negative_int("--seed"), default=0)
    demo.add_argument(
        "--samples", type=positive_int("--samples"), default=1, help="LLM answers per question"
    )
    demo.add_argument(
        "--archetypes",
        default="age_group,borough",
        help="attributes whose combinations are the LLM archetypes (age_group, age, borough, sex)",
    )
    demo.add_argument(
        "--behaviours", default="none,heuristic,llm", help="behaviour models to fit and compare"
    )
    demo.add_argument(
        "--waves",
        default="first",
        help="fit windows: first (2020-03..06; always run), autumn (2020-03..11 with waning "
        "immunity, forecasts from December: slower)",
    )
    demo.add_argument(
        "--popsize", type=positive_int("--popsize"), default=10, help="fit: candidates/generation"
    )
    demo.add_argument(
        "--generations", type=non_negative_int("--generations"), default=6, help="fit: CMA-ES"
    )
    demo.add_argument(
        "--cache", default=None, help="LLM answer cache file (default ~/.cache/populace/llm.sqlite)"
    )
    demo.add_argument(
        "--fit-cache", default=None, help="folder of cached fits (default: --cache's folder)"
    )
    demo.add_argument("--no-fit-cache", action="store_true", help="fit again, cache nothing")
    demo.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    demo.set_defaults(fn=cmd_demo)
    population_cli.add_parser(sub)
    calibration_cli.add_parser(sub)
    verify = sub.add_parser(
        "verify", help="check an output folder against its manifest, or a checkpoint's digest"
    )
    verify.add_argument("path", help="a folder written by populace, or a checkpoint file")
    verify.set_defaults(fn=cmd_verify)
    add_view_parser(sub)
    return p


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or SIGINT) while a command runs: staged outputs are removed on the way out."""


#: the signal whose Interrupted has not reached :func:`main` yet (at most one)
_pending: list[str] = []
#: seconds between raises of a pending Interrupted
RERAISE_EVERY = 0.5


def _on_signal(signum: int, frame: Any) -> None:
    """Raise Interrupted, and again every :data:`RERAISE_EVERY` s until :func:`main` catches it:
    an exception raised while a finalizer (``__del__``, e.g. llvmlite's during a numba
    compile) runs is printed and dropped by Python, and the command would run on."""
    name = signal.Signals(signum).name
    if not _pending:
        _pending.append(name)
        signal.setitimer(signal.ITIMER_REAL, RERAISE_EVERY, RERAISE_EVERY)
    raise Interrupted(name)


def _on_alarm(signum: int, frame: Any) -> None:
    if _pending and sys.exc_info()[1] is None:  # dropped, not on its way out through a handler
        raise Interrupted(_pending[0])


def _handlers() -> dict[int, Any]:
    """The handlers :func:`main` installs: SIGTERM, SIGALRM (the re-raise) and SIGINT where it
    is Python's default (a host that handles Ctrl-C itself, e.g. Jupyter, keeps its own)."""
    out = {signal.SIGTERM: _on_signal, signal.SIGALRM: _on_alarm}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        out[signal.SIGINT] = _on_signal
    return out


def main(argv: list[str] | None = None) -> int:
    """Run one command; user errors print one line (exit 2), Ctrl-C/SIGTERM one line (130/143)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, h) for s, h in _handlers().items()} if in_main_thread else {}
    try:
        return _main(argv)
    except KeyboardInterrupt as err:
        name = err.args[0] if isinstance(err, Interrupted) else "SIGINT"
        print(f"populace: interrupted ({name}); no output was written", file=sys.stderr)
        return 128 + signal.Signals[name].value
    finally:
        if in_main_thread:
            signal.setitimer(signal.ITIMER_REAL, 0)
            _pending.clear()
            for s, h in previous.items():
                signal.signal(s, h)


#: commands that run sharded under torchrun (calibrate: each evaluation's members split over
#: the ranks, the loss and gradient the whole ensemble's on every rank)
SHARDED_COMMANDS = ("run", "calibrate")


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _main(argv: list[str]) -> int:
    from populace.engine import distributed

    if distributed.launched() and argv and argv[0] in SHARDED_COMMANDS:
        try:  # torchrun: join the process group before any work
            distributed.init()
        except distributed.DistributedError as err:
            print(f"populace: error: {err}", file=sys.stderr)
            return 2
    elif distributed.launched() and argv and argv[0] not in ("models", "verify"):
        if _rank() == 0:
            print(
                f"populace: error: `populace {argv[0]}` does not run under torchrun; sharded "
                f"commands: {', '.join(SHARDED_COMMANDS)}",
                file=sys.stderr,
            )
        return 2
    if len(argv) >= 2 and argv[0] == "bench":
        from populace.benchmarks import KERNEL_BENCHES

        if argv[1] in KERNEL_BENCHES:  # a kernel family's own benchmark command line
            module = importlib.import_module(f"populace.benchmarks.{argv[1]}")
            return module.main(argv[2:])
    if len(argv) >= 3 and argv[0] in ("run", "bench", "view") and {"-h", "--help"} & set(argv):
        positional = [a for a in argv[1:] if not a.startswith("-")]
        if positional and positional[0] not in ("llm",):  # help on one model: its settings
            try:
                epilog = models.describe(positional[0])
            except KeyError as err:
                print(f"populace: error: {err.args[0]}", file=sys.stderr)
                return 2
            print(f"usage: populace {argv[0]} MODEL [flags]  (flags: populace {argv[0]} --help)")
            print(epilog)
            return 0
    args = parser().parse_args(argv)
    if getattr(args, "threads", None) is not None:  # Simulation's threads="auto" reads it
        os.environ["POPULACE_THREADS"] = str(args.threads)
    try:
        args.fn(args)
    except CLIError as err:
        print(f"populace: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, RuntimeError, FloatingPointError, OSError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        # under torchrun every rank meets the same bad input: rank 0 says it; a failed or
        # vanished peer is said by every rank that noticed it
        if _rank() == 0 or (
            isinstance(err, distributed.DistributedError)
            and not isinstance(err, distributed.Rank0Failed)
        ):
            print(f"populace: error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
