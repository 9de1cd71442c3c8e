"""benchmarks/loc: three small models written both in populace and in Mesa 3. Each file runs as a
script, both versions of each model agree on a basic outcome, and the line counts of the
closing note come from a counter that ignores blanks, comments and docstrings."""

from __future__ import annotations

import importlib.util
import math
import runpy
from pathlib import Path

import pytest

LOC = Path(__file__).resolve().parents[2] / "benchmarks" / "loc"
#: the model files: populace_<model>.py and mesa_<model>.py
MODEL_FILES = sorted(p.stem for p in LOC.glob("*_*.py") if p.stem != "gini_vs_mesa")


def _check():
    spec = importlib.util.spec_from_file_location("loc_check", LOC / "check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = _check()


def test_lines_of_code_skip_blanks_comments_and_docstrings(tmp_path: Path):
    source = tmp_path / "m.py"
    source.write_text(
        '"""Module docstring,\n\non three lines."""\n\n'
        "import math  # a comment after code counts as code\n"
        "# a comment line\n\n"
        "def f(x):\n"
        '    """A docstring."""\n'
        "    return (\n"
        "        math.sqrt(x)\n"
        "    )\n"
        'TEXT = """not a docstring"""\n'
    )
    assert check.lines_of_code(source) == 6  # import, def, the 3 lines of return, TEXT


def test_every_model_is_written_both_ways():
    both = {f"{side}_{m}" for side in ("populace", "mesa") for m in check.MODELS}
    assert set(MODEL_FILES) == both


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_FILES)
def test_each_file_runs_as_a_script(name: str, capsys):
    pytest.importorskip("mesa", reason="the bench extra is not installed")
    runpy.run_path(str(LOC / f"{name}.py"), run_name="__main__")
    printed = capsys.readouterr().out.strip()
    assert printed and float(printed.rsplit(":", 1)[1]) >= 0, printed  # "<outcome>: <number>"


def _agree(outcome: dict, z: float = 4.0) -> bool:
    (a, sa), (b, sb) = outcome["populace"], outcome["mesa"]
    return abs(a - b) <= z * math.hypot(sa, sb)


@pytest.mark.slow
def test_populace_and_mesa_versions_agree_on_their_outcomes():
    pytest.importorskip("mesa", reason="the bench extra is not installed")
    from populace.models.sir import final_size

    out = check.outcomes(seeds=32, mesa_seeds=16)
    for model in check.MODELS:
        assert _agree(out[model]), (model, out[model])
    # and against what each outcome should be: Boltzmann's Gini climbs well past 0.5 at one
    # agent per cell, the SEIR's attack rate is the final size of R0 = beta / gamma = 2.5
    assert out["boltzmann"]["populace"][0] > 0.55
    z = final_size(0.5 / 0.2)
    for side in ("populace", "mesa"):
        assert abs(out["seir"][side][0] - z) < 0.02
        # 50 agents agree within ~30 steps when activated in turn (~100 steps synchronously)
        assert out["voter"][side][0] < 60


@pytest.mark.slow
def test_gini_against_mesas_example_side_by_side(tmp_path: Path, capsys):
    pytest.importorskip("mesa", reason="the bench extra is not installed")
    path = str(LOC / "gini_vs_mesa.py")
    spec = importlib.util.spec_from_file_location("gini_vs_mesa", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = ["--agents", "400", "--steps", "40", "--seeds", "4", "--save", str(tmp_path)]
    record = module.main(args)
    assert record["final_gini"]["mesa"] > 0.55  # one agent per cell: far from equality
    assert abs(record["final_gini"]["populace"] - record["final_gini"]["mesa"]) < 0.03
    assert record["speed_ratio"] > 0 and len(list(tmp_path.glob("boltzmann-vs-mesa-*.json"))) == 1
    with pytest.raises(SystemExit, match="must be a square"):
        module.main(["--agents", "10"])
