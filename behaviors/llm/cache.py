"""A disk cache of LLM answers (sqlite, stdlib), keyed by everything that shapes an answer.

The key hashes backend kind, model, the server's endpoint (for an HTTP backend), prompt messages,
sampling settings, the sample index and the retry attempt (and :data:`KEY_VERSION`); so a rerun
with the same seed (same prompts) makes zero backend calls and reproduces the simulation exactly.

Every row carries a digest of its key and answer: a row edited or damaged on disk is detected
when read, never used. A file that is not a readable answer cache (corrupt, truncated, another
sqlite database, locked by another process) raises :class:`CacheError`, one line naming the
file; ``rebuild=True`` moves a damaged file aside (``<file>.corrupt-<time>``) and starts empty.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import threading
import time
import warnings
from pathlib import Path

from populace.behaviors.llm.backends import Completion, Messages, Sampling

#: bumped when what an answer's text depends on changes, so older entries are never reused
#: (2: each request samples with its own seed, :func:`backends.request_seed`; 3: the key holds
#: the endpoint and rows carry a digest).
KEY_VERSION = 3
#: the table of this key version (older versions' tables stay in the file, unused).
TABLE = f"answers_v{KEY_VERSION}"


class CacheError(RuntimeError):
    """The answer cache file cannot be used (corrupt, locked, not a cache, edited rows).

    Attributes:
        locked: the file is held by another process (waiting may help; rebuilding would not).
    """

    def __init__(self, message: str, locked: bool = False) -> None:
        super().__init__(message)
        self.locked = locked


def cache_key(
    backend: str,
    model: str,
    prompt: Messages,
    sampling: Sampling,
    sample: int,
    attempt: int,
    endpoint: str = "",
) -> str:
    """sha256 of the canonical JSON of everything that determines one answer.

    ``endpoint`` is the server URL of an HTTP backend (``""`` for a local model, which its
    ``model`` identity names by content).
    """
    payload = {
        "version": KEY_VERSION,
        "backend": backend,
        "endpoint": endpoint,
        "model": model,
        "prompt": prompt,
        "sampling": dataclasses.asdict(sampling),
        "sample": sample,
        "attempt": attempt,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def row_digest(key: str, text: str, prompt_tokens: int, completion_tokens: int) -> str:
    """sha256 of a row's key and answer (detects edits and damage, not a deliberate forgery)."""
    payload = json.dumps([key, text, prompt_tokens, completion_tokens])
    return hashlib.sha256(payload.encode()).hexdigest()


class AnswerCache:
    """Answers on disk (``path`` is an sqlite file; its folder is created).

    Args:
        path: the sqlite file.
        rebuild: when the file is damaged or not an answer cache, move it aside to
            ``<path>.corrupt-<UTC time>`` and start an empty cache (with a warning) instead of
            raising; a row whose digest does not match is then dropped and asked again.
        lock_timeout: seconds to wait for another process's write lock before
            :class:`CacheError`.

    Safe to share between threads of one process; other processes see committed answers.

    Raises:
        CacheError: one line naming the file and what is wrong with it, and how to rebuild.
    """

    def __init__(
        self, path: str | Path, *, rebuild: bool = False, lock_timeout: float = 10.0
    ) -> None:
        self.path = Path(path)
        if not (isinstance(lock_timeout, int | float) and 0 <= lock_timeout < float("inf")):
            raise ValueError(f"lock_timeout must be a finite number of seconds, got {lock_timeout}")
        self.rebuild = rebuild
        self.lock_timeout = lock_timeout
        #: rows dropped because their digest did not match (``rebuild=True`` only).
        self.dropped = 0
        self._lock = threading.Lock()
        if self.path.is_dir():
            raise CacheError(f"answer cache {self.path} is a folder, not an sqlite file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise CacheError(f"answer cache {self.path}: cannot create its folder: {err}") from None
        try:
            self._db = self._open()
        except CacheError as err:
            if not rebuild or err.locked:
                raise
            aside = self.path.with_name(
                f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
            )
            self.path.rename(aside)
            warnings.warn(
                f"answer cache {self.path} was unreadable: moved to {aside}, starting empty",
                stacklevel=2,
            )
            self._db = self._open()

    def _fail(self, err: sqlite3.Error, doing: str) -> CacheError:
        text = " ".join(str(err).split())[:300]  # sqlite's integrity report spans lines
        locked = "locked" in text or "busy" in text
        if locked:
            advice = (
                f"another process holds it (waited {self.lock_timeout:g} s); wait for it or "
                "use another cache file"
            )
        else:
            advice = (
                "it is damaged or not an answer cache; rebuild it (AnswerCache(..., "
                "rebuild=True) moves it aside) or delete it"
            )
        return CacheError(f"answer cache {self.path}: {doing} failed ({text}): {advice}", locked)

    def _open(self) -> sqlite3.Connection:
        db = None
        try:
            db = sqlite3.connect(self.path, timeout=self.lock_timeout, check_same_thread=False)
            check = db.execute("PRAGMA quick_check(1)").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {check[0] if check else 'none'}")
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            if tables and not any(t == "answers" or t.startswith("answers_v") for t in tables):
                raise sqlite3.DatabaseError(f"no answer table, but tables {tables[:4]}")
            with db:
                db.execute(
                    f"CREATE TABLE IF NOT EXISTS {TABLE} (key TEXT PRIMARY KEY, text TEXT NOT NULL,"
                    " prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,"
                    " digest TEXT NOT NULL)"
                )
            return db
        except sqlite3.Error as err:
            if db is not None:
                db.close()
            raise self._fail(err, "opening") from None

    def get(self, key: str) -> Completion | None:
        """The cached answer of ``key``, or None.

        Raises:
            CacheError: the row does not match its digest (unless ``rebuild``: then it is
                dropped and None returned), or the file cannot be read.
        """
        try:
            with self._lock:
                row = self._db.execute(
                    f"SELECT text, prompt_tokens, completion_tokens, digest FROM {TABLE}"
                    " WHERE key = ?",
                    (key,),
                ).fetchone()
        except sqlite3.Error as err:
            raise self._fail(err, "reading") from None
        if row is None:
            return None
        text, prompt_tokens, completion_tokens, digest = row
        try:
            ok = digest == row_digest(key, text, prompt_tokens, completion_tokens)
            answer = Completion(text, prompt_tokens, completion_tokens) if ok else None
        except (TypeError, ValueError):  # a value of the wrong type, written by hand
            answer = None
        if answer is not None:
            return answer
        if not self.rebuild:
            raise CacheError(
                f"answer cache {self.path}: the row of key {key[:12]}... does not match its "
                "digest (edited or damaged); rebuild it (AnswerCache(..., rebuild=True) drops "
                "such rows) or delete the file"
            )
        try:
            with self._lock, self._db:
                self._db.execute(f"DELETE FROM {TABLE} WHERE key = ?", (key,))
        except sqlite3.Error as err:
            raise self._fail(err, "dropping an edited row") from None
        self.dropped += 1
        return None

    def put_many(self, items: list[tuple[str, Completion]]) -> None:
        fields = [(k, *dataclasses.astuple(c)) for k, c in items]
        rows = [(*f, row_digest(*f)) for f in fields]
        try:
            with self._lock, self._db:
                self._db.executemany(f"INSERT OR REPLACE INTO {TABLE} VALUES (?, ?, ?, ?, ?)", rows)
        except sqlite3.Error as err:
            raise self._fail(err, "writing") from None

    def __len__(self) -> int:
        try:
            with self._lock:
                return self._db.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0]
        except sqlite3.Error as err:
            raise self._fail(err, "counting") from None

    def close(self) -> None:
        self._db.close()
