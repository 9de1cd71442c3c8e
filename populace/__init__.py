"""populace: GPU-tensorized agent-based models of whole populations.

The user API in one place::

    import populace
    import populace.models.sir

    model = populace.models.sir.build(agents=100_000, initial_infected=100, beta=0.5)
    result = populace.Simulation(model, members=8, seed=1).run(200)
    result.metrics  # polars DataFrame (member, step, S, I, R)
"""

import os as _os

# idle OpenMP threads sleep instead of spinning (engine/threads.py), unless the user chose a
# policy; OpenMP reads it once, when torch loads, so this comes before the first torch import
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from populace.engine import (
    Context,
    Data,
    Model,
    Params,
    Result,
    Schedule,
    Simulation,
    State,
    member_view,
    param,
    per,
    per_agent,
    run,
    static_field,
    tensor_field,
)

__version__ = "0.1.0"

__all__ = [
    "Context",
    "Data",
    "Model",
    "Params",
    "Result",
    "Schedule",
    "Simulation",
    "State",
    "member_view",
    "param",
    "per",
    "per_agent",
    "run",
    "static_field",
    "tensor_field",
]
