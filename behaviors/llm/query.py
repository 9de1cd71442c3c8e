"""Asking the LLM once per archetype: batched, cached, validated, with a counted fallback.

:class:`ArchetypeQuery` turns Q questions (archetype labels + environment values) into Q numbers:
each question is rendered into one prompt, asked ``samples`` times (the mean of the parsed
answers estimates a probability rather than trusting one answer), and every prompt of the round
goes to the backend as one batch, each answer with its own seed (:func:`request_seed` of the
prompt, sample index and attempt), so an answer never depends on what else was asked or cached.
Answers come from the disk cache when present. An answer the schema rejects is asked again (a new
attempt, a new cache key) up to ``max_retries`` times; then the :class:`Fallback` policy decides:
raise (the default) or a declared value, counted.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence

import torch

from populace.behaviors.llm.accounting import Accounting
from populace.behaviors.llm.backends import (
    Backend,
    BackendError,
    Completion,
    Sampling,
    request_seed,
)
from populace.behaviors.llm.cache import AnswerCache, cache_key
from populace.behaviors.llm.prompts import PromptTemplate
from populace.behaviors.llm.schema import InvalidAnswer, Schema

POLICIES = ("previous", "prior", "error")


class FallbackError(RuntimeError):
    """An answer stayed invalid (or the backend failed) under the ``"error"`` policy."""


@dataclasses.dataclass(frozen=True)
class Fallback:
    """What a sample becomes when no valid answer comes.

    There is no silent default value: the default policy raises, and the value policies need
    the prior stated.

    Attributes:
        policy: ``"error"`` (raise :class:`FallbackError`, the default), ``"previous"`` (the
            question's previous value, else ``prior``) or ``"prior"`` (always ``prior``).
        prior: the stated prior value; required by ``"previous"`` and ``"prior"``.
        on_backend_error: ``"fallback"`` (apply the policy to the lost samples, counted) or
            ``"raise"`` (propagate the :class:`BackendError`).
    """

    policy: str = "error"
    prior: float | None = None
    on_backend_error: str = "raise"

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"unknown fallback policy {self.policy!r}; valid: {POLICIES}")
        if self.policy != "error" and self.prior is None:
            raise ValueError(f"the {self.policy!r} fallback policy needs an explicit prior value")
        if self.prior is not None and not math.isfinite(self.prior):
            raise ValueError(f"the fallback prior must be a finite number, got {self.prior}")
        if self.on_backend_error not in ("fallback", "raise"):
            raise ValueError(
                f"on_backend_error must be 'fallback' or 'raise', got {self.on_backend_error!r}"
            )


@dataclasses.dataclass(frozen=True)
class Question:
    """One archetype at one step: its labels and the environment values."""

    labels: Mapping[str, str]
    env: Mapping[str, object]


class ArchetypeQuery:
    """Asks a batch of archetype questions.

    Args:
        backend: any :class:`Backend`.
        template: the prompt.
        schema: how answers are parsed (and guided, where the backend can).
        samples: answers per question (n); their mean is the question's value.
        sampling: sampling settings (part of the cache key).
        cache: an :class:`AnswerCache`, or None for no cache.
        max_retries: re-asks of an invalid answer before the fallback.
        fallback: the policy for answers that stay invalid (default: raise
            :class:`FallbackError`).
    """

    def __init__(
        self,
        backend: Backend,
        template: PromptTemplate,
        schema: Schema,
        *,
        samples: int = 4,
        sampling: Sampling | None = None,
        cache: AnswerCache | None = None,
        max_retries: int = 2,
        fallback: Fallback | None = None,
    ) -> None:
        if samples < 1 or max_retries < 0:
            raise ValueError(f"samples={samples} must be >= 1, max_retries={max_retries} >= 0")
        self.backend = backend
        self.template = template
        self.schema = schema
        self.samples = samples
        self.sampling = sampling or Sampling()
        self.cache = cache
        self.max_retries = max_retries
        self.fallback = fallback or Fallback()
        #: totals over every :meth:`ask`.
        self.total = Accounting()

    def _generate(self, prompts, seeds, acc: Accounting) -> list[Completion] | None:
        start = time.perf_counter()
        try:
            out = self.backend.generate(prompts, self.sampling, self.schema, seeds)
        except BackendError:
            acc.seconds += time.perf_counter() - start
            if self.fallback.on_backend_error == "raise":
                raise
            acc.backend_errors += 1
            return None
        acc.seconds += time.perf_counter() - start
        if len(out) != len(prompts):
            raise BackendError(
                f"backend {self.backend.name!r} returned {len(out)} completions for "
                f"{len(prompts)} prompts"
            )
        acc.calls += len(prompts)
        acc.batches += 1
        for c in out:
            acc.prompt_tokens += c.prompt_tokens
            acc.completion_tokens += c.completion_tokens
        return out

    def ask(
        self, questions: Sequence[Question], previous: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Accounting]:
        """Answer every question.

        Args:
            questions: Q questions (e.g. K archetypes x B members).
            previous: ``[Q]`` values of the last query for the ``"previous"`` policy (NaN: none
                yet, the prior is used).

        Returns:
            values: ``[Q]`` float64, the mean parsed answer over ``samples`` per question.
            accounting: what this call cost.
        """
        q_count = len(questions)
        if previous is not None and previous.shape != (q_count,):
            raise ValueError(f"previous has shape {tuple(previous.shape)}, expected [{q_count}]")
        acc = Accounting()
        prompts = [self.template.render(q.labels, q.env, self.schema) for q in questions]
        answers = torch.full((q_count, self.samples), float("nan"), dtype=torch.float64)
        pending = [(q, s) for q in range(q_count) for s in range(self.samples)]
        lost = []  # samples left unanswered by a backend error: they take the fallback
        down = False  # the backend failed this call: later rounds use the cache only
        name, model, sampling = self.backend.name, self.backend.model, self.sampling
        for attempt in range(self.max_retries + 1):
            if not pending:
                break
            if attempt:
                acc.retries += len(pending)
            keys = [cache_key(name, model, prompts[q], sampling, s, attempt) for q, s in pending]
            acc.prompts += len(keys)
            found: dict[str, Completion] = {}
            if self.cache is not None:
                for key in set(keys):
                    hit = self.cache.get(key)
                    if hit is not None:
                        found[key] = hit
            acc.cache_hits += sum(k in found for k in keys)
            # one prompt per distinct missing key: duplicate questions are asked once
            order = list(dict.fromkeys(k for k in keys if k not in found))
            if order and not down:
                first = {k: i for i, k in reversed(list(enumerate(keys)))}
                asked = [pending[first[k]] for k in order]
                batch = [prompts[q] for q, _ in asked]
                seeds = [request_seed(sampling.seed, prompts[q], s, attempt) for q, s in asked]
                out = self._generate(batch, seeds, acc)
                if out is None:
                    down = True
                else:
                    fresh = list(zip(order, out, strict=True))
                    found.update(fresh)
                    if self.cache is not None:
                        self.cache.put_many(fresh)
            still = []
            for (q, s), key in zip(pending, keys, strict=True):
                if key not in found:  # only after a backend error
                    lost.append((q, s))
                    continue
                try:
                    answers[q, s] = self.schema.parse(found[key].text)
                except InvalidAnswer:
                    acc.invalid += 1
                    still.append((q, s))
            pending = still
        pending += lost
        if pending:
            if self.fallback.policy == "error":
                raise FallbackError(
                    f"{len(pending)} answer(s) still invalid after {self.max_retries} retries "
                    f"(or lost to a backend error), e.g. for "
                    f"{dict(questions[pending[0][0]].labels)}"
                )
            for q, s in pending:
                prev = float(previous[q]) if previous is not None else float("nan")
                use_previous = self.fallback.policy == "previous" and prev == prev  # not NaN
                answers[q, s] = prev if use_previous else self.fallback.prior
            acc.fallbacks += len(pending)
        self.total = self.total + acc
        return answers.mean(dim=1), acc
