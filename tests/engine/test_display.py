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
    assert "status" in state_html and "(2, 500)" in state_html and "int8" in state_html
    assert "beta" in sim.params._repr_html_()
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
