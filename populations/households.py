"""Households: agents of an area grouped by a household-size distribution, each with an adult head.

ASSUMPTION (the shipped NYC data has no household table): the default size distribution is an
approximation of the American Community Survey 5-year estimates for New York City (table B11016,
households by size), rounded: 1 person 32 %, 2 persons 28 %, 3 persons 16 %, 4 persons 12 %,
5 persons 6 %, 6 persons 3 %, 7 or more 3 % (counted as 7); mean ≈ 2.5 persons. These figures were
not re-checked against the source in this repository; pass ``size_probs`` to use another one.
"""

from __future__ import annotations

import torch

NYC_HOUSEHOLD_SIZE_PROBS = (0.32, 0.28, 0.16, 0.12, 0.06, 0.03, 0.03)


def form_households(
    area: torch.Tensor,
    adult: torch.Tensor,
    size_probs: tuple[float, ...] | torch.Tensor = NYC_HOUSEHOLD_SIZE_PROBS,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Household id of every agent; households never cross areas.

    Sizes are drawn i.i.d. from ``size_probs`` (entry s-1 = probability of a household of s
    persons) until the area is covered, the last one truncated. The first slot of every household
    goes to an adult when the area has enough adults; other members are random.

    Args:
        area: [N] int64 area code of each agent.
        adult: [N] bool.
        size_probs: [S] household-size probabilities (summing to 1).
        generator: randomness (its device is used).

    Returns:
        [N] int64 household id, 0..H-1, households numbered by area.
    """
    probs = torch.as_tensor(size_probs, dtype=torch.float64)
    if probs.dim() != 1 or (probs < 0).any() or abs(float(probs.sum()) - 1) > 1e-6:
        raise ValueError(f"size_probs must be a 1-d probability vector, got {probs.tolist()}")
    if area.shape != adult.shape:
        raise ValueError(f"area {tuple(area.shape)} and adult {tuple(adult.shape)} differ")
    device = area.device
    n = area.numel()
    area = area.to(torch.long)
    n_areas = int(area.max()) + 1 if n else 0
    pop = torch.bincount(area, minlength=n_areas)
    mean = float((probs * torch.arange(1, probs.numel() + 1, dtype=torch.float64)).sum())
    # enough draws that each area is covered with overwhelming probability; loop if not
    draws = (pop.double() / mean * 1.3 + 20).long()
    while True:
        draw_area = torch.repeat_interleave(torch.arange(n_areas, device=device), draws)
        cdf = torch.cumsum(probs, 0).to(device)
        cdf[-1] = 1.0
        u = torch.rand(draw_area.numel(), generator=generator, device=device, dtype=torch.float64)
        sizes = torch.searchsorted(cdf, u, right=True).clamp(max=probs.numel() - 1) + 1
        cs = torch.cumsum(sizes, 0)
        offsets = torch.cumsum(draws, 0) - draws
        end = cs - (cs[offsets] - sizes[offsets])[draw_area]  # cumulative size within area
        covered = end[offsets + draws - 1]
        if bool((covered >= pop).all()):
            break
        draws = draws * 2
    start = end - sizes
    keep = start < pop[draw_area]
    draw_area, start = draw_area[keep], start[keep]
    size = torch.minimum(end[keep], pop[draw_area]) - start
    # slots: position within area; slot → household (households numbered in area order)
    hh_of_slot = torch.repeat_interleave(torch.arange(size.numel(), device=device), size)
    slot_area = draw_area[hh_of_slot]
    first = torch.cumsum(size, 0) - size
    is_head = torch.arange(hh_of_slot.numel(), device=device) == first[hh_of_slot]
    # order slots by (area, head first, random) and agents by (area, adult first, random),
    # then pair them up position by position
    slot_order = _sort_by(slot_area * 2 + (~is_head).long(), generator)
    agent_order = _sort_by(area * 2 + (~adult.to(torch.bool)).long(), generator)
    household = torch.empty(n, dtype=torch.long, device=device)
    household[agent_order] = hh_of_slot[slot_order]
    return household


def _sort_by(key: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Permutation sorting by ``key`` (>= 0, < 2**31), ties in random order: one sort of a
    combined int64 key (high bits: key, low bits: random)."""
    noise = torch.randint(0, 2**31, key.shape, generator=generator, device=key.device)
    return torch.sort(key.to(torch.long) * 2**31 + noise, stable=True).indices
