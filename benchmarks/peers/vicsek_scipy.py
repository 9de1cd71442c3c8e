"""Vicsek (1995) as a user would write it with numpy and scipy's ``cKDTree``: the baseline that
``populace.models.vicsek`` must beat on the CPU (issue 19).

Same rule as the zoo model: each particle takes the mean heading of the particles within
``radius`` (itself included) plus uniform noise in ``[-noise/2, noise/2]``, then moves
``speed`` along it, in a periodic square box of side ``sqrt(N / density)``.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def vicsek(agents, steps, density=4.0, radius=1.0, noise=0.5, speed=0.03, seed=0, start=None):
    """Run ``steps`` steps from random ``start`` (or a given ``(pos, theta)``); returns the
    final ``(pos [N, 2], theta [N])``."""
    rng = np.random.default_rng(seed)
    box = np.sqrt(agents / density)
    pos = rng.uniform(0, box, (agents, 2)) if start is None else start[0]
    theta = rng.uniform(-np.pi, np.pi, agents) if start is None else start[1]
    for _ in range(steps):
        i, j = cKDTree(pos, boxsize=box).query_pairs(radius, output_type="ndarray").T
        c, s = np.cos(theta), np.sin(theta)
        sum_c = c + np.bincount(i, c[j], agents) + np.bincount(j, c[i], agents)
        sum_s = s + np.bincount(i, s[j], agents) + np.bincount(j, s[i], agents)
        theta = np.arctan2(sum_s, sum_c) + noise * rng.uniform(-0.5, 0.5, agents)
        pos = np.mod(pos + speed * np.stack([np.cos(theta), np.sin(theta)], 1), box)
        pos[pos >= box] = 0.0  # float rounding of mod can give exactly box; cKDTree refuses it
    return pos, theta


def order(theta: np.ndarray) -> float:
    """Vicsek order parameter ``|mean (cos, sin)|``."""
    return float(np.hypot(np.cos(theta).mean(), np.sin(theta).mean()))
