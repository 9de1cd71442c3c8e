"""A misbehaving HTTP server on 127.0.0.1 for the LLM backend's fault tests.

Each connection reads one request and hands the socket to a *behaviour*: a function that may
answer correctly, send garbage, stop half-way, trickle bytes, hang or reset. Everything is
bounded in time: a behaviour that waits does so on the server's stop event, which ``__exit__``
sets, and every thread is a daemon joined with a timeout.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Callable

Behaviour = Callable[["FaultServer", socket.socket, int], None]

#: the longest any behaviour waits (seconds), whatever it was asked.
MAX_WAIT = 10.0


def http(status: int, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """An HTTP/1.1 response with a correct Content-Length unless ``headers`` sets one."""
    head = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    head.update(headers or {})
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in head.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def reply(content: object = "yes", usage: object = None, **extra: object) -> bytes:
    """A chat-completions JSON body whose ``content`` and ``usage`` may be anything."""
    body = {"choices": [{"message": {"role": "assistant", "content": content}}], **extra}
    body["usage"] = {"prompt_tokens": 12, "completion_tokens": 1} if usage is None else usage
    return json.dumps(body).encode()


class FaultServer:
    """Serves ``behave(server, connection, n)`` for the n-th request (1-based)."""

    def __init__(self, behave: Behaviour) -> None:
        self.behave = behave
        self.stop = threading.Event()
        self.requests = 0
        self.bodies: list[dict] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self._accept = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> FaultServer:
        self._accept.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self._accept.join(timeout=2)
        self.sock.close()
        for t in self._threads:
            t.join(timeout=2)

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` (at most MAX_WAIT); True when the server is stopping."""
        return self.stop.wait(min(seconds, MAX_WAIT))

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _read_request(self, conn: socket.socket) -> dict | None:
        data = b""
        while b"\r\n\r\n" not in data:
            block = conn.recv(65536)
            if not block:
                return None
            data += block
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        while len(body) < length:
            block = conn.recv(65536)
            if not block:
                return None
            body += block
        return json.loads(body) if body else {}

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(MAX_WAIT)
        try:
            # a raw behaviour answers at once, before (or instead of) reading a request
            request = {} if getattr(self.behave, "raw", False) else self._read_request(conn)
            if request is None:
                return
            with self._lock:
                self.requests += 1
                self.bodies.append(request)
                n = self.requests
            self.behave(self, conn, n)
        except OSError:  # the client gave up (deadline) or the server is stopping
            pass
        finally:
            conn.close()


# -- behaviours ------------------------------------------------------------------------------
def send(data: bytes, raw: bool = False) -> Behaviour:
    """Send ``data`` and close; ``raw``: as soon as the client connects, without reading."""

    def behave(server: FaultServer, conn: socket.socket, n: int) -> None:
        conn.sendall(data)

    behave.raw = raw
    return behave


def trickle(data: bytes, every: float = 0.05) -> Behaviour:
    """One byte every ``every`` seconds (a slow or stuck server that never times out a read)."""

    def behave(server: FaultServer, conn: socket.socket, n: int) -> None:
        for i in range(len(data)):
            conn.sendall(data[i : i + 1])
            if server.wait(every):
                return

    return behave


def then_hang(data: bytes = b"") -> Behaviour:
    """Send ``data`` (maybe nothing), then keep the connection open without a word."""

    def behave(server: FaultServer, conn: socket.socket, n: int) -> None:
        if data:
            conn.sendall(data)
        server.wait(MAX_WAIT)

    return behave


def reset(server: FaultServer, conn: socket.socket, n: int) -> None:
    """Close with RST (SO_LINGER 0) instead of a clean FIN."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def first_then(first: Behaviour, count: int, rest: Behaviour) -> Behaviour:
    """``first`` for the first ``count`` requests, then ``rest``."""

    def behave(server: FaultServer, conn: socket.socket, n: int) -> None:
        (first if n <= count else rest)(server, conn, n)

    return behave


def by_prompt(rule: Callable[[dict], bytes]) -> Behaviour:
    """A 200 whose body is ``rule(request JSON)`` (answers that depend on the prompt)."""

    def behave(server: FaultServer, conn: socket.socket, n: int) -> None:
        conn.sendall(http(200, rule(server.bodies[n - 1])))

    return behave
