"""Metapopulation SIR: agents live in regions; infection mixes through a mobility matrix.

Residents of region r spend a fraction ``M[r, s]`` of their time in region s (rows of M sum
to 1). The prevalence met in region s is that of everyone present there,

    p_s = sum_r M[r, s] I_r / sum_r M[r, s] N_r,

and a susceptible resident of r is infected with probability ``1 - exp(-beta sum_s M[r, s] p_s)``
per step; infectious agents recover with probability ``gamma``. Region totals are grouped
reductions (:func:`populace.kernels.meanfield.group_sum`) and the force of infection is gathered
back to agents (:func:`~populace.kernels.meanfield.group_gather`).
"""

from __future__ import annotations

import dataclasses

import torch

from populace.engine import Context, Data, Model, Params, member_view, param, per_agent
from populace.epi.disease import Disease, InfectionState
from populace.epi.observation import compartment, compartment_by, flow
from populace.kernels.meanfield import group_gather, group_sum

NAME = "metapop"
SUMMARY = "metapopulation SIR: regions mixed by a mobility matrix (beta, gamma, travel); S I R"


@dataclasses.dataclass(frozen=True)
class MetapopParams(Params):
    beta: float | torch.Tensor = param(0.5, low=0, unit="1/step", doc="transmission rate")
    gamma: float | torch.Tensor = param(
        0.25, low=0, high=1, unit="probability/step", doc="recovery"
    )
    travel: float | torch.Tensor = param(
        1.0,
        low=0,
        high=1,
        unit="scale",
        doc="scales the mobility matrix's off-diagonal (0 isolates the regions)",
    )
    initial: float | torch.Tensor = param(
        0.001,
        low=0,
        high=1,
        unit="probability",
        axes=("region",),
        doc="agent infectious at step 0, per home region (when initial_infected is None)",
    )


@dataclasses.dataclass(frozen=True)
class MetapopState(InfectionState):
    pass


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


def home_regions(agents: int, regions: int) -> torch.Tensor:
    """``[N]`` int64: agents split into ``regions`` contiguous blocks of (nearly) equal size."""
    return torch.arange(agents) * regions // agents


def mix_regions(disease: Disease, regions: int):
    """The step: region totals, the force met through the mobility matrix, then SIR."""

    def step(state: MetapopState, params: MetapopParams, ctx: Context) -> MetapopState:
        region = ctx.data.region
        infectious = disease.share(state, "I")
        counts = torch.stack([infectious, torch.ones_like(infectious)], dim=-1)  # [B, N, 2]
        per_region = group_sum(counts, region, regions)  # [B, R, 2]
        m_eff = effective_mobility(ctx.data.mobility, params.travel)
        force = regional_force(m_eff, per_region[..., 0], per_region[..., 1])  # [B, R]
        hazard = member_view(params.beta, 2) * group_gather(force, region)  # [B, N]
        return state.replace(**disease.advance(state, hazard, params, ctx))

    return step


def regions_reached(regions: int):
    """Metric: regions with at least one agent ever infected (I or R)."""

    def metric(state: MetapopState, params: MetapopParams, ctx: Context) -> torch.Tensor:
        ever = 1 - state.health[:, 0]
        hit = group_sum(ever, ctx.data.region, regions)
        return (hit > 0).sum(dim=1)

    return metric


PARAMS = MetapopParams


def build(
    agents: int = 10_000,
    regions: int = 10,
    stay: float = 0.9,
    mobility: torch.Tensor | None = None,
    initial_infected: int | None = 10,
    seed_region: int | None = 0,
    estimator: str = "none",
    temperature: float = 0.1,
    **params: float,
) -> Model:
    """Metapopulation SIR: ``agents`` split evenly into ``regions`` home regions.

    Args:
        stay: fraction of time at home for the default uniform mobility matrix.
        mobility: ``[R, R]`` row-stochastic matrix instead of the uniform one.
        initial_infected: agents infectious at step 0, all in ``seed_region`` (None: anywhere);
            None: each agent with the probability ``initial`` of its home region (a fittable
            param per region).
        estimator: gradient estimator of the transitions (``"none"``: not differentiable).
        temperature: straight-through relaxation temperature.
        params: override :class:`MetapopParams` (beta, gamma, travel, initial).
    """
    if regions < 1 or regions > agents:
        raise ValueError(f"regions must lie in [1, agents={agents}], got {regions}")
    m = uniform_mobility(regions, stay) if mobility is None else mobility
    m = check_mobility(m, regions)
    if seed_region is not None and not 0 <= seed_region < regions:
        raise ValueError(f"seed_region {seed_region} not in [0, {regions})")
    per_region = agents // regions if seed_region is not None else agents
    if initial_infected is not None and not 0 <= initial_infected <= per_region:
        raise ValueError(
            f"initial_infected={initial_infected} must be in [0, {per_region}] (the seed pool)"
        )
    region_of = home_regions(agents, regions)
    disease = Disease(latent=False, estimator=estimator, temperature=temperature)
    labels = tuple(f"r{k}" for k in range(regions))

    def init(params: MetapopParams, ctx: Context) -> MetapopState:
        if initial_infected is None:
            p = per_agent(params.initial, ctx.data.region)  # [N] or [B, N]
            p = p if p.dim() == 2 else p.unsqueeze(0)
            return MetapopState(**disease.initial(ctx, agents, p=p))
        if seed_region is None:
            pool = torch.arange(agents, device=ctx.device)
        else:
            pool = torch.nonzero(ctx.data.region == seed_region).flatten()
        pick = pool[ctx.rng.permutation(pool.numel())[:, :initial_infected]]
        fields = disease.initial(ctx, agents, count=0)
        sick = torch.zeros_like(fields["onset"]).scatter(1, pick, 1.0)
        fields["health"] = torch.stack([1 - sick, sick, torch.zeros_like(sick)], dim=1)
        return MetapopState(**fields)

    return Model(
        name=NAME,
        params=MetapopParams().replace(**params),
        init=init,
        steps=(mix_regions(disease, regions),),
        metrics={
            "S": compartment(disease, "S"),
            "I": compartment(disease, "I"),
            "R": compartment(disease, "R"),
            "infected": flow("infected"),
            "regions_reached": regions_reached(regions),
            "I_region": compartment_by(disease, "I", "region"),
        },
        agents=agents,
        data=Data({"region": region_of, "mobility": m}, axes={"region": labels}),
        options={
            "agents": agents,
            "regions": regions,
            "stay": stay,
            "custom_mobility": mobility is not None,
            "initial_infected": initial_infected,
            "seed_region": seed_region,
            "estimator": estimator,
        },
    )
