"""The LLM panel: archetypes, their latest answers (probabilities) and the LLM's work so far.

For a model whose steps decide by :class:`~populace.behaviors.decision.LLMArchetypes` (found in
the steps' closures, where a model's ``build`` keeps its behaviour), the panel lists each
archetype (its labels and number of agents), the latest archetype probability per member from
the state field declared ``("B", "K")`` (K = the number of archetypes; ``p_isolate`` in
``covid_behavior``: the mean of the sampled yes/no answers), and sums the ``llm_*`` counter
metrics (calls, cache hits, fallbacks, ...; one row per step for the whole batch, so member 0's
column is summed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import torch

from populace.behaviors.decision import LLM_COUNTERS, LLMArchetypes
from populace.engine import Model, State

#: the symbol of the archetype axis in state declarations (``tensor_field("B", "K")``).
ARCHETYPE_AXIS = "K"


@dataclasses.dataclass(frozen=True)
class LLMPanel:
    """What the panel shows besides the live numbers.

    Attributes:
        labels: K archetype labels (``"65+ · Bronx"``).
        sizes: K agents per archetype.
        field: the state field holding the ``[B, K]`` archetype probabilities ("" if none).
        prompt: the prompt template's system and user text.
        backend: the backend's name and model.
    """

    labels: tuple[str, ...]
    sizes: tuple[int, ...]
    field: str
    prompt: tuple[str, str]
    backend: str


def _closure_values(fn, depth: int = 2) -> Iterator[object]:
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        yield value
        if depth > 1 and callable(value):
            yield from _closure_values(value, depth - 1)


def find_archetypes(model: Model) -> LLMArchetypes | None:
    """The LLMArchetypes behaviour a step of ``model`` decides by, if any."""
    for step in model.steps:
        for value in _closure_values(step):
            if isinstance(value, LLMArchetypes):
                return value
    return None


def llm_panel(model: Model, state: State) -> LLMPanel | None:
    """The panel of an LLM archetype model (None for other models)."""
    behaviour = find_archetypes(model)
    if behaviour is None:
        return None
    k = behaviour.archetypes
    groups = behaviour.groups
    labels = tuple(" · ".join(label.values()) for label in groups.labels)
    field = ""
    for name, value in state.tensors().items():
        spec = _shape(type(state), name)
        if spec == ("B", ARCHETYPE_AXIS) and value.shape[1] == k and value.is_floating_point():
            field = name
            break
    query = behaviour.query
    prompt = (query.template.system, query.template.user)
    backend = f"{query.backend.name} {getattr(query.backend, 'model', '')}".strip()
    return LLMPanel(labels, tuple(groups.sizes.tolist()), field, prompt, backend)


def _shape(cls: type, name: str) -> tuple | None:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata.get("shape")
    return None


def answers(panel: LLMPanel, state: State) -> np.ndarray:
    """``[B, K]`` latest archetype probabilities on the host (empty if the state has none)."""
    if not panel.field:
        return np.zeros((state.members, 0))
    return getattr(state, panel.field).detach().to("cpu", torch.float64).numpy()


def counters(columns: dict[str, np.ndarray]) -> dict[str, float]:
    """Counter → total so far, from the recorded ``llm_<counter>`` columns (``[T, B]``)."""
    out = {}
    for name in LLM_COUNTERS:
        values = columns.get(f"llm_{name}")
        if values is not None and len(values):
            out[name] = float(values[:, 0].sum())
    return out
