"""Watch and steer a model live: in a notebook cell (``show(model)``) or as a browser app
(``populace view MODEL``), from the same solara components.

:class:`LiveRun` (the simulation on a thread of its own, commands and frames) needs no UI
library; :func:`show`, :class:`~populace.view.app.LiveView` and :func:`~populace.view.server.serve`
need the ``view`` extra (solara).
"""

from __future__ import annotations

from typing import Any

from populace.view.runner import Frame, Layout, LiveRun, study_layout

__all__ = ["Frame", "Layout", "LiveRun", "show", "study_layout"]


def show(model: Any = None, **options: Any) -> Any:
    """The live view of ``model`` as a solara element: the last expression of a notebook cell
    displays it. ``options``: :class:`~populace.view.app.LiveView`'s (members, seed, scenarios,
    seeds, steps_per_frame, until, fps, run, ...)."""
    from populace.view.app import LiveView

    return LiveView(model, **options)
