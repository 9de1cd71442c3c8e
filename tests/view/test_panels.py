"""What the view draws: spatial layers, charts and bands, param controls, the LLM panel."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from populace.engine import ParamError, Schedule, Simulation
from populace.engine.intervention import ScaleParam
from populace.engine.study import Scenario, study
from populace.models import ants, covid_behavior, schelling, sir, vicsek, wolfsheep
from populace.view import charts, controls, llm, spatial

PNG = b"\x89PNG\r\n\x1a\n"


def state_after(model, steps: int = 2, members: int = 2):
    sim = Simulation(model, members=members, seed=1, progress=False)
    sim.run(steps)
    return sim.state


def by_name(layers):
    return {x.name: x for x in layers}


# -- spatial ---------------------------------------------------------------------------------
def test_density_counts_every_agent_in_its_cell():
    g = torch.Generator().manual_seed(0)
    pos = torch.rand(5000, 2, generator=g) * torch.tensor([10.0, 4.0])
    image = spatial.density(pos, 16, ((0.0, 10.0), (0.0, 4.0)))
    want, _, _ = np.histogram2d(
        pos[:, 1].numpy(), pos[:, 0].numpy(), bins=16, range=((0, 4), (0, 10))
    )
    np.testing.assert_array_equal(image, want)  # rows: y, columns: x


def test_swarm_positions_are_a_density_image_over_the_box():
    model = vicsek.build(agents=3000)
    state = state_after(model)
    (layer,) = spatial.layers(model, state)
    assert layer.kind == "density" and layer.name == "pos (density)"
    image = layer.read(state, 1)
    assert image.sum() == 3000 and image.shape[0] <= spatial.DENSITY_BINS
    png = spatial.render(layer, image, size=200)
    assert png.startswith(PNG)


def test_stigmergy_fields_and_grids_are_offered():
    model = ants.build(agents=50)
    state = state_after(model)
    layers = by_name(spatial.layers(model, state))
    assert layers["chemical"].kind == "field" and layers["food"].kind == "grid"
    assert layers["pos (density)"].kind == "density"
    chemical = layers["chemical"].read(state, 0)
    np.testing.assert_array_equal(chemical, state.chemical[0].numpy())
    # ants live on the world's cells: one density bin per patch
    assert layers["pos (density)"].read(state, 0).shape == chemical.shape


def test_grid_codes_are_drawn_one_colour_each():
    model = schelling.build(agents=300)
    state = state_after(model)
    (layer,) = spatial.layers(model, state)
    assert layer.kind == "grid"
    grid = layer.read(state, 0)
    assert set(np.unique(grid)) <= {0.0, 1.0, 2.0}
    assert spatial.render(layer, grid).startswith(PNG)


def test_agents_on_flat_cells_are_counted_alive_only():
    model = wolfsheep.build(agents=200, width=20)
    state = state_after(model, steps=3)
    layers = by_name(spatial.layers(model, state))
    sheep = layers["sheep (per cell)"].read(state, 0)
    assert sheep.shape == (20, 20)
    assert sheep.sum() == int(state.sheep_alive[0].sum())
    grass = layers["grown"].read(state, 0)
    np.testing.assert_array_equal(grass.reshape(-1), state.grown[0].float().numpy())


def test_a_well_mixed_model_has_no_spatial_view():
    model = sir.build(agents=100)
    assert spatial.layers(model, state_after(model)) == []


def test_maps_by_area_share_agents_per_area():
    model = covid_behavior.build(agents=3000, initial_infected=300)
    state = state_after(model, steps=3)
    maps = by_name(spatial.layers(model, state))
    layer = maps["I share by area"]
    assert layer.kind == "map" and len(layer.areas) == len(model.data.labels("area"))
    share = layer.read(state, 0)
    area = model.data["area"]
    sizes = torch.bincount(area, minlength=len(share)).double().numpy()
    infectious = state.health[0, 1].sum().item()
    assert ((share >= 0) & (share <= 1)).all()
    assert (share * sizes).sum() == pytest.approx(infectious)  # shares weighted back to a count
    assert "isolating share by area" in maps
    assert spatial.render(layer, share).startswith(PNG)


def test_map_areas_must_match_the_axis():
    model = covid_behavior.build(agents=500)
    state = state_after(model, steps=1)
    areas = spatial.nyc_areas(tuple(model.data.labels("area")))
    with pytest.raises(ValueError, match="polygons for"):
        spatial.layers(model, state, areas=areas.iloc[:3])


# -- charts -------------------------------------------------------------------------------------
def test_band_is_the_mean_and_central_interval_over_members():
    values = np.arange(20.0).reshape(2, 10)  # T=2, B=10
    mean, lo, hi = charts.band(values, level=0.8)
    np.testing.assert_allclose(mean, [4.5, 14.5])
    np.testing.assert_allclose(lo, np.quantile(values, 0.1, axis=1))
    np.testing.assert_allclose(hi, np.quantile(values, 0.9, axis=1))


def test_thinning_keeps_the_ends():
    idx = charts.thinned(10_000, most=100)
    assert len(idx) <= 100 and idx[0] == 0 and idx[-1] == 9_999
    assert charts.thinned(5).tolist() == [0, 1, 2, 3, 4]


def test_the_paired_difference_so_far_matches_the_study():
    model = sir.build(agents=1000, initial_infected=10)
    scenarios = [Scenario("half", (ScaleParam("beta", 0.5, start=0),))]
    res = study(model, scenarios, steps=15, seeds=4, seed=3, progress=False)
    steps = np.arange(16)
    values = res.result.series("I").T.double().numpy()  # [T, B]
    diff = charts.paired_difference(values, 4, 1)
    by_seed = res.metrics.pivot(on="scenario", index=["seed", "step"], values="I").sort(
        "step", "seed"
    )
    want = (by_seed["half"] - by_seed["baseline"]).to_numpy().reshape(16, 4)
    np.testing.assert_allclose(diff, want)
    for reduce in ("final", "peak"):
        table = charts.difference_table(steps, values, "I", ["baseline", "half"], 4, reduce)
        ref = res.difference("I", reduce)
        np.testing.assert_allclose(table["mean"].to_numpy(), ref["mean"].to_numpy())
    svg = charts.chart(
        steps, {"I": values}, ["I"], scenarios=["baseline", "half"], seeds=4, difference="I"
    )
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<polyline") == 3  # baseline, half, and half − baseline
    assert svg.count("<polygon") == 3 and "Δ I vs baseline (paired)" in svg


def test_chart_lines_follow_the_member_mean():
    steps = np.arange(3)
    values = np.array([[0.0, 2.0], [1.0, 3.0], [2.0, 4.0]])  # mean 1, 2, 3
    svg = charts.chart(steps, {"x": values}, ["x"])
    line = svg.split("<polyline points='")[1].split("'")[0]
    ys = [float(p.split(",")[1]) for p in line.split()]
    assert ys[0] > ys[1] > ys[2] and ys[1] - ys[2] == pytest.approx(ys[0] - ys[1], abs=0.11)
    assert svg.count("<polygon") == 1  # the band over two members


def test_ticks_are_round_and_inside():
    assert charts.ticks(0, 1) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert charts.ticks(3, 97) == [20, 40, 60, 80]
    assert charts.ticks(5, 5) == [5]


def test_latest_values_are_means_per_scenario():
    values = {"I": np.array([[0.0, 0, 0, 0], [1.0, 3, 10, 20]])}
    assert charts.latest(values) == [("I", "", 8.5)]
    assert charts.latest(values, ["a", "b"], 2) == [("I", "a", 2.0), ("I", "b", 15.0)]


# -- controls ----------------------------------------------------------------------------------
def test_sliders_end_at_the_declared_bounds():
    model = sir.build(agents=100)
    c = {x.name: x for x in controls.controls(model)}
    assert c["gamma"].kind == "scalar" and (c["gamma"].low, c["gamma"].high) == (0.0, 1.0)
    assert c["beta"].low == 0.0 and c["beta"].high >= 4 * 0.5  # open above: room to move
    assert c["beta"].value == 0.5 and c["initial"].value == 0.001  # float64: no float32 noise


def test_out_of_bounds_values_are_refused_naming_the_param():
    decl = sir.SIRParams.declarations()["gamma"]
    assert controls.checked(decl, "gamma", 0.5) == 0.5
    with pytest.raises(ParamError, match=r"'gamma' must lie in \[0, 1\] \(probability/step\)"):
        controls.checked(decl, "gamma", 1.2)
    with pytest.raises(ParamError, match="not a finite number"):
        controls.checked(decl, "gamma", float("nan"))
    with pytest.raises(ParamError, match="must lie in"):
        controls.checked(decl, "gamma", [0.1, -0.1])


def test_axis_params_are_tables_and_schedules_are_fixed():
    model = covid_behavior.build(agents=300)
    model = model.with_params(beta=Schedule([0.3, 0.1], (0, 10)))
    c = {x.name: x for x in controls.controls(model)}
    caution = c["caution"]
    assert caution.kind == "axis" and caution.labels == covid_behavior.AGE_GROUPS
    assert caution.value == pytest.approx([0.6, 0.8, 1.0, 1.5])
    assert c["beta"].kind == "fixed" and c["beta"].reason == "a schedule"


# -- the LLM panel ----------------------------------------------------------------------------
def test_llm_panel_shows_each_archetypes_latest_answer_and_the_work_so_far(elderly):
    backend = elderly()
    model = covid_behavior.build(
        agents=2000, behavior="llm", backend=backend, cache=False, samples=2
    )
    sim = Simulation(model, members=2, seed=0, progress=False)
    result = sim.run(9)
    panel = llm.llm_panel(model, sim.state)
    assert panel.field == "p_isolate" and len(panel.labels) == 20
    assert sum(panel.sizes) == 2000 and panel.backend == "rule elderly-stay-home"
    answers = llm.answers(panel, sim.state)
    assert answers.shape == (2, 20)
    elderly = np.array(["65+" in label for label in panel.labels])
    assert elderly.sum() == 5
    np.testing.assert_array_equal(answers[:, elderly], 1.0)
    np.testing.assert_array_equal(answers[:, ~elderly], 0.0)
    columns = {n: result.series(n).T.double().numpy() for n in model.metric_columns()}
    totals = llm.counters(columns)
    calls = result.metrics.filter(pl.col("member") == 0)["llm_calls"].sum()
    assert totals["calls"] == calls == backend.calls > 0
    assert "{age_group}" in panel.prompt[0]


def test_a_rule_behaviour_has_no_llm_panel():
    model = covid_behavior.build(agents=300)
    assert llm.llm_panel(model, state_after(model, steps=1)) is None
