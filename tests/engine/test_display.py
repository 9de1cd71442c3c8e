import matplotlib
import polars as pl
import pytest
import torch

matplotlib.use("Agg")

from populace.engine import Schedule, Simulation  # noqa: E402
from populace.engine.intervention import SetParam  # noqa: E402
from populace.engine.plotting import animate_field, plot_series, save_animation  # noqa: E402
from populace.engine.study import Scenario, study  # noqa: E402
from populace.models import sir  # noqa: E402


def test_html_reprs_show_the_real_content():
    model = sir.build(agents=500, initial_infected=5).with_params(
        beta=Schedule([0.5, 0.2], (0, 10))
    )
    html = model._repr_html_()
    assert "Model &#x27;sir&#x27;" in html and "infect_and_recover" in html
    assert "schedule {0: 0.5, 10: 0.2}" in html
    sim = Simulation(model, members=2, device="cpu")
    state_html = sim.state._repr_html_()
    assert "health" in state_html and "(2, 3, 500)" in state_html and "float32" in state_html
    params_html = sim.params._repr_html_()
    assert "beta" in params_html and "[0, inf]" in params_html and "probability/step" in params_html
    result = sim.run(5)
    r_html = result._repr_html_()
    assert "steps 0..5" in r_html and f"{result.final()['S']:.6g}" in r_html


def test_study_repr_and_series_plot_bands():
    model = sir.build(agents=500, initial_infected=5)
    res = study(
        model,
        [Scenario("none", (SetParam("beta", 0.0, start=0),))],
        steps=20,
        seeds=4,
        device="cpu",
    )
    assert "final diff (paired)" in res._repr_html_()
    fig = plot_series(res.metrics, "I", by="scenario")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["baseline", "none"]
    base = (
        res.metrics.filter(pl.col("scenario") == "baseline")
        .group_by("step")
        .agg(pl.col("I").mean())
        .sort("step")
    )
    assert list(ax.lines[0].get_ydata()) == pytest.approx(base["I"].to_list())
    with pytest.raises(KeyError, match="unknown metric"):
        plot_series(res.metrics, "nope")


def test_field_animation_writes_a_gif(tmp_path):
    frames = torch.rand(4, 8, 8)
    anim = animate_field(frames, positions=torch.rand(4, 5, 2) * 8)
    path = save_animation(anim, tmp_path / "field.gif", fps=4)
    assert path.stat().st_size > 0
    with pytest.raises(ValueError, match=r"\[T, H, W\]"):
        animate_field(torch.rand(8, 8))
    with pytest.raises(ValueError, match="format"):
        save_animation(anim, tmp_path / "field.avi")


def test_overlaid_series_name_every_metric_and_label_each_line():
    res = Simulation(sir.build(agents=300, initial_infected=5), members=3, device="cpu").run(10)
    fig = plot_series(res.metrics, "S")
    for metric in ("I", "R"):
        plot_series(res.metrics, metric, ax=fig.axes[0])
    ax = fig.axes[0]
    assert ax.get_ylabel() == "S, I, R"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["S", "I", "R"]


def test_csr_layers_are_built_without_torchs_beta_warning():
    # torch warns once per process, so only a fresh process can tell
    import subprocess
    import sys

    code = (
        "import networkx as nx\n"
        "from populace.populations.graphs import erdos_renyi, from_networkx\n"
        "from_networkx(nx.path_graph(5)); erdos_renyi(50, 3.0, seed=0)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, check=True
    )
    assert "beta state" not in proc.stderr
