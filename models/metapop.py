"""Metapopulation SIR: agents live in regions; infection mixes through a mobility matrix.

Residents of region r spend a fraction ``M[r, s]`` of their time in region s (rows of M sum
to 1). The prevalence met in region s is that of everyone present there,

    p_s = sum_r M[r, s] I_r / sum_r M[r, s] N_r,

and a susceptible resident of r is infected with probability ``1 - exp(-beta dt sum_s M[r, s] p_s)``
per step; infectious agents recover with probability ``gamma dt``. Region totals are grouped
reductions (:func:`populace.kernels.meanfield.group_sum`) and the force of infection is gathered
back to agents (:func:`~populace.kernels.meanfield.group_gather`).
"""

from __future__ import annotations

import dataclasses

import torch

from populace.engine import (
    Context,
    Model,
    ParamError,
    Params,
    State,
    member_view,
    static_field,
    tensor_field,
)
from populace.kernels.meanfield import group_gather, group_sum
from populace.models.sir import count

NAME = "metapop"
SUMMARY = "metapopulation SIR: regions mixed by a mobility matrix (beta, gamma, dt); S I R"

SUSCEPTIBLE, INFECTIOUS, RECOVERED = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class MetapopParams(Params):
    """Attributes:
    beta: transmission rate per unit time.
    gamma: recovery rate per unit time (``gamma * dt <= 1``).
    dt: time step.
    travel: scales the off-diagonal of the mobility matrix (0 isolates the regions; 1 as built).
    """

    beta: float | torch.Tensor = 0.5
    gamma: float | torch.Tensor = 0.25
    dt: float | torch.Tensor = 1.0
    travel: float | torch.Tensor = 1.0

    def check(self) -> None:
        self.check_range("metapop")
        if float(self.values("gamma").max() * self.values("dt").max()) > 1:
            raise ParamError("metapop: gamma * dt > 1 is not a recovery probability")
        self.check_range("metapop", ("travel",), 0, 1)


@dataclasses.dataclass(frozen=True)
class MetapopState(State):
    """Attributes:
    status: ``[B, N]`` int8, 0 S, 1 I, 2 R.
    """

    status: torch.Tensor = tensor_field("B", "N", dtype=torch.int8)
    agents: int = static_field(0)
    regions: int = static_field(1)


def uniform_mobility(regions: int, stay: float) -> torch.Tensor:
    """``[R, R]``: a fraction ``stay`` of time at home, the rest spread evenly over the others."""
    if not 0 <= stay <= 1:
        raise ValueError(f"stay must lie in [0, 1], got {stay}")
    if regions == 1:
        return torch.ones(1, 1)
    m = torch.full((regions, regions), (1 - stay) / (regions - 1))
    m.fill_diagonal_(stay)
    return m


def check_mobility(mobility: torch.Tensor, regions: int) -> torch.Tensor:
    m = torch.as_tensor(mobility, dtype=torch.float64)
    if m.shape != (regions, regions):
        raise ValueError(
            f"mobility has shape {tuple(m.shape)}; expected [R, R]=[{regions}, {regions}]"
        )
    if not torch.isfinite(m).all() or (m < 0).any():
        raise ValueError("mobility must be finite and >= 0")
    if not torch.allclose(m.sum(dim=1), torch.ones(regions, dtype=m.dtype), atol=1e-6):
        raise ValueError(f"mobility rows must sum to 1, got {m.sum(dim=1).tolist()}")
    return m


def effective_mobility(mobility: torch.Tensor, travel: torch.Tensor) -> torch.Tensor:
    """``[B or 1, R, R]``: off-diagonal scaled by ``travel`` (``[]`` or ``[B]``), rows renormalised
    by putting the time not travelled back at home."""
    eye = torch.eye(mobility.shape[0], dtype=mobility.dtype, device=mobility.device)
    off = mobility * (1 - eye) * travel.reshape(-1, 1, 1)
    return off + eye * (1 - off.sum(dim=-1, keepdim=True))


def regional_force(mobility: torch.Tensor, infectious: torch.Tensor, residents: torch.Tensor):
    """``[B, R]`` prevalence-weighted exposure ``sum_s M[r, s] p_s`` of a resident of r.

    Args:
        mobility: ``[B or 1, R, R]``.
        infectious, residents: ``[B, R]`` infectious and living agents per home region.
    """
    present_i = torch.einsum("brs,br->bs", mobility, infectious)
    present_n = torch.einsum("brs,br->bs", mobility, residents).clamp(min=1e-12)
    return torch.einsum("brs,bs->br", mobility, present_i / present_n)


def place_and_seed(agents: int, regions: int, initial_infected: int, seed_region: int | None):
    def init(params: MetapopParams, ctx: Context) -> MetapopState:
        status = torch.zeros(ctx.members, agents, dtype=torch.int8, device=ctx.device)
        region = home_regions(agents, regions, ctx.device)
        if seed_region is None:
            order = ctx.rng.permutation(agents)[:, :initial_infected]
        else:
            members = torch.nonzero(region == seed_region).flatten()
            pick = ctx.rng.permutation(members.numel())[:, :initial_infected]
            order = members[pick]
        status.scatter_(1, order, INFECTIOUS)
        return MetapopState(status=status, agents=agents, regions=regions)

    return init


def home_regions(agents: int, regions: int, device) -> torch.Tensor:
    """``[N]`` int64: agents split into ``regions`` contiguous blocks of (nearly) equal size."""
    return torch.arange(agents, device=device) * regions // agents


def mix_regions(mobility: torch.Tensor, region_of: torch.Tensor):
    cache: dict = {}

    def step(state: MetapopState, params: MetapopParams, ctx: Context) -> MetapopState:
        key = (ctx.device, ctx.dtype)
        if key not in cache:
            cache[key] = (mobility.to(ctx.device, ctx.dtype), region_of.to(ctx.device))
        m, region = cache[key]
        status = state.status
        infectious = (status == INFECTIOUS).to(ctx.dtype)
        counts = torch.stack([infectious, torch.ones_like(infectious)], dim=-1)  # [B, N, 2]
        per_region = group_sum(counts, region, state.regions)  # [B, R, 2]
        m_eff = effective_mobility(m, params.travel)
        force = regional_force(m_eff, per_region[..., 0], per_region[..., 1])  # [B, R]
        hazard = member_view(params.beta * params.dt, 2) * group_gather(force, region)  # [B, N]
        p_infect = -torch.expm1(-hazard)
        u = ctx.rng.uniform(state.agents, dtype=ctx.dtype)
        infected = (status == SUSCEPTIBLE) & (u < p_infect)
        recovered = (status == INFECTIOUS) & (u < member_view(params.gamma * params.dt, 2))
        return state.replace(status=status + infected.to(torch.int8) + recovered.to(torch.int8))

    return step


def regions_reached(region_of: torch.Tensor):
    """Metric: regions with at least one agent ever infected (I or R)."""

    def metric(state: MetapopState, params: MetapopParams) -> torch.Tensor:
        ever = (state.status != SUSCEPTIBLE).to(torch.float32)
        hit = group_sum(ever, region_of.to(state.device), state.regions)
        return (hit > 0).sum(dim=1)

    return metric


PARAMS = MetapopParams


def build(
    agents: int = 10_000,
    regions: int = 10,
    stay: float = 0.9,
    mobility: torch.Tensor | None = None,
    initial_infected: int = 10,
    seed_region: int | None = 0,
    **params: float,
) -> Model:
    """Metapopulation SIR: ``agents`` split evenly into ``regions`` home regions.

    Args:
        stay: fraction of time at home for the default uniform mobility matrix.
        mobility: ``[R, R]`` row-stochastic matrix instead of the uniform one.
        initial_infected: agents infectious at step 0, all in ``seed_region`` (None: anywhere).
        params: override :class:`MetapopParams` (beta, gamma, dt, travel).
    """
    if regions < 1 or regions > agents:
        raise ValueError(f"regions must lie in [1, agents={agents}], got {regions}")
    m = uniform_mobility(regions, stay) if mobility is None else mobility
    m = check_mobility(m, regions)
    if seed_region is not None and not 0 <= seed_region < regions:
        raise ValueError(f"seed_region {seed_region} not in [0, {regions})")
    per_region = agents // regions if seed_region is not None else agents
    if not 0 <= initial_infected <= per_region:
        raise ValueError(
            f"initial_infected={initial_infected} must be in [0, {per_region}] (the seed pool)"
        )
    region_of = home_regions(agents, regions, "cpu")
    return Model(
        name=NAME,
        params=MetapopParams().replace(**params),
        init=place_and_seed(agents, regions, initial_infected, seed_region),
        steps=(mix_regions(m, region_of),),
        metrics={
            "S": count(SUSCEPTIBLE),
            "I": count(INFECTIOUS),
            "R": count(RECOVERED),
            "regions_reached": regions_reached(region_of),
        },
        agents=agents,
        options={
            "agents": agents,
            "regions": regions,
            "stay": stay,
            "custom_mobility": mobility is not None,
            "initial_infected": initial_infected,
            "seed_region": seed_region,
        },
    )
