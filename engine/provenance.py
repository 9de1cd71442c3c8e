"""Where a result came from: package versions, device name, date."""

from __future__ import annotations

import datetime
import platform
from importlib import metadata

import torch


def versions() -> dict[str, str | None]:
    """Versions of python, populace, torch, triton, numpy, polars (None when absent)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("populace", "torch", "triton", "numpy", "polars"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def device_name(device: torch.device) -> str:
    """Human name of a device: the GPU model, or the CPU (its model where the system names it)
    with its core count: float results of two hosts of the same architecture can differ."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import os

    name = f"{platform.processor() or platform.machine()} CPU"
    model = _cpu_model()
    return (
        f"{name} ({model}), {os.cpu_count()} cores" if model else f"{name}, {os.cpu_count()} cores"
    )


def _cpu_model() -> str | None:
    """The first ``model name`` of /proc/cpuinfo (Linux), else None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() or None
    except OSError:
        return None
    return None


def now() -> str:
    """Current UTC time, ISO 8601."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
