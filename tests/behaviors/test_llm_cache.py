"""The answer cache's faults: endpoint in the key, damaged, locked, foreign and edited files."""

from __future__ import annotations

import sqlite3
import warnings

import pytest
from fault_server import FaultServer, http, reply, send

from populace.behaviors.llm import (
    AnswerCache,
    ArchetypeQuery,
    CacheError,
    Completion,
    OpenAIBackend,
    PromptTemplate,
    Question,
    Sampling,
    YesNo,
    cache_key,
)
from populace.behaviors.llm.cache import TABLE

TEMPLATE = PromptTemplate(system="You are {who}.", user="{cases} new cases. Stay home?")
PROMPT = [{"role": "user", "content": "Stay home?"}]


def filled(path, n: int = 50) -> AnswerCache:
    cache = AnswerCache(path)
    cache.put_many([(f"key-{i:04d}", Completion(f"answer-{i:06d}", 10, 1)) for i in range(n)])
    return cache


def one_line(err: pytest.ExceptionInfo, path) -> str:
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    return message


def test_the_key_holds_the_endpoint():
    args = ("openai", "m", PROMPT, Sampling(), 0, 0)
    assert cache_key(*args, "http://a:1/v1/chat/completions") != cache_key(
        *args, "http://b:1/v1/chat/completions"
    )


def test_two_servers_of_one_model_name_never_share_answers(tmp_path):
    cache = AnswerCache(tmp_path / "c.sqlite")
    question = [Question({"who": "ann"}, {"cases": 10})]
    with (
        FaultServer(send(http(200, reply("yes")))) as yes,
        FaultServer(send(http(200, reply("no")))) as no,
    ):
        first, _ = ArchetypeQuery(OpenAIBackend(yes.url, "m"), TEMPLATE, YesNo(), cache=cache).ask(
            question
        )
        second, acc = ArchetypeQuery(
            OpenAIBackend(no.url, "m"), TEMPLATE, YesNo(), cache=cache
        ).ask(question)
    assert first.tolist() == [1.0] and second.tolist() == [0.0]
    assert acc.cache_hits == 0 and no.requests == 4


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: b"this is not a database at all" * 40, id="garbage file"),
        pytest.param(lambda data: data[:100], id="cut inside the header"),
        pytest.param(lambda data: data[: len(data) // 2], id="cut in half"),
        pytest.param(lambda data: data[:16] + bytes(84) + data[100:], id="zeroed header"),
        pytest.param(lambda data: data[:4096] + b"\xff" * 4096 + data[8192:], id="a page of 0xff"),
    ],
)
def test_a_damaged_file_is_one_clear_error_and_can_be_rebuilt(tmp_path, damage):
    path = tmp_path / "c.sqlite"
    filled(path, 400).close()
    bad = damage(path.read_bytes())
    path.write_bytes(bad)
    with pytest.raises(CacheError) as err:
        cache = AnswerCache(path)
        for i in range(400):  # damage that the open check misses shows on reading
            cache.get(f"key-{i:04d}")
    assert "rebuild" in one_line(err, path)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        cache = AnswerCache(path, rebuild=True)
    assert len(cache) == 0 and cache.get("key-0001") is None
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("c.sqlite.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes() == bad  # moved aside, not lost
    assert any("moved to" in str(w.message) for w in seen)


def test_an_edited_answer_is_detected_not_used(tmp_path):
    path = tmp_path / "c.sqlite"
    filled(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"UPDATE {TABLE} SET text = 'yes' WHERE key = 'key-0007'")
        db.execute(f"UPDATE {TABLE} SET completion_tokens = 99 WHERE key = 'key-0008'")
    cache = AnswerCache(path)
    assert cache.get("key-0006") == Completion("answer-000006", 10, 1)
    for key in ("key-0007", "key-0008"):
        with pytest.raises(CacheError, match="does not match its digest") as err:
            cache.get(key)
        one_line(err, path)
    rebuilt = AnswerCache(path, rebuild=True)
    assert rebuilt.get("key-0007") is None and rebuilt.dropped == 1  # dropped: asked again
    assert len(rebuilt) == 49


def test_a_flipped_byte_in_an_answer_is_detected(tmp_path):
    path = tmp_path / "c.sqlite"
    filled(path).close()
    data = bytearray(path.read_bytes())
    at = data.index(b"answer-000031")
    data[at + 12] ^= 0x01  # "...031" -> "...030": still text, a different answer
    path.write_bytes(bytes(data))
    cache = AnswerCache(path)
    with pytest.raises(CacheError, match="digest"):
        cache.get("key-0031")


def test_a_value_of_the_wrong_type_is_detected(tmp_path):
    path = tmp_path / "c.sqlite"
    filled(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"UPDATE {TABLE} SET prompt_tokens = 'many' WHERE key = 'key-0002'")
    with pytest.raises(CacheError, match="digest"):
        AnswerCache(path).get("key-0002")


def test_a_locked_file_is_one_clear_error_and_never_rebuilt(tmp_path):
    path = tmp_path / "c.sqlite"
    filled(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(CacheError, match="another process holds it") as err:
            AnswerCache(path, lock_timeout=0.1)
        assert err.value.locked
        one_line(err, path)
        with pytest.raises(CacheError, match="another process"):
            AnswerCache(path, lock_timeout=0.1, rebuild=True)  # locked is not damaged
        assert not [p for p in tmp_path.iterdir() if "corrupt" in p.name]
    finally:
        holder.rollback()
    cache = AnswerCache(path, lock_timeout=0.1)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(CacheError, match="writing failed.*locked"):
            cache.put_many([("k", Completion("yes"))])
    finally:
        holder.rollback()
        holder.close()


def test_another_database_or_a_folder_is_not_a_cache(tmp_path):
    other = tmp_path / "app.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE users (name TEXT)")
    with pytest.raises(CacheError, match="no answer table"):
        AnswerCache(other)
    with pytest.raises(CacheError, match="is a folder"):
        AnswerCache(tmp_path)


def test_an_older_cache_file_opens_and_keeps_its_rows(tmp_path):
    path = tmp_path / "c.sqlite"
    with sqlite3.connect(path) as db:  # the key-version-2 layout
        db.execute(
            "CREATE TABLE answers (key TEXT PRIMARY KEY, text TEXT NOT NULL,"
            " prompt_tokens INTEGER, completion_tokens INTEGER)"
        )
        db.execute("INSERT INTO answers VALUES ('old', 'yes', 1, 1)")
    cache = AnswerCache(path)
    assert len(cache) == 0 and cache.get("old") is None
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM answers").fetchone() == (1,)


@pytest.mark.parametrize(
    "bad",
    [(5,), (None,), ("x", 10**30), ("x", -1), ("x", 1, 2.5), ("x", True)],
    ids=["number text", "no text", "huge count", "negative", "float count", "bool count"],
)
def test_a_completion_holds_only_what_can_be_stored(bad):
    with pytest.raises(ValueError, match="completion"):
        Completion(*bad)
