"""OpenAI-compatible HTTP backend against a real server on 127.0.0.1 started by the test.

The server is a small OpenAI-compatible ``/v1/chat/completions`` endpoint (stdlib http.server)
whose answers follow a rule, so retries, timeouts, concurrency and fallbacks can be checked
exactly; the same client code talks to ``vllm serve`` or a llama.cpp server.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from populace.behaviors.llm import (
    ArchetypeQuery,
    BackendError,
    Fallback,
    OpenAIBackend,
    PromptTemplate,
    Question,
    Sampling,
    YesNo,
    request_seed,
)

TEMPLATE = PromptTemplate(system="You are {who}.", user="{cases} new cases. Stay home?")


class Server:
    """Serves chat completions; ``fail_first`` requests get HTTP 503, ``delay`` slows answers."""

    def __init__(self, fail_first: int = 0, delay: float = 0.0) -> None:
        self.fail_first = fail_first
        self.delay = delay
        self.requests: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.requests.append(body)
                    n = len(outer.requests)
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                time.sleep(outer.delay)
                # leave the in-flight count before answering: once the client has the answer
                # it may send its next request while this handler is still returning
                with outer.lock:
                    outer.in_flight -= 1
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": "not found"})
                if n <= outer.fail_first:
                    return self._send(503, {"error": "overloaded"})
                text = body["messages"][-1]["content"]
                answer = "yes" if int(text.split()[0]) >= 100 else "no"
                self._send(
                    200,
                    {
                        "choices": [{"message": {"role": "assistant", "content": answer}}],
                        "usage": {"prompt_tokens": 12, "completion_tokens": 1},
                    },
                )

            def _send(self, code, payload):
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def questions(*cases: int) -> list[Question]:
    return [Question({"who": f"p{i}"}, {"cases": c}) for i, c in enumerate(cases)]


def test_answers_through_a_real_server():
    with Server() as server:
        backend = OpenAIBackend(server.url, "smollm2", timeout=5)
        query = ArchetypeQuery(backend, TEMPLATE, YesNo(), samples=2)
        values, acc = query.ask(questions(10, 500, 99))
    assert values.tolist() == [0.0, 1.0, 0.0]
    assert acc.calls == 6 and len(server.requests) == 6
    assert acc.prompt_tokens == 72
    sent = server.requests[0]
    assert sent["model"] == "smollm2" and sent["guided_choice"] == ["yes", "no"]
    assert sent["messages"][1]["content"].endswith("yes or no.")


def test_every_request_sends_the_seed_of_its_own_key():
    people = [Question({"who": w}, {"cases": 10}) for w in ("ann", "bob", "cy")]
    with Server() as server:
        backend = OpenAIBackend(server.url, "m", concurrency=1)
        ArchetypeQuery(backend, TEMPLATE, YesNo(), samples=3).ask(people)
        batch = {(r["messages"][0]["content"], r["seed"]) for r in server.requests}
        server.requests.clear()
        ArchetypeQuery(backend, TEMPLATE, YesNo(), samples=3).ask(people[1:2])
        alone = {(r["messages"][0]["content"], r["seed"]) for r in server.requests}
    assert len(batch) == 9  # 3 people x 3 samples, every seed distinct
    assert alone <= batch  # bob's requests carry the same seeds alone as in the batch
    prompt = TEMPLATE.render(people[1].labels, people[1].env, YesNo())
    assert {seed for _, seed in alone} == {request_seed(0, prompt, s, 0) for s in range(3)}


def test_retries_with_backoff_then_success():
    with Server(fail_first=2) as server:
        backend = OpenAIBackend(server.url, "m", retries=3, backoff=0.01, concurrency=1)
        out = backend.generate([[{"role": "user", "content": "200 new"}]], Sampling())
    assert out[0].text == "yes" and backend.retried == 2 and len(server.requests) == 3


def test_concurrency_limit_is_respected():
    with Server(delay=0.2) as server:
        backend = OpenAIBackend(server.url, "m", concurrency=2)
        prompts = [[{"role": "user", "content": f"{i} new"}] for i in range(8)]
        start = time.perf_counter()
        out = backend.generate(prompts, Sampling())
        seconds = time.perf_counter() - start
    assert [c.text for c in out] == ["no"] * 8
    assert 1 <= server.max_in_flight <= 2
    assert seconds >= 8 / 2 * 0.2 * 0.95  # at most 2 at a time: 4 rounds of 0.2 s


def test_timeout_is_one_deadline_for_the_whole_request():
    # timeout bounds the request, retries included: a server slower than it costs one
    # deadline, not (retries + 1) of them
    with Server(delay=1.5) as server:
        backend = OpenAIBackend(server.url, "m", timeout=0.3, retries=3, backoff=0.0)
        start = time.monotonic()
        with pytest.raises(BackendError, match=r"1 attempt\(s\).*\[deadline\]") as err:
            backend.generate([[{"role": "user", "content": "1 new"}]], Sampling())
        assert time.monotonic() - start < 1.0
    assert err.value.kind == "deadline" and backend.errors == {"deadline": 1}


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens here any more


def test_server_down_is_a_clear_error():
    backend = OpenAIBackend(closed_port(), "m", retries=1, backoff=0.0)
    with pytest.raises(BackendError, match=r"failed after 2 attempt\(s\).*(refused|URLError)"):
        ArchetypeQuery(backend, TEMPLATE, YesNo()).ask(questions(1))


def test_server_down_with_declared_fallback_is_counted():
    backend = OpenAIBackend(closed_port(), "m", retries=0)
    fallback = Fallback("prior", prior=0.2, on_backend_error="fallback", max_share=1.0)
    query = ArchetypeQuery(backend, TEMPLATE, YesNo(), samples=2, fallback=fallback)
    values, acc = query.ask(questions(1, 300))
    assert values.tolist() == [0.2, 0.2]
    assert acc.backend_errors == 4 and acc.fallbacks == 4 and acc.calls == 0
    assert query.error_kinds == {"connection": 4} == backend.errors


def test_client_errors_are_not_retried():
    with Server() as server:
        backend = OpenAIBackend(server.url.replace("/v1", "/v2"), "m", retries=3, backoff=0.0)
        with pytest.raises(BackendError, match="HTTP 404"):
            backend.generate([[{"role": "user", "content": "1 new"}]], Sampling())
    assert len(server.requests) == 1
