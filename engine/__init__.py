"""Engine core: tensor state, params and schedules, the step loop, ensembles, recording."""

from populace.engine.capacity import claim_slots, compact, compaction_order
from populace.engine.context import Context, resolve_device
from populace.engine.model import Metric, Model, Step
from populace.engine.params import ParamError, Params, Schedule, member_view
from populace.engine.recorder import Recorder
from populace.engine.rng import Streams, member_seed
from populace.engine.simulation import NonFiniteError, Result, Simulation, run
from populace.engine.state import State, StateError, static_field, tensor_field

__all__ = [
    "Context",
    "Metric",
    "Model",
    "NonFiniteError",
    "ParamError",
    "Params",
    "Recorder",
    "Result",
    "Schedule",
    "Simulation",
    "State",
    "StateError",
    "Step",
    "Streams",
    "claim_slots",
    "compact",
    "compaction_order",
    "member_seed",
    "member_view",
    "resolve_device",
    "run",
    "static_field",
    "tensor_field",
]
