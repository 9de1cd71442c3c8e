"""The transmission log: who infected whom, on which channel, in which generation.

An agent's hazard is a sum over channels — its contacts on each CSR layer, and a mixing
channel (well mixed, or mixed by age band through a contact matrix) — so, given that it was
infected, the source is one term of that sum drawn in proportion to its size: a contact j on
layer l with weight ``f_il A^l_ij f_jl x_j / norm``, or the mixing channel, then an agent of the
population (by age band: a band c in proportion to ``M[a_i, c] Q_c / N_c``, then an agent of c)
in proportion to ``f_j x_j`` (``x``: infectiousness, ``f``: the agents' contact factors). One
uniform per agent and step makes the draw (inverse CDF over the agent's candidates, the
uniform's remainder reused for the agent within a channel), so the log is reproducible and the
same alone or in a batch.

State (:class:`TransmissionState`): ``source: [B, N]`` int64 agent that caused the last
infection (-1: seeded or never infected); ``channel: [B, N]`` int8 its channel (layer code, -1);
``generation: [B, N]`` int64, 0 for seeds, the source's + 1, -1 for never infected;
``infected_at: [B, N]`` the day of the last infection (-1). Attribution finds the newly infected
agents with ``nonzero`` (one host synchronisation per step), so models make it optional.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import polars as pl
import torch

from populace.engine import Context, State, tensor_field
from populace.epi.contact import row_edges


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransmissionState(State):
    """State fields of the transmission log (mix into a model's state)."""

    source: torch.Tensor = tensor_field("B", "N", dtype=torch.int64)
    channel: torch.Tensor = tensor_field("B", "N", dtype=torch.int8)
    generation: torch.Tensor = tensor_field("B", "N", dtype=torch.int64)
    infected_at: torch.Tensor = tensor_field("B", "N")


@dataclasses.dataclass(frozen=True)
class Channels:
    """What one step's hazard was made of (before the agent's own rate factors).

    Attributes:
        infectiousness: ``[B, N]`` x.
        layers: CSR ``[N, N]`` contact layers.
        factors: per layer, ``[B, N]`` contact factor f of each agent (both ends).
        norm: the layers' pressure is divided by this (e.g. the mean degree).
        mixing: ``None``, ``"well_mixed"`` or ``"age"``.
        mix_factor: ``[B, N]`` contact factor on the mixing channel.
        matrix: ``[A, A]`` or ``[B, A, A]`` contact matrix (``"age"``).
        age: ``[N]`` int64 band of each agent (``"age"``).
    """

    infectiousness: torch.Tensor
    layers: Sequence[torch.Tensor] = ()
    factors: Sequence[torch.Tensor] = ()
    norm: float = 1.0
    mixing: str | None = None
    mix_factor: torch.Tensor | None = None
    matrix: torch.Tensor | None = None
    age: torch.Tensor | None = None


def initial(seeded: torch.Tensor) -> dict[str, torch.Tensor]:
    """:class:`TransmissionState` fields with the ``seeded`` (``[B, N]`` 0/1) agents infected at
    day 0, generation 0, no source."""
    yes = seeded.detach() > 0.5
    none = torch.full(yes.shape, -1, dtype=torch.int64, device=yes.device)
    return {
        "source": none,
        "channel": none.to(torch.int8),
        "generation": torch.where(yes, 0, none),
        "infected_at": torch.where(yes, 0.0, -1.0).to(seeded.dtype),
    }


def _pick(cum: torch.Tensor, begin: torch.Tensor, end: torch.Tensor, u: torch.Tensor):
    """Inverse CDF within segments ``[begin, end)`` of a flat cumulative sum ``cum`` (float64):
    (index, the uniform's remainder within the chosen entry, segment total)."""
    base = torch.where(begin > 0, cum[(begin - 1).clamp_min(0)], torch.zeros_like(u))
    total = cum[end - 1] - base
    target = base + u * total
    idx = torch.searchsorted(cum, target, right=True)
    idx = torch.minimum(torch.maximum(idx, begin), end - 1)
    before = torch.where(idx > 0, cum[(idx - 1).clamp_min(0)], torch.zeros_like(u))
    width = (cum[idx] - before).clamp_min(1e-300)
    rest = ((target - before) / width).clamp(0, 1 - 1e-12)
    return idx, rest, total


def attribute(
    infected: torch.Tensor, channels: Channels, u: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Source and channel of each new infection.

    Args:
        infected: ``[B, N]`` 0/1, agents infected this step.
        channels: the step's hazard terms.
        u: ``[B, N]`` uniforms.

    Returns:
        source ``[B, N]`` int64 (-1 where not infected) and channel ``[B, N]`` int8 (layer
        index, ``len(layers)`` for the mixing channel, -1).
    """
    b, n = infected.shape
    source = torch.full((b, n), -1, dtype=torch.int64, device=infected.device)
    channel = torch.full((b, n), -1, dtype=torch.int8, device=infected.device)
    mb, mi = torch.nonzero(infected.detach() > 0.5, as_tuple=True)
    k = mb.numel()
    if k == 0:
        return source, channel
    x = channels.infectiousness.detach().to(torch.float64)
    owners, weights, sources, codes = [], [], [], []
    for code, (layer, f) in enumerate(zip(channels.layers, channels.factors, strict=True)):
        owner, j, val = row_edges(layer, mi)
        fb = f.detach().to(torch.float64).expand(b, n)
        w = val.to(torch.float64) * fb[mb[owner], j] * x[mb[owner], j] * fb[mb, mi][owner]
        owners.append(owner)
        weights.append(w / channels.norm)
        sources.append(j)
        codes.append(torch.full_like(owner, code))
    mixed = len(channels.layers)
    if channels.mixing is not None:
        owners.append(torch.arange(k, device=mi.device))
        weights.append(_mix_hazard(channels, x)[mb, mi])
        sources.append(torch.full((k,), -1, dtype=torch.int64, device=mi.device))
        codes.append(torch.full((k,), mixed, dtype=torch.int64, device=mi.device))
    owner = torch.cat(owners)
    order = torch.sort(owner, stable=True).indices
    w = torch.cat(weights)[order]
    src, code = torch.cat(sources)[order], torch.cat(codes)[order]
    if w.numel() == 0:
        return source, channel
    count = torch.bincount(owner, minlength=k)
    end = torch.cumsum(count, 0)
    ok = count > 0
    begin = torch.where(ok, end - count, 0)  # an agent without candidates reads entry 0 ...
    end = torch.where(ok, end, 1)
    cum = torch.cumsum(w, 0)
    uk = u.detach().to(torch.float64)[mb, mi]
    idx, rest, total = _pick(cum, begin, end, uk)
    ok = ok & (total > 0)  # ... and is left without a source
    j, c = src[idx], code[idx]
    from_mix = ok & (c == mixed)
    if from_mix.any():
        j = torch.where(from_mix, _mix_source(channels, x, mb, mi, rest), j)
    source[mb[ok], mi[ok]] = j[ok]
    channel[mb[ok], mi[ok]] = c[ok].to(torch.int8)
    return source, channel


def _mix_hazard(channels: Channels, x: torch.Tensor) -> torch.Tensor:
    """``[B, N]`` float64 hazard of the mixing channel (as :mod:`populace.epi.contact`)."""
    f = channels.mix_factor.detach().to(torch.float64).expand_as(x)
    q = f * x
    if channels.mixing == "well_mixed":
        return f * q.sum(dim=1, keepdim=True) / x.shape[1]
    share = _band_share(channels, q)  # [B, A]
    m = channels.matrix.detach().to(torch.float64)
    met = share @ m.T if m.dim() == 2 else torch.einsum("bac,bc->ba", m, share)
    return f * met[:, channels.age]


def _band_share(channels: Channels, q: torch.Tensor) -> torch.Tensor:
    bands = channels.matrix.shape[-1]
    total = torch.zeros(q.shape[0], bands, dtype=q.dtype, device=q.device)
    total = total.index_add(1, channels.age, q)
    size = torch.bincount(channels.age, minlength=bands).to(q.dtype).clamp_min(1)
    return total / size


def _mix_source(channels, x, mb, mi, u) -> torch.Tensor:
    """Sources on the mixing channel of the infected agents ``(mb, mi)``: ``[K]`` int64."""
    b, n = x.shape
    q = channels.mix_factor.detach().to(torch.float64).expand_as(x) * x
    if channels.mixing == "well_mixed":
        cum = torch.cumsum(q.reshape(-1), 0)
        idx, _, _ = _pick(cum, mb * n, (mb + 1) * n, u)
        return idx - mb * n
    age = channels.age
    bands = channels.matrix.shape[-1]
    m = channels.matrix.detach().to(torch.float64)
    row = m[age[mi]] if m.dim() == 2 else m[mb, age[mi]]  # [K, A]
    weight = row * _band_share(channels, q)[mb]
    cum_band = torch.cumsum(weight.reshape(-1), 0)
    kk = torch.arange(mb.numel(), device=mb.device)
    pick, rest, _ = _pick(cum_band, kk * bands, (kk + 1) * bands, u)
    band = pick - kk * bands
    by_band = torch.sort(age, stable=True).indices  # agents grouped by band
    size = torch.bincount(age, minlength=bands)
    start = torch.cumsum(size, 0) - size
    cum = torch.cumsum(q[:, by_band].reshape(-1), 0)
    idx, _, _ = _pick(cum, mb * n + start[band], mb * n + start[band] + size[band], rest)
    return by_band[idx - mb * n]


def record(
    state: TransmissionState,
    infected: torch.Tensor,
    source: torch.Tensor,
    channel: torch.Tensor,
    ctx: Context,
) -> dict[str, torch.Tensor]:
    """The :class:`TransmissionState` fields after this step's infections."""
    new = infected.detach() > 0.5
    known = source >= 0
    parent = state.generation.gather(1, source.clamp_min(0))
    generation = torch.where(known, parent + 1, torch.zeros_like(parent))
    return {
        "source": torch.where(new, source, state.source),
        "channel": torch.where(new, channel, state.channel),
        "generation": torch.where(new, generation, state.generation),
        "infected_at": torch.where(new, float(ctx.step), state.infected_at).to(
            state.infected_at.dtype
        ),
    }


def generation_counts(state: TransmissionState, generations: int) -> torch.Tensor:
    """``[B, G]`` agents whose last infection was of generation ``0..G-1``."""
    g = state.generation
    return torch.stack([(g == k).sum(dim=1) for k in range(generations)], dim=1)


def reproduction_by_generation(state: TransmissionState, generations: int) -> torch.Tensor:
    """``[B, G]``: measured reproduction number of generation g, ``count(g + 1) / count(g)``
    (NaN where generation g is empty), for g in ``0..G-1``. Read it once the epidemic is over,
    and on early generations (depletion of susceptibles lowers the later ones)."""
    counts = generation_counts(state, generations + 1).to(torch.float64)
    head = counts[:, :-1]
    return torch.where(head > 0, counts[:, 1:] / head.clamp_min(1), torch.nan)


def secondary_cases(state: TransmissionState) -> torch.Tensor:
    """``[B, N]`` int64: infections attributed to each agent as the source."""
    ok = state.source >= 0
    out = torch.zeros_like(state.source)
    return out.scatter_add(1, state.source.clamp_min(0), ok.to(torch.int64))


def log_table(
    state: TransmissionState, channel_names: Sequence[str], member: int = 0
) -> pl.DataFrame:
    """One member's log, one row per infected agent: agent, source (null: seeded), channel
    (null: seeded), day, generation; sorted by day."""
    got = state.generation[member] >= 0
    agent = torch.nonzero(got).flatten()
    src = state.source[member, agent].cpu()
    chan = state.channel[member, agent].cpu().to(torch.int64)
    names = list(channel_names)
    return pl.DataFrame(
        {
            "agent": agent.cpu().numpy(),
            "source": pl.Series([int(s) if s >= 0 else None for s in src], dtype=pl.Int64),
            "channel": pl.Series([names[c] if c >= 0 else None for c in chan], dtype=pl.String),
            "day": state.infected_at[member, agent].cpu().numpy(),
            "generation": state.generation[member, agent].cpu().numpy(),
        }
    ).sort("day", "agent")
