"""``populace bench llm``: prompts per second and per-query-step LLM overhead of a backend.

Each timed round is one query step of K archetypes x ``samples`` answers (no cache), the same
work the behaviour model does every ``query_every`` steps.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from populace.behaviors.llm import (
    ArchetypeQuery,
    Backend,
    Fallback,
    PromptTemplate,
    Question,
    Sampling,
    YesNo,
    make_backend,
)
from populace.engine.provenance import now, versions

PROMPT = PromptTemplate(
    system="You are {person}. Answer as that person would.",
    user="There were {cases} new cases per 100,000 people this week. Will you stay home?",
)


def questions(archetypes: int) -> list[Question]:
    """K distinct archetype questions (distinct prompts, so no two share an answer)."""
    ages = ("a teenager", "a young adult", "a middle-aged adult", "a retired person")
    return [
        Question({"person": f"{ages[k % 4]} (group {k})"}, {"cases": 20 + 5 * k})
        for k in range(archetypes)
    ]


def bench_llm(
    backend: str | Backend = "transformers",
    *,
    archetypes: int = 8,
    samples: int = 1,
    max_tokens: int = 4,
    rounds: int = 2,
    model: str = "",
    url: str = "",
    device: str = "cpu",
) -> dict[str, Any]:
    """Time ``rounds`` query steps after one untimed warm-up step.

    Returns:
        backend, model, device, archetypes, samples, max_tokens, rounds, seconds,
        prompts_per_s, seconds_per_query_step, completion_tokens, invalid, fallbacks,
        load_seconds, versions, date.
    """
    if archetypes < 1 or samples < 1 or rounds < 1:
        raise ValueError(
            f"archetypes={archetypes}, samples={samples}, rounds={rounds} must be >= 1"
        )
    start = time.perf_counter()
    if isinstance(backend, str):
        backend = make_backend(backend, url=url, model=model, device=device)
    load = time.perf_counter() - start
    query = ArchetypeQuery(
        backend,
        PROMPT,
        YesNo(),
        samples=samples,
        sampling=Sampling(temperature=0.7, max_tokens=max_tokens),
        cache=None,
        max_retries=0,
        # the bench times the backend and discards the values: an invalid answer is counted
        # (invalid, fallbacks), not raised, whatever their share; the prior is never a result
        fallback=Fallback("prior", prior=0.5, max_share=1.0),
    )
    qs = questions(archetypes)
    query.ask(qs[: min(2, archetypes)])  # warm-up: first-call allocations
    query.total = type(query.total)()
    start = time.perf_counter()
    for _ in range(rounds):
        query.ask(qs)
    seconds = time.perf_counter() - start
    acc = query.total
    return {
        "name": "llm",
        "backend": backend.name,
        "model": backend.model,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "archetypes": archetypes,
        "samples": samples,
        "max_tokens": max_tokens,
        "rounds": rounds,
        "seconds": seconds,
        "prompts_per_s": acc.calls / seconds if seconds > 0 else None,
        "seconds_per_query_step": seconds / rounds,
        "calls": acc.calls,
        "completion_tokens": acc.completion_tokens,
        "invalid": acc.invalid,
        "fallbacks": acc.fallbacks,
        "load_seconds": load,
        "versions": versions(),
        "date": now(),
    }
