"""examples/scaling_out.py runs in one process (torchrun runs the same code on many ranks)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "scaling_out.py"


def test_the_scaling_out_example_runs(capsys, tmp_path):
    spec = importlib.util.spec_from_file_location("scaling_out_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    final = module.main(agents=400, steps=20, out=tmp_path)
    assert final["recovered_reduction"] < 0  # halving beta from step 6 averts infections
    assert (tmp_path / "network.ckpt").is_file()
    assert "1 rank(s): distancing changes final R by" in capsys.readouterr().out
