"""Real SmolLM2-135M-Instruct generation on CPU (the embedded model, loaded offline).

Tiny batches and few tokens: the model is slow on a shared 2-core CPU. The first run on a
machine converts the GGUF file to a safetensors folder (about a minute); later runs load it in
about a second.
"""

from __future__ import annotations

import pytest

from populace.behaviors.llm import (
    ArchetypeQuery,
    BackendError,
    PromptTemplate,
    Question,
    Sampling,
    TransformersBackend,
    YesNo,
    converted_model,
    smollm2_gguf,
)

pytestmark = pytest.mark.slow

SHORT = [{"role": "user", "content": "Say yes."}]
LONG = [
    {"role": "system", "content": "You are a careful 70 year old living in Queens, New York."},
    {"role": "user", "content": "Cases are rising fast this week. Will you stay home? Yes or no."},
]


@pytest.fixture(scope="module")
def backend():
    return TransformersBackend()


def test_embedded_model_is_found_and_converted_offline():
    gguf = smollm2_gguf()
    assert gguf.suffix == ".gguf" and gguf.stat().st_size > 50e6
    folder = converted_model()
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()


def test_batched_left_padded_generation_matches_one_by_one(backend):
    greedy = Sampling(temperature=0.0, max_tokens=3)
    batch = backend.generate([SHORT, LONG], greedy)
    alone = [backend.generate([p], greedy)[0] for p in (SHORT, LONG)]
    assert [c.text for c in batch] == [c.text for c in alone]
    assert all(c.text.strip() for c in batch)
    assert batch[0].prompt_tokens < batch[1].prompt_tokens  # padding not counted
    assert all(1 <= c.completion_tokens <= 3 for c in batch)


def test_same_seed_same_samples(backend):
    hot = Sampling(temperature=1.0, max_tokens=3, seed=5)
    assert backend.generate([SHORT], hot) == backend.generate([SHORT], hot)


def test_archetype_query_with_the_real_model(backend):
    template = PromptTemplate(
        system="You are a resident of New York aged {age}.",
        user="This week there were {cases} new cases per 100,000 people. Will you stay home?",
    )
    query = ArchetypeQuery(
        backend, template, YesNo(), samples=1, sampling=Sampling(max_tokens=2), max_retries=1
    )
    values, acc = query.ask([Question({"age": a}, {"cases": 250}) for a in ("18-34", "65+")])
    assert values.shape == (2,) and ((values >= 0) & (values <= 1)).all()
    assert acc.calls == acc.prompts - acc.cache_hits >= 2
    assert acc.calls == 2 + acc.retries
    assert acc.completion_tokens > 0 and acc.seconds > 0


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(BackendError, match="neither a .gguf file nor a model folder"):
        TransformersBackend(tmp_path)
    with pytest.raises(BackendError, match="not found"):
        TransformersBackend(tmp_path / "missing.gguf")


def test_guided_choice_always_answers_an_option_and_follows_the_logits(backend):
    prompts = [SHORT, LONG, [{"role": "user", "content": "Say no."}]]
    greedy = backend.generate(prompts, Sampling(temperature=0.0), YesNo())
    assert all(c.text in ("yes", "no") and c.completion_tokens == 1 for c in greedy)
    # greedy guided choice is the option whose first tokens the model ranks highest
    enc = backend.tokenizer(
        [
            backend.tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
            for p in prompts
        ],
        return_tensors="pt",
        padding=True,
    )
    logp = backend.lm(**enc).logits[:, -1, :].log_softmax(-1).detach()
    yes_ids, no_ids = backend.option_tokens(["yes", "no"])
    want = [
        "yes" if logp[i, yes_ids].logsumexp(0) > logp[i, no_ids].logsumexp(0) else "no"
        for i in range(3)
    ]
    assert [c.text for c in greedy] == want
    assert greedy[0].text == "yes" and greedy[2].text == "no"
    hot = Sampling(temperature=1.0, seed=3)
    assert backend.generate(prompts, hot, YesNo()) == backend.generate(prompts, hot, YesNo())
    assert backend.model.endswith("+guided")  # its answers never mix with free-text cache entries


def test_guided_choice_rejects_options_it_cannot_separate(backend):
    with pytest.raises(BackendError, match="same token"):
        backend.option_tokens(["yes", "Yes"])
