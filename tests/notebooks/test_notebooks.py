"""Every notebook in notebooks/ runs top to bottom at the tiny size, and none is committed with
outputs.

The notebooks read ``POPULACE_NOTEBOOK_SCALE`` in their parameter cell; here it is ``tiny``. Each
runs in a fresh kernel of the Python running pytest (nbclient, kernel ``python3`` = ipykernel in
this environment), with matplotlib's Agg backend, in a temporary working directory. A notebook
fails the test on any error, including its own ``assert`` cells (checks against theory and
expected orderings, so the notebooks are tests as well as stories), and on torch's sparse-CSR
"beta" warning in any cell's output (the engine's CSR layers suppress it; a notebook must not
need its own filter).

``PROBES`` are checks run in a notebook's kernel after its last cell, on the figures and
objects it made: for defects that show on a figure without raising (a legend naming the wrong
curve, a share plotted on an axis labelled like a count).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
#: the notebooks this suite expects: one story each (the issue's list, minus unmerged ones).
EXPECTED = {
    "quickstart",
    "stigmergy",
    "flocking_vicsek",
    "nyc_population",
    "flagship_nyc",
    "calibration_nyc",
    "write_your_own_model",
    "epidemic_policies",
}
#: seconds any one cell may take before the run counts as hung. Generous: at the tiny size each
#: whole notebook takes 5-20 s on an idle 2-core CPU, but CI machines are shared.
CELL_TIMEOUT_S = 300
#: torch's warning on first use of a sparse CSR tensor, which no notebook output may show.
CSR_BETA_WARNING = "Sparse CSR tensor support is in beta"

QUICKSTART_LEGEND = """
import matplotlib.lines

ax = fig.axes[0]
legend = ax.get_legend()
entries = list(zip([t.get_text() for t in legend.get_texts()], legend.legend_handles))
assert [text for text, _ in entries] == ["S", "I", "R"], entries
for text, handle in entries:
    # each entry is drawn as the curve (not a band) of the metric it names
    assert isinstance(handle, matplotlib.lines.Line2D), f"legend {text!r}: {handle!r}"
    (line,) = [li for li in ax.lines if li.get_label() == text]
    assert handle.get_color() == line.get_color(), f"legend {text!r} has another curve's colour"
    mean = result.metrics.group_by("step").agg(pl.col(text).mean()).sort("step")[text]
    assert list(line.get_ydata()) == mean.to_list(), f"the {text!r} curve is not mean {text}"
"""

FLAGSHIP_FIGURES = """
import numpy as np

# the order figure plots a share of members per borough, on an axis labelled as one
ax = order_fig.axes[0]
label = ax.get_ylabel()
assert label.startswith("share"), f"a share of members, labelled {label!r}"
assert ax.get_ylim() == (0.0, 1.0)
assert [t.get_text() for t in ax.get_legend().get_texts()] == list(NYC_BOROUGHS)
for line, b in zip(ax.lines, NYC_BOROUGHS, strict=True):
    heights = np.asarray(line.get_ydata(), dtype=float)
    assert 0 <= heights.min() and heights.max() <= 1, b
    assert list(heights) == flags[f"order_{b}"].to_list(), f"the {b} line is not its order share"
# each heatmap shows its own behaviour's table, weeks along x, archetypes along y
for ax, name in zip(tables_fig.axes[:2], ("heuristic", "llm"), strict=True):
    assert ax.get_title().startswith(name), ax.get_title()
    (image,) = ax.images
    assert np.allclose(image.get_array(), flag.tables[name].T.numpy()), name
    assert image.get_clim() == (0, 1) and image.get_array().shape == (len(names), weeks)
assert [t.get_text() for t in tables_fig.axes[0].get_yticklabels()] == names
# the map colours each ZIP-code area by its attack rate, in the areas' order
(collection,) = map_fig.axes[0].collections
assert np.allclose(collection.get_array(), attack.numpy())
# the fit figure's data points are the reported weekly totals
ax = fit_fig.axes[0]
points = ax.lines[0]
weekly = flag.data["cases"][:window].sum(1).reshape(-1, WEEK).sum(1)
assert np.allclose(points.get_ydata(), weekly.numpy())
assert [t.get_text() for t in ax.get_legend().get_texts()] == ["reported", *fl.BEHAVIOURS]
"""

PROBES = {
    "quickstart": QUICKSTART_LEGEND,
    "flagship_nyc": FLAGSHIP_FIGURES,
}


def test_the_expected_notebooks_are_there():
    assert {p.stem for p in PATHS} >= EXPECTED


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path: Path):
    book = json.loads(path.read_text())
    for i, cell in enumerate(book["cells"]):
        if cell["cell_type"] != "code":
            continue
        assert cell.get("outputs") == [], f"{path.name} cell {i} has outputs: strip them"
        assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_notebook_has_a_parameter_cell_reading_the_scale(path: Path):
    book = json.loads(path.read_text())
    tagged = [c for c in book["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
    source = "".join(tagged[0]["source"])
    assert "POPULACE_NOTEBOOK_SCALE" in source and '"tiny"' in source


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path: Path, tmp_path: Path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="the notebooks extra is not installed")
    nbclient = pytest.importorskip("nbclient", reason="the notebooks extra is not installed")
    # the kernel inherits the environment: tiny size, headless plots
    monkeypatch.setenv("POPULACE_NOTEBOOK_SCALE", "tiny")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    book = nbformat.read(path, as_version=4)
    if path.stem in PROBES:
        book.cells.append(nbformat.v4.new_code_cell(PROBES[path.stem]))
    client = nbclient.NotebookClient(
        book,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError naming the cell on any error
    errors = [
        out
        for cell in book.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "error"
    ]
    assert not errors
    beta = [
        out.get("text", "")
        for cell in book.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if CSR_BETA_WARNING in out.get("text", "")
    ]
    assert not beta, f"{path.name} shows torch's sparse-CSR beta warning: {beta[0][:200]}"


def test_every_notebook_with_a_probe_exists():
    assert set(PROBES) <= {p.stem for p in PATHS}
