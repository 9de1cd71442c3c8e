"""Pure tensor operations: each a Triton kernel, a torch reference and a dispatcher.

This package imports only torch, triton and numpy (never the engine or models).
"""

from populace.kernels._backend import HAS_TRITON, INTERPRET

__all__ = ["HAS_TRITON", "INTERPRET"]
