"""Files on disk: outputs staged beside their target and swapped in with one rename, a manifest
with a content digest per file, sealed single files, and strict JSON.

Every writer of the project goes through this module:

- :func:`staged_folder` (run outputs, population folders, calibration and demo reports): the
  files are written into a hidden sibling ``.NAME.populace-tmp-HOST-PID-XXXXXXXX``, a
  ``manifest.json`` (sha256 and size per file, the kind of output, a few facts such as the model
  name, and a digest of the manifest itself) is added, and the folder is renamed onto the target
  in one step. A non-empty target is refused unless ``overwrite``; with it, only a folder that
  carries a manifest (written by populace) is replaced, atomically where the system can exchange
  two paths (Linux ``renameat2``). A writer that loses a race gets :class:`OutputExistsError`.
- :func:`write_file` / :func:`write_sealed` (checkpoints): a hidden temporary file beside the
  target, flushed and renamed over it; a sealed file starts with one header line
  ``MAGIC bytes=N sha256=HEX`` covering the rest, which :func:`read_sealed` verifies.
- Hidden temporaries left by a killed process (its PID no longer runs on this host) are removed
  by the next writer of the same target.

:func:`verify_folder` and :func:`read_sealed` raise :class:`IntegrityError` naming the file and
what differs (missing, size, digest) before any parser sees damaged bytes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import socket
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "populace-manifest/1"
_STAGE = re.compile(
    r"^\.(?P<name>.+)\.populace-(?:tmp|old)-(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[0-9a-f]{8}$"
)
#: this machine, in the names of temporaries (another host's PIDs say nothing here)
HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
_SEAL = re.compile(rb"(?P<magic>[!-~]+) bytes=(?P<bytes>\d{1,20}) sha256=(?P<sha>[0-9a-f]{64})\n")


class IntegrityError(ValueError):
    """A saved file is damaged, truncated, or belongs to another output (names the file)."""


class OutputExistsError(FileExistsError):
    """The target of a write exists (and is not empty), or another writer got there first."""


# -- paths ---------------------------------------------------------------------------------
def output_path(target: str | os.PathLike, what: str = "output path") -> Path:
    """``target`` as a Path; an empty string is refused (``Path("")`` would mean ``.``)."""
    if not str(os.fspath(target)).strip():
        raise ValueError(f"{what} is empty; give a folder or file name")
    return Path(target)


def check_target(target: str | os.PathLike, overwrite: bool = False) -> Path:
    """Raise unless a folder may be written at ``target``: absent, empty, or (``overwrite``)
    a populace output, i.e. a folder with a ``manifest.json``. Returns the Path."""
    path = output_path(target)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{path} is a file; give a folder")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise OutputExistsError(
                f"{path} exists and is not empty; choose another folder or replace it "
                f"(--overwrite, overwrite=True)"
            )
        if not (path / MANIFEST).is_file():
            raise OutputExistsError(
                f"{path} is not a populace output (no {MANIFEST}); it is never replaced, "
                f"remove it yourself"
            )
    return path


def _sibling(target: Path, tag: str) -> Path:
    """A hidden name beside ``target`` that says who made it (host, PID) for later clean-up."""
    token = secrets.token_hex(4)
    return target.with_name(f".{target.name}.populace-{tag}-{HOST}-{os.getpid()}-{token}")


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def remove_stale(target: str | os.PathLike) -> list[Path]:
    """Remove the hidden temporaries of ``target`` left by processes of this host that no
    longer run."""
    target = Path(target)
    removed = []
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _STAGE.match(entry.name)
        if (
            match
            and match["name"] == target.name
            and match["host"] == HOST
            and not _running(int(match["pid"]))
        ):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and missing parents; return those created (innermost last)."""
    missing = []
    for p in [folder, *folder.parents]:
        if p.exists():
            break
        missing.append(p)
    for p in reversed(missing):
        with contextlib.suppress(FileExistsError):
            p.mkdir()
    return list(reversed(missing))


def _remove_empty(folders: list[Path]) -> None:
    for p in reversed(folders):
        with contextlib.suppress(OSError):
            p.rmdir()


# -- digests and manifests ---------------------------------------------------------------
def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _manifest_digest(body: Mapping[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def write_manifest(folder: str | os.PathLike, kind: str, info: Mapping[str, Any] | None = None):
    """Write ``folder/manifest.json``: size and sha256 of every other file (recursively),
    ``kind``, ``info`` (JSON facts: model name, shapes...) and the manifest's own digest."""
    folder = Path(folder)
    files = {}
    for p in sorted(folder.rglob("*")):
        name = p.relative_to(folder).as_posix()
        if p.is_file() and name != MANIFEST:
            files[name] = {"bytes": p.stat().st_size, "sha256": file_digest(p)}
    body = {"format": MANIFEST_FORMAT, "kind": kind, "info": dict(info or {}), "files": files}
    manifest = {**body, "sha256": _manifest_digest(body)}
    (folder / MANIFEST).write_text(_manifest_text(manifest))
    return manifest


def _manifest_text(manifest: Mapping[str, Any]) -> str:
    """The one way a manifest is written (verify compares the file with it byte for byte)."""
    return dumps(manifest, indent=1, non_finite="raise") + "\n"


def verify_folder(
    folder: str | os.PathLike, kind: str | None = None, what: str = "populace output"
) -> dict[str, Any]:
    """Check every file of a folder against its manifest; return the manifest.

    Raises:
        FileNotFoundError: no folder, or no manifest (not a ``what``).
        IntegrityError: a damaged manifest, another ``kind``, or a listed file that is missing,
            of another size (truncated, replaced) or of another content digest (bit flips, a
            file swapped in from another output), naming the file.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder}: no {MANIFEST}; not a {what} (or one saved before manifests existed: "
            f"write it again)"
        )
    raw = path.read_bytes()
    try:
        manifest = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise IntegrityError(f"{path}: damaged, not JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise IntegrityError(f"{path}: format {found!r}, expected {MANIFEST_FORMAT!r}")
    body = {k: v for k, v in manifest.items() if k != "sha256"}
    try:
        intact = manifest.get("sha256") == _manifest_digest(body)
    except ValueError:  # NaN/Infinity tokens: never written by write_manifest
        intact = False
    files = manifest.get("files")
    if not intact or not isinstance(files, dict) or raw != _manifest_text(manifest).encode():
        raise IntegrityError(f"{path}: its own digest differs; the manifest is damaged or edited")
    if kind is not None and manifest.get("kind") != kind:
        raise IntegrityError(f"{folder}: a {manifest.get('kind')!r} folder, not a {kind!r} one")
    for name, entry in files.items():
        p = folder / name
        if not (isinstance(entry, dict) and {"bytes", "sha256"} <= set(entry)):
            raise IntegrityError(f"{path}: entry {name!r} has no size and digest")
        if not p.is_file():
            raise IntegrityError(f"{p}: missing (listed in {MANIFEST})")
        size = p.stat().st_size
        if size != entry["bytes"]:
            raise IntegrityError(
                f"{p}: {size} bytes, {MANIFEST} records {entry['bytes']} (truncated, or "
                f"swapped in from another output)"
            )
        digest = file_digest(p)
        if digest != entry["sha256"]:
            raise IntegrityError(
                f"{p}: content digest {digest[:12]}... differs from {MANIFEST}'s "
                f"{entry['sha256'][:12]}... (damaged, or swapped in from another output)"
            )
    return manifest


# -- staging and swapping in ----------------------------------------------------------------
def _sync(path: Path) -> None:
    """Flush a file or folder to disk (folders: best effort, not every system allows it)."""
    flags = (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _swap_in(tmp: Path, target: Path, overwrite: bool) -> None:
    """Rename ``tmp`` onto ``target``: one rename when the target is absent or empty; with
    ``overwrite``, an atomic exchange with the old output (or, without one, two renames)."""
    for _ in range(3):
        try:
            os.rename(tmp, target)  # POSIX: replaces an empty folder, fails on a non-empty one
            return
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        if not overwrite:
            raise OutputExistsError(
                f"{target} was written by another process while this one ran; this output was "
                f"not saved (choose another folder or replace it with --overwrite)"
            )
        check_target(target, overwrite=True)
        if _exchange(tmp, target):
            shutil.rmtree(tmp, ignore_errors=True)  # now the old output
            return
        old = _sibling(target, "old")
        try:
            os.rename(target, old)
        except FileNotFoundError:
            continue
        try:
            os.rename(tmp, target)
        except BaseException:
            os.rename(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
        return
    raise OutputExistsError(f"{target}: other writers keep replacing it; nothing was saved")


@contextlib.contextmanager
def staged_folder(
    target: str | os.PathLike,
    *,
    kind: str,
    overwrite: bool = False,
    info: Mapping[str, Any] | None = None,
) -> Iterator[Path]:
    """Yield a hidden empty folder beside ``target``; on a normal exit add its manifest and
    swap it in, on any exception (``KeyboardInterrupt`` too) remove it and every parent folder
    it created. ``target`` must pass :func:`check_target` now and when swapping in."""
    target = check_target(target, overwrite)
    created = _make_parents(target.parent)
    remove_stale(target)
    tmp = _sibling(target, "tmp")
    try:
        tmp.mkdir()
        yield tmp
        write_manifest(tmp, kind, info)
        for p in tmp.rglob("*"):
            _sync(p)
        _sync(tmp)
        _swap_in(tmp, target, overwrite)
        _sync(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        raise


# -- single files --------------------------------------------------------------------------
def write_file(path: str | os.PathLike, chunks: Iterable[bytes | memoryview]) -> Path:
    """Write ``chunks`` to a hidden temporary beside ``path``, flush it, rename it over ``path``
    (an existing file is replaced whole; a failure leaves the old file and no temporary)."""
    path = output_path(path, "file name")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name")
    created = _make_parents(path.parent)
    remove_stale(path)
    tmp = _sibling(path, "tmp")
    try:
        with open(tmp, "xb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        _remove_empty(created)
        raise
    _sync(path.parent)
    return path


def write_sealed(path: str | os.PathLike, magic: str, data: bytes | memoryview) -> Path:
    """Write ``MAGIC bytes=N sha256=HEX\\n`` + ``data`` atomically (see :func:`write_file`)."""
    if not re.fullmatch(r"[!-~]+", magic):
        raise ValueError(f"magic must be printable ASCII without spaces, got {magic!r}")
    header = f"{magic} bytes={len(data)} sha256={hashlib.sha256(data).hexdigest()}\n"
    return write_file(path, [header.encode(), data])


def read_sealed(path: str | os.PathLike, magic: str, what: str = "sealed file") -> bytes:
    """The data of a file written by :func:`write_sealed`, verified.

    Raises:
        FileNotFoundError: no such file.
        IntegrityError: another kind of file, a damaged header, a truncated or extended body,
            or a body whose sha256 differs from the header's, naming the file.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a {what}")
    with open(path, "rb") as f:
        head = f.readline(200)
        body = f.read()
    seal = _SEAL.fullmatch(head)
    if seal is None or seal["magic"] != magic.encode():
        prefix = magic.split("/")[0].encode()
        if head.startswith(prefix):
            raise IntegrityError(f"{path}: damaged header {head[:120]!r} (expected '{magic} ...')")
        raise IntegrityError(
            f"{path}: not a {what} (it starts with {head[:24]!r}, expected {magic!r}; files "
            f"from older versions carry no digest: save them again)"
        )
    size = int(seal["bytes"])
    if len(body) != size:
        state = "truncated" if len(body) < size else "longer than written"
        raise IntegrityError(f"{path}: {state}: {len(body)} of {size} bytes after the header")
    digest = hashlib.sha256(body).hexdigest()
    if digest != seal["sha"].decode():
        raise IntegrityError(
            f"{path}: content digest {digest[:12]}... differs from the header's "
            f"{seal['sha'].decode()[:12]}...; the file is damaged"
        )
    return body


# -- JSON ----------------------------------------------------------------------------------
def non_finite_paths(obj: Any, where: str = "") -> list[str]:
    """Paths (``final.I``, ``params.beta[2]``) of the NaN/Inf floats inside ``obj``."""
    if isinstance(obj, float):
        return [] if math.isfinite(obj) else [where or "value"]
    if isinstance(obj, Mapping):
        return [
            p for k, v in obj.items() for p in non_finite_paths(v, f"{where}.{k}" if where else k)
        ]
    if isinstance(obj, (list, tuple)):
        return [p for i, v in enumerate(obj) for p in non_finite_paths(v, f"{where}[{i}]")]
    return []


def _nulled(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _nulled(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nulled(v) for v in obj]
    return obj


def dumps(obj: Any, *, indent: int | None = None, non_finite: str = "null") -> str:
    """Standard JSON (never the ``NaN``/``Infinity`` tokens other parsers reject).

    ``non_finite="null"``: each NaN/Inf float becomes ``null`` and, for a mapping, its path is
    listed under the key ``"non_finite"`` (absent when every number is finite).
    ``non_finite="raise"``: a ValueError naming the first such path.
    """
    if non_finite not in ("null", "raise"):
        raise ValueError(f"non_finite must be 'null' or 'raise', got {non_finite!r}")
    bad = non_finite_paths(obj)
    if bad and non_finite == "raise":
        raise ValueError(f"{bad[0]} is NaN or infinite, which JSON cannot hold")
    if bad:
        obj = _nulled(obj)
        if isinstance(obj, dict):
            obj = {**obj, "non_finite": bad}
    return json.dumps(obj, indent=indent, allow_nan=False)
