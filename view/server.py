"""The browser app: the live view served by solara's server (starlette under uvicorn).

:func:`serve` shows ``LiveView(model, **options)`` on ``http://127.0.0.1:PORT/``; every page
opened gets a run of its own, and closing the page (its kernel) stops that run. Nothing is
fetched from outside: the front-end files come from the ``solara-assets`` package, and
solara's telemetry is switched off.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from typing import Any

import solara

from populace.engine import Model
from populace.view.app import LiveView
from populace.view.runner import LiveRun

#: what :func:`Page` shows: set by :func:`serve` (one model per server process).
APP: dict[str, Any] = {}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _closed(run: LiveRun) -> None:
    frame = run.frame()
    print(
        f"populace view: page closed; the run of {run.model.name} stopped at step {frame.step}",
        file=sys.stderr,
        flush=True,
    )


@solara.component
def Page():
    """The app's page: the configured model, live."""
    LiveView(APP["model"], **APP["options"], on_close=_closed)


def serve(
    model: Model,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    announce: Callable[[str], None] = print,
    **options: Any,
) -> None:
    """Serve the live view of ``model`` until interrupted (Ctrl-C).

    Args:
        host: the address to listen on (loopback by default).
        port: the port (None: a free one).
        announce: called with the URL once the port is chosen.
        options: :class:`~populace.view.app.LiveView` options (members, seed, scenarios, ...).
    """
    import uvicorn
    from solara.server import settings

    settings.telemetry.mixpanel_enable = False
    settings.theme.show_banner = False
    import solara.server.app as solara_app
    import solara.server.starlette  # noqa: F401  (builds the starlette app)

    solara_app.apps["__default__"] = solara_app.AppScript(f"{__name__}:Page")
    APP.update(model=model, options=options)
    port = free_port(host) if port is None else port
    config = uvicorn.Config(
        "solara.server.starlette:app", host=host, port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    announce(f"http://{host}:{port}/")
    server.run()
