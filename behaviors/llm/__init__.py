"""LLM archetype behaviours: one prompt per archetype, broadcast to its agents.

LLM calls scale with archetypes x query steps x samples, never with the number of agents.
"""

from __future__ import annotations

from populace.behaviors.llm.accounting import Accounting
from populace.behaviors.llm.archetypes import Archetypes, group_by, kmeans
from populace.behaviors.llm.backends import (
    DEFAULT_KV_CACHE_BYTES,
    Backend,
    BackendError,
    Completion,
    Sampling,
    TransformersBackend,
    VLLMBackend,
    cache_root,
    converted_model,
    request_seed,
    smollm2_gguf,
)
from populace.behaviors.llm.broadcast import broadcast, heterogeneous
from populace.behaviors.llm.cache import AnswerCache, CacheError, cache_key
from populace.behaviors.llm.openai_http import ERROR_KINDS, OpenAIBackend
from populace.behaviors.llm.prompts import PromptTemplate
from populace.behaviors.llm.query import (
    ArchetypeQuery,
    Fallback,
    FallbackError,
    FallbackShareError,
    FallbackShareWarning,
    Question,
)
from populace.behaviors.llm.schema import InvalidAnswer, NumberRange, OneOf, YesNo

BACKENDS = ("transformers", "vllm", "openai")


def make_backend(
    kind: str,
    *,
    url: str = "",
    model: str = "",
    device: str = "cpu",
    timeout: float | None = None,
    retries: int | None = None,
    kv_cache_bytes: int | None = None,
) -> Backend:
    """A backend by kind: ``"transformers"`` (embedded SmolLM2 unless ``model`` is a GGUF file
    or model folder), ``"vllm"`` (``model`` is a model folder, default: SmolLM2 converted to
    safetensors) or ``"openai"`` (``url`` and ``model``).

    ``timeout`` (seconds, the whole deadline of one request, retries included; default 30) and
    ``retries`` (default 3) set the openai backend; ``kv_cache_bytes`` the vllm backend's KV
    cache (default :data:`DEFAULT_KV_CACHE_BYTES`). None: the default. Given to a backend
    kind they do not apply to, they are refused (never silently ignored).
    """
    if kind not in BACKENDS:
        raise ValueError(f"unknown LLM backend {kind!r}; valid: {', '.join(BACKENDS)}")
    given = {"timeout": timeout, "retries": retries, "kv_cache_bytes": kv_cache_bytes}
    applies = {"openai": ("timeout", "retries"), "vllm": ("kv_cache_bytes",)}.get(kind, ())
    stray = [f"{k}={v!r}" for k, v in given.items() if v is not None and k not in applies]
    if stray:
        raise ValueError(f"{', '.join(stray)} do(es) not apply to the {kind} LLM backend")
    if kind == "transformers":
        return TransformersBackend(model or None, device=device)
    if kind == "vllm":
        options = {"dtype": "float32"} if device == "cpu" else {}
        kv = DEFAULT_KV_CACHE_BYTES if kv_cache_bytes is None else kv_cache_bytes
        return VLLMBackend(
            model or converted_model(), kv_cache_bytes=kv, max_model_len=1024, **options
        )
    if not url or not model:
        raise ValueError("the openai backend needs llm_url and llm_model")
    settings = {k: v for k, v in (("timeout", timeout), ("retries", retries)) if v is not None}
    return OpenAIBackend(url, model, **settings)


__all__ = [
    "BACKENDS",
    "DEFAULT_KV_CACHE_BYTES",
    "ERROR_KINDS",
    "Accounting",
    "AnswerCache",
    "ArchetypeQuery",
    "Archetypes",
    "Backend",
    "BackendError",
    "CacheError",
    "Completion",
    "Fallback",
    "FallbackError",
    "FallbackShareError",
    "FallbackShareWarning",
    "InvalidAnswer",
    "NumberRange",
    "OneOf",
    "OpenAIBackend",
    "PromptTemplate",
    "Question",
    "Sampling",
    "TransformersBackend",
    "VLLMBackend",
    "YesNo",
    "broadcast",
    "cache_key",
    "cache_root",
    "converted_model",
    "group_by",
    "heterogeneous",
    "kmeans",
    "make_backend",
    "request_seed",
    "smollm2_gguf",
]
