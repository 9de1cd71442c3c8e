"""Pure tensor operations: each a Triton kernel, a torch reference and a dispatcher.

This package imports only torch, triton and numpy (never the engine or models).

It installs as ``populace.kernels``. When the repository root is on ``sys.path`` (``python -m``
or a REPL started there), this folder is also visible as a top-level ``kernels``, the name of a
PyPI package (Hugging Face's, which transformers >= 5.25 imports): imported under that name it
loads the installed package in its place, or fails as a missing module would.
"""

if __name__ == "kernels":
    import importlib.machinery
    import importlib.util
    import os
    import sys

    _root = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    _path = [p for p in sys.path if os.path.realpath(p or os.curdir) != _root]
    _spec = importlib.machinery.PathFinder.find_spec("kernels", _path)
    if _spec is None or _spec.loader is None:
        raise ModuleNotFoundError(
            f"No module named 'kernels': {_root}/kernels is populace.kernels, not a top-level "
            "package (import it as populace.kernels)",
            name="kernels",
        )
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["kernels"] = _module
    _spec.loader.exec_module(_module)
else:
    from populace.kernels._backend import HAS_TRITON, INTERPRET

    __all__ = ["HAS_TRITON", "INTERPRET"]
