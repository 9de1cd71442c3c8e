"""Capability flags for the kernel dispatchers, in one place."""

from __future__ import annotations

import importlib.util
import os

import torch

#: Triton's CPU interpreter is on (tests run kernels on CPU this way).
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

#: torch is built for a GPU (CUDA or ROCm): Triton kernels could launch on its tensors.
GPU_TORCH = torch.version.cuda is not None or torch.version.hip is not None

#: triton is installed (a Linux-only dependency); found without importing it.
TRITON_INSTALLED = importlib.util.find_spec("triton") is not None

#: Triton kernels can launch in this process: triton imports, and torch is built for a GPU or
#: the interpreter is on. With a CPU-only torch and no interpreter no kernel could ever launch,
#: so triton (about 70 MB resident) is not imported at all.
HAS_TRITON = False
if TRITON_INSTALLED and (GPU_TORCH or INTERPRET):
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401

        HAS_TRITON = True
    except ImportError:  # pragma: no cover - a broken install
        pass

#: numba is installed (the optional ``numba`` extra): CPU kernels of some families. Found without
#: importing it (numba takes a while to import); the kernel modules import it on first use.
HAS_NUMBA = importlib.util.find_spec("numba") is not None

BACKENDS = ("auto", "triton", "torch")
CPU_BACKENDS = ("auto", "triton", "numba", "torch")


def use_triton(*tensors: torch.Tensor) -> bool:
    """Whether a dispatcher should launch its Triton kernel for these tensors.

    True when Triton imports and every tensor is on CUDA. (Kernels run on CPU tensors only
    when forced, under ``TRITON_INTERPRET=1``: see :func:`pick`.)
    """
    return HAS_TRITON and all(t.is_cuda for t in tensors)


def check_backend(backend: str, valid: tuple[str, ...] = BACKENDS) -> str:
    """Validate a dispatcher's ``backend`` argument (``"auto" | "triton" | "torch"``, and
    ``"numba"`` for the families that have a CPU kernel)."""
    if backend not in valid:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(valid)}")
    if backend == "triton" and not HAS_TRITON:
        if TRITON_INSTALLED and not GPU_TORCH and not INTERPRET:
            raise RuntimeError(
                "backend 'triton' with a CPU-only torch needs TRITON_INTERPRET=1 (set before "
                "import)"
            )
        raise RuntimeError("backend 'triton' asked for, but triton does not import")
    if backend == "numba" and not HAS_NUMBA:
        raise RuntimeError(
            "backend 'numba' asked for, but numba is not installed (pip install populace[numba])"
        )
    return backend


def pick(backend: str, *tensors: torch.Tensor) -> bool:
    """True when the Triton kernel should run: forced, or ``auto`` on CUDA tensors."""
    backend = check_backend(backend)
    return _triton_forced(backend, tensors) or (backend == "auto" and use_triton(*tensors))


def _triton_forced(backend: str, tensors) -> bool:
    if backend != "triton":
        return False
    if not INTERPRET and not all(t.is_cuda for t in tensors):
        raise RuntimeError(
            "backend 'triton' on CPU tensors needs TRITON_INTERPRET=1 (set before import)"
        )
    return True


def choose(backend: str, *tensors: torch.Tensor) -> str:
    """Which implementation a family with a CPU kernel runs: ``"triton" | "numba" | "torch"``.

    ``auto``: Triton on CUDA tensors, numba on CPU tensors when it is installed, else torch.
    Forcing ``numba`` on CUDA tensors is an error.
    """
    backend = check_backend(backend, CPU_BACKENDS)
    if _triton_forced(backend, tensors) or (backend == "auto" and use_triton(*tensors)):
        return "triton"
    on_cpu = all(t.device.type == "cpu" for t in tensors)
    if backend == "numba":
        if not on_cpu:
            raise RuntimeError("backend 'numba' runs on CPU tensors only")
        return "numba"
    return "numba" if backend == "auto" and HAS_NUMBA and on_cpu else "torch"
