"""Mesa 3 implementations of the ABM framework comparison suite, written for side-by-side timing.

Each module defines one ``mesa.Model`` subclass whose constructor takes the same sizes and
parameters as the populace zoo model of the same name, a ``step()``, and the same outcome
statistics as methods, so :mod:`populace.benchmarks.compare` can time both in one process and
the tests can compare their outcomes. Needs ``pip install mesa`` (the ``bench`` extra).
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: populace zoo name → peer module, for the suite's four models.
PEERS = {
    "boids": "flocking",
    "schelling": "schelling",
    "wolfsheep": "wolfsheep",
    "forestfire": "forestfire",
}


def peer(name: str) -> ModuleType:
    """The Mesa peer module of zoo model ``name`` (imports mesa)."""
    if name not in PEERS:
        raise KeyError(f"no Mesa peer for model {name!r}; peers: {', '.join(PEERS)}")
    return importlib.import_module(f"populace.benchmarks.peers.{PEERS[name]}")
