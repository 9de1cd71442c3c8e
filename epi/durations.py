"""Durations: how many whole days an agent stays in a stage, as a distribution.

A :class:`Duration` is a law on ``{1, 2, ...}`` days (a step is a day). :func:`fixed` and
:func:`geometric` are exact; :func:`lognormal` and :func:`gamma` discretise a continuous law
given by its mean and standard deviation in days: ``D = max(1, round(X))``, so
``P(D = 1) = F(1.5)`` and ``P(D = d) = F(d + 0.5) - F(d - 0.5)`` for ``d >= 2``, with the tail
beyond ``P(X > K + 0.5) < 1e-9`` folded into the last day ``K``. :meth:`Duration.expected` is the
mean of the discretised law (the one that sets R0), which is close to, not equal to, ``mean``.

Draws are an inverse-CDF lookup of one uniform per agent (``sample(u)``), so the same uniforms
give the same durations whichever other stages the model has.
"""

from __future__ import annotations

import dataclasses
import math

import torch

KINDS = ("fixed", "geometric", "lognormal", "gamma")
#: tail mass left out of a discretised table (folded into its last day).
_TAIL = 1e-9


@dataclasses.dataclass(frozen=True)
class Duration:
    """A law of whole days >= 1.

    Attributes:
        kind: ``"fixed" | "geometric" | "lognormal" | "gamma"``.
        mean: days (the continuous law's mean for lognormal/gamma).
        sd: days, the continuous law's standard deviation (lognormal/gamma only).
    """

    kind: str
    mean: float
    sd: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown duration kind {self.kind!r}; valid: {', '.join(KINDS)}")
        for what in ("mean", "sd"):
            v = getattr(self, what)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{self.kind} duration: {what} must be a finite number, got {v!r}")
        if self.kind == "fixed" and not (float(self.mean).is_integer() and self.mean >= 1):
            raise ValueError(f"fixed duration: days must be a whole number >= 1, got {self.mean}")
        if self.kind == "geometric" and self.mean < 1:
            raise ValueError(f"geometric duration: mean must be >= 1 day, got {self.mean}")
        if self.kind in ("lognormal", "gamma") and not (self.mean > 0 and self.sd > 0):
            raise ValueError(
                f"{self.kind} duration: mean and sd must be > 0 days, got mean={self.mean}, "
                f"sd={self.sd}"
            )
        # geometric draws need no table (it is built on demand for pmf())
        table = None if self.kind == "geometric" else self._table().cumsum(0)
        object.__setattr__(self, "_cdf", table)
        object.__setattr__(self, "_on", {})

    def __repr__(self) -> str:
        if self.kind in ("fixed", "geometric"):
            return f"{self.kind}({self.mean:g})"
        return f"{self.kind}({self.mean:g}, {self.sd:g})"

    # -- the law ---------------------------------------------------------------------------
    def _continuous_cdf(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "lognormal":
            s2 = math.log1p((self.sd / self.mean) ** 2)
            mu = math.log(self.mean) - s2 / 2
            z = (torch.log(x.clamp_min(1e-300)) - mu) / math.sqrt(s2)
            return torch.where(x > 0, torch.special.ndtr(z), torch.zeros_like(x))
        shape, scale = (self.mean / self.sd) ** 2, self.sd**2 / self.mean
        return torch.special.gammainc(torch.full_like(x, shape), x / scale)

    def _table(self) -> torch.Tensor:
        """``[K]`` float64: ``P(D = d)`` for ``d = 1..K``, summing to 1."""
        if self.kind == "fixed":
            out = torch.zeros(int(self.mean), dtype=torch.float64)
            out[-1] = 1.0
            return out
        if self.kind == "geometric":
            p = 1.0 / self.mean
            k = 1 if p == 1 else max(1, math.ceil(math.log(_TAIL) / math.log1p(-p)))
            d = torch.arange(1, k + 1, dtype=torch.float64)
            out = p * (1 - p) ** (d - 1)
        else:
            k = 1
            while 1 - float(self._continuous_cdf(torch.tensor(k + 0.5, dtype=torch.float64))) > (
                _TAIL
            ):
                k *= 2
            edges = torch.arange(1, k + 1, dtype=torch.float64) + 0.5
            cdf = self._continuous_cdf(edges)
            out = torch.diff(cdf, prepend=torch.zeros(1, dtype=torch.float64))
            # the last day K takes what is left, so the table sums to 1 exactly
            last = torch.nonzero(out > 0).max() + 1 if (out > 0).any() else 1
            out = out[:last]
        out[-1] += 1 - out.sum()
        return out

    def pmf(self) -> torch.Tensor:
        """``[K]`` float64: ``P(D = d)`` for ``d = 1..K`` (geometric: truncated at a tail of
        1e-9, which :meth:`sample` does not truncate)."""
        cdf = self._table().cumsum(0) if self._cdf is None else self._cdf
        return torch.diff(cdf, prepend=torch.zeros(1, dtype=torch.float64))

    def expected(self) -> float:
        """Mean days of the discretised law (exact for fixed and geometric)."""
        if self.kind in ("fixed", "geometric"):
            return float(self.mean)
        d = torch.arange(1, self._cdf.numel() + 1, dtype=torch.float64)
        return float((self.pmf() * d).sum())

    def sample(self, u: torch.Tensor) -> torch.Tensor:
        """Days (floating, whole numbers >= 1) for uniforms ``u`` on [0, 1), same shape."""
        if self.kind == "fixed":
            return torch.full_like(u, float(self.mean))
        if self.kind == "geometric":
            p = 1.0 / self.mean
            if p == 1:
                return torch.ones_like(u)
            # P(D > d) = (1 - p)^d: D = 1 + floor(log(1 - u) / log(1 - p)), exact (no table)
            return 1 + torch.floor(torch.log1p(-u) / math.log1p(-p))
        key = (u.device, u.dtype)
        cdf = self._on.get(key)
        if cdf is None:
            cdf = self._on[key] = self._cdf.to(device=u.device, dtype=u.dtype)
        index = torch.searchsorted(cdf, u.contiguous(), right=True)
        return (index.clamp_max(cdf.numel() - 1) + 1).to(u.dtype)


def fixed(days: int) -> Duration:
    """Exactly ``days`` days."""
    return Duration("fixed", days)


def geometric(mean: float) -> Duration:
    """``P(D = d) = p (1 - p)^(d - 1)``, ``p = 1 / mean``: a constant daily probability ``p`` of
    leaving (the Markov chain of :class:`~populace.epi.disease.Disease`)."""
    return Duration("geometric", mean)


def lognormal(mean: float, sd: float) -> Duration:
    """A lognormal law of this mean and standard deviation (days), rounded to whole days >= 1."""
    return Duration("lognormal", mean, sd)


def gamma(mean: float, sd: float) -> Duration:
    """A gamma law of this mean and standard deviation (days), rounded to whole days >= 1."""
    return Duration("gamma", mean, sd)


class Table:
    """Several durations drawn at once: agent k draws from ``durations[slot[k]]``.

    One lookup for every law: fixed days and geometric draws are computed, the discretised
    laws share one inverse-CDF search (their CDFs laid end to end, the j-th shifted by j),
    so a model with many stages pays one search per step, not one per stage.
    """

    def __init__(self, durations: tuple[Duration, ...]) -> None:
        self.durations = tuple(durations)
        kinds = [d.kind for d in self.durations]
        self._fixed = torch.tensor(
            [d.mean if k == "fixed" else 0 for d, k in zip(self.durations, kinds, strict=True)],
            dtype=torch.float64,
        )
        self._p = torch.tensor(
            [
                1 / d.mean if k == "geometric" else 0
                for d, k in zip(self.durations, kinds, strict=True)
            ],
            dtype=torch.float64,
        )
        tabled = [j for j, k in enumerate(kinds) if k in ("lognormal", "gamma")]
        self._shift = torch.zeros(len(kinds), dtype=torch.float64)
        self._start = torch.zeros(len(kinds), dtype=torch.int64)
        cdfs, start = [], 0
        for rank, j in enumerate(tabled):
            cdf = self.durations[j]._cdf
            self._shift[j], self._start[j] = rank, start
            cdfs.append(cdf + rank)
            start += cdf.numel()
        self._size = torch.tensor(
            [self.durations[j]._cdf.numel() if j in tabled else 1 for j in range(len(kinds))]
        )
        self._flat = torch.cat(cdfs) if cdfs else torch.zeros(1, dtype=torch.float64)
        self._kind = torch.tensor([KINDS.index(k) for k in kinds], dtype=torch.int64)
        self._on: dict = {}

    def _tables(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        out = self._on.get(device)
        if out is None:
            names = ("_fixed", "_p", "_shift", "_start", "_size", "_flat", "_kind")
            out = self._on[device] = tuple(getattr(self, k).to(device) for k in names)
        return out

    def sample(self, slot: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Days (``u``'s dtype) for ``slot`` (``[...]`` int64, -1: none, gives 0) and uniforms
        ``u`` (same shape)."""
        fixed, p, shift, start, size, flat, kind = self._tables(u.device)
        s = slot.clamp_min(0)
        u64 = u.to(torch.float64)
        k = kind[s]
        q = p[s]
        geo = 1 + torch.floor(torch.log1p(-u64) / torch.log1p(-q.clamp(max=1 - 1e-16)))
        geo = torch.where(q >= 1, torch.ones_like(geo), geo)
        index = torch.searchsorted(flat, (u64 + shift[s]).contiguous(), right=True) - start[s]
        tab = index.clamp(0, None).minimum(size[s] - 1) + 1
        days = torch.where(
            k == KINDS.index("fixed"),
            fixed[s],
            torch.where(k == KINDS.index("geometric"), geo, tab.to(torch.float64)),
        )
        return torch.where(slot >= 0, days, torch.zeros_like(days)).to(u.dtype)
