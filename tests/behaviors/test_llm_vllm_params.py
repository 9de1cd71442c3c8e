"""What the vLLM backend hands the engine, checked against a stand-in ``vllm`` module.

vllm itself lives in its own venv (``make test-vllm`` runs vllm_backend_check.py there); this
checks, in the main suite, that every prompt gets its own ``SamplingParams`` and seed.
"""

from __future__ import annotations

import json
import sys
import types

import pytest

from populace.behaviors.llm import (
    DEFAULT_KV_CACHE_BYTES,
    ArchetypeQuery,
    BackendError,
    PromptTemplate,
    Question,
    Sampling,
    VLLMBackend,
    YesNo,
    backends,
    make_backend,
    request_seed,
)
from populace.behaviors.llm.backends import KV_SPACE_ENV, kv_bytes_per_token, model_identity


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


# -- the KV cache is sized at construction, and a failure to start is one clear error ----------
class RecordingLLM(FakeLLM):
    """Records the engine options it was built with."""

    built: list[dict] = []

    def __init__(self, model: str, **options) -> None:
        super().__init__(model, **options)
        RecordingLLM.built.append({"model": model, **options})


@pytest.fixture
def recording(fake_vllm, monkeypatch):
    RecordingLLM.built = []
    monkeypatch.setattr(fake_vllm, "LLM", RecordingLLM)
    monkeypatch.delenv(KV_SPACE_ENV, raising=False)
    return RecordingLLM.built


def smol_folder(tmp_path, weights: int = 1000):
    """A model folder with SmolLM2-135M's sizes (30 layers, 3 KV heads of 64)."""
    config = {
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "hidden_size": 576,
        "max_position_embeddings": 8192,
        "torch_dtype": "bfloat16",
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes(bytes(weights))
    return tmp_path


def test_the_kv_cache_is_sized_explicitly(recording, tmp_path):
    folder = smol_folder(tmp_path)
    backend = VLLMBackend(folder, dtype="float32", max_model_len=1024)
    assert recording[-1]["kv_cache_memory_bytes"] == DEFAULT_KV_CACHE_BYTES
    assert backend.kv_cache_bytes == DEFAULT_KV_CACHE_BYTES
    assert backend.model == model_identity(folder)  # named by content, not by path
    VLLMBackend(folder, kv_cache_bytes=None, max_model_len=1024)
    assert "kv_cache_memory_bytes" not in recording[-1]  # left to vLLM, on request
    VLLMBackend(folder, kv_cache_memory_bytes=64 << 20, max_model_len=128)
    assert recording[-1]["kv_cache_memory_bytes"] == 64 << 20  # the engine option wins
    with pytest.raises(ValueError, match="at least 1 MiB"):
        VLLMBackend(folder, kv_cache_bytes=1000)


def test_kv_bytes_per_token_follows_the_config():
    config = json.loads(
        '{"num_hidden_layers": 30, "num_attention_heads": 9,'
        ' "num_key_value_heads": 3, "hidden_size": 576}'
    )
    assert kv_bytes_per_token(config, "float32") == 2 * 30 * 3 * 64 * 4
    assert kv_bytes_per_token(config, "bfloat16") == 2 * 30 * 3 * 64 * 2
    assert kv_bytes_per_token({"hidden_size": 5}, "float32") is None


def test_a_kv_cache_too_small_for_one_request_is_refused_before_starting(recording, tmp_path):
    folder = smol_folder(tmp_path)
    # 46,080 bytes a token in float32: 1024 tokens need 45 MiB
    with pytest.raises(BackendError, match=r"cannot hold one request of max_model_len=1024"):
        VLLMBackend(folder, kv_cache_bytes=16 << 20, dtype="float32", max_model_len=1024)
    assert recording == []  # the engine was never started


def test_too_little_host_memory_is_refused_before_starting(
    recording, fake_vllm, tmp_path, monkeypatch
):
    fake_vllm.platforms = types.SimpleNamespace(
        current_platform=types.SimpleNamespace(is_cpu=lambda: True)
    )
    monkeypatch.setattr(backends, "host_memory_available", lambda: 200 << 20)
    folder = smol_folder(tmp_path, weights=10 << 20)
    with pytest.raises(BackendError, match=r"needs 266 MiB of host memory.*only 200 MiB") as err:
        VLLMBackend(folder, dtype="float32", max_model_len=1024)
    assert err.value.kind == "engine_start" and recording == []
    VLLMBackend(folder, kv_cache_bytes=128 << 20, dtype="float32", max_model_len=1024)
    assert recording[-1]["kv_cache_memory_bytes"] == 128 << 20


def test_the_env_override_is_taken_into_account(recording, tmp_path, monkeypatch):
    folder = smol_folder(tmp_path)
    monkeypatch.setenv(KV_SPACE_ENV, "1")
    assert VLLMBackend(folder, max_model_len=1024).kv_cache_bytes == 1 << 30
    monkeypatch.setenv(KV_SPACE_ENV, "lots")
    with pytest.raises(BackendError, match="whole number of GiB"):
        VLLMBackend(folder, max_model_len=1024)


def test_an_engine_that_fails_to_start_is_one_clear_error(fake_vllm, tmp_path, monkeypatch):
    def broken(model, **options):
        raise RuntimeError("Engine core initialization failed. See root cause above.")

    monkeypatch.setattr(fake_vllm, "LLM", broken)
    monkeypatch.delenv(KV_SPACE_ENV, raising=False)
    with pytest.raises(BackendError, match=r"did not start \(KV cache 256 MiB.*Engine core") as e:
        VLLMBackend(smol_folder(tmp_path), dtype="float32", max_model_len=1024)
    assert e.value.kind == "engine_start"


def test_make_backend_passes_http_settings_and_refuses_stray_ones():
    backend = make_backend("openai", url="http://127.0.0.1:9/v1", model="m", timeout=2.5, retries=0)
    assert (backend.timeout, backend.retries) == (2.5, 0)
    assert backend.endpoint == "http://127.0.0.1:9/v1/chat/completions"
    with pytest.raises(ValueError, match="kv_cache_bytes=.* do.*openai"):
        make_backend("openai", url="http://h/v1", model="m", kv_cache_bytes=1 << 30)
    with pytest.raises(ValueError, match="retries=2 do.*vllm"):
        make_backend("vllm", retries=2)
