"""Asking the LLM once per archetype: batched, cached, validated, with a counted fallback.

:class:`ArchetypeQuery` turns Q questions (archetype labels + environment values) into Q numbers:
each question is rendered into one prompt, asked ``samples`` times (the mean of the parsed
answers estimates a probability rather than trusting one answer), and every prompt of the round
goes to the backend as one batch, each answer with its own seed (:func:`request_seed` of the
prompt, sample index and attempt), so an answer never depends on what else was asked or cached.
Answers come from the disk cache when present. An answer the schema rejects is asked again (a new
attempt, a new cache key) up to ``max_retries`` times; then the :class:`Fallback` policy decides:
raise (the default) or a declared value, counted. A query whose answers mostly fall back is not
quietly a run on priors: past ``Fallback.max_share`` of its answers it warns with
a :class:`FallbackShareWarning` once (or raises :class:`FallbackShareError`, by policy).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections import Counter
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
#: what a query does when more than ``max_share`` of its answers fell back.
ON_EXCESS = ("error", "warn")


class FallbackError(RuntimeError):
    """An answer stayed invalid (or the backend failed) under the ``"error"`` policy."""


class FallbackShareError(FallbackError):
    """More than ``Fallback.max_share`` of a query's answers fell back (``on_excess="error"``)."""


class FallbackShareWarning(UserWarning):
    """More than ``Fallback.max_share`` of a query's answers fell back (``on_excess="warn"``)."""


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
        max_share: the largest share of a query's answers (all its :meth:`ArchetypeQuery.ask`
            calls so far) that may fall back, in ``[0, 1]``; 1 accepts any share.
        on_excess: past ``max_share``: ``"warn"`` (the default: one
            :class:`FallbackShareWarning` naming the share, its causes and the limit, then the
            run goes on) or ``"error"`` (raise :class:`FallbackShareError` with that line).
    """

    policy: str = "error"
    prior: float | None = None
    on_backend_error: str = "raise"
    max_share: float = 0.5
    on_excess: str = "warn"

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
        share = self.max_share
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise ValueError(f"max_share must be a share in [0, 1], got {share!r}")
        if self.on_excess not in ON_EXCESS:
            raise ValueError(f"on_excess must be one of {ON_EXCESS}, got {self.on_excess!r}")


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
        #: failed requests per kind (:attr:`BackendError.kind`) over every :meth:`ask`.
        self.error_kinds: Counter[str] = Counter()
        self._first_invalid = ""  # an example for the fallback-share message
        self._warned = False

    def _generate(self, prompts, seeds, acc: Accounting) -> list[Completion | None]:
        """One completion per prompt; None where its request failed (``"fallback"`` only)."""
        start = time.perf_counter()
        try:
            out: list[Completion | None] = list(
                self.backend.generate(prompts, self.sampling, self.schema, seeds)
            )
        except BackendError as err:
            acc.seconds += time.perf_counter() - start
            if self.fallback.on_backend_error == "raise":
                raise
            partial = err.partial if err.partial and len(err.partial) == len(prompts) else None
            out = partial or [None] * len(prompts)
            failed = sum(c is None for c in out)
            acc.backend_errors += failed
            # a batch-wide error counts each of its requests under the error's kind
            self.error_kinds.update(err.kinds if partial else {err.kind: failed})
        else:
            acc.seconds += time.perf_counter() - start
            if len(out) != len(prompts):
                raise BackendError(
                    f"backend {self.backend.name!r} returned {len(out)} completions for "
                    f"{len(prompts)} prompts"
                )
        bad = [c for c in out if c is not None and not isinstance(c, Completion)]
        if bad:
            raise BackendError(
                f"backend {self.backend.name!r} returned a {type(bad[0]).__name__}, "
                "not a Completion"
            )
        answered = [c for c in out if c is not None]
        acc.calls += len(answered)
        acc.batches += 1
        for c in answered:
            acc.prompt_tokens += c.prompt_tokens
            acc.completion_tokens += c.completion_tokens
        return out

    def _check_share(self) -> None:
        """Raise (or warn once) when the totals' fallback share passes ``max_share``."""
        total, limit = self.total, self.fallback.max_share
        if total.fallback_share <= limit or (self._warned and self.fallback.on_excess == "warn"):
            return
        causes = f"{total.fallbacks - total.lost} invalid after {self.max_retries} retries"
        if total.lost:
            kinds = ", ".join(f"{k} {n}" for k, n in self.error_kinds.most_common())
            causes += f", {total.lost} lost to failed requests ({kinds})"
        example = f"; e.g. {self._first_invalid}" if self._first_invalid else ""
        message = (
            f"{total.fallbacks} of {total.answers} LLM answers "
            f"({100 * total.fallback_share:.0f}%) fell back to the {self.fallback.policy} value, "
            f"more than max_share={limit:g} allows ({causes}{example}); check the backend "
            f"{self.backend.name}:{self.backend.model} and the prompt, or raise max_share"
        )
        if self.fallback.on_excess == "error":
            raise FallbackShareError(message)
        self._warned = True
        warnings.warn(message, FallbackShareWarning, stacklevel=3)

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
        acc = Accounting(answers=q_count * self.samples)
        prompts = [self.template.render(q.labels, q.env, self.schema) for q in questions]
        answers = torch.full((q_count, self.samples), float("nan"), dtype=torch.float64)
        pending = [(q, s) for q in range(q_count) for s in range(self.samples)]
        lost = []  # samples left unanswered by a backend error: they take the fallback
        down = False  # the backend failed this call: later rounds use the cache only
        name, model, sampling = self.backend.name, self.backend.model, self.sampling
        endpoint = str(getattr(self.backend, "endpoint", ""))  # the server of an HTTP backend
        for attempt in range(self.max_retries + 1):
            if not pending:
                break
            if attempt:
                acc.retries += len(pending)
            keys = [
                cache_key(name, model, prompts[q], sampling, s, attempt, endpoint)
                for q, s in pending
            ]
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
                down = all(c is None for c in out)
                fresh = [(k, c) for k, c in zip(order, out, strict=True) if c is not None]
                found.update(fresh)
                if self.cache is not None and fresh:
                    self.cache.put_many(fresh)
            still = []
            for (q, s), key in zip(pending, keys, strict=True):
                if key not in found:  # only after a backend error
                    lost.append((q, s))
                    continue
                try:
                    answers[q, s] = self.schema.parse(found[key].text)
                except InvalidAnswer as err:
                    acc.invalid += 1
                    self._first_invalid = self._first_invalid or str(err)[:120]
                    still.append((q, s))
            pending = still
        pending += lost
        acc.lost += len(lost)
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
        self._check_share()
        return answers.mean(dim=1), acc
