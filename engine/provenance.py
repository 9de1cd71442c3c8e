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
    """Human name of a device: the GPU model, or the CPU with its core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import os

    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def now() -> str:
    """Current UTC time, ISO 8601."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
