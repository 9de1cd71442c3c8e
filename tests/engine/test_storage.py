"""engine/storage.py: staged folders swapped in with one rename, manifests, sealed files, JSON."""

import json
import os
import subprocess
import sys
import threading

import pytest

from populace.engine import storage
from populace.engine.storage import IntegrityError, OutputExistsError


def write_output(target, files, **kw):
    with storage.staged_folder(target, kind="test", **kw) as tmp:
        for name, text in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text)
    return target


def visible(folder):
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def dead_pid():
    """The PID of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_staged_folder_appears_whole_with_its_manifest(tmp_path):
    out = write_output(tmp_path / "a" / "out", {"x.txt": "1", "sub/y.txt": "22"})
    assert visible(out) == ["manifest.json", "sub", "x.txt"]
    manifest = storage.verify_folder(out, "test")
    assert manifest["files"]["sub/y.txt"]["bytes"] == 2
    assert hidden(out.parent) == []  # the temporary folder was renamed, not copied


def test_a_failure_or_interrupt_leaves_nothing_not_even_parents(tmp_path):
    for error in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(error)):
            with storage.staged_folder(tmp_path / "new" / "deeper" / "out", kind="t") as tmp:
                (tmp / "x").write_text("half")
                raise error
        assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text", ["", "  "])
def test_an_empty_target_is_refused(text):
    with pytest.raises(ValueError, match="empty"):
        write_output(text, {"x": "1"})


def test_existing_targets_refused_unless_overwrite_and_then_only_populace_outputs(tmp_path):
    (tmp_path / "file").write_text("mine")
    with pytest.raises(OutputExistsError, match="is a file"):
        write_output(tmp_path / "file", {"x": "1"}, overwrite=True)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(OutputExistsError, match="not empty.*--overwrite"):
        write_output(mine, {"x": "1"})
    with pytest.raises(OutputExistsError, match="not a populace output"):
        write_output(mine, {"x": "1"}, overwrite=True)
    assert visible(mine) == ["notes.txt"] and hidden(tmp_path) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    write_output(empty, {"x": "1"})  # an empty folder is taken
    write_output(empty, {"y": "2"}, overwrite=True)  # a populace output is replaced whole
    assert visible(empty) == ["manifest.json", "y"]
    assert hidden(tmp_path) == []


def test_overwrite_without_an_atomic_exchange_moves_the_old_output_aside(tmp_path, monkeypatch):
    out = write_output(tmp_path / "out", {"old": "1"})
    monkeypatch.setattr(storage, "_exchange", lambda a, b: False)
    write_output(out, {"new": "2"}, overwrite=True)
    assert visible(out) == ["manifest.json", "new"] and hidden(tmp_path) == []


def test_two_writers_one_wins_the_other_gets_a_clear_error(tmp_path):
    out = tmp_path / "out"
    barrier = threading.Barrier(2)
    outcomes = []

    def writer(label):
        try:
            with storage.staged_folder(out, kind="test") as tmp:
                (tmp / "who").write_text(label)
                barrier.wait(timeout=10)  # both have passed the checks before either commits
            outcomes.append(("ok", label))
        except OutputExistsError as err:
            outcomes.append(("refused", str(err)))

    threads = [threading.Thread(target=writer, args=(k,)) for k in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    kinds = sorted(k for k, _ in outcomes)
    assert kinds == ["ok", "refused"]
    winner = next(v for k, v in outcomes if k == "ok")
    assert "another process" in next(v for k, v in outcomes if k == "refused")
    assert (out / "who").read_text() == winner
    storage.verify_folder(out)
    assert hidden(tmp_path) == []


def test_stale_temporaries_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    target = tmp_path / "out"
    host = storage.HOST
    stale = tmp_path / f".out.populace-tmp-{host}-{dead_pid()}-0123abcd"
    stale.mkdir()
    (stale / "half.parquet").write_text("x")
    stale_file = tmp_path / f".out.populace-old-{host}-{dead_pid()}-deadbeef"
    stale_file.write_text("x")
    live = tmp_path / f".out.populace-tmp-{host}-{os.getppid()}-0123abcd"  # a running process
    live.mkdir()
    other = tmp_path / f".other.populace-tmp-{host}-{dead_pid()}-0123abcd"  # another target's
    other.mkdir()
    elsewhere = "0" * 6 if host != "0" * 6 else "1" * 6  # another machine's: its PIDs mean nothing
    remote = tmp_path / f".out.populace-tmp-{elsewhere}-{dead_pid()}-0123abcd"
    remote.mkdir()
    write_output(target, {"x": "1"})
    assert sorted(hidden(tmp_path)) == sorted([live.name, other.name, remote.name])


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda d: (d / "x.txt").write_text("2"), ["x.txt", "content digest"]),
        (lambda d: (d / "x.txt").write_text("11"), ["x.txt", "2 bytes", "records 1"]),
        (lambda d: (d / "x.txt").unlink(), ["x.txt", "missing"]),
        (lambda d: (d / "manifest.json").unlink(), ["no manifest.json"]),
        (lambda d: (d / "manifest.json").write_text("{"), ["manifest.json", "not JSON"]),
        (lambda d: (d / "manifest.json").write_bytes(b"\xff\xfe"), ["manifest.json", "not JSON"]),
        (lambda d: (d / "manifest.json").write_text("[]"), ["manifest.json", "format"]),
        (lambda d: edit_manifest(d, kind="report"), ["manifest.json", "own digest"]),
        (lambda d: edit_manifest(d, sha256="0" * 64), ["own digest"]),
    ],
)
def test_verify_names_the_file_and_what_differs(tmp_path, damage, words):
    out = write_output(tmp_path / "out", {"x.txt": "1", "y.txt": "abc"})
    damage(out)
    with pytest.raises((IntegrityError, FileNotFoundError)) as err:
        storage.verify_folder(out, "test")
    for w in words:
        assert w in str(err.value)


def edit_manifest(folder, **changes):
    path = folder / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_verify_refuses_another_kind(tmp_path):
    out = write_output(tmp_path / "out", {"x": "1"})
    with pytest.raises(IntegrityError, match="a 'test' folder, not a 'population' one"):
        storage.verify_folder(out, "population")


def test_every_flipped_byte_of_every_file_is_detected(tmp_path):
    out = write_output(tmp_path / "out", {"a.txt": "population data", "b.bin": "\x00\x01\x02"})
    for name in ("a.txt", "b.bin", "manifest.json"):
        data = (out / name).read_bytes()
        for i in range(len(data)):
            flipped = bytearray(data)
            flipped[i] ^= 0x20
            (out / name).write_bytes(bytes(flipped))
            with pytest.raises((IntegrityError, FileNotFoundError)):
                storage.verify_folder(out, "test")
        (out / name).write_bytes(data)
    storage.verify_folder(out, "test")


def test_sealed_file_round_trip_and_every_truncation_and_flip_is_caught(tmp_path):
    path = storage.write_sealed(tmp_path / "ck", "demo-format/1", b"payload bytes \x00\xff")
    data = path.read_bytes()
    assert storage.read_sealed(path, "demo-format/1") == b"payload bytes \x00\xff"
    assert hidden(tmp_path) == []
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(IntegrityError, match=str(path)):
            storage.read_sealed(path, "demo-format/1")
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 0x01
        path.write_bytes(bytes(flipped))
        with pytest.raises(IntegrityError, match=str(path)):
            storage.read_sealed(path, "demo-format/1")
    path.write_bytes(data + b"more")
    with pytest.raises(IntegrityError, match="longer than written"):
        storage.read_sealed(path, "demo-format/1")
    path.write_bytes(b"PK\x03\x04 a zip")
    with pytest.raises(IntegrityError, match="not a sealed file"):
        storage.read_sealed(path, "demo-format/1")


def test_a_failed_file_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = storage.write_sealed(tmp_path / "ck", "f/1", b"old")

    def chunks():
        yield b"new, then the disk fills"
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        storage.write_file(path, chunks())
    assert storage.read_sealed(path, "f/1") == b"old"
    assert os.listdir(tmp_path) == ["ck"]
    with pytest.raises(IsADirectoryError):
        storage.write_file(tmp_path, [b"x"])


def test_dumps_is_standard_json_with_nan_as_null_and_flagged():
    record = {"final": {"I": float("nan"), "S": 3.0}, "loss": [1.0, float("inf")], "n": 2}
    text = storage.dumps(record)

    def reject(token):
        raise AssertionError(f"non-standard token {token}")

    back = json.loads(text, parse_constant=reject)
    assert back["final"] == {"I": None, "S": 3.0} and back["loss"] == [1.0, None]
    assert back["non_finite"] == ["final.I", "loss[1]"]
    assert "non_finite" not in json.loads(storage.dumps({"a": 1.0}))
    with pytest.raises(ValueError, match=r"loss\[1\] is NaN or infinite"):
        storage.dumps({"loss": [1.0, float("-inf")]}, non_finite="raise")
