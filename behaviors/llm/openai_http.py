"""The OpenAI-compatible HTTP backend: ``/v1/chat/completions`` with a deadline and named errors.

Each prompt is one request with one overall deadline (``timeout``): connecting, sending, the
status line, the headers and the whole body, retries and their backoff included. A timer shuts
the socket down when the deadline passes, so a server that trickles bytes or never answers
cannot hold a request longer than that. Whatever goes wrong becomes a :class:`BackendError`
whose ``kind`` is one of :data:`ERROR_KINDS`, counted per kind on the backend (``errors``);
a malformed reply is never passed on as an answer, and never escapes as a traceback.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import socket
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from populace.behaviors.llm.backends import (
    BackendError,
    Completion,
    Messages,
    Sampling,
    prompt_seeds,
)
from populace.behaviors.llm.schema import Schema

#: the largest response body read: a chat completion is a few KiB; more is not an answer.
MAX_BODY_BYTES = 1 << 22
#: tokens a chat template may add to a prompt beyond one per byte of its messages.
PROMPT_TOKEN_SLACK = 4096

#: the named classes of a failed request.
ERROR_KINDS = {
    "deadline": "no complete response within the request's deadline",
    "connection": "could not connect, or the connection broke",
    "bad_http": "the reply is not HTTP",
    "http_4xx": "HTTP 4xx (408 and 429 are retried, the others are not)",
    "http_5xx": "HTTP 5xx (retried)",
    "http_other": "an HTTP status that is neither 2xx, 4xx nor 5xx (e.g. a redirect)",
    "truncated": "the body ended before its declared length",
    "too_large": f"the body is larger than {MAX_BODY_BYTES} bytes",
    "not_utf8": "the body is not UTF-8 text",
    "not_json": "the body is not JSON",
    "bad_shape": "the JSON has no choices[0].message.content",
    "bad_content": "choices[0].message.content is not a string",
    "bad_usage": "usage token counts are not integers in range",
}
#: kinds worth another attempt within the deadline (the server may answer next time).
RETRIED = frozenset({"connection", "truncated", "http_5xx"})


class _Failure(Exception):
    """One failed attempt: its kind, what happened, and whether another attempt may help."""

    def __init__(self, kind: str, detail: str, retry: bool | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.retry = kind in RETRIED if retry is None else retry


def _usage_count(usage: dict, field: str, high: int) -> int:
    n = usage.get(field, 0)
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= high:
        raise _Failure("bad_usage", f"usage.{field}={n!r} is not an integer in [0, {high}]")
    return n


def completion_from_reply(reply: Any, max_tokens: int, prompt_bytes: int) -> Completion:
    """The :class:`Completion` of a decoded chat-completions reply, or a ``_Failure``.

    ``content`` must be a string (a number, a list or null is not an answer); ``usage`` may be
    absent (its counts are then 0) but, when present, its counts must be integers with
    ``completion_tokens <= max_tokens`` and ``prompt_tokens`` at most one per byte of the request
    plus :data:`PROMPT_TOKEN_SLACK`.
    """
    if not isinstance(reply, dict):
        raise _Failure("bad_shape", f"the JSON is a {type(reply).__name__}, not an object")
    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        error = reply.get("error")
        said = f" (the server says: {str(error)[:200]})" if error else ""
        raise _Failure("bad_shape", f"no choices[0] object in the reply{said}")
    message = choices[0].get("message")
    if not isinstance(message, dict) or "content" not in message:
        raise _Failure("bad_shape", "choices[0] has no message with a content field")
    content = message["content"]
    if not isinstance(content, str):
        what = "null" if content is None else f"a {type(content).__name__} ({str(content)[:40]})"
        raise _Failure("bad_content", f"choices[0].message.content is {what}, not a string")
    usage = reply.get("usage")
    if usage is None:
        usage = {}
    if not isinstance(usage, dict):
        raise _Failure("bad_usage", f"usage is a {type(usage).__name__}, not an object")
    return Completion(
        content,
        _usage_count(usage, "prompt_tokens", prompt_bytes + PROMPT_TOKEN_SLACK),
        _usage_count(usage, "completion_tokens", max_tokens),
    )


def _finite(x: object, integer: bool = False) -> bool:
    """Whether ``x`` is a finite int (or float, unless ``integer``), bools excluded."""
    kinds = int if integer else (int, float)
    return not isinstance(x, bool) and isinstance(x, kinds) and math.isfinite(x)


def _check_settings(timeout: float, retries: int, backoff: float, concurrency: int) -> None:
    """Refuse non-numeric, non-finite or out-of-range HTTP settings, naming each."""
    bad = [
        text
        for ok, text in (
            (_finite(timeout) and timeout > 0, f"timeout={timeout!r} (seconds, > 0)"),
            (_finite(retries, True) and retries >= 0, f"retries={retries!r} (an integer >= 0)"),
            (_finite(backoff) and backoff >= 0, f"backoff={backoff!r} (seconds, >= 0)"),
            (_finite(concurrency, True) and concurrency >= 1, f"concurrency={concurrency!r} (>=1)"),
        )
        if not ok
    ]
    if bad:
        raise ValueError(f"bad HTTP backend settings: {'; '.join(bad)}")


class OpenAIBackend:
    """An OpenAI-compatible ``/v1/chat/completions`` server (vLLM, llama.cpp, hosted APIs).

    Args:
        base_url: ``http://`` or ``https://`` URL, e.g. ``"http://127.0.0.1:8000/v1"``.
        model: the served model's name.
        api_key: sent as a bearer token (default: ``$OPENAI_API_KEY`` if set).
        timeout: the deadline of one request in seconds, everything included (connect, send,
            the whole response, retries and backoff).
        retries: extra attempts after a connection error, a truncated body, HTTP 5xx, 408 or
            429, as long as the deadline leaves time.
        backoff: first retry delay in seconds, doubled each retry (cut short by the deadline).
        concurrency: requests in flight at once.
        guided: send vLLM's ``guided_choice`` / ``guided_json`` for schemas.

    Requests go straight to the server (proxy settings of the environment are not used).
    Each prompt is one request with its own ``seed`` field. ``generate`` returns when every
    request has an answer or has failed; if any failed it raises :class:`BackendError` naming
    how many failed and of which kinds, with the answers that did come in ``partial``.

    Attributes:
        endpoint: the chat-completions URL; part of every cache key (answers of one server are
            never served as another's).
        retried: attempts retried since construction.
        errors: failed requests since construction, per kind of :data:`ERROR_KINDS`.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        concurrency: int = 8,
        guided: bool = True,
    ) -> None:
        _check_settings(timeout, retries, backoff, concurrency)
        parts = urllib.parse.urlsplit(str(base_url).strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"llm_url must be an http:// or https:// URL, got {base_url!r}")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError(
                f"llm_url {base_url!r} must be scheme://host[:port]/path: no credentials (use "
                "api_key or $OPENAI_API_KEY), query or fragment"
            )
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"llm_url has a bad port: {base_url!r}") from None
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, port
        self._path = parts.path.rstrip("/") + "/chat/completions"
        self.url = self.endpoint = urllib.parse.urlunsplit(
            (parts.scheme, parts.netloc, self._path, "", "")
        )
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = float(backoff)
        self.concurrency = concurrency
        self.guided = guided
        self.retried = 0
        self.errors: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _body(self, messages: Messages, sampling: Sampling, seed: int, schema) -> bytes:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "seed": seed,
        }
        if self.guided and schema is not None:
            if schema.choices():
                body["guided_choice"] = schema.choices()
            else:
                body["guided_json"] = schema.json_schema()
        return json.dumps(body).encode()

    def _exchange(self, data: bytes, deadline: float) -> tuple[int, bytes]:
        """One attempt: (HTTP status, body bytes), all of it before ``deadline``."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Failure("deadline", "no time left for another attempt")
        kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = kind(self._host, self._port, timeout=left)
        expired = threading.Event()
        # a duplicate of the connection's socket, taken as it is created: conn.sock is not
        # enough (TLS replaces it after its handshake, and http.client forgets it once the
        # response owns it), and shutting a duplicate down shuts the connection down
        sockets: list[socket.socket] = []

        def create(*args: Any, **kwargs: Any) -> socket.socket:
            sock = socket.create_connection(*args, **kwargs)
            sockets.append(sock.dup())
            if expired.is_set():  # the timer fired while connecting: no TLS handshake after it
                sock.close()
                raise TimeoutError("the deadline passed while connecting")
            return sock

        conn._create_connection = create

        def cut() -> None:  # the deadline: wake whatever read or write is blocked
            expired.set()
            for sock in sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        timer = threading.Timer(left, cut)
        timer.daemon = True
        timer.start()
        stage = "connecting"
        try:
            conn.connect()
            if expired.is_set():
                raise _Failure("deadline", "the deadline passed while connecting")
            stage = "sending the request"
            headers = {"Content-Type": "application/json", "Content-Length": str(len(data))}
            if self.api_key:
                headers["Authorization"] = f"Bearer {self.api_key}"
            conn.request("POST", self._path, body=data, headers=headers)
            stage = "reading the status line and headers"
            response = conn.getresponse()
            stage = "reading the body"
            chunks, size = [], 0
            while block := response.read(1 << 16):
                size += len(block)
                if size > MAX_BODY_BYTES:
                    raise _Failure("too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")
                chunks.append(block)
            if expired.is_set():  # the timer cut the body short
                raise _Failure("deadline", f"the deadline passed while {stage}")
            if response.length:  # the connection closed before the declared Content-Length
                raise _Failure(
                    "truncated", f"the body stopped {response.length} bytes short of its length"
                )
            return response.status, b"".join(chunks)
        except _Failure:
            raise
        except (OSError, http.client.HTTPException) as err:
            if expired.is_set():
                raise _Failure("deadline", f"the deadline passed while {stage}") from None
            if isinstance(err, TimeoutError):
                raise _Failure("deadline", f"timed out while {stage}") from None
            if isinstance(err, http.client.IncompleteRead):
                raise _Failure("truncated", f"the body broke off ({err!r})") from None
            if isinstance(err, OSError):  # refused, reset, unreachable, remote disconnected
                reason = f"{type(err).__name__}: {getattr(err, 'strerror', None) or err}"
                raise _Failure("connection", f"{reason} while {stage}") from None
            raise _Failure("bad_http", f"{type(err).__name__} while {stage}: {err}") from None
        finally:
            timer.cancel()
            conn.close()
            for sock in sockets:
                sock.close()

    def _attempt(self, data: bytes, sampling: Sampling, deadline: float) -> Completion:
        status, body = self._exchange(data, deadline)
        if not 200 <= status < 300:
            said = body[:200].decode("utf-8", "replace")
            if 400 <= status < 500:  # a client error will not go away, except these two
                raise _Failure("http_4xx", f"HTTP {status}: {said!r}", retry=status in (408, 429))
            kind = "http_5xx" if status >= 500 else "http_other"
            raise _Failure(kind, f"HTTP {status}: {said!r}")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as err:
            where = f"{err.reason} at byte {err.start}"
            raise _Failure("not_utf8", f"the body is not UTF-8 ({where})") from None
        try:
            reply = json.loads(text)
        except json.JSONDecodeError as err:
            raise _Failure("not_json", f"the body is not JSON ({err.msg}): {text[:80]!r}") from None
        except (ValueError, RecursionError) as err:  # a 5000-digit number, deep nesting
            raise _Failure("not_json", f"the body is not a readable reply ({err!r:.80})") from None
        return completion_from_reply(reply, sampling.max_tokens, len(data))

    def _request(self, data: bytes, sampling: Sampling) -> Completion:
        """One prompt: attempts until an answer, a final failure or the deadline."""
        start = time.monotonic()
        deadline = start + self.timeout
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._attempt(data, sampling, deadline)
            except _Failure as failure:
                last = failure
            delay = self.backoff * 2 ** (attempt - 1)
            if not last.retry or attempt > self.retries or time.monotonic() + delay >= deadline:
                break
            with self._lock:
                self.retried += 1
            time.sleep(delay)
        with self._lock:
            self.errors[last.kind] += 1
        detail = last.detail.replace("\r", "\\r").replace("\n", "\\n")  # one line
        raise BackendError(
            f"OpenAI-compatible server {self.url} failed after {attempt} attempt(s) in "
            f"{time.monotonic() - start:.1f} s of a {self.timeout:g} s deadline "
            f"[{last.kind}]: {detail}",
            kind=last.kind,
        )

    def generate(
        self,
        prompts: Sequence[Messages],
        sampling: Sampling,
        schema: Schema | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Completion]:
        seeds = prompt_seeds(prompts, sampling, seeds)

        def one(i: int) -> Completion | BackendError:
            try:
                return self._request(self._body(prompts[i], sampling, seeds[i], schema), sampling)
            except BackendError as err:
                return err

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            results = list(pool.map(one, range(len(prompts))))
        failed = [r for r in results if isinstance(r, BackendError)]
        if not failed:
            return results
        kinds = Counter(f.kind for f in failed)
        if len(results) == 1:
            raise BackendError(str(failed[0]), kind=failed[0].kind, partial=[None])
        tally = ", ".join(f"{k} {n}" for k, n in kinds.most_common())
        raise BackendError(
            f"{len(failed)} of {len(results)} requests failed ({tally}); first: {failed[0]}",
            kind=failed[0].kind,
            kinds=kinds,
            partial=[None if isinstance(r, BackendError) else r for r in results],
        )
