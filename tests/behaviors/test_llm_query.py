"""ArchetypeQuery: batching, sample means, cache hits, retries, counted fallbacks."""

from __future__ import annotations

import pytest
import torch

from populace.behaviors.llm import (
    AnswerCache,
    ArchetypeQuery,
    BackendError,
    Fallback,
    FallbackError,
    PromptTemplate,
    Question,
    Sampling,
    YesNo,
)

TEMPLATE = PromptTemplate(system="You are {who}.", user="{cases} new cases. Stay home?")


def questions(*cases: int) -> list[Question]:
    return [Question({"who": f"person {i}"}, {"cases": c}) for i, c in enumerate(cases)]


def test_one_batch_per_round_and_sample_means(scripted, cases_rule):
    backend = scripted(cases_rule)
    query = ArchetypeQuery(backend, TEMPLATE, YesNo(), samples=3)
    values, acc = query.ask(questions(50, 150, 100))
    assert values.tolist() == [0.0, 1.0, 1.0]
    assert backend.batches == [9]  # 3 questions x 3 samples, one batch
    assert (acc.calls, acc.prompts, acc.cache_hits, acc.fallbacks) == (9, 9, 0, 0)
    assert acc.prompt_tokens == 90 and acc.completion_tokens == 9


def test_samples_estimate_a_probability(scripted):
    backend = scripted(lambda text, seen: "yes" if seen % 4 == 0 else "no")
    values, _ = ArchetypeQuery(backend, TEMPLATE, YesNo(), samples=8).ask(questions(1))
    assert values.tolist() == [0.25]


def test_cache_hits_make_zero_calls(scripted, cases_rule, tmp_path):
    backend = scripted(cases_rule)
    cache = AnswerCache(tmp_path / "a.sqlite")
    query = ArchetypeQuery(backend, TEMPLATE, YesNo(), samples=2, cache=cache)
    first, _ = query.ask(questions(10, 200))
    assert backend.calls == 4 and len(cache) == 4
    # a new process would open the same file: reopen it
    again = ArchetypeQuery(
        backend, TEMPLATE, YesNo(), samples=2, cache=AnswerCache(tmp_path / "a.sqlite")
    )
    second, acc = again.ask(questions(10, 200))
    assert torch.equal(first, second)
    assert backend.calls == 4 and acc.calls == 0 and acc.cache_hits == 4
    # another environment, sampling setting or model is another key
    _, acc = again.ask(questions(10, 201))
    assert acc.cache_hits == 2 and acc.calls == 2
    other = ArchetypeQuery(
        backend, TEMPLATE, YesNo(), samples=2, cache=cache, sampling=Sampling(temperature=0.1)
    )
    _, acc = other.ask(questions(10, 200))
    assert acc.cache_hits == 0 and acc.calls == 4


def test_duplicate_questions_are_asked_once(scripted, cases_rule):
    backend = scripted(cases_rule)
    values, acc = ArchetypeQuery(backend, TEMPLATE, YesNo(), samples=1).ask(
        [Question({"who": "x"}, {"cases": 5})] * 4
    )
    assert backend.calls == 1 and acc.prompts == 4 and values.tolist() == [0.0] * 4


def test_invalid_answers_are_retried_then_valid(scripted):
    # the first two answers are garbage, then valid
    backend = scripted(lambda text, seen: "hmm" if seen <= 2 else "yes")
    values, acc = ArchetypeQuery(backend, TEMPLATE, YesNo(), samples=2, max_retries=2).ask(
        questions(1)
    )
    assert values.tolist() == [1.0]
    assert (acc.invalid, acc.retries, acc.fallbacks, acc.calls) == (2, 2, 0, 4)
    assert backend.batches == [2, 2]


@pytest.mark.parametrize(
    ("fallback", "previous", "expected"),
    [
        (Fallback("prior", prior=0.25), None, 0.25),
        (Fallback("prior", prior=0.25), [0.8, 0.0], 0.25),
        (Fallback("previous", prior=0.25), [0.8, 0.0], 0.8),
        (Fallback("previous", prior=0.25), [float("nan"), 0.0], 0.25),
        (Fallback("previous", prior=0.25), None, 0.25),
    ],
)
def test_fallback_after_retries_is_counted_never_zero(scripted, fallback, previous, expected):
    # question 0 always gets an empty answer, question 1 a valid one
    backend = scripted(lambda text, seen: "" if text.startswith("0 new") else "yes")
    query = ArchetypeQuery(backend, TEMPLATE, YesNo(), samples=3, max_retries=1, fallback=fallback)
    prev = None if previous is None else torch.tensor(previous, dtype=torch.float64)
    values, acc = query.ask(questions(0, 7), prev)
    assert values.tolist() == [pytest.approx(expected), 1.0]
    assert acc.fallbacks == 3 and acc.invalid == 6 and acc.retries == 3
    assert query.total.fallbacks == 3


def test_error_policy_raises(scripted):
    query = ArchetypeQuery(
        scripted(lambda t, s: "?"), TEMPLATE, YesNo(), samples=1, fallback=Fallback("error")
    )
    with pytest.raises(FallbackError, match="still invalid"):
        query.ask(questions(1))


def test_backend_down_raises_or_falls_back_counted(scripted):
    down = scripted(lambda t, s: "yes", down=True)
    with pytest.raises(BackendError, match="down"):
        ArchetypeQuery(down, TEMPLATE, YesNo()).ask(questions(1))
    query = ArchetypeQuery(
        down, TEMPLATE, YesNo(), samples=2, fallback=Fallback("prior", 0.3, "fallback")
    )
    values, acc = query.ask(questions(1, 2))
    assert values.tolist() == [0.3, 0.3]
    assert acc.backend_errors == 1 and acc.fallbacks == 4 and acc.calls == 0


def test_missing_prompt_field_is_named():
    with pytest.raises(KeyError, match="cases"):
        TEMPLATE.render({"who": "x"}, {})


def test_bad_settings():
    with pytest.raises(ValueError, match="fallback policy"):
        Fallback("zero")
    with pytest.raises(ValueError, match="temperature"):
        Sampling(temperature=-1)
