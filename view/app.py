"""The live view: one solara component tree, shown in a notebook cell or served as a browser app.

``LiveView(model)`` builds a :class:`~populace.view.runner.LiveRun` (the simulation on a thread
of its own), then a drawing thread of the view pulls the run's latest frame at most ``fps``
times a second and draws it (charts, the spatial layer, the LLM panel) off the simulation's
thread (what it reads from the run's tensors is computed by the simulation's thread between
two chunks); the page only receives SVG charts, small PNG images and tables. Unmounting the
view (closing the tab, or the notebook cell's output) stops the run it built.
"""

from __future__ import annotations

import dataclasses
import html
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import solara

from populace.engine import Model, ParamError
from populace.engine.display import describe_value
from populace.engine.study import Scenario
from populace.view import charts, controls, llm, spatial
from populace.view.runner import Frame, LiveRun

#: recorded columns shown by default (the first few that are not LLM counters).
DEFAULT_METRICS = 3
#: a map (matplotlib choropleth) is redrawn at most this often, in seconds.
MAP_EVERY = 1.0
#: most of the time the view's pictures may cost: after a costly picture (a map, a million
#: positions) the drawing loop waits longer, so watching takes at most this share of a core and
#: of the simulation thread's time (and of the interpreter lock it needs between operations).
DRAW_SHARE = 0.05
#: what a study's paired difference may reduce each seed's series to.
REDUCES = ("final", "peak", "sum")


@dataclasses.dataclass(frozen=True)
class Choice:
    """What the user picked to look at."""

    metrics: tuple[str, ...]
    layer: str = ""
    member: int = 0
    difference: str = ""
    reduce: str = "final"


@dataclasses.dataclass(frozen=True)
class Picture:
    """One drawn frame: what the page shows."""

    frame: Frame
    choice: Choice
    chart: str = ""
    spatial: bytes | None = None
    latest: tuple[tuple[str, str, float], ...] = ()
    difference: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    answers: np.ndarray | None = None
    counters: dict[str, float] = dataclasses.field(default_factory=dict)
    problem: str = ""


def draw(
    run: LiveRun,
    frame: Frame,
    choice: Choice,
    layers: Sequence[spatial.Layer],
    panel: llm.LLMPanel | None,
    previous: Picture | None = None,
    map_due: bool = True,
) -> Picture:
    """Everything the page shows of ``frame`` (called on the view's drawing thread).

    A map layer not ``map_due`` keeps the previous picture's image (choropleths are slow)."""
    steps, columns = frame.history.read()
    layout = run.layout
    names = layout.names
    shown = {m: columns[m] for m in choice.metrics if m in columns}
    difference = choice.difference if names and choice.difference in columns else None
    picture: dict[str, Any] = {
        "chart": charts.chart(
            steps,
            columns,
            list(shown),
            scenarios=names,
            seeds=layout.seeds,
            difference=difference,
        ),
        "latest": tuple(charts.latest(shown, names, layout.seeds)),
    }
    if difference:
        table = charts.difference_table(
            steps, columns[difference], difference, names, layout.seeds, choice.reduce
        )
        picture["difference"] = table.to_dicts()
    layer = next((x for x in layers if x.name == choice.layer), None)
    if layer is not None:
        member = min(max(choice.member, 0), frame.state.members - 1)
        keep = layer.kind == "map" and not map_due and previous is not None
        if keep and previous.choice.layer == choice.layer:
            picture["spatial"] = previous.spatial
        else:
            array = run.compute(lambda: layer.read(frame.state, member))
            picture["spatial"] = spatial.render(layer, array)
    if panel is not None:
        picture["answers"] = run.compute(lambda: llm.answers(panel, frame.state))
        picture["counters"] = llm.counters(columns)
    return Picture(frame, choice, **picture)


def watch(
    run: LiveRun,
    choice: Callable[[], Choice],
    show: Callable[[Picture], None],
    cancel: threading.Event,
    layers: Sequence[spatial.Layer] = (),
    panel: llm.LLMPanel | None = None,
    fps: float = 4.0,
) -> None:
    """The view's drawing loop: pull the run's latest frame at most ``fps`` times a second,
    draw it (or the same frame again when the ``choice`` changed) and ``show`` the picture,
    until ``cancel`` is set or the run stops. Frames published in between are skipped, so a
    fast simulation is never held up by drawing; after each picture the loop rests until
    ``1 / DRAW_SHARE`` times what the picture cost (this thread's CPU time, and the simulation
    thread's time on :meth:`LiveRun.compute`) has passed."""
    drawn: tuple[int, Choice] | None = None
    shown: Picture | None = None
    next_at = map_at = 0.0
    while not cancel.is_set():
        frame = run.wait(drawn[0] if drawn else -1, timeout=0.2)
        if drawn == (frame.version, choice()):
            if frame.status == "stopped":
                return
            continue
        pause = next_at - time.monotonic()
        if pause > 0 and cancel.wait(pause):  # the bounded rate
            return
        frame, current = run.frame(), choice()
        start, cpu, computed = time.monotonic(), time.thread_time(), run.compute_seconds
        map_due = start - map_at >= MAP_EVERY
        try:
            shown = draw(run, frame, current, layers, panel, shown, map_due)
        except Exception as err:  # a drawing bug must not end the view
            shown = Picture(frame, current, problem=f"drawing failed: {err!r}")
        if map_due:
            map_at = start
        drawn = (frame.version, current)
        show(shown)
        # what the picture cost the simulation: this thread's CPU time and the simulation
        # thread's time on its computations (not the wait for a chunk to end)
        cost = time.thread_time() - cpu + run.compute_seconds - computed
        next_at = start + max(1.0 / fps, cost / DRAW_SHARE)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], css: str) -> solara.Element:
    head = "".join(
        f"<th style='text-align:left;padding-right:12px'>{html.escape(h)}</th>" for h in header
    )
    body = "".join(
        "<tr>"
        + "".join(f"<td style='padding-right:12px'>{html.escape(str(v))}</td>" for v in row)
        + "</tr>"
        for row in rows
    )
    return solara.HTML(
        tag="table",
        unsafe_innerHTML=f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody>",
        classes=[css],
        style="font-size: 13px; border-collapse: collapse",
    )


def _heading(text: str) -> solara.Element:
    # plain HTML: solara's Markdown would fetch KaTeX from a CDN
    return solara.HTML(tag="div", unsafe_innerHTML=f"<b>{html.escape(text)}</b>")


def _alert(text: str, css: str) -> solara.Element:
    # plain HTML: solara 1.58's Error/Warning cannot build their vuetify 3 alert
    return solara.HTML(
        tag="div",
        unsafe_innerHTML=html.escape(text),
        classes=[css],
        style="color: #b00020; border: 1px solid #b00020; border-radius: 4px; padding: 6px; "
        "font-size: 13px; white-space: pre-wrap",
    )


def _line(text: str, css: str) -> solara.Element:
    return solara.HTML(tag="div", unsafe_innerHTML=html.escape(text), classes=[css])


def _number(x: float) -> str:
    return f"{x:.6g}"


def _number_box(label: str, value: float, on_text: Callable[[str], None], style: str = ""):
    # text sent on Enter or when the box loses focus (the DOM's change event), never while
    # typing: solara 1.58's numeric inputs, and its "keyup.enter" under vuetify 3, send every
    # keystroke ("1" on the way to "1.5")
    return solara.InputText(
        label,
        value=f"{value:.10g}",
        on_value=on_text,
        continuous_update=False,
        update_events=["change"],
        dense=True,
        style=style or None,
    )


@solara.component
def ParamControl(control: controls.Control, value: Any, send: Callable[[str, Any], str]):
    """A slider and a number box (scalar), a table of boxes (axis), or a read-only line."""
    problem, set_problem = solara.use_state("")
    decl = control.decl
    label = control.name

    def submit(new: Any) -> None:
        set_problem(send(control.name, new))

    def typed(text: str, at: int | None = None) -> None:
        try:
            number = float(text)
        except ValueError:
            set_problem(f"parameter {control.name!r}: {text!r} is not a number")
            return
        submit(number if at is None else [*value[:at], number, *value[at + 1 :]])

    with solara.Div(classes=[f"pv-param-{control.name}", "pv-param"]):
        if control.kind == "scalar":
            solara.SliderFloat(
                label,
                value=value,
                min=control.low,
                max=control.high,
                step=control.step,
                on_value=submit,
            )
            _number_box(f"{control.name} =", value, typed)
        elif control.kind == "axis":
            solara.Text(f"{label} per {decl.axes[0]}", style="font-size: 13px")
            with solara.Row(style="flex-wrap: wrap; gap: 4px"):
                for i, lab in enumerate(control.labels):
                    _number_box(lab, value[i], lambda text, i=i: typed(text, i), "width: 70px")
        else:
            solara.Text(f"{label} = {control.value}  ({control.reason}: fixed while live)")
        about = " ".join(x for x in (decl.bounds_text(), decl.unit) if x)
        if decl.doc:
            about += f" — {decl.doc}"
        solara.Text(about, style="font-size: 11px; color: #666")
        if problem:
            _alert(problem, "pv-refused")


@solara.component
def LiveView(
    model: Model | None = None,
    *,
    run: LiveRun | None = None,
    members: int = 1,
    seed: int = 0,
    scenarios: Sequence[Scenario] = (),
    seeds: int = 4,
    device: str = "auto",
    steps_per_frame: int = 1,
    until: int | None = None,
    fps: float = 4.0,
    metrics: Sequence[str] | None = None,
    layer: str | None = None,
    areas: Any = None,
    on_close: Callable[[LiveRun], None] | None = None,
):
    """Watch and steer ``model`` live (or an existing ``run``).

    Args:
        model: what to run (ignored when ``run`` is given).
        run: a :class:`LiveRun` to show (the view then leaves it running when unmounted).
        members, seed, scenarios, seeds, device, steps_per_frame, until: of the
            :class:`LiveRun` built for ``model``; ``scenarios`` make it a live study.
        fps: most frames drawn per second.
        metrics: columns charted first (default: the first few).
        layer: the spatial layer shown first (default: the first the state offers).
        areas: polygons of the model data's ``area`` axis for maps (default: NYC's).
        on_close: called with the run when the view is unmounted (the tab closed).
    """
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")

    def build() -> LiveRun:
        if run is not None:
            return run
        if model is None:
            raise ValueError("LiveView needs a model or a run")
        return LiveRun(
            model,
            members=members,
            seed=seed,
            scenarios=scenarios,
            seeds=seeds,
            device=device,
            steps_per_frame=steps_per_frame,
            until=until,
        )

    live: LiveRun = solara.use_memo(build, [])

    def on_unmount():
        def cleanup():
            if run is None:
                live.stop(timeout=0)
            if on_close is not None:
                on_close(live)

        return cleanup

    solara.use_effect(on_unmount, [])
    first = live.frame()
    layers = solara.use_memo(lambda: spatial.layers(live.model, first.state, areas), [])
    panel = solara.use_memo(lambda: llm.llm_panel(live.model, first.state), [])
    params_ui = solara.use_memo(lambda: controls.controls(live.model), [])
    names = live.history.names

    def initial_choice() -> Choice:
        plain = [n for n in names if not n.startswith("llm_")] or list(names)
        shown = tuple(metrics) if metrics else tuple(plain[:DEFAULT_METRICS])
        unknown = sorted(set(shown) - set(names))
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; recorded: {names}")
        offered = [x.name for x in layers]
        if layer is not None and layer not in offered:
            raise ValueError(f"unknown layer {layer!r}; this model offers {offered}")
        first_layer = layer if layer is not None else (offered[0] if offered else "")
        return Choice(shown, first_layer, 0, shown[0] if live.layout.names and shown else "")

    start = solara.use_memo(initial_choice, [])
    choice, set_choice = solara.use_state(start, key="choice")
    choice_ref = solara.use_ref(choice)
    choice_ref.current = choice
    picture, set_picture = solara.use_state(None, key="picture")
    editable = {c.name: c.value for c in params_ui if c.kind != "fixed"}
    values, set_values = solara.use_state(editable, key="values")
    new_seed, set_new_seed = solara.use_state(first.seed, key="seed")
    problem, set_problem = solara.use_state("", key="problem")

    def poll(cancel: threading.Event) -> None:
        watch(live, lambda: choice_ref.current, set_picture, cancel, layers, panel, fps)

    solara.use_thread(poll, dependencies=[live], intrusive_cancel=False)

    def send(name: str, value: Any) -> str:
        decl = live.model.params.declarations()[name]
        try:
            value = controls.checked(decl, name, value)
            live.set_params(**{name: value})
        except ParamError as err:
            return str(err)  # refused: nothing was sent
        set_values({**values, name: value})
        return ""

    def command(fn: Callable[[], None]) -> Callable[[], None]:
        def act() -> None:
            try:
                fn()
                set_problem("")
            except (ValueError, RuntimeError) as err:
                set_problem(str(err))

        return act

    def set_steps(value: int) -> None:
        command(lambda: live.set_steps_per_frame(value))()

    frame = picture.frame if picture is not None else first
    playing = frame.status == "playing"
    solara.Title(f"populace view · {live.model.name}")
    with solara.Column(style="padding: 8px; gap: 6px", classes=["pv-root"]):
        what = (
            f"study: {len(live.layout.names)} scenarios × {live.layout.seeds} seeds"
            if live.layout.names
            else f"{live.layout.members} member(s)"
        )
        _heading(
            f"{live.model.name} · {live.model.agents:,} agents · {what} · {live.sim.device.type}"
        )
        with solara.Row(style="align-items: center; gap: 8px; flex-wrap: wrap"):
            solara.Button(
                "pause" if playing else "play",
                on_click=command(live.pause if playing else live.play),
                disabled=frame.status in ("error", "stopped", "finished"),
                classes=["pv-play"],
                color="primary",
            )
            solara.Button(
                "step",
                on_click=command(lambda: live.step()),
                disabled=playing or frame.status in ("error", "stopped", "finished"),
                classes=["pv-step-button"],
            )
            solara.Button(
                "reset",
                on_click=command(lambda: live.reset(new_seed)),
                disabled=frame.status == "stopped",
                classes=["pv-reset"],
            )
            solara.InputInt(
                "steps per frame",
                value=live.steps_per_frame,
                on_value=set_steps,
                dense=True,
                style="max-width: 130px",
                classes=["pv-steps-per-frame"],
            )
            solara.InputInt(
                "seed (on reset)",
                value=new_seed,
                on_value=set_new_seed,
                dense=True,
                style="max-width: 130px",
                classes=["pv-seed"],
            )
            solara.Text(f"step {frame.step}", classes=["pv-step"])
            solara.Text(
                f"{frame.status} · {frame.steps_per_second:,.0f} steps/s · seed {frame.seed}",
                classes=["pv-status"],
            )
        if frame.status == "error":
            _alert(frame.error, "pv-error")
        if problem:
            _alert(problem, "pv-problem")
        if picture is not None and picture.problem:
            _alert(picture.problem, "pv-problem")
        with solara.Row(style="align-items: flex-start; gap: 16px; flex-wrap: wrap"):
            with solara.Column(style="width: 320px; gap: 2px", classes=["pv-controls"]):
                _heading("Parameters")
                for c in params_ui:
                    ParamControl(c, values.get(c.name, c.value), send)
                _heading("In force (read from the simulation)")
                rows = [
                    (n, describe_value(getattr(frame.applied, n))) for n in frame.applied.names()
                ]
                _table(["param", "value"], rows, "pv-in-force")
            with solara.Column(style="min-width: 480px; flex: 1; gap: 4px"):
                solara.SelectMultiple(
                    "metrics",
                    values=list(choice.metrics),
                    all_values=list(names),
                    on_value=lambda v: set_choice(dataclasses.replace(choice, metrics=tuple(v))),
                    dense=True,
                )
                if picture is not None and picture.chart:
                    solara.HTML(tag="div", unsafe_innerHTML=picture.chart, classes=["pv-chart"])
                if picture is not None:
                    rows = [(m, g, _number(v)) for m, g, v in picture.latest]
                    header = ["metric", "scenario", "mean"] if live.layout.names else None
                    _table(header or ["metric", "", "mean over members"], rows, "pv-latest")
                if live.layout.names:
                    StudyPanel(choice, set_choice, names, picture)
            with solara.Column(style="width: 380px; gap: 4px"):
                if layers:
                    SpatialPanel(layers, choice, set_choice, frame.state.members, picture)
                if panel is not None:
                    LLMPanelView(panel, picture)


@solara.component
def StudyPanel(choice: Choice, set_choice, names: Sequence[str], picture: Picture | None):
    """The paired difference so far: a metric, how each seed's series is reduced, a table."""
    _heading("Paired difference vs baseline so far (same seeds)")
    with solara.Row():
        solara.Select(
            "metric",
            values=list(names),
            value=choice.difference,
            on_value=lambda v: set_choice(dataclasses.replace(choice, difference=v)),
        )
        solara.Select(
            "reduce",
            values=list(REDUCES),
            value=choice.reduce,
            on_value=lambda v: set_choice(dataclasses.replace(choice, reduce=v)),
        )
    if picture is not None and picture.difference:
        rows = [
            (r["scenario"], _number(r["mean"]), f"[{_number(r['lo'])}, {_number(r['hi'])}]")
            for r in picture.difference
        ]
        _table(["scenario", "mean Δ", "90 % interval"], rows, "pv-difference")


@solara.component
def SpatialPanel(layers, choice: Choice, set_choice, members: int, picture: Picture | None):
    solara.Select(
        "spatial view",
        values=[x.name for x in layers],
        value=choice.layer,
        on_value=lambda v: set_choice(dataclasses.replace(choice, layer=v)),
    )
    if members > 1:
        solara.SliderInt(
            "member",
            value=choice.member,
            min=0,
            max=members - 1,
            on_value=lambda v: set_choice(dataclasses.replace(choice, member=v)),
        )
    if picture is not None and picture.spatial:
        solara.Image(picture.spatial, classes=["pv-spatial"])


@solara.component
def LLMPanelView(panel: llm.LLMPanel, picture: Picture | None):
    """Archetypes, their latest answers (probabilities over members) and the LLM's work."""
    with solara.Card("LLM archetypes", classes=["pv-llm"]):
        _line(f"backend: {panel.backend}", "pv-llm-backend")
        if picture is not None and picture.counters:
            c = picture.counters
            counts = " · ".join(
                f"{k.replace('_', ' ')} {v:,.0f}"
                for k, v in c.items()
                if k not in ("prompt_tokens", "completion_tokens", "seconds")
            )
            _line(f"so far: {counts}", "pv-llm-counters")
        rows = []
        answers = picture.answers if picture is not None else None
        for k, label in enumerate(panel.labels):
            if answers is not None and answers.shape[1] == len(panel.labels):
                p = answers[:, k]
                latest = f"{p.mean():.3f}" + (
                    f" ({p.min():.2f}–{p.max():.2f})" if len(p) > 1 else ""
                )
            else:
                latest = "—"
            rows.append((label, f"{panel.sizes[k]:,}", latest))
        _table(["archetype", "agents", "p(yes), latest"], rows, "pv-llm-answers")
        prompt = html.escape(f"system: {panel.prompt[0]}\nuser: {panel.prompt[1]}")
        solara.HTML(  # plain HTML: solara 1.58's Details needs a vuetify 2 widget
            tag="details",
            unsafe_innerHTML=f"<summary>prompt</summary><pre style='white-space: pre-wrap'>"
            f"{prompt}</pre>",
            style="font-size: 12px",
        )
