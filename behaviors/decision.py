"""Behaviour: one protocol for a per-agent probability of an action, by a rule or by LLM
archetypes.

A behaviour maps what agents know when they decide (a :class:`Situation`: numbers per ensemble
member, e.g. this week's cases per 100k) to a probability of the action for every agent
(``[B, N]``). Two kinds implement it:

- :class:`Rule` — a function of the situation, the params and the agents' data (a heuristic);
- :class:`LLMArchetypes` — agents grouped into archetypes (e.g. age band × borough), the LLM
  asked once per archetype and member (one batch), the answers broadcast back to the agents
  with optional per-agent heterogeneity. LLM calls scale with archetypes, never with agents.

The model draws the decision from the probability with :func:`populace.behaviors.choice.
bernoulli`, so the same seed gives the same decisions whatever the behaviour's internals.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import torch

from populace.behaviors.llm import (
    Accounting,
    ArchetypeQuery,
    Question,
    broadcast,
    group_by,
    heterogeneous,
)
from populace.engine import Context, Data

#: counters of one decision's LLM work, in the order models record them.
LLM_COUNTERS = (
    "calls",
    "prompts",
    "answers",
    "cache_hits",
    "invalid",
    "retries",
    "fallbacks",
    "lost",
    "backend_errors",
    "prompt_tokens",
    "completion_tokens",
    "seconds",
)


@dataclasses.dataclass(frozen=True)
class Situation:
    """What agents know when they decide: name → ``[B]`` value per member, plus how to put
    each value into words for a prompt (name → ``value -> text``; default: rounded number)."""

    values: Mapping[str, torch.Tensor]
    words: Mapping[str, Callable[[float], str]] = dataclasses.field(default_factory=dict)

    def text(self, member: int) -> dict[str, str]:
        """Prompt fields of one member."""
        out = {}
        for name, v in self.values.items():
            x = float(v[member])
            out[name] = self.words[name](x) if name in self.words else f"{x:.0f}"
        return out


@dataclasses.dataclass(frozen=True)
class Decision:
    """A behaviour's output for one decision step.

    Attributes:
        probs: ``[B, N]`` probability of the action per agent.
        archetype_probs: ``[B, K]`` per archetype (K = 0 for a rule).
        counters: ``[len(LLM_COUNTERS)]`` float64 LLM work of this decision (zeros for a rule).
    """

    probs: torch.Tensor
    archetype_probs: torch.Tensor
    counters: torch.Tensor


class Behaviour(Protocol):
    """Anything that turns a situation into per-agent action probabilities."""

    #: number of archetypes K (0: none).
    archetypes: int

    def decide(
        self, situation: Situation, params: Any, ctx: Context, previous: torch.Tensor
    ) -> Decision:
        """Probabilities for every agent; ``previous``: ``[B, K]`` last archetype values."""
        ...


def _zeros_counters() -> torch.Tensor:
    return torch.zeros(len(LLM_COUNTERS), dtype=torch.float64)


@dataclasses.dataclass(frozen=True)
class Rule:
    """A heuristic: ``probability(situation, params, ctx) -> [B, N]`` in [0, 1]."""

    probability: Callable[[Situation, Any, Context], torch.Tensor]
    archetypes: int = 0

    def decide(
        self, situation: Situation, params: Any, ctx: Context, previous: torch.Tensor
    ) -> Decision:
        probs = self.probability(situation, params, ctx)
        return Decision(probs.clamp(0.0, 1.0), previous, _zeros_counters())


class LLMArchetypes:
    """LLM archetype behaviour: one question per archetype and member, answers broadcast.

    Args:
        query: the :class:`~populace.behaviors.llm.ArchetypeQuery` (backend, prompt, schema,
            samples, cache, fallback).
        data: the model's data; ``attributes`` name axes whose per-agent codes form the
            archetypes (every combination that occurs).
        attributes: axis names, e.g. ``("age_group", "borough")``.
        labels: optional display labels per axis for prompts (axis → labels), e.g. full
            borough names where the data's labels are codes.
        offsets: ``[N]`` fixed per-agent logit offsets for heterogeneity (None: none).
        spread: heterogeneity scale on the logit scale (>= 0).
    """

    def __init__(
        self,
        query: ArchetypeQuery,
        data: Data,
        attributes: Sequence[str],
        labels: Mapping[str, Sequence[str]] | None = None,
        offsets: torch.Tensor | None = None,
        spread: float = 0.0,
    ) -> None:
        labels = dict(labels or {})
        names = {}
        for axis in attributes:
            names[axis] = tuple(labels.get(axis, data.labels(axis)))
            if len(names[axis]) != len(data.labels(axis)):
                raise ValueError(
                    f"labels for axis {axis!r}: {len(names[axis])} given, the axis has "
                    f"{len(data.labels(axis))}"
                )
        self.groups = group_by({a: data[a] for a in attributes}, names)
        self.archetypes = self.groups.count
        self.query = query
        self.offsets = offsets
        self.spread = spread

    def decide(
        self, situation: Situation, params: Any, ctx: Context, previous: torch.Tensor
    ) -> Decision:
        members = previous.shape[0]
        questions = [
            Question(labels, situation.text(b))
            for b in range(members)
            for labels in self.groups.labels
        ]
        values, acc = self.query.ask(questions, previous.reshape(-1).double().cpu())
        p_k = values.view_as(previous).to(previous)
        probs = broadcast(p_k, self.groups)
        if self.offsets is not None:
            probs = heterogeneous(probs, self.offsets.to(probs.device), self.spread)
        return Decision(probs, p_k, counters(acc))


def counters(acc: Accounting) -> torch.Tensor:
    """``[len(LLM_COUNTERS)]`` float64 of an accounting."""
    return torch.tensor([float(getattr(acc, m)) for m in LLM_COUNTERS], dtype=torch.float64)
