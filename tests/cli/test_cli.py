import json
import subprocess
import sys

import polars as pl
import pytest

from populace.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_lists_the_zoo(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    assert out.splitlines()[0].startswith("sir ")


def test_run_writes_parquet_and_run_json(tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, out, _ = run_cli(
        capsys,
        "run",
        "sir",
        "--agents",
        "2000",
        "--steps",
        "30",
        "--members",
        "3",
        "--seed",
        "4",
        "--set",
        "beta=0.6",
        "--set",
        "initial_infected=20",
        "--out",
        str(out_dir),
        "--json",
    )
    assert code == 0
    final = json.loads(out.strip().splitlines()[-1])
    assert set(final) == {"S", "I", "R", "infected", "seconds"}
    assert final["S"] + final["I"] + final["R"] == pytest.approx(2000)
    metrics = pl.read_parquet(out_dir / "metrics.parquet")
    assert metrics.columns == ["member", "step", "S", "I", "R", "infected"]
    assert metrics.height == 3 * 31
    record = json.loads((out_dir / "run.json").read_text())
    assert record["model"] == "sir" and record["seed"] == 4 and record["members"] == 3
    assert record["params"]["beta"] == pytest.approx(0.6)
    assert record["options"] == {"agents": 2000, "initial_infected": 20, "estimator": "none"}
    assert record["versions"]["torch"] and record["device"] == "cpu"
    last = metrics.filter(pl.col("step") == 30)
    assert last["S"].mean() == pytest.approx(final["S"])


@pytest.mark.parametrize(
    "argv, words",
    [
        (["run", "sri"], ["unknown model 'sri'", "sir"]),
        (
            ["run", "sir", "--set", "betta=1"],
            ["unknown setting 'betta'", "beta", "initial_infected"],
        ),
        (["run", "sir", "--set", "beta"], ["name=value"]),
        (["run", "sir", "--set", "gamma=3"], ["'gamma' must lie in [0, 1]"]),
        (["bench", "nope"], ["unknown model 'nope'"]),
        (["run", "sir", "--set", "initial_infected=abc"], ["initial_infected must be an integer"]),
        (["run", "sir", "--set", "initial_infected=1.5"], ["initial_infected must be an integer"]),
        (["run", "network_sir", "--set", "degree=nan"], ["degree must be a finite number"]),
        (["run", "wolfsheep", "--set", "capacity=0"], ["capacity=0"]),
        (["run", "sir", "--set", "beta=nan"], ["'beta'", "NaN/Inf"]),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(capsys, argv, words, tmp_path):
    out_dir = tmp_path / "never"
    code, _, err = (
        run_cli(capsys, *argv, "--agents", "100", "--out", str(out_dir))
        if argv[0] == "run"
        else run_cli(capsys, *argv)
    )
    assert code == 2
    for w in words:
        assert w in err
    assert not out_dir.exists()  # nothing half-written
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("agents", ["0", "-5", "1.5", "many"])
def test_bad_agent_counts(capsys, agents):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "sir", "--agents", agents])
    assert exit_.value.code == 2
    assert "--agents must be a positive integer" in capsys.readouterr().err


def test_run_refuses_an_out_file(tmp_path, capsys):
    (tmp_path / "metrics").write_text("mine")
    out = str(tmp_path / "metrics")
    code, _, err = run_cli(capsys, "run", "sir", "--agents", "10", "--out", out)
    assert code == 2 and "is a file" in err


def test_check_finite_failure_is_one_line(capsys):
    code, _, err = run_cli(
        capsys,
        "run",
        "kuramoto",
        "--agents",
        "10",
        "--steps",
        "2",
        "--set",
        "dt=3.3e38",  # dt * omega overflows float32 for |omega| > 1.03
        "--check-finite",
    )
    assert code == 2 and "NaN/Inf" in err and "Traceback" not in err


def test_run_refuses_a_non_empty_out_dir(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    code, _, err = run_cli(capsys, "run", "sir", "--agents", "10", "--out", str(tmp_path))
    assert code == 2 and "not empty" in err
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_bench_prints_json_record(capsys):
    code, out, _ = run_cli(
        capsys,
        "bench",
        "sir",
        "--agents",
        "5000",
        "--steps",
        "5",
        "--device",
        "cpu",
        "--members",
        "2",
    )
    assert code == 0
    rec = json.loads(out.strip().splitlines()[-1])
    for key in (
        "name",
        "device",
        "agents",
        "steps",
        "seconds",
        "agent_steps_per_s",
        "peak_memory_bytes",
    ):
        assert key in rec
    assert rec["agent_steps_per_s"] == pytest.approx(5000 * 2 * 5 / rec["seconds"])
    assert rec["peak_memory_bytes"] > 0


def test_console_script_runs():
    exe = [
        sys.executable,
        "-m",
        "populace",
        "run",
        "sir",
        "--agents",
        "500",
        "--steps",
        "3",
        "--json",
    ]
    proc = subprocess.run(exe, capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["S"] <= 500


def test_bench_dispatches_kernel_families(capsys):
    code, out, _ = run_cli(
        capsys,
        "bench",
        "contagion",
        "--agents",
        "2000",
        "--degree",
        "4",
        "--repeats",
        "1",
        "--device",
        "cpu",
    )
    assert code == 0
    rec = json.loads(out.strip().splitlines()[-1])
    assert rec["name"] == "contagion" and rec["agents"] == 2000


USER_MODEL = """
import dataclasses
import torch
from populace.engine import Model, Params, State, param, tensor_field


@dataclasses.dataclass(frozen=True)
class GrowthParams(Params):
    rate: float = param(0.1, low=0, unit="1/step", doc="growth per step")


@dataclasses.dataclass(frozen=True)
class Wealth(State):
    x: torch.Tensor = tensor_field("B", "N")


def build(agents: int = 10, start: float = 1.0) -> Model:
    def init(params, ctx):
        return Wealth(x=torch.full((ctx.members, agents), start, dtype=ctx.dtype))

    def grow(state, params, ctx):
        return state.replace(x=state.x * (1 + params.rate))

    return Model("growth", GrowthParams(), init, (grow,),
                 {"total": lambda s, p, ctx: s.x.sum(1)}, agents=agents)
"""


def test_a_users_model_file_runs_like_a_zoo_model(tmp_path, capsys):
    path = tmp_path / "my_model.py"
    path.write_text(USER_MODEL)
    code, out, _ = run_cli(
        capsys,
        "run",
        f"{path}:build",
        "--agents",
        "4",
        "--steps",
        "2",
        "--set",
        "rate=0.5",
        "--set",
        "start=2.0",
        "--out",
        str(tmp_path / "o"),
        "--json",
    )
    assert code == 0
    assert json.loads(out.strip().splitlines()[-1])["total"] == pytest.approx(4 * 2.0 * 1.5**2)
    assert json.loads((tmp_path / "o" / "run.json").read_text())["model"] == "growth"
    code, _, err = run_cli(capsys, "run", f"{path}:build", "--set", "rte=1")
    assert code == 2 and "unknown setting 'rte'" in err and "rate" in err and "start" in err
    code, _, err = run_cli(capsys, "run", f"{path}:nope")
    assert code == 2 and "has no function 'nope'" in err
    code, out, _ = run_cli(capsys, "run", f"{path}:build", "--help")
    assert code == 0 and "rate = 0.1  [0, inf], 1/step — growth per step" in out


def test_a_package_module_function_runs(capsys):
    code, out, _ = run_cli(
        capsys, "run", "populace.models.sir:build", "--agents", "300", "--steps", "3", "--json"
    )
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["S"] <= 300


def test_model_help_lists_params_with_bounds_and_units(capsys):
    code, out, _ = run_cli(capsys, "run", "covid_nyc_seir", "--help")
    assert code == 0
    assert "beta_borough = 1  [0, inf], relative, per borough" in out
    assert "population = 'nyc'" in out


def test_view_help_lists_the_models_params(capsys):
    code, out, _ = run_cli(capsys, "view", "sir", "--help")
    assert code == 0 and "beta = 0.5  [0, inf], 1/step" in out


def test_none_is_accepted_only_where_the_option_allows_it(tmp_path, capsys):
    # sir's initial_infected is ``int | None``: None seeds by the ``initial`` probability
    out = tmp_path / "run"
    argv = ["run", "sir", "--agents", "500", "--steps", "2", "--out", str(out)]
    assert main([*argv, "--set", "initial_infected=None", "--set", "initial=0.1"]) == 0
    assert json.loads((out / "run.json").read_text())["options"]["initial_infected"] is None
    # network_sir's degree is a plain float: None is refused with the kind it needs
    code = main(["run", "network_sir", "--agents", "500", "--steps", "2", "--set", "degree=None"])
    assert code == 2
    assert "degree must be a finite number, got None" in capsys.readouterr().err
