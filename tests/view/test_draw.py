"""What the view's drawing thread makes of a frame (the page only shows these pictures)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("solara", reason="the live view needs the view extra (solara)")

from populace.engine.intervention import ScaleParam  # noqa: E402
from populace.engine.study import Scenario  # noqa: E402
from populace.models import covid_behavior, sir, vicsek  # noqa: E402
from populace.view import LiveRun, charts, llm, spatial  # noqa: E402
from populace.view.app import Choice, draw  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def stepped(wait_for):
    runs = []

    def make(model, steps, **options):
        run = LiveRun(model, **options)
        runs.append(run)
        run.step(steps)
        return run, wait_for(run, lambda f: f.step == steps)

    yield make
    for run in runs:
        run.stop()


def test_a_study_frame_draws_bands_latest_means_and_the_paired_difference(stepped):
    scenarios = [Scenario("half", (ScaleParam("beta", 0.5, start=3),))]
    run, frame = stepped(sir.build(agents=1000), 12, scenarios=scenarios, seeds=3)
    picture = draw(run, frame, Choice(("I", "R"), difference="R"), [], None)
    assert picture.chart.startswith("<svg") and picture.spatial is None
    assert "Δ R vs baseline (paired)" in picture.chart
    steps, columns = frame.history.read()
    names = ["baseline", "half"]
    want = charts.latest({"I": columns["I"], "R": columns["R"]}, names, 3)
    assert list(picture.latest) == want
    table = charts.difference_table(steps, columns["R"], "R", names, 3)
    assert picture.difference == table.to_dicts() and picture.difference[0]["scenario"] == "half"


def test_the_chosen_layer_and_member_are_drawn(stepped):
    model = vicsek.build(agents=500)
    run, frame = stepped(model, 2, members=2)
    layers = spatial.layers(model, frame.state)
    picture = draw(run, frame, Choice(("order",), layer="pos (density)", member=1), layers, None)
    want = spatial.render(layers[0], layers[0].read(frame.state, 1))
    assert picture.spatial == want


def test_a_map_is_redrawn_only_when_due(stepped, wait_for):
    model = covid_behavior.build(agents=800, initial_infected=80)
    run, frame = stepped(model, 1)
    layers = spatial.layers(model, frame.state)
    choice = Choice(("I",), layer="I share by area")
    first = draw(run, frame, choice, layers, None)
    run.step(3)
    later = wait_for(run, lambda f: f.step == 4)
    kept = draw(run, later, choice, layers, None, previous=first, map_due=False)
    assert kept.spatial is first.spatial and kept.frame is later
    redrawn = draw(run, later, choice, layers, None, previous=first, map_due=True)
    assert redrawn.spatial.startswith(PNG) and redrawn.spatial != first.spatial


def test_an_llm_frame_draws_the_archetypes_answers_and_counters(stepped, elderly):
    backend = elderly()
    model = covid_behavior.build(
        agents=1000, behavior="llm", backend=backend, cache=False, samples=1
    )
    run, frame = stepped(model, 9, members=2)
    panel = llm.llm_panel(model, frame.state)
    picture = draw(run, frame, Choice(("I",)), [], panel)
    np.testing.assert_array_equal(picture.answers, frame.state.p_isolate.double().numpy())
    assert picture.counters["calls"] == backend.calls > 0


def test_the_drawing_loop_is_rate_bounded_and_skips_frames(live):
    import threading
    import time

    from populace.view.app import watch

    run = live(sir.build(agents=500), until=100_000)
    shown = []
    cancel = threading.Event()
    fps = 5.0
    loop = threading.Thread(
        target=watch, args=(run, lambda: Choice(("I",)), shown.append, cancel, (), None, fps)
    )
    start = time.monotonic()
    loop.start()
    run.play()
    time.sleep(1.5)
    cancel.set()
    loop.join(timeout=10)
    elapsed = time.monotonic() - start
    assert not loop.is_alive()
    assert 1 <= len(shown) <= 1 + elapsed * fps  # at most fps pictures a second
    versions = [p.frame.version for p in shown]
    assert versions == sorted(versions)
    assert run.frame().version > len(shown)  # the run published more frames than were drawn
