"""Engine core: tensor state, model data, declared params and schedules, the step loop,
ensembles, recording."""

from populace.engine.capacity import claim_slots, compact, compaction_order
from populace.engine.context import Context, resolve_device
from populace.engine.data import Data, DataError
from populace.engine.model import AxisMetric, Metric, Model, ModelError, Step, per
from populace.engine.params import (
    Declaration,
    ParamError,
    Params,
    Schedule,
    member_view,
    param,
    per_agent,
)
from populace.engine.recorder import Recorder
from populace.engine.rng import Streams, member_seed
from populace.engine.simulation import NonFiniteError, Result, Simulation, run
from populace.engine.state import State, StateError, static_field, tensor_field

__all__ = [
    "AxisMetric",
    "Context",
    "Data",
    "DataError",
    "Declaration",
    "Metric",
    "Model",
    "ModelError",
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
    "param",
    "per",
    "per_agent",
    "resolve_device",
    "run",
    "static_field",
    "tensor_field",
]
