"""The kernel capability flags: triton is imported only where a Triton kernel could launch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from populace.kernels import _backend

PROBE = """
import json, sys
import populace.models, populace.engine, populace.kernels.graph, populace.kernels.random
import populace.kernels.swarm, populace.kernels.meanfield, populace.kernels.stigmergy
from populace.kernels import _backend
try:
    _backend.check_backend("triton")
    error = None
except RuntimeError as e:
    error = str(e)
print(json.dumps({"imported": "triton" in sys.modules, "has": _backend.HAS_TRITON,
                  "error": error}))
"""


def _probe(interpret: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(
    _backend.GPU_TORCH or not _backend.TRITON_INSTALLED,
    reason="a CPU-only torch with triton installed",
)
def test_cpu_only_torch_does_not_import_triton_unless_interpreting():
    """Without the interpreter no Triton kernel can launch on a CPU-only torch: triton (about
    70 MB resident) stays unimported by every kernel module, and asking for it says why."""
    plain = _probe(interpret=False)
    assert not plain["imported"] and not plain["has"]
    assert "TRITON_INTERPRET=1" in plain["error"]
    interpreted = _probe(interpret=True)
    assert interpreted["imported"] and interpreted["has"] and interpreted["error"] is None
