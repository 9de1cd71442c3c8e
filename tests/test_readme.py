"""The README's "Writing a model" example runs as written and does what its comments say."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_writing_a_model_example_runs():
    section = README.read_text().split("## Writing a model", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    scope: dict = {}
    exec(compile(code, "README.md: Writing a model", "exec"), scope)
    metrics = scope["result"].metrics
    assert metrics.columns == ["member", "step"] + [
        f"wealth_{b}" for b in ("BX", "BK", "MN", "QN", "SI")
    ]
    per_agent_bx = metrics.filter(metrics["step"] == 20)["wealth_BX"][0] / int(
        (scope["codes"] == 0).sum()
    )
    assert abs(per_agent_bx - 1.02**10) < 1e-4  # the Bronx froze at step 10
