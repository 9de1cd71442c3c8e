"""What the vLLM backend hands the engine, checked against a stand-in ``vllm`` module.

vllm itself lives in its own venv (``make test-vllm`` runs vllm_backend_check.py there); this
checks, in the main suite, that every prompt gets its own ``SamplingParams`` and seed.
"""

from __future__ import annotations

import sys
import types

import pytest

from populace.behaviors.llm import (
    ArchetypeQuery,
    PromptTemplate,
    Question,
    Sampling,
    VLLMBackend,
    YesNo,
    request_seed,
)


class FakeParams:
    def __init__(self, **kwargs) -> None:
        self.__dict__.update(kwargs)


class FakeLLM:
    """``vllm.LLM``: answers "yes" for an odd seed, "no" for an even one."""

    def __init__(self, model: str, **options) -> None:
        self.calls: list[tuple[list, object]] = []

    def chat(self, messages, sampling_params, use_tqdm=True):
        self.calls.append((messages, sampling_params))
        # a single SamplingParams applies to every prompt, as in vllm
        if not isinstance(sampling_params, list):
            sampling_params = [sampling_params] * len(messages)
        out = types.SimpleNamespace
        return [
            out(
                prompt_token_ids=[1, 2],
                outputs=[out(text="yes" if p.seed % 2 else "no", token_ids=[3])],
            )
            for p in sampling_params
        ]


@pytest.fixture
def fake_vllm(monkeypatch):
    vllm = types.ModuleType("vllm")
    params = types.ModuleType("vllm.sampling_params")
    vllm.LLM, vllm.SamplingParams, vllm.sampling_params = FakeLLM, FakeParams, params
    params.StructuredOutputsParams = FakeParams
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", params)
    return vllm


PROMPT = [{"role": "user", "content": "Stay home?"}]


def test_one_sampling_params_per_prompt_with_its_seed(fake_vllm):
    backend = VLLMBackend("some/folder")
    out = backend.generate([PROMPT] * 3, Sampling(temperature=0.5), YesNo(), seeds=[4, 7, 9])
    assert [c.text for c in out] == ["no", "yes", "yes"]
    _, params = backend.llm.calls[-1]
    assert isinstance(params, list) and [p.seed for p in params] == [4, 7, 9]
    assert all(
        p.temperature == 0.5 and p.structured_outputs.choice == ["yes", "no"] for p in params
    )
    # without seeds, each prompt's own request seed
    backend.generate([PROMPT], Sampling(seed=3))
    assert [p.seed for p in backend.llm.calls[-1][1]] == [request_seed(3, PROMPT)]
    with pytest.raises(ValueError, match="one per prompt"):
        backend.generate([PROMPT] * 2, Sampling(), seeds=[1])
    with pytest.raises(ValueError, match="non-negative integers"):
        backend.generate([PROMPT] * 2, Sampling(), seeds=[1, 2.5])


def test_samples_of_one_question_are_not_copies(fake_vllm):
    template = PromptTemplate(system="You live in {borough}.", user="Cases: {cases}. Stay home?")
    query = ArchetypeQuery(VLLMBackend("some/folder"), template, YesNo(), samples=16)
    values, _ = query.ask([Question({"borough": "Queens"}, {"cases": 300})])
    seeds = [p.seed for p in query.backend.llm.calls[-1][1]]
    assert len(set(seeds)) == 16
    assert 0 < values.item() < 1  # a shared seed made every sample the same answer
