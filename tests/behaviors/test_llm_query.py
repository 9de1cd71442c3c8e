"""ArchetypeQuery: batching, sample means, cache hits, retries, counted fallbacks."""

from __future__ import annotations

import pytest
import torch

from populace.behaviors.llm import (
    AnswerCache,
    ArchetypeQuery,
    BackendError,
    Completion,
    Fallback,
    FallbackError,
    FallbackShareError,
    PromptTemplate,
    Question,
    Sampling,
    YesNo,
    request_seed,
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
    # every answer falls back: accepted here only because max_share=1 says so
    fallback = Fallback("prior", 0.3, "fallback", max_share=1.0)
    query = ArchetypeQuery(down, TEMPLATE, YesNo(), samples=2, fallback=fallback)
    values, acc = query.ask(questions(1, 2))
    assert values.tolist() == [0.3, 0.3]
    # backend_errors counts the failed requests (2 questions x 2 samples), of kind "backend"
    assert (acc.backend_errors, acc.fallbacks, acc.lost, acc.answers, acc.calls) == (4, 4, 4, 4, 0)
    assert query.error_kinds == {"backend": 4}


def test_backend_down_keeps_the_cached_answers(scripted, cases_rule, tmp_path):
    cache = AnswerCache(tmp_path / "a.sqlite")
    up = scripted(cases_rule)
    ArchetypeQuery(up, TEMPLATE, YesNo(), samples=1, cache=cache).ask(questions(200))
    # question 0 is cached ("yes"), question 1 is not, and the backend is down
    down = scripted(cases_rule, down=True)
    fallback = Fallback("prior", 0.3, "fallback")
    query = ArchetypeQuery(down, TEMPLATE, YesNo(), samples=1, cache=cache, fallback=fallback)
    values, acc = query.ask(questions(200, 5))
    assert values.tolist() == [1.0, 0.3]
    assert (acc.cache_hits, acc.fallbacks, acc.backend_errors, acc.calls) == (1, 1, 1, 0)
    assert down.attempts == 1  # a failed backend is not asked again in the retry rounds


def test_backend_down_still_uses_cached_retries(scripted, tmp_path):
    # attempt 0 answered garbage and attempt 1 "yes": both cached; the rerun needs no backend
    cache = AnswerCache(tmp_path / "a.sqlite")
    up = scripted(lambda text, seen: "hmm" if seen == 1 else "yes")
    ArchetypeQuery(up, TEMPLATE, YesNo(), samples=1, cache=cache).ask(questions(1))
    down = scripted(lambda t, s: "yes", down=True)
    fallback = Fallback("prior", 0.3, "fallback")
    query = ArchetypeQuery(down, TEMPLATE, YesNo(), samples=1, cache=cache, fallback=fallback)
    values, acc = query.ask(questions(1))
    assert values.tolist() == [1.0] and acc.fallbacks == 0 and down.attempts == 0


def test_default_fallback_raises_never_a_silent_value(scripted):
    query = ArchetypeQuery(scripted(lambda t, s: "banana"), TEMPLATE, YesNo(), max_retries=0)
    with pytest.raises(FallbackError, match="still invalid"):
        query.ask(questions(1))
    assert Fallback().policy == "error"
    for policy in ("prior", "previous"):
        with pytest.raises(ValueError, match="explicit prior"):
            Fallback(policy)
    with pytest.raises(ValueError, match="finite"):
        Fallback("prior", prior=float("nan"))


class SeededBackend:
    """Answers "yes" for odd seeds and "no" for even ones: its answers are its seeds."""

    name = "seeded"
    model = "parity"

    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []

    def generate(self, prompts, sampling, schema=None, seeds=None):
        self.asked += [(m[-1]["content"], s) for m, s in zip(prompts, seeds, strict=True)]
        return [Completion("yes" if s % 2 else "no") for s in seeds]


PEOPLE = [Question({"who": w}, {"cases": 10}) for w in ("ann", "bob", "cy", "di", "ed")]


def test_an_answer_depends_on_its_key_not_on_the_batch():
    def ask(qs):
        query = ArchetypeQuery(SeededBackend(), TEMPLATE, YesNo(), samples=6)
        return query.ask(qs)[0]

    together = ask(PEOPLE)
    for k, person in enumerate(PEOPLE):
        assert ask([person]).item() == together[k].item()
    assert ask(PEOPLE[::-1]).tolist() == together.flip(0).tolist()


def test_a_partly_cached_run_equals_a_cold_run(tmp_path):
    cold, _ = ArchetypeQuery(SeededBackend(), TEMPLATE, YesNo(), samples=6).ask(PEOPLE)
    cache = AnswerCache(tmp_path / "a.sqlite")
    warm = ArchetypeQuery(SeededBackend(), TEMPLATE, YesNo(), samples=6, cache=cache)
    warm.ask(PEOPLE[1::2])  # some keys cached first, the others missing
    values, acc = warm.ask(PEOPLE)
    assert acc.cache_hits == 2 * 6 and acc.calls == 3 * 6
    assert values.tolist() == cold.tolist()


def test_each_sample_and_attempt_has_its_own_seed(scripted):
    backend = scripted(lambda text, seen: "hmm" if seen <= 4 else "yes")
    query = ArchetypeQuery(backend, TEMPLATE, YesNo(), samples=4, max_retries=1)
    query.ask(questions(1))
    seeds = [seed for _, seed in backend.seeds]
    assert len(seeds) == 8 and len(set(seeds)) == 8  # 4 samples x 2 attempts
    prompt = TEMPLATE.render({"who": "person 0"}, {"cases": 1}, YesNo())
    assert seeds == [request_seed(0, prompt, s, a) for a in (0, 1) for s in range(4)]
    # the seed mixes in the base seed: another base seed, other seeds
    other = scripted(lambda text, seen: "yes")
    ArchetypeQuery(other, TEMPLATE, YesNo(), samples=4, sampling=Sampling(seed=1)).ask(questions(1))
    assert not {seed for _, seed in other.seeds} & set(seeds)


def test_missing_prompt_field_is_named():
    with pytest.raises(KeyError, match="cases"):
        TEMPLATE.render({"who": "x"}, {})


def test_bad_settings():
    with pytest.raises(ValueError, match="fallback policy"):
        Fallback("zero")
    for share in (-0.1, 1.5, float("nan"), "half", True):
        with pytest.raises(ValueError, match="max_share"):
            Fallback("prior", 0.1, max_share=share)
    with pytest.raises(ValueError, match="on_excess"):
        Fallback("prior", 0.1, on_excess="ignore")
    with pytest.raises(ValueError, match="temperature"):
        Sampling(temperature=-1)


def test_request_seed_is_stable_and_bounded():
    prompt = TEMPLATE.render({"who": "x"}, {"cases": 3})
    seed = request_seed(0, prompt, 1, 0)
    # a fixed value: the same in every process (Python's salted hash() would not be)
    assert seed == 1317008448
    assert 0 <= seed < 2**31
    assert len({request_seed(0, prompt, s, a) for s in range(50) for a in range(3)}) == 150


def test_the_fallback_share_is_judged_on_the_totals_so_far(scripted):
    # "yes" for 10 cases, garbage otherwise: question 2 always falls back
    backend = scripted(lambda text, seen: "yes" if text.startswith("10 ") else "banana")
    fallback = Fallback("prior", 0.3, max_share=0.5, on_excess="error")
    query = ArchetypeQuery(backend, TEMPLATE, YesNo(), samples=2, max_retries=0, fallback=fallback)
    values, acc = query.ask(questions(10, 20))  # 2 of 4: exactly the limit, accepted
    assert values.tolist() == [1.0, 0.3] and acc.fallback_share == 0.5
    with pytest.raises(FallbackShareError, match=r"4 of 6 LLM answers \(67%\).*banana"):
        query.ask(questions(20))  # 2 more of 2: 4 of 6 in all
    assert query.total.answers == 6 and query.total.fallbacks == 4


def test_the_error_policy_needs_no_share(scripted):
    # with policy "error" a single fallback already raises; the share never comes into it
    query = ArchetypeQuery(scripted(lambda t, s: "?"), TEMPLATE, YesNo(), max_retries=0)
    with pytest.raises(FallbackError) as err:
        query.ask(questions(1))
    assert not isinstance(err.value, FallbackShareError)
