"""Capability flags for the kernel dispatchers, in one place."""

from __future__ import annotations

import os

import torch

try:  # triton is a Linux-only dependency
    import triton  # noqa: F401
    import triton.language  # noqa: F401

    HAS_TRITON = True
except ImportError:  # pragma: no cover - depends on the platform
    HAS_TRITON = False

#: Triton's CPU interpreter is on (tests run kernels on CPU this way).
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


def use_triton(*tensors: torch.Tensor) -> bool:
    """Whether a dispatcher should launch its Triton kernel for these tensors.

    True when Triton imports and every tensor is on CUDA. (Kernels run on CPU tensors only
    when forced, under ``TRITON_INTERPRET=1``: see :func:`pick`.)
    """
    return HAS_TRITON and all(t.is_cuda for t in tensors)


def check_backend(backend: str) -> str:
    """Validate a dispatcher's ``backend`` argument: ``"auto" | "triton" | "torch"``."""
    if backend not in ("auto", "triton", "torch"):
        raise ValueError(f"unknown backend {backend!r}; valid: auto, triton, torch")
    if backend == "triton" and not HAS_TRITON:
        raise RuntimeError("backend 'triton' asked for, but triton does not import")
    return backend


def pick(backend: str, *tensors: torch.Tensor) -> bool:
    """True when the Triton kernel should run: forced, or ``auto`` on CUDA tensors."""
    backend = check_backend(backend)
    if backend == "triton":
        if not INTERPRET and not all(t.is_cuda for t in tensors):
            raise RuntimeError(
                "backend 'triton' on CPU tensors needs TRITON_INTERPRET=1 (set before import)"
            )
        return True
    return backend == "auto" and use_triton(*tensors)
