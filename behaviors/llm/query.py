"""Asking the LLM once per archetype: batched, cached, validated, with a counted fallback.

:class:`ArchetypeQuery` turns Q questions (archetype labels + environment values) into Q numbers:
each question is rendered into one prompt, asked ``samples`` times (the mean of the parsed
answers estimates a probability rather than trusting one answer), and every prompt of the round
goes to the backend as one batch. Answers come from the disk cache when present. An answer the
schema rejects is asked again (a new attempt, a new cache key) up to ``max_retries`` times; then
the sample takes the :class:`Fallback` value, and the fallback is counted.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence

import torch

from populace.behaviors.llm.accounting import Accounting
from populace.behaviors.llm.backends import Backend, BackendError, Completion, Sampling
from populace.behaviors.llm.cache import AnswerCache, cache_key
from populace.behaviors.llm.prompts import PromptTemplate
from populace.behaviors.llm.schema import InvalidAnswer, Schema

POLICIES = ("previous", "prior", "error")


class FallbackError(RuntimeError):
    """An answer stayed invalid (or the backend failed) under the ``"error"`` policy."""


@dataclasses.dataclass(frozen=True)
class Fallback:
    """What a sample becomes when no valid answer comes.

    Attributes:
        policy: ``"previous"`` (the question's previous value, else ``prior``), ``"prior"``
            (always ``prior``) or ``"error"`` (raise :class:`FallbackError`).
        prior: the stated prior value.
        on_backend_error: ``"fallback"`` (apply the policy to the lost samples, counted) or
            ``"raise"`` (propagate the :class:`BackendError`).
    """

    policy: str = "previous"
    prior: float = 0.0
    on_backend_error: str = "raise"

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"unknown fallback policy {self.policy!r}; valid: {POLICIES}")
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
        fallback: the policy for answers that stay invalid.
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

    def _generate(self, prompts, sampling, acc: Accounting) -> list[Completion] | None:
        start = time.perf_counter()
        try:
            out = self.backend.generate(prompts, sampling, self.schema)
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
        name, model = self.backend.name, self.backend.model
        for attempt in range(self.max_retries + 1):
            if not pending:
                break
            if attempt:
                acc.retries += len(pending)
            sampling = dataclasses.replace(self.sampling, seed=self.sampling.seed + 7919 * attempt)
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
            if order:
                first = {k: i for i, k in reversed(list(enumerate(keys)))}
                batch = [prompts[pending[first[k]][0]] for k in order]
                out = self._generate(batch, sampling, acc)
                if out is None:
                    break  # backend down: the remaining samples take the fallback
                fresh = list(zip(order, out, strict=True))
                found.update(fresh)
                if self.cache is not None:
                    self.cache.put_many(fresh)
            still = []
            for (q, s), key in zip(pending, keys, strict=True):
                try:
                    answers[q, s] = self.schema.parse(found[key].text)
                except InvalidAnswer:
                    acc.invalid += 1
                    still.append((q, s))
            pending = still
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
