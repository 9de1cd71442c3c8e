"""The OpenAI-compatible backend against a misbehaving server: every fault a named error.

Each case runs one request against :class:`fault_server.FaultServer` (127.0.0.1) in a thread
with a hard join timeout, and sorts the outcome into: the expected named error (a clear
error), an answer where there should be none (silent), any other exception (traceback) or no
return in time (hang). Every case must be a clear error (or, for the controls, the right
answer); ``python tests/behaviors/test_llm_http_faults.py`` prints the tally.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import warnings

import pytest
from fault_server import (
    FaultServer,
    by_prompt,
    first_then,
    http,
    reply,
    reset,
    send,
    then_hang,
    trickle,
)

from populace.behaviors.llm import (
    ERROR_KINDS,
    ArchetypeQuery,
    BackendError,
    Fallback,
    FallbackShareError,
    FallbackShareWarning,
    OpenAIBackend,
    PromptTemplate,
    Question,
    Sampling,
    YesNo,
    make_backend,
)
from populace.behaviors.llm.openai_http import MAX_BODY_BYTES

DEADLINE = 0.6  # seconds per request in these cases
SLACK = 2.0  # what a request may take beyond its deadline before it counts as a hang
PROMPT = [{"role": "user", "content": "200 new cases. Stay home?"}]
OK = http(200, reply("yes"))
CHUNKED = {"Transfer-Encoding": "chunked", "Content-Length": ""}


def _no_length(status: int, body: bytes) -> bytes:
    """A close-delimited response (no Content-Length)."""
    return http(status, body, {"Content-Length": ""}).replace(b"Content-Length: \r\n", b"")


def _chunked_broken() -> bytes:
    head = http(200, b"", CHUNKED).replace(b"Content-Length: \r\n", b"")
    return head + b"64\r\n" + b'{"choices": ['  # says 100 bytes, sends 13, closes


#: (case, behaviour, expected kind or None for a correct answer, extra backend settings)
CASES = [
    ("control: a correct answer", send(OK), None, {}),
    (
        "control: 503 twice, then an answer",
        first_then(send(http(503, b"busy")), 2, send(OK)),
        None,
        {},
    ),
    (
        "control: 429 once, then an answer",
        first_then(send(http(429, b"slow")), 1, send(OK)),
        None,
        {},
    ),
    (
        "control: no usage field",
        send(http(200, json.dumps({"choices": [{"message": {"content": "yes"}}]}).encode())),
        None,
        {},
    ),
    ("control: close-delimited body", send(_no_length(200, reply("yes"))), None, {}),
    ("connection refused", None, "connection", {}),
    ("closed without a word", send(b""), "connection", {}),
    ("reset (RST)", reset, "connection", {}),
    ("garbage instead of HTTP", send(b"ZZZZ garbage\r\n\r\n"), "bad_http", {}),
    (
        "a header line over 64 KiB",
        send(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n"),
        "bad_http",
        {},
    ),
    (
        "more than 100 headers",
        send(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 150 + b"\r\n"),
        "bad_http",
        {},
    ),
    ("hang: never answers", then_hang(), "deadline", {}),
    ("hang after the headers", then_hang(http(200, reply())[:60]), "deadline", {}),
    (
        "hang with a body short of Content-Length",
        then_hang(http(200, reply())[:-5]),
        "deadline",
        {},
    ),
    ("slow trickle of the headers", trickle(OK, 0.05), "deadline", {}),
    ("slow trickle of the body", trickle(OK, 0.02), "deadline", {"retries": 5}),
    (
        "endless close-delimited trickle",
        trickle(_no_length(200, b" " * 10**5), 0.01),
        "deadline",
        {},
    ),
    ("partial body, then close", send(http(200, reply())[:-20]), "truncated", {"retries": 0}),
    ("broken chunked body", send(_chunked_broken()), "truncated", {"retries": 0}),
    ("https: a handshake that never ends", then_hang(), "deadline", {"scheme": "https"}),
    (
        "https: garbage instead of TLS",
        send(b"HTTP/1.1 200 OK\r\n\r\n", raw=True),
        "connection",
        {"scheme": "https"},
    ),
    ("HTTP 400", send(http(400, b'{"error": "bad request"}')), "http_4xx", {}),
    ("HTTP 401", send(http(401, b'{"error": "no key"}')), "http_4xx", {}),
    ("HTTP 404", send(http(404, b"not found")), "http_4xx", {}),
    ("HTTP 429 every time", send(http(429, b"slow down")), "http_4xx", {}),
    ("HTTP 500", send(http(500, b"oops")), "http_5xx", {}),
    ("HTTP 503 every time", send(http(503, b"busy")), "http_5xx", {}),
    ("HTTP 302 redirect", send(http(302, b"", {"Location": "/elsewhere"})), "http_other", {}),
    ("non-UTF-8 body", send(http(200, b'{"choices": "\xff\xfe\xfa"}')), "not_utf8", {}),
    ("garbage JSON", send(http(200, b'{"choices": [ {"mess')), "not_json", {}),
    (
        "an HTML page with 200",
        send(http(200, b"<html><body>Welcome</body></html>")),
        "not_json",
        {},
    ),
    ("empty 200 body", send(http(200, b"")), "not_json", {}),
    ("JSON nested 100000 deep", send(http(200, b"[" * 100000)), "not_json", {}),
    ("a 5000-digit number", send(http(200, b'{"choices": ' + b"7" * 5000 + b"}")), "not_json", {}),
    ("body over the size limit", send(http(200, b" " * (MAX_BODY_BYTES + 10))), "too_large", {}),
    ("JSON list, not object", send(http(200, b"[]")), "bad_shape", {}),
    ("no choices", send(http(200, b"{}")), "bad_shape", {}),
    ("empty choices", send(http(200, b'{"choices": []}')), "bad_shape", {}),
    ("choices is a string", send(http(200, b'{"choices": "yes"}')), "bad_shape", {}),
    (
        "completions-API shape (text, no message)",
        send(http(200, b'{"choices": [{"text": "y"}]}')),
        "bad_shape",
        {},
    ),
    (
        "message without content",
        send(http(200, b'{"choices": [{"message": {"role": "a"}}]}')),
        "bad_shape",
        {},
    ),
    (
        "an error object with 200",
        send(http(200, b'{"error": {"message": "no such model"}}')),
        "bad_shape",
        {},
    ),
    ("numeric content", send(http(200, reply(0.7))), "bad_content", {}),
    ("integer content", send(http(200, reply(1))), "bad_content", {}),
    ("boolean content", send(http(200, reply(True))), "bad_content", {}),
    ("null content", send(http(200, reply(None))), "bad_content", {}),
    ("list content", send(http(200, reply([{"type": "text", "text": "yes"}]))), "bad_content", {}),
    ("object content", send(http(200, reply({"answer": "yes"}))), "bad_content", {}),
    (
        "completion_tokens 1e30",
        send(http(200, reply(usage={"completion_tokens": 1e30}))),
        "bad_usage",
        {},
    ),
    (
        "completion_tokens 10**30",
        send(http(200, reply(usage={"completion_tokens": 10**30}))),
        "bad_usage",
        {},
    ),
    (
        "completion_tokens -1",
        send(http(200, reply(usage={"completion_tokens": -1}))),
        "bad_usage",
        {},
    ),
    (
        "completion_tokens 'many'",
        send(http(200, reply(usage={"completion_tokens": "many"}))),
        "bad_usage",
        {},
    ),
    (
        "completion_tokens NaN",
        send(http(200, reply(usage={"completion_tokens": float("nan")}))),
        "bad_usage",
        {},
    ),
    (
        "completion_tokens above max_tokens",
        send(http(200, reply(usage={"completion_tokens": 9}))),
        "bad_usage",
        {},
    ),
    (
        "prompt_tokens 10**12",
        send(http(200, reply(usage={"prompt_tokens": 10**12}))),
        "bad_usage",
        {},
    ),
    ("usage is a list", send(http(200, reply(usage=[1, 2]))), "bad_usage", {}),
]


def closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens here any more


def run_case(behaviour, settings: dict) -> tuple[str, object, float, int]:
    """(outcome, detail, seconds, requests): outcome is answer | error | traceback | hang."""
    result: dict = {}

    options = {"timeout": DEADLINE, "retries": 2, "backoff": 0.01, **settings}
    scheme = options.pop("scheme", "http")

    def call(url: str) -> None:
        backend = OpenAIBackend(url.replace("http:", f"{scheme}:"), "m", **options)
        try:
            result["answer"] = backend.generate([PROMPT], Sampling(max_tokens=8))[0]
        except BackendError as err:
            result["error"] = err
        except BaseException as err:  # anything else is a traceback for the user
            result["traceback"] = err

    def go(url: str, server: FaultServer | None) -> tuple[str, object, float, int]:
        start = time.monotonic()
        worker = threading.Thread(target=call, args=(url,), daemon=True)
        worker.start()
        worker.join(DEADLINE + SLACK)
        seconds = time.monotonic() - start
        requests = server.requests if server else 0
        if worker.is_alive():
            return "hang", None, seconds, requests
        ((outcome, detail),) = result.items()
        return outcome, detail, seconds, requests

    if behaviour is None:
        return go(closed_url(), None)
    with FaultServer(behaviour) as server:
        return go(server.url, server)


def classify(expected: str | None, outcome: str, detail: object) -> str:
    """clear | silent | traceback | hang | wrong (a named error, but not the expected one)."""
    if outcome in ("hang", "traceback"):
        return outcome
    if expected is None:
        return "clear" if outcome == "answer" and detail.text == "yes" else "wrong"
    if outcome == "answer":
        return "silent"
    return "clear" if detail.kind == expected else "wrong"


@pytest.mark.parametrize(
    ("case", "behaviour", "expected", "settings"), CASES, ids=[c[0] for c in CASES]
)
def test_fault_gives_a_named_error_in_time(case, behaviour, expected, settings):
    outcome, detail, seconds, requests = run_case(behaviour, settings)
    verdict = classify(expected, outcome, detail)
    assert verdict == "clear", f"{case}: {verdict} ({outcome}: {detail!r}) after {seconds:.2f} s"
    assert seconds <= DEADLINE + 0.5, f"{case}: {seconds:.2f} s for a {DEADLINE} s deadline"
    if expected is not None:
        message = str(detail)
        assert "\n" not in message and f"[{expected}]" in message and "/chat/completions" in message
        assert expected in ERROR_KINDS


def test_client_errors_are_asked_once_server_errors_retried():
    for status, asked in ((400, 1), (404, 1), (429, 3), (500, 3), (503, 3)):
        _, _, _, requests = run_case(send(http(status, b"x")), {"retries": 2})
        assert requests == asked, (status, requests)


def test_retries_stop_at_the_deadline():
    # 503 with a 0.25 s backoff doubling: 0.25 + 0.5 would pass the 0.6 s deadline
    outcome, err, seconds, requests = run_case(
        send(http(503, b"busy")), {"retries": 10, "backoff": 0.25}
    )
    assert outcome == "error" and err.kind == "http_5xx" and requests == 2
    assert seconds < DEADLINE


def test_a_partial_batch_keeps_its_answers_and_names_its_failures():
    def rule(body: dict) -> bytes:  # numeric content for "13 new", an answer for the others
        text = body["messages"][-1]["content"]
        return reply(0.5) if text.startswith("13 ") else reply("yes")

    prompts = [[{"role": "user", "content": f"{n} new"}] for n in (10, 13, 20, 13)]
    with FaultServer(by_prompt(rule)) as server:
        backend = OpenAIBackend(server.url, "m", timeout=DEADLINE)
        with pytest.raises(BackendError, match=r"2 of 4 requests failed \(bad_content 2\)") as e:
            backend.generate(prompts, Sampling(), seeds=[1, 2, 3, 4])
    assert e.value.kinds == {"bad_content": 2} and backend.errors == {"bad_content": 2}
    assert [c.text if c else None for c in e.value.partial] == ["yes", None, "yes", None]


TEMPLATE = PromptTemplate(system="You are {who}.", user="{cases} new cases. Stay home?")


def questions(*cases: int) -> list[Question]:
    return [Question({"who": f"p{i}"}, {"cases": c}) for i, c in enumerate(cases)]


def test_query_falls_back_only_for_the_failed_requests():
    def rule(body: dict) -> bytes:
        text = body["messages"][-1]["content"]
        return reply(None) if text.startswith("13 ") else reply("yes")

    fallback = Fallback("prior", 0.25, "fallback")
    with FaultServer(by_prompt(rule)) as server:
        backend = OpenAIBackend(server.url, "m", timeout=DEADLINE)
        query = ArchetypeQuery(backend, TEMPLATE, YesNo(), samples=2, fallback=fallback)
        values, acc = query.ask(questions(10, 13, 20))
    assert values.tolist() == [1.0, 0.25, 1.0]
    assert (acc.answers, acc.calls, acc.backend_errors, acc.lost, acc.fallbacks) == (6, 4, 2, 2, 2)
    assert query.error_kinds == {"bad_content": 2}


def test_mostly_failed_answers_end_the_query_with_one_line():
    fallback = Fallback("prior", 0.25, "fallback", max_share=0.5, on_excess="error")
    with FaultServer(send(http(200, reply(0.7)))) as server:
        backend = make_backend("openai", url=server.url, model="m", timeout=DEADLINE, retries=0)
        query = ArchetypeQuery(backend, TEMPLATE, YesNo(), samples=2, fallback=fallback)
        with pytest.raises(FallbackShareError) as err:
            query.ask(questions(10, 20))
    message = str(err.value)
    assert "\n" not in message
    assert "4 of 4 LLM answers (100%)" in message and "max_share=0.5" in message
    assert "bad_content 4" in message


def test_invalid_answers_past_the_share_end_the_query():
    fallback = Fallback("previous", 0.1, max_share=0.2, on_excess="error")
    with FaultServer(send(http(200, reply("banana")))) as server:
        backend = OpenAIBackend(server.url, "m", timeout=DEADLINE)
        query = ArchetypeQuery(
            backend, TEMPLATE, YesNo(), samples=1, max_retries=1, fallback=fallback
        )
        with pytest.raises(FallbackShareError, match=r"2 invalid after 1 retries.*banana"):
            query.ask(questions(10, 20))


def test_by_default_a_query_past_half_fallbacks_warns_once_and_goes_on():
    fallback = Fallback("prior", 0.25, "fallback")  # max_share=0.5, on_excess="warn"
    with FaultServer(send(http(500, b"down"))) as server:
        backend = OpenAIBackend(server.url, "m", timeout=DEADLINE, retries=0)
        query = ArchetypeQuery(backend, TEMPLATE, YesNo(), samples=1, fallback=fallback)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            for _ in range(3):
                values, _ = query.ask(questions(10))
    assert values.tolist() == [0.25]
    shares = [w for w in seen if issubclass(w.category, FallbackShareWarning)]
    assert len(shares) == 1 and "http_5xx 1" in str(shares[0].message)


def test_bad_settings_and_urls_are_refused():
    for bad in (
        {"timeout": 0},
        {"timeout": float("nan")},
        {"timeout": "5"},
        {"retries": -1},
        {"retries": 1.5},
        {"backoff": float("inf")},
        {"concurrency": 0},
    ):
        with pytest.raises(ValueError, match="bad HTTP backend settings"):
            OpenAIBackend("http://127.0.0.1:1/v1", "m", **bad)
    for url in (
        "ftp://x/v1",
        "127.0.0.1:8000/v1",
        "http://u:p@host/v1",
        "http://h/v1?x=1",
        "http://h:99999999/v1",
    ):
        with pytest.raises(ValueError, match="llm_url"):
            OpenAIBackend(url, "m")
    with pytest.raises(ValueError, match="timeout=5 do"):
        make_backend("transformers", timeout=5)


def tally() -> dict[str, int]:
    """Run every case; count the outcomes (the numbers the issue's closing note asks for)."""
    counts = {"cases": 0, "clear": 0, "silent": 0, "traceback": 0, "hang": 0, "wrong": 0}
    for case, behaviour, expected, settings in CASES:
        outcome, detail, seconds, _ = run_case(behaviour, settings)
        verdict = classify(expected, outcome, detail)
        counts["cases"] += 1
        counts[verdict] += 1
        print(f"{verdict:9s} {seconds:5.2f} s  {case}: {str(detail)[:110]}")
    return counts


if __name__ == "__main__":
    print(tally())
