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
from collections.abc import Mapping

import networkx as nx
import torch

from populace.engine import (
    Context,
    Model,
    Params,
    State,
    member_view,
    static_field,
    tensor_field,
)
from populace.kernels.graph import check_layer, contact_pressure
from populace.models.sir import count, final_size, seeded_status
from populace.populations.graphs import configuration_model, erdos_renyi, from_networkx

NAME = "network_sir"
SUMMARY = "SIR/SEIR on contact-network layers (CSR), per-contact transmissibility T; S E I R"

SUSCEPTIBLE, EXPOSED, INFECTIOUS, RECOVERED = 0, 1, 2, 3
GRAPHS = ("erdos_renyi", "configuration")


@dataclasses.dataclass(frozen=True)
class NetworkSIRParams(Params):
    """Attributes:
    transmissibility: T, per-step probability that an infectious contact of weight 1 transmits.
    gamma: per-step recovery probability of an infectious agent (1: infectious for one step).
    sigma: per-step probability that an exposed agent becomes infectious (SEIR only).
    """

    transmissibility: float | torch.Tensor = 0.1
    gamma: float | torch.Tensor = 0.25
    sigma: float | torch.Tensor = 0.5

    def check(self) -> None:
        self.check_range("network SIR")
        probabilities = ("transmissibility", "gamma", "sigma")
        self.check_range("network SIR", probabilities, 0, 1, "a probability")


def layer_params(names: tuple[str, ...]) -> type[NetworkSIRParams]:
    """A params class with one scale field per contact layer (default 1.0; 0 turns it off)."""
    for name in names:
        if not name.isidentifier() or name in NetworkSIRParams.names() or hasattr(Params, name):
            raise ValueError(
                f"layer name {name!r} must be an identifier, not a parameter or Params attribute"
            )
    fields = [(n, float | torch.Tensor, dataclasses.field(default=1.0)) for n in names]
    cls = dataclasses.make_dataclass(
        "NetworkLayerParams", fields, bases=(NetworkSIRParams,), frozen=True
    )
    cls.layer_names = names
    return cls


#: the params of a single-graph build (layer ``contacts``); the CLI's ``--set`` names.
PARAMS = layer_params(("contacts",))


@dataclasses.dataclass(frozen=True)
class NetworkSIRState(State):
    """Attributes:
    status: ``[B, N]`` int8: 0 S, 1 E, 2 I, 3 R.
    """

    status: torch.Tensor = tensor_field("B", "N", dtype=torch.int8)
    agents: int = static_field(0)


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
    elif isinstance(graph, nx.Graph):
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


def seed_infections(agents: int, initial_infected: int):
    def init(params: NetworkSIRParams, ctx: Context) -> NetworkSIRState:
        status = seeded_status(ctx, agents, initial_infected, INFECTIOUS)
        return NetworkSIRState(status=status, agents=agents)

    return init


def transmit(layers: dict[str, torch.Tensor], seir: bool):
    """The step: infection over the layers, then E→I (SEIR) and I→R, all from the old state."""
    names = tuple(layers)
    moved: dict[tuple, list[torch.Tensor]] = {}

    def on(device: torch.device, dtype: torch.dtype) -> list[torch.Tensor]:
        key = (device, dtype)
        if key not in moved:  # move and cast the static layers once per run device
            moved[key] = [layers[n].to(device=device, dtype=dtype) for n in names]
        return moved[key]

    def step(state: NetworkSIRState, params: NetworkSIRParams, ctx: Context) -> NetworkSIRState:
        status = state.status
        infectious = (status == INFECTIOUS).to(ctx.dtype)  # [B, N]
        scales = [getattr(params, n) for n in names]
        pressure = contact_pressure(on(ctx.device, ctx.dtype), infectious, scales=scales)
        # escape every contact: (1 - T)^lambda; lambda = 0 must give p = 0 even at T = 1
        log_escape = member_view(torch.log1p(-params.transmissibility), 2)
        exponent = torch.where(pressure > 0, pressure * log_escape, torch.zeros_like(pressure))
        p_infect = -torch.expm1(exponent)
        u = ctx.rng.uniform(state.agents, dtype=ctx.dtype)  # one draw: the states exclude
        new = (status == SUSCEPTIBLE) & (u < p_infect)
        recover = (status == INFECTIOUS) & (u < member_view(params.gamma, 2))
        out = status + recover.to(torch.int8)
        if seir:
            onset = (status == EXPOSED) & (u < member_view(params.sigma, 2))
            out = out + onset.to(torch.int8) + new.to(torch.int8)
        else:
            out = out + 2 * new.to(torch.int8)  # S jumps straight to I
        return state.replace(status=out)

    return step


def build(
    agents: int = 10_000,
    graph: str | nx.Graph | torch.Tensor | Mapping[str, torch.Tensor] = "erdos_renyi",
    degree: float = 10.0,
    graph_seed: int = 0,
    initial_infected: int = 10,
    seir: bool = False,
    **params: float,
) -> Model:
    """Network SIR (or SEIR) on ``agents`` agents.

    Args:
        graph: ``"erdos_renyi"`` or ``"configuration"`` (geometric degrees) of mean ``degree``
            built by tensor generators, a networkx graph (nodes sorted → agents), one CSR layer,
            or a dict name → CSR layer (household, school, ...); each name becomes a scale param.
        graph_seed: seed of the generated graph (the same graph for every member).
        seir: add an exposed state (E→I with probability ``sigma`` per step).
        params: transmissibility, gamma, sigma and the layer scales.
    """
    if not 0 <= initial_infected <= agents:
        raise ValueError(f"initial_infected={initial_infected} must be in [0, agents={agents}]")
    layers = make_layers(agents, graph, degree, graph_seed)
    cls = PARAMS if tuple(layers) == ("contacts",) else layer_params(tuple(layers))
    metrics = {"S": count(SUSCEPTIBLE), "I": count(INFECTIOUS), "R": count(RECOVERED)}
    if seir:
        metrics = {"S": metrics["S"], "E": count(EXPOSED), "I": metrics["I"], "R": metrics["R"]}
    return Model(
        name=NAME,
        params=cls().replace(**params),
        init=seed_infections(agents, initial_infected),
        steps=(transmit(layers, seir),),
        metrics=metrics,
        agents=agents,
        options={
            "agents": agents,
            "graph": graph if isinstance(graph, str) else type(graph).__name__,
            "layers": list(layers),
            "degree": degree,
            "graph_seed": graph_seed,
            "initial_infected": initial_infected,
            "seir": seir,
        },
    )


def percolation_final_size(mean_degree: float, transmissibility: float) -> float:
    """Solution z > 0 of ``z = 1 - exp(-k T z)`` (0 when ``k T <= 1``): the giant outbreak on an
    Erdős–Rényi graph under bond percolation, i.e. :func:`~populace.models.sir.final_size` of
    ``k T``."""
    return final_size(mean_degree * transmissibility)
