"""CPU threads: as many as the cores this process may really use, and a passive wait policy.

torch's default OpenMP pool takes every core of the machine, and its threads spin while they
wait. On a busy machine (a laptop, a shared server, a container with a CPU quota) a spinning or
descheduled thread stalls every parallel region: a step can take a hundred times longer. So:

- :func:`available_cores` counts the cores the process may run on: its CPU affinity
  (``os.sched_getaffinity``, which taskset/numactl/containers set) capped by a cgroup CPU quota
  (``cpu.max`` in cgroup v2, ``cpu.cfs_quota_us / cpu.cfs_period_us`` in v1).
- :func:`use_threads` sets torch's thread count: ``"auto"`` takes :func:`available_cores`
  unless the user chose a count (``OMP_NUM_THREADS`` or ``POPULACE_THREADS``); an integer
  forces it.
- ``import populace`` sets ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep instead of
  spinning) when the user has not set a policy (in ``populace/__init__.py``). OpenMP reads it
  once, when torch's library loads, so this works only when populace is imported before torch;
  a script that imports torch first can export ``OMP_WAIT_POLICY=PASSIVE`` itself.

The CLI's ``--threads N`` sets ``POPULACE_THREADS``, so subprocesses follow it too.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

#: environment variable that fixes populace's thread count (as ``--threads`` does)
ENV = "POPULACE_THREADS"


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup"), table: str | None = None) -> float | None:
    """CPUs allowed by the cgroup CPU quota of this process, or None if unlimited.

    cgroup v2: the smallest ``cpu.max`` from the process's cgroup up to the root; v1: the
    ``cpu`` controller's ``cpu.cfs_quota_us / cpu.cfs_period_us``. ``table`` is the text of
    ``/proc/self/cgroup`` (read when None).
    """
    if table is None:
        try:
            table = Path("/proc/self/cgroup").read_text()
        except OSError:
            return None
    limits = []
    for line in table.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: every ancestor's cpu.max bounds the process
            folder = root / path.lstrip("/")
            while True:
                try:
                    quota, period = (folder / "cpu.max").read_text().split()[:2]
                    if quota != "max":
                        limits.append(int(quota) / int(period))
                except (OSError, ValueError):
                    pass
                if folder == root or root not in folder.parents:
                    break
                folder = folder.parent
        elif "cpu" in controllers.split(","):
            base = root / controllers
            if not base.exists():
                base = root / "cpu"
            try:
                quota = int((base / path.lstrip("/") / "cpu.cfs_quota_us").read_text())
                period = int((base / path.lstrip("/") / "cpu.cfs_period_us").read_text())
            except (OSError, ValueError):
                continue
            if quota > 0 and period > 0:
                limits.append(quota / period)
    return min(limits) if limits else None


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup quota (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def _check_count(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer or 'auto', got {value!r}")
    return value


def default_threads() -> int:
    """The thread count ``"auto"`` picks: ``POPULACE_THREADS`` if set, else
    :func:`available_cores`."""
    env = os.environ.get(ENV)
    if env is not None:
        try:
            return _check_count(int(env), ENV)
        except ValueError:
            raise ValueError(f"{ENV} must be a positive integer, got {env!r}") from None
    return available_cores()


def use_threads(threads: int | str | None = "auto") -> int:
    """Set torch's intra-op thread count; returns the count in force.

    Args:
        threads: ``"auto"`` (:func:`default_threads`, but an ``OMP_NUM_THREADS`` the user set is
            left as torch read it, and a smaller count the user gave torch itself —
            ``torch.set_num_threads(1)`` — is kept), a positive integer, or None (leave torch
            as it is).
    """
    import torch

    if threads is None:
        return torch.get_num_threads()
    if threads == "auto":
        if ENV not in os.environ and "OMP_NUM_THREADS" in os.environ:
            return torch.get_num_threads()
        threads = default_threads()
        if ENV not in os.environ:  # never more than the user already allowed torch
            threads = min(threads, torch.get_num_threads())
    threads = _check_count(threads, "threads")
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
