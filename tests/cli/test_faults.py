"""The CLI's writers under faults: damaged outputs, refused targets, absurd sizes, non-finite
numbers in JSON, racing writers, Ctrl-C, SIGTERM and SIGKILL (subprocesses, bounded in time).

Every case ends in a clear one-line error or a correct result: never a traceback, never a
silent wrong result, never lost or half-written data."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from populace.cli import main
from populace.engine import storage

#: a child that runs the CLI with Ctrl-C raising KeyboardInterrupt, even where the test runner
#: was started with SIGINT ignored (background jobs), and says when it is inside main()
CHILD = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from populace.cli import main; print('ready', flush=True); sys.exit(main(sys.argv[1:]))"
)
DEADLINE = 120  # seconds any one subprocess may take


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def strict_json(text):
    def reject(token):
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=reject)


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def csv(tmp_path, rows=12, name="data.csv"):
    values = [1, 2, 4, 7, 11, 15, 18, 17, 14, 10, 7, 5] * (rows // 12 + 1)
    path = tmp_path / name
    path.write_text("count\n" + "\n".join(str(v) for v in values[:rows]) + "\n")
    return path


def sir_run(out, seed=1, *extra):
    return ["run", "sir", "--agents", "300", "--steps", "20", "--seed", seed, "--out", out, *extra]


def calibrate(data, out, seed=0):
    return [
        "calibrate",
        "sir",
        "--data",
        data,
        "--target",
        "count",
        "--population",
        "300",
        "--epochs",
        "4",
        "--seed",
        seed,
        "--out",
        out,
    ]


class QuietBackend:
    """An LLM backend that always answers 'no' (the demo's report format, without a model)."""

    name, model = "quiet", "no-v1"

    def generate(self, prompts, sampling, schema=None, seeds=None):
        from populace.behaviors.llm import Completion

        return [Completion("no", 5, 1) for _ in prompts]


def demo_report(out, seed):
    import matplotlib

    matplotlib.use("Agg")
    from populace.demo import flagship

    flagship(
        out,
        scale=0.0004,
        seeds=1,
        seed=seed,
        archetypes=("borough",),
        popsize=2,
        generations=0,
        backend=QuietBackend(),
        cache=out.parent / f"llm-{seed}.sqlite",
        fit_cache=False,
        device="cpu",
        log=lambda m: None,
    )
    return out


# -- every on-disk output format: truncate, flip, swap ------------------------------------
@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Two outputs of each kind (other seeds), written once for the corruption cases."""
    import warnings

    root = tmp_path_factory.mktemp("outputs")
    made = {}
    for kind in ("run", "calibration", "report"):
        pair = []
        for seed in (1, 2):
            out = root / f"{kind}-{seed}"
            if kind == "run":
                assert main([str(a) for a in sir_run(out, seed)]) == 0
            elif kind == "calibration":
                assert main([str(a) for a in calibrate(csv(root), out, seed)]) == 0
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    demo_report(out, seed)
            pair.append(out)
        made[kind] = pair
    return made


CORRUPTION_CASES = [
    (kind, name, damage)
    for kind, names in {
        "run": ("metrics.parquet", "run.json", "manifest.json"),
        "calibration": ("params.csv", "errors.csv", "calibration.json", "fit.png", "manifest.json"),
        "report": (
            "fit.parquet",
            "counterfactuals.parquet",
            "summary.json",
            "summary.md",
            "fit_cases.png",
            "manifest.json",
        ),
    }.items()
    for name in names
    for damage in ("truncate", "flip", "swap", "delete")
]


@pytest.mark.parametrize("kind, name, damage", CORRUPTION_CASES)
def test_verify_names_every_damaged_output_file(outputs, tmp_path, capsys, kind, name, damage):
    mine, other = outputs[kind]
    folder = tmp_path / "copy"
    shutil.copytree(mine, folder)
    assert run_cli(capsys, "verify", folder)[0] == 0
    path = folder / name
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        flipped = bytearray(data)
        flipped[len(data) // 3] ^= 0x04
        path.write_bytes(bytes(flipped))
    elif damage == "swap":
        if (other / name).read_bytes() == data:
            pytest.fail(f"{name} is the same in both outputs: the swap case tests nothing")
        path.write_bytes((other / name).read_bytes())
    else:
        path.unlink()
    code, _, err = run_cli(capsys, "verify", folder)
    assert code == 2 and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("populace: error: ")
    assert name in err or (name == "manifest.json" and "manifest" in err)


def test_verify_accepts_intact_outputs_and_checkpoints(outputs, tmp_path, capsys):
    for kind, (folder, _) in outputs.items():
        code, out, _ = run_cli(capsys, "verify", folder)
        assert code == 0 and f"intact {kind} folder" in out
    from populace.engine import Simulation
    from populace.models import sir

    path = Simulation(sir.build(agents=50), device="cpu").save(tmp_path / "ck.pt")
    assert "intact checkpoint" in run_cli(capsys, "verify", path)[1]
    path.write_bytes(path.read_bytes()[:-1])
    code, _, err = run_cli(capsys, "verify", path)
    assert code == 2 and "truncated" in err and str(path) in err


# -- targets: '', files, non-empty folders, --overwrite ---------------------------------------
WRITERS = {
    "run": lambda tmp, out: ["run", "sir", "--agents", "100", "--steps", "2", "--out", out],
    "population": lambda tmp, out: ["population", "nyc", "--scale", "0.001", "--out", out],
    "calibrate": lambda tmp, out: calibrate(csv(tmp), out),
    "calibrate-nyc": lambda tmp, out: ["calibrate-nyc", "--agents", "300", "--out", out],
    "demo": lambda tmp, out: ["demo", "--out", out],
}


@pytest.mark.parametrize("writer", WRITERS)
def test_an_empty_out_is_refused(tmp_path, capsys, monkeypatch, writer):
    monkeypatch.chdir(tmp_path)
    argv = WRITERS[writer](tmp_path, "")
    before = sorted(os.listdir(tmp_path))
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and ("--out is empty" in err or "output path is empty" in err)
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.parametrize("writer", WRITERS)
def test_a_non_empty_out_is_refused_before_any_work(tmp_path, capsys, writer):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    start = time.perf_counter()
    code, printed, err = run_cli(capsys, *WRITERS[writer](tmp_path, out))
    assert code == 2 and "not empty" in err and "--overwrite" in err
    assert printed == ""  # nothing built, fitted or simulated first
    assert time.perf_counter() - start < 10
    code, _, err = run_cli(capsys, *WRITERS[writer](tmp_path, out), "--overwrite")
    assert code == 2 and "not a populace output" in err
    assert sorted(os.listdir(out)) == ["notes.txt"] and hidden(tmp_path) == []


def test_overwrite_replaces_a_populace_output_whole(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(capsys, *sir_run(out, 1))[0] == 0
    first = json.loads((out / "run.json").read_text())
    code, _, err = run_cli(capsys, *sir_run(out, 2))
    assert code == 2 and "not empty" in err
    assert run_cli(capsys, *sir_run(out, 2), "--overwrite")[0] == 0
    second = json.loads((out / "run.json").read_text())
    assert (first["seed"], second["seed"]) == (1, 2)
    storage.verify_folder(out, "run")
    assert hidden(tmp_path) == []


def test_a_failed_run_writes_nothing_not_even_parent_folders(tmp_path, capsys):
    out = tmp_path / "a" / "b" / "run"
    code, _, err = run_cli(capsys, "run", "sir", "--agents", "10", "--set", "beta=-1", "--out", out)
    assert code == 2 and "beta" in err
    assert list(tmp_path.iterdir()) == []


# -- numbers ----------------------------------------------------------------------------------
def test_non_finite_results_are_standard_json_null_with_a_flag_and_a_warning(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "run",
        "kuramoto",
        "--agents",
        "10",
        "--steps",
        "2",
        "--set",
        "dt=3.3e38",
    ]  # dt * omega overflows
    code, printed, err = run_cli(capsys, *argv, "--out", out, "--json")
    assert code == 0
    line = strict_json(printed.strip().splitlines()[-1])
    assert line["r"] is None and line["non_finite"] == ["r", "psi"]
    record = strict_json((out / "run.json").read_text())
    assert record["final"]["r"] is None and record["non_finite"] == ["final.r", "final.psi"]
    assert "warning: final metric(s) r, psi are NaN/Inf" in err


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--members", "1000000000"], ["--members must be at most 65,536"]),
        (["--agents", "1000000000000"], ["--agents must be at most 2,147,483,647"]),
        (["--agents", "10000000", "--members", "65536"], ["6.55e+11 agent slots"]),
    ],
)
def test_absurd_sizes_are_refused_before_any_work(capsys, argv, words):
    start = time.perf_counter()
    try:
        code = main(["run", "sir", *argv])
    except SystemExit as exit_:  # argparse's own exit
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and all(w in err for w in words) and "Traceback" not in err
    assert time.perf_counter() - start < 5


def test_a_csv_with_absurdly_many_rows_is_refused_with_a_clear_message(tmp_path, capsys):
    from populace.calibration.data import MAX_ROWS

    data = csv(tmp_path, rows=MAX_ROWS + 1)
    code, _, err = run_cli(capsys, *calibrate(data, tmp_path / "out"))
    assert code == 2 and f"{MAX_ROWS + 1:,} data rows" in err and "at most" in err
    assert not (tmp_path / "out").exists()


# -- racing writers ---------------------------------------------------------------------------
def spawn(argv, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, *[str(a) for a in argv]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env,
    )


@pytest.mark.slow
def test_two_cli_writers_of_one_folder_one_wins_the_other_says_so(tmp_path):
    out = tmp_path / "run"
    argv = ["run", "sir", "--agents", "5000", "--steps", "200", "--out", out]
    procs = [spawn([*argv, "--seed", str(s)], tmp_path) for s in (1, 2)]
    results = [p.communicate(timeout=DEADLINE) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], results
    loser = results[[p.returncode for p in procs].index(2)][1]
    assert "another process" in loser or "not empty" in loser
    assert "Traceback" not in loser
    storage.verify_folder(out, "run")
    assert hidden(tmp_path) == []


# -- signals ----------------------------------------------------------------------------------
def wait_for_stage(proc, parent: Path, name: str, timeout: float = DEADLINE) -> None:
    """Block until the child is inside main() and, if ``name``, has staged its output."""
    assert proc.stdout.readline().strip() == "ready"
    end = time.monotonic() + timeout
    while name and not any(n.startswith(f".{name}.populace-tmp-") for n in hidden(parent)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "the child never staged its output"
        time.sleep(0.05)


LONG = {
    # writer: (argv, output staged during the work, so the signal lands while it exists)
    "run": (["run", "sir", "--agents", "20000", "--steps", "10000000"], True),
    "population": (["population", "nyc", "--scale", "0.2"], False),
    "calibrate": (None, False),
    "calibrate-nyc": (["calibrate-nyc", "--agents", "3000"], True),  # about a minute of work
    "demo": (["demo", "--scale", "0.01", "--device", "cpu", "--no-fit-cache"], True),
}


def long_argv(writer, tmp_path):
    argv, staged = LONG[writer]
    if writer == "calibrate":
        data = csv(tmp_path, rows=200)
        argv = [*calibrate(data, tmp_path / "out")[:-2], "--epochs", "1000000"]
        argv += ["--population", "50000"]
    if writer == "demo":
        argv = [*argv, "--cache", tmp_path / "llm.sqlite"]
    return [*argv, "--out", tmp_path / "out"], staged


@pytest.mark.slow
@pytest.mark.parametrize(
    "writer, sig",
    # every writer under Ctrl-C; SIGTERM takes the same path, two writers show it
    [(w, signal.SIGINT) for w in LONG] + [(w, signal.SIGTERM) for w in ("run", "demo")],
)
def test_an_interrupted_writer_prints_one_line_and_leaves_nothing(tmp_path, writer, sig):
    argv, staged = long_argv(writer, tmp_path)
    proc = spawn(argv, tmp_path)
    try:
        wait_for_stage(proc, tmp_path, "out" if staged else "")
        if not staged:
            time.sleep(1.0)  # inside the build or the fit
        assert proc.poll() is None, "the command finished before the signal"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=DEADLINE)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "interrupted" in line]
    assert lines == [f"populace: interrupted ({sig.name}); no output was written"], err
    assert not (tmp_path / "out").exists()
    assert hidden(tmp_path) == []  # the staged folder was removed on the way out


@pytest.mark.slow
@pytest.mark.parametrize("writer", ["run", "calibrate-nyc"])
def test_a_killed_writer_leaves_only_a_hidden_temporary_that_the_next_writer_removes(
    tmp_path, capsys, writer
):
    argv, _ = long_argv(writer, tmp_path)
    proc = spawn(argv, tmp_path)
    try:
        wait_for_stage(proc, tmp_path, "out")
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=DEADLINE)
    finally:
        proc.kill()
    assert not (tmp_path / "out").exists()  # nothing visible, nothing half-written
    assert len(hidden(tmp_path)) == 1
    assert run_cli(capsys, *sir_run(tmp_path / "out"))[0] == 0
    assert hidden(tmp_path) == []
    storage.verify_folder(tmp_path / "out", "run")


def test_an_interrupt_a_finalizer_drops_is_raised_again():
    # Python prints and drops an exception raised while a __del__ runs (llvmlite's, during a
    # numba compile, ate a SIGTERM and the command ran on): main's handlers raise it again
    from populace import cli

    class Finalizer:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)  # the handler runs here, inside __del__: its exception is dropped

    previous = {s: signal.signal(s, h) for s, h in cli._handlers().items()}
    began = time.monotonic()
    try:
        with pytest.raises(cli.Interrupted, match="SIGTERM"):
            Finalizer()  # collected at once
            while time.monotonic() - began < 10:
                time.sleep(0.01)
        assert time.monotonic() - began < 3 * cli.RERAISE_EVERY + 0.5
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        cli._pending.clear()
        for s, h in previous.items():
            signal.signal(s, h)
