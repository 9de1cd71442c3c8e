"""Stochastic SIR / SEIR on contact networks (one or several CSR layers).

Each step, every infectious contact ``j`` of a susceptible agent ``i`` transmits independently
with probability ``T * w_ij`` in the ``(1 - T)^{w_ij}`` sense: agent ``i`` escapes with probability
``(1 - T)^{lambda_i}``, ``lambda_i = sum_l scale_l sum_j w^l_ij I_j`` (from
:func:`populace.kernels.graph.contact_pressure`). With unit weights that is exactly one
Bernoulli(T) per infectious contact. Infectious agents recover with probability ``gamma`` per
step; with ``seir=True`` infected agents are first exposed and become infectious with
probability ``sigma`` per step.

With ``gamma = 1`` (exactly one step of infectiousness) the final size is that of bond
percolation with occupation ``T``; on an Erdős–Rényi graph of mean degree k it solves
``z = 1 - exp(-k T z)``.

Layer scales are parameters named after the layers (``contacts`` for a single graph), so an
intervention that closes schools is a :class:`~populace.engine.Schedule` on ``school``.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from populace.engine import Context, Data, Model, Params, member_view, param
from populace.engine.partition import over_halo
from populace.epi.contact import layer_scale, layered
from populace.epi.disease import Disease, InfectionState
from populace.epi.observation import compartment, flow
from populace.kernels.graph import check_layer
from populace.models.sir import final_size
from populace.populations.graphs import configuration_model, erdos_renyi, from_networkx

if TYPE_CHECKING:
    import networkx as nx

NAME = "network_sir"
SUMMARY = "SIR/SEIR on contact-network layers (CSR), per-contact transmissibility T; S E I R"

GRAPHS = ("erdos_renyi", "configuration")


@dataclasses.dataclass(frozen=True)
class NetworkSIRParams(Params):
    transmissibility: float | torch.Tensor = param(
        0.1,
        low=0,
        high=1,
        unit="probability/step",
        doc="T: an infectious contact of weight 1 transmits",
    )
    gamma: float | torch.Tensor = param(
        0.25, low=0, high=1, unit="probability/step", doc="I → R (1: infectious for one step)"
    )
    sigma: float | torch.Tensor = param(
        0.5, low=0, high=1, unit="probability/step", doc="E → I (SEIR only)"
    )
    initial: float | torch.Tensor = param(
        0.001,
        low=0,
        high=1,
        unit="probability",
        doc="agent infectious at step 0 (when initial_infected is None)",
    )


def layer_params(names: tuple[str, ...], axis: str | None = None) -> type[NetworkSIRParams]:
    """A params class with one scale field per contact layer (default 1.0; 0 turns it off),
    per entry of the model-data axis ``axis`` when given (close one borough's schools)."""
    for name in names:
        if not name.isidentifier() or name in NetworkSIRParams.names() or hasattr(Params, name):
            raise ValueError(
                f"layer name {name!r} must be an identifier, not a parameter or Params attribute"
            )
    axes = (axis,) if axis else ()
    per = f" per {axis} (both ends of a contact)" if axis else ""
    fields = [
        (
            n,
            float | torch.Tensor,
            param(1.0, low=0, unit="scale", axes=axes, doc=f"weight of layer {n!r}{per}"),
        )
        for n in names
    ]
    cls = dataclasses.make_dataclass(
        "NetworkLayerParams", fields, bases=(NetworkSIRParams,), frozen=True
    )
    cls.layer_names = names
    return cls


#: the params of a single-graph build (layer ``contacts``); the CLI's ``--set`` names.
PARAMS = layer_params(("contacts",))


@dataclasses.dataclass(frozen=True)
class NetworkSIRState(InfectionState):
    pass


def make_layers(
    agents: int,
    graph: str | nx.Graph | torch.Tensor | Mapping[str, torch.Tensor],
    degree: float,
    graph_seed: int,
) -> dict[str, torch.Tensor]:
    """Contact layers by name from a generator name, a networkx graph, a CSR layer or a dict."""
    if isinstance(graph, Mapping):
        layers = dict(graph)
    elif isinstance(graph, torch.Tensor):
        layers = {"contacts": graph}
    elif _is_networkx(graph):
        layers = {"contacts": from_networkx(graph, nodelist=sorted(graph.nodes))}
    elif graph == "erdos_renyi":
        layers = {"contacts": erdos_renyi(agents, degree, graph_seed)}
    elif graph == "configuration":
        # Poisson degrees unless the caller brings a graph; here a geometric (heavier) tail
        g = torch.Generator().manual_seed(graph_seed)
        p = 1.0 / (1.0 + degree)
        u = torch.rand(agents, generator=g, dtype=torch.float64)
        deg = torch.floor(torch.log1p(-u) / torch.log1p(torch.tensor(-p))).to(torch.int64)
        layers = {"contacts": configuration_model(deg, g)}  # the stream goes on, not restarts
    else:
        raise ValueError(
            f"unknown graph {graph!r}; valid: {', '.join(GRAPHS)}, a networkx "
            f"graph, a CSR layer or a dict of named CSR layers"
        )
    if not layers:
        raise ValueError("no contact layers given")
    for name, layer in layers.items():
        check_layer(layer, agents, f"layer {name!r}")
    return layers


def _is_networkx(graph: object) -> bool:
    """Whether ``graph`` is a networkx graph, without importing networkx to find out (one
    could only have been made with networkx imported)."""
    nx = sys.modules.get("networkx")
    return nx is not None and isinstance(graph, nx.Graph)


def transmit(names: tuple[str, ...], disease: Disease, axis: str | None = None):
    """The step: infection over the layers, then E→I (SEIR) and I→R, all from the old state.

    Agent i escapes every infectious contact with probability ``(1 - T)^lambda_i``, i.e. the
    hazard is ``-log(1 - T) * lambda_i`` (0 where ``lambda_i = 0``, even at T = 1).
    """

    def step(state: NetworkSIRState, params: NetworkSIRParams, ctx: Context) -> NetworkSIRState:
        layers = [ctx.data[n] for n in names]
        codes = ctx.data[axis] if axis else None
        scales = [layer_scale(getattr(params, n), codes) for n in names]
        # over_halo: the plain call in one process; with the agents sharded, the halo too
        pressure = over_halo(ctx, layered, layers, disease.share(state, "I"), scales)
        per_contact = member_view(-torch.log1p(-params.transmissibility), 2)
        hazard = torch.where(pressure > 0, pressure * per_contact, 0.0)
        return state.replace(**disease.advance(state, hazard, params, ctx))

    return step


def build(
    agents: int = 10_000,
    graph: str | nx.Graph | torch.Tensor | Mapping[str, torch.Tensor] = "erdos_renyi",
    degree: float = 10.0,
    graph_seed: int = 0,
    initial_infected: int | None = 10,
    seir: bool = False,
    estimator: str = "none",
    temperature: float = 0.1,
    data: Data | None = None,
    layer_axis: str | None = None,
    **params: float,
) -> Model:
    """Network SIR (or SEIR) on ``agents`` agents.

    Args:
        graph: ``"erdos_renyi"`` or ``"configuration"`` (geometric degrees) of mean ``degree``
            built by tensor generators, a networkx graph (nodes sorted → agents), one CSR layer,
            or a dict name → CSR layer (household, school, ...); each name becomes a scale param.
        graph_seed: seed of the generated graph (the same graph for every member).
        initial_infected: exactly this many agents infectious at step 0; None: each agent with
            probability ``initial`` (fittable).
        seir: add an exposed state (E→I with probability ``sigma`` per step).
        estimator: gradient estimator of the transitions (``"none"``: not differentiable).
        data: more model data for the agents (e.g. ``Population.data(layers=False)``: borough
            codes and their labels), kept beside the layers.
        layer_axis: an axis of ``data``: each layer scale is then a param along it, applied to
            both ends of a contact, so ``SetParam("school", 0.0, 10, where={"borough": "BX"})``
            closes the Bronx's schools only.
        params: transmissibility, gamma, sigma, initial and the layer scales.
    """
    if initial_infected is not None and not 0 <= initial_infected <= agents:
        raise ValueError(f"initial_infected={initial_infected} must be in [0, agents={agents}]")
    layers = make_layers(agents, graph, degree, graph_seed)
    extra = data if data is not None else Data()
    clash = sorted(set(extra) & set(layers))
    if clash:
        raise ValueError(f"data names {clash} repeat layer names")
    if layer_axis is not None and layer_axis not in extra.axes:
        raise ValueError(
            f"layer_axis {layer_axis!r} is not an axis of the data; axes: {sorted(extra.axes)}"
        )
    names = tuple(layers)
    if names == ("contacts",) and layer_axis is None:
        cls = PARAMS
    else:
        cls = layer_params(names, layer_axis)
    disease = Disease(latent=seir, estimator=estimator, temperature=temperature)

    def init(params: NetworkSIRParams, ctx: Context) -> NetworkSIRState:
        if initial_infected is None:
            return NetworkSIRState(**disease.initial(ctx, agents, p=params.initial))
        return NetworkSIRState(**disease.initial(ctx, agents, count=initial_infected))

    metrics = {c: compartment(disease, c) for c in disease.compartments}
    metrics["infected"] = flow("infected")
    return Model(
        name=NAME,
        params=cls().replace(**params),
        init=init,
        steps=(transmit(names, disease, layer_axis),),
        metrics=metrics,
        agents=agents,
        data=Data({**dict(extra), **layers}, axes=extra.axes),
        options={
            "agents": agents,
            "graph": graph if isinstance(graph, str) else type(graph).__name__,
            "layers": list(layers),
            "degree": degree,
            "graph_seed": graph_seed,
            "initial_infected": initial_infected,
            "seir": seir,
            "estimator": estimator,
            "layer_axis": layer_axis,
        },
    )


def percolation_final_size(mean_degree: float, transmissibility: float) -> float:
    """Solution z > 0 of ``z = 1 - exp(-k T z)`` (0 when ``k T <= 1``): the giant outbreak on an
    Erdős–Rényi graph under bond percolation, i.e. :func:`~populace.models.sir.final_size` of
    ``k T``."""
    return final_size(mean_degree * transmissibility)
