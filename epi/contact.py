"""Contact: the force of infection on every agent, well mixed, over contact layers, or by age.

Each function returns a hazard ``[B, N]`` (or ``[B, 1]`` when it is the same for everyone) that
:meth:`populace.epi.disease.Disease.advance` turns into an infection probability
``1 - exp(-hazard)``. Per-agent contact weights (an isolating agent keeps a fraction of its
contacts) enter on both ends of a contact: the infectious agent's and the susceptible one's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from populace.engine import member_view
from populace.kernels.graph import contact_pressure
from populace.kernels.meanfield import group_sum


def well_mixed(
    infectious: torch.Tensor, rate: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """``hazard_i = rate * w_i * sum_j w_j I_j / N``: everyone meets everyone.

    Args:
        infectious: ``[B, N]`` infectiousness (0/1, or a weight).
        rate: ``[]`` or ``[B]`` transmission rate per step (beta).
        weight: optional ``[B, N]`` contact weight of each agent (1: full contacts).

    Returns:
        ``[B, 1]`` without weights, else ``[B, N]``.
    """
    n = infectious.shape[1]
    source = infectious if weight is None else infectious * weight
    pressure = source.sum(dim=1, keepdim=True) / n  # [B, 1]
    hazard = member_view(rate, 2) * pressure
    return hazard if weight is None else hazard * weight


def layered(
    layers: Sequence[torch.Tensor],
    infectious: torch.Tensor,
    scales: Sequence[torch.Tensor | float],
    weights: Sequence[torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """Contact pressure ``lambda_i = sum_l s_l a_li sum_j A^l_ij a_lj I_j`` over CSR layers.

    Args:
        layers: ``[N, N]`` sparse CSR layers (row i: agent i's contacts and weights).
        infectious: ``[B, N]`` infectiousness.
        scales: per layer, ``[]``/``[B]`` (the whole layer) or ``[1, N]``/``[B, N]`` (per
            agent: e.g. an axis param gathered to agents with :func:`layer_scale`, so a
            borough's schools close for its pupils only). A per-agent scale weights both ends
            of each contact (attendance of both).
        weights: optional per layer ``[B, N]`` contact weight of each agent (behaviour), also
            on both ends; None keeps the layer as it is.

    Returns:
        ``[B, N]`` pressure (multiply by a per-contact rate for the hazard).
    """
    if weights is None:
        weights = [None] * len(layers)
    if not (len(layers) == len(scales) == len(weights)):
        raise ValueError(f"{len(layers)} layers, {len(scales)} scales, {len(weights)} weights")
    out = None  # no zeros to add the first layer to: one [B, N] buffer fewer per step
    for layer, scale, weight in zip(layers, scales, weights, strict=True):
        s = torch.as_tensor(scale, dtype=infectious.dtype, device=infectious.device)
        per_agent = s.dim() == 2
        a = s if per_agent else None
        if weight is not None:
            a = weight if a is None else a * weight
        if a is None:
            term = contact_pressure(layer, infectious, scales=[s])
        else:
            part = contact_pressure(layer, infectious * a)
            term = part * a if per_agent else member_view(s, 2) * part * a
        out = term if out is None else out + term
    return torch.zeros_like(infectious) if out is None else out


def layer_scale(value: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
    """A layer scale for :func:`layered`: a plain param value (``[]``/``[B]``) as it is, or an
    axis param (``[A]``/``[B, A]``) gathered to agents by ``codes`` (``[N]``) as ``[1|B, N]``."""
    if codes is None:
        return value
    per = value[..., codes]
    return per if per.dim() == 2 else per.unsqueeze(0)


def age_mixed(
    infectious: torch.Tensor,
    age: torch.Tensor,
    matrix: torch.Tensor,
    rate: torch.Tensor,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Well mixed within and between age bands by a contact matrix.

    ``hazard_i = rate * w_i * sum_a' M[a_i, a'] * (sum_{j in a'} w_j I_j) / N_a'``: ``M[a, a']``
    is the mean number of daily contacts an agent of band a has with band a' (POLYMOD-style).

    Args:
        infectious: ``[B, N]``.
        age: ``[N]`` int64 band of each agent, ``0..A-1``.
        matrix: ``[A, A]`` or ``[B, A, A]`` contacts per day, >= 0.
        rate: ``[]`` or ``[B]`` transmission probability per contact (per step).
        weight: optional ``[B, N]`` contact weight of each agent.

    Returns:
        ``[B, N]`` hazard.
    """
    bands = matrix.shape[-1]
    source = infectious if weight is None else infectious * weight
    prevalence = group_sum(source, age, bands)  # [B, A] weighted infectious per band
    size = torch.bincount(age, minlength=bands).to(infectious.dtype).clamp_min(1)
    share = prevalence / size  # [B, A]
    if matrix.dim() == 2:
        met = share @ matrix.T  # met[b, a] = sum_c M[a, c] share[b, c]
    else:
        met = torch.einsum("bac,bc->ba", matrix, share)
    hazard = member_view(rate, 2) * met[:, age]
    return hazard if weight is None else hazard * weight


def proportionate_matrix(age: torch.Tensor, bands: int) -> torch.Tensor:
    """``[A, A]`` contact matrix ``M[a, c] = N_c / N``: with it, :func:`age_mixed` is
    :func:`well_mixed` (contacts in proportion to the bands' sizes, one per day in all)."""
    size = torch.bincount(age, minlength=bands).to(torch.get_default_dtype())
    return (size / size.sum()).expand(bands, bands).clone()


def check_matrix(matrix: torch.Tensor, labels: Sequence[str], name: str = "contact matrix") -> None:
    """Refuse a contact matrix that is not ``[A, A]`` (or ``[B, A, A]``) for the age bands
    ``labels``, or has negative or non-finite entries, naming the problem."""
    if not isinstance(matrix, torch.Tensor):
        raise ValueError(f"{name}: expected a tensor, got {type(matrix).__name__}")
    a = len(labels)
    if matrix.dim() not in (2, 3) or tuple(matrix.shape[-2:]) != (a, a):
        raise ValueError(
            f"{name}: shape {tuple(matrix.shape)}, expected [{a}, {a}] (or [B, {a}, {a}]) for "
            f"the age bands {', '.join(labels)}"
        )
    m = matrix.detach()
    if not torch.isfinite(m).all():
        raise ValueError(f"{name}: has NaN/Inf entries")
    if (m < 0).any():
        i = torch.nonzero(m < 0)[0].tolist()
        raise ValueError(
            f"{name}: contacts must be >= 0, got {float(m[tuple(i)]):g} at "
            f"[{labels[i[-2]]}, {labels[i[-1]]}]"
        )


def row_edges(
    layer: torch.Tensor, rows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The contacts of some agents on a CSR layer, without touching the other rows.

    Args:
        layer: ``[N, N]`` sparse CSR.
        rows: ``[K]`` int64 agents.

    Returns:
        owner ``[E]`` (position in ``rows`` of each edge's agent), contact ``[E]`` (the column)
        and weight ``[E]``, for the E edges of those rows.
    """
    crow, col, val = layer.crow_indices(), layer.col_indices(), layer.values()
    start = crow[rows]
    degree = crow[rows + 1] - start
    owner = torch.repeat_interleave(torch.arange(rows.numel(), device=rows.device), degree)
    offset = torch.cumsum(degree, 0) - degree
    pos = start[owner] + torch.arange(owner.numel(), device=rows.device) - offset[owner]
    return owner, col[pos], val[pos]
