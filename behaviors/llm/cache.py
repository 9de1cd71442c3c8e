"""A disk cache of LLM answers (sqlite, stdlib), keyed by everything that shapes an answer.

The key hashes backend kind, model, prompt messages, sampling settings, the sample index and
the retry attempt (and :data:`KEY_VERSION`); so a rerun with the same seed (same prompts) makes
zero backend calls and reproduces the simulation exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import threading
from pathlib import Path

from populace.behaviors.llm.backends import Completion, Messages, Sampling

#: bumped when what an answer's text depends on changes, so older entries are never reused
#: (2: each request samples with its own seed, :func:`backends.request_seed`).
KEY_VERSION = 2


def cache_key(
    backend: str, model: str, prompt: Messages, sampling: Sampling, sample: int, attempt: int
) -> str:
    """sha256 of the canonical JSON of everything that determines one answer."""
    payload = {
        "version": KEY_VERSION,
        "backend": backend,
        "model": model,
        "prompt": prompt,
        "sampling": dataclasses.asdict(sampling),
        "sample": sample,
        "attempt": attempt,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class AnswerCache:
    """Answers on disk (``path`` is an sqlite file; its folder is created).

    Safe to share between threads of one process; other processes see committed answers.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        with self._lock, self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, text TEXT NOT NULL,"
                " prompt_tokens INTEGER, completion_tokens INTEGER)"
            )

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._db.execute(
                "SELECT text, prompt_tokens, completion_tokens FROM answers WHERE key = ?", (key,)
            ).fetchone()
        return Completion(*row) if row else None

    def put_many(self, items: list[tuple[str, Completion]]) -> None:
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?)",
                [(k, c.text, c.prompt_tokens, c.completion_tokens) for k, c in items],
            )

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        self._db.close()
