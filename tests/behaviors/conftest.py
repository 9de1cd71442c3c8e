"""Shared test doubles for the LLM behaviour tests."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from populace.behaviors.llm import BackendError, Completion


class ScriptedBackend:
    """A Backend whose answer is a function of the user message; counts what it is asked.

    Used to test the query machinery (batching, cache, retries, fallbacks) exactly; the real
    models are tested in test_llm_transformers.py and test_llm_http.py.
    """

    name = "scripted"
    model = "rule-v1"

    def __init__(self, answer: Callable[[str, int], str], down: bool = False) -> None:
        self.answer = answer
        self.down = down
        self.batches: list[int] = []  # prompts per generate call
        self.seen = 0
        self.attempts = 0  # generate calls, failed ones included
        self.seeds: list[tuple[str, int]] = []  # (user message, seed) of every prompt answered

    def generate(self, prompts, sampling, schema=None, seeds=None):
        self.attempts += 1
        if self.down:
            raise BackendError("scripted backend is down")
        assert seeds is not None and len(seeds) == len(prompts)  # the query seeds every prompt
        self.batches.append(len(prompts))
        out = []
        for messages, seed in zip(prompts, seeds, strict=True):
            self.seen += 1
            self.seeds.append((messages[-1]["content"], seed))
            out.append(Completion(self.answer(messages[-1]["content"], self.seen), 10, 1))
        return out

    @property
    def calls(self) -> int:
        return sum(self.batches)


def _cases_rule(text: str, seen: int) -> str:
    """'yes' when the prompt's case count is >= 100, else 'no'."""
    number = int(re.search(r"(\d+) new", text).group(1))
    return "Yes." if number >= 100 else "no"


@pytest.fixture
def cases_rule():
    return _cases_rule


@pytest.fixture
def scripted():
    return ScriptedBackend
