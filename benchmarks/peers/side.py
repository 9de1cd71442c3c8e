"""One side of a peer comparison, run in a process of its own.

    python benchmarks/peers/side.py '{"target": "mod:function", "kwargs": {...}, "isolated": true}'

Imports ``populace.benchmarks.peers.<module>``, calls ``function(**kwargs)`` and prints one JSON
line: the function's record (``s_per_step``, ``steps``, ``warmup``, ``outcomes``, ...) plus
``peak_rss_bytes`` (this process's peak resident memory: everything the side imported and
built) and the thread counts that torch and numba actually use. Running each side in a fresh
process keeps one framework's imports, JIT caches and memory out of the other's figures.

This file runs as a script and imports only the standard library. An ``isolated`` side (a peer:
starsim, LASER, Mesa) gets the ``populace.benchmarks.peers`` package registered without running
``populace/__init__.py``, which imports torch: the peer's memory and threads are its own.
Peer modules therefore import nothing from populace but this file.

:func:`spawn` is the parent's half: it starts the child with the environment of a threading mode
(``"1"``: one thread for OpenMP, MKL, OpenBLAS and numba; ``"default"``: none of those variables
set, so every library picks its own) and parses the line back.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
MODES = ("1", "default")
MARK = "@@side-record@@ "


def timed_loop(
    advance: Callable[[int], Any], steps: int, warmup: int, limit: float | None = None
) -> dict[str, Any]:
    """``advance(warmup)``, timed apart (JIT compilation, caches), then the other steps: in one
    ``advance(steps - warmup)``, or with a ``limit`` one step at a time until they have taken
    ``limit`` seconds (``status: stopped``; the time per step is over the steps done).

    Returns ``status``, ``steps_done``, ``warmup_seconds``, ``seconds`` (the steps after warm-up)
    and ``s_per_step``, and a ``reason`` when stopped.
    """
    if not 0 <= warmup < steps:
        raise ValueError(f"need 0 <= warmup < steps, got warmup={warmup}, steps={steps}")
    start = time.perf_counter()
    if warmup:
        advance(warmup)
    mid = end = time.perf_counter()
    ran = 0
    if limit is None:
        advance(steps - warmup)
        ran, end = steps - warmup, time.perf_counter()
    while ran < steps - warmup and end - mid <= limit:
        advance(1)
        ran, end = ran + 1, time.perf_counter()
    out = {
        "status": "ok" if warmup + ran == steps else "stopped",
        "steps_done": warmup + ran,
        "warmup_seconds": mid - start,
        "seconds": end - mid,
        "s_per_step": (end - mid) / ran,
    }
    if out["status"] == "stopped":
        out["reason"] = f"stopped after {warmup + ran} of {steps} steps (limit {limit:g} s)"
    return out


def peak_rss_bytes() -> int:
    """This process's peak resident set size. Linux keeps ``ru_maxrss`` across fork + exec, so
    a child of a big parent (torch loaded) would report at least the parent's size; ``VmHWM``
    in ``/proc/self/status`` is the high-water mark of this program's own address space.
    ``ru_maxrss`` where there is no ``/proc``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def thread_counts() -> dict[str, int]:
    """Threads of the libraries this process loaded (torch, numba)."""
    out = {}
    if "torch" in sys.modules:
        out["torch"] = sys.modules["torch"].get_num_threads()
    if "numba" in sys.modules:
        out["numba"] = sys.modules["numba"].get_num_threads()
    return out


def bare_packages() -> None:
    """Register ``populace``, ``populace.benchmarks`` and ``populace.benchmarks.peers`` as bare
    packages (no ``__init__`` run) so the peer modules import without torch."""
    peers = Path(__file__).resolve().parent
    for name, path in (
        ("populace", None),
        ("populace.benchmarks", peers.parent),
        ("populace.benchmarks.peers", peers),
    ):
        if name in sys.modules:
            raise RuntimeError(f"{name} is already imported: cannot isolate the side")
        module = types.ModuleType(name)
        module.__path__ = [str(path)] if path else []
        sys.modules[name] = module


def call(target: str, kwargs: dict[str, Any], isolated: bool = False) -> dict[str, Any]:
    """Run ``target`` (``"module:function"`` under ``populace.benchmarks.peers``) here;
    ``isolated`` first registers the bare packages (:func:`bare_packages`)."""
    module, _, function = target.partition(":")
    if not module or not function:
        raise ValueError(f"target must be 'module:function', got {target!r}")
    if isolated:
        bare_packages()
    fn = getattr(importlib.import_module(f"populace.benchmarks.peers.{module}"), function)
    record = fn(**kwargs)
    record["peak_rss_bytes"] = peak_rss_bytes()
    record["threads"] = thread_counts()
    return record


def environment(mode: str) -> dict[str, str]:
    """The child's environment for threading ``mode`` (see :data:`MODES`)."""
    if mode not in MODES:
        raise ValueError(f"unknown threading mode {mode!r}; valid: {', '.join(MODES)}")
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    if mode == "1":
        env.update(dict.fromkeys(THREAD_VARS, "1"))
    env.setdefault("STARSIM_INSTALL_FONTS", "0")  # starsim otherwise rebuilds a font cache
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


def spawn(
    target: str,
    kwargs: dict[str, Any],
    mode: str = "1",
    python: str = sys.executable,
    timeout: float | None = None,
    isolated: bool = True,
) -> dict[str, Any]:
    """Run one side in a child process (``isolated``: see the module docstring); a failure
    comes back as ``status: failed`` with the child's last lines, a timeout as
    ``status: timed out``."""
    spec = json.dumps({"target": target, "kwargs": kwargs, "isolated": isolated})
    cmd = [python, str(Path(__file__).resolve()), spec]
    try:
        proc = subprocess.run(
            cmd, env=environment(mode), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"status": "timed out", "reason": f"no result within {timeout:g} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"status": "failed", "reason": f"exit {proc.returncode}: " + " | ".join(tail)}
    return {"status": "ok", **json.loads(lines[-1][len(MARK) :])}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python benchmarks/peers/side.py '<json spec>'", file=sys.stderr)
        return 2
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(here)]  # no bare names
    spec = json.loads(args[0])
    record = call(spec["target"], spec.get("kwargs", {}), spec.get("isolated", False))
    print(MARK + json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
