"""Real SmolLM2-135M-Instruct generation on CPU (the embedded model, loaded offline).

Tiny batches and few tokens: the model is slow on a shared 2-core CPU. The first run on a
machine converts the GGUF file to a safetensors folder (about a minute); later runs load it in
about a second.
"""

from __future__ import annotations

import pytest
import torch

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
from populace.behaviors.llm.backends import content_digest, model_identity

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


SAY_NO = [{"role": "user", "content": "Say no."}]


@pytest.mark.parametrize("schema", [None, YesNo()], ids=["free-text", "guided"])
def test_a_prompt_samples_the_same_alone_or_in_a_batch(backend, schema):
    hot = Sampling(temperature=1.0, max_tokens=3)
    rng = torch.get_rng_state()
    alone = backend.generate([LONG], hot, schema, seeds=[11])
    batch = backend.generate([SHORT, LONG, SAY_NO], hot, schema, seeds=[5, 11, 6])
    assert batch[1] == alone[0]
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is neither used nor reset


def test_identical_prompts_with_their_own_seeds_differ(backend):
    hot = Sampling(temperature=1.0, max_tokens=3)
    texts = [c.text for c in backend.generate([LONG] * 6, hot, seeds=range(6))]
    assert len(set(texts)) > 1, texts
    guided = [c.text for c in backend.generate([LONG] * 8, hot, YesNo(), seeds=range(8))]
    assert set(guided) == {"yes", "no"}, guided


def test_model_identity_is_the_content_not_the_name(backend, tmp_path):
    # the embedded GGUF: the converted folder's name carries the digest of the whole file
    digest = content_digest(smollm2_gguf())
    assert backend.model == f"{converted_model().name}+guided" and digest in backend.model
    # two checkpoint folders both named "final" with different weights
    for run, weights in (("run1", b"\x00" * 64), ("run2", b"\x00" * 63 + b"\x01")):
        (tmp_path / run / "final").mkdir(parents=True)
        (tmp_path / run / "final" / "config.json").write_text("{}")
        (tmp_path / run / "final" / "model.safetensors").write_bytes(weights)
    one, two = (model_identity(tmp_path / run / "final") for run in ("run1", "run2"))
    assert one != two and one.startswith("final-") and two.startswith("final-")
    (tmp_path / "copy").mkdir()
    for f in (tmp_path / "run1" / "final").iterdir():
        (tmp_path / "copy" / f.name).write_bytes(f.read_bytes())
    assert model_identity(tmp_path / "copy").split("-")[-1] == one.split("-")[-1]
    with pytest.raises(BackendError, match="no model files"):
        model_identity(tmp_path)
    folder = TransformersBackend(converted_model(), guided=False)
    assert folder.model == model_identity(converted_model())


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
