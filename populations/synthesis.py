"""Generic population synthesis: marginals → IPF joint table → integer counts → agents.

Reusable for any region. Marginal tables are polars DataFrames with some category columns and one
count column; the joint table covers every combination of the categories (structural zeros come
from a ``prior`` table). Agents carry categorical attributes as small integer codes plus a
codebook (attribute → tuple of labels, code = position).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence

import polars as pl
import torch

Codebook = dict[str, tuple[str, ...]]


class MarginalError(ValueError):
    """A marginal table is malformed: missing column, bad count, unknown label."""


def _code_dtype(n_labels: int) -> torch.dtype:
    return torch.int8 if n_labels <= 127 else torch.int16 if n_labels <= 32767 else torch.int32


def check_marginal(
    table: pl.DataFrame, categories: Mapping[str, Sequence[str]], count: str, name: str
) -> list[str]:
    """Validate one marginal; return its category columns.

    Raises MarginalError naming the table and row for: a missing count column, no category
    column, a column that is not a known category, a label not in the category, a duplicate
    combination, a non-numeric, null, NaN or negative count.
    """
    if count not in table.columns:
        raise MarginalError(f"marginal {name!r} has no count column {count!r}: {table.columns}")
    dims = [c for c in table.columns if c != count]
    unknown = [c for c in dims if c not in categories]
    if unknown:
        raise MarginalError(
            f"marginal {name!r}: column(s) {unknown} are not categories ({list(categories)})"
        )
    if not dims:
        raise MarginalError(f"marginal {name!r} has no category column")
    if not table[count].dtype.is_numeric():
        raise MarginalError(f"marginal {name!r}: count column {count!r} is {table[count].dtype}")
    values = table[count].cast(pl.Float64)
    for row, v in enumerate(values.to_list()):
        if v is None or v != v or v < 0 or v == float("inf"):
            raise MarginalError(f"marginal {name!r} row {row}: count {v!r} is not a finite >= 0")
    for d in dims:
        allowed = {str(x) for x in categories[d]}
        for row, label in enumerate(table[d].cast(pl.Utf8).to_list()):
            if label not in allowed:
                raise MarginalError(f"marginal {name!r} row {row}: unknown {d} label {label!r}")
    repeated = ~table.select(pl.struct(dims).is_first_distinct()).to_series()
    if repeated.any():
        row = int(repeated.arg_true()[0])
        raise MarginalError(f"marginal {name!r} row {row}: duplicate combination of {dims}")
    return dims


def _dense(
    table: pl.DataFrame, dims: list[str], categories: Mapping[str, Sequence[str]], count: str
) -> torch.Tensor:
    """A marginal as a dense float64 tensor over ``dims`` (missing combinations are 0)."""
    shape = [len(categories[d]) for d in dims]
    out = torch.zeros(shape, dtype=torch.float64)
    index = []
    for d in dims:
        lookup = {str(label): i for i, label in enumerate(categories[d])}
        index.append(torch.tensor([lookup[str(x)] for x in table[d].to_list()], dtype=torch.long))
    out[tuple(index)] = torch.tensor(table[count].cast(pl.Float64).to_list(), dtype=torch.float64)
    return out


def ipf(
    prior: torch.Tensor,
    targets: Sequence[tuple[tuple[int, ...], torch.Tensor]],
    *,
    tol: float = 1e-10,
    max_iter: int = 2000,
) -> tuple[torch.Tensor, int, float]:
    """Iterative proportional fitting of a dense joint table to marginal targets.

    Args:
        prior: [d0, ..., dk-1] float64 >= 0; zeros are structural (stay zero).
        targets: (axes, target) pairs; target has the shape of ``prior`` kept on ``axes``
            (in that order) and sums to the same total as every other target.
        tol: stop when the largest relative marginal residual is below this.
        max_iter: most sweeps over the targets.

    Returns:
        (joint [d0, ..., dk-1], sweeps used, largest relative residual at the end).
    """
    joint = prior.to(torch.float64).clone()
    k = joint.dim()
    perms = []
    for axes, target in targets:
        if sorted(set(axes)) != sorted(axes) or any(a < 0 or a >= k for a in axes):
            raise ValueError(f"ipf: bad axes {axes} for a {k}-d table")
        want = tuple(joint.shape[a] for a in axes)
        if tuple(target.shape) != want:
            raise ValueError(f"ipf: target on axes {axes} has shape {tuple(target.shape)}, {want}")
        perms.append(tuple(sorted(axes)))

    def residual() -> float:
        worst = 0.0
        for (axes, target), kept in zip(targets, perms, strict=True):
            got = _margin(joint, kept, axes)
            scale = target.abs().sum().clamp_min(1e-300)
            worst = max(worst, float((got - target).abs().sum() / scale))
        return worst

    sweeps, res = 0, residual()
    while res > tol and sweeps < max_iter:
        for (axes, target), kept in zip(targets, perms, strict=True):
            got = _margin(joint, kept, axes)
            factor = torch.where(got > 0, target / got.clamp_min(1e-300), torch.zeros_like(got))
            joint = joint * _broadcast(factor, axes, k)
        sweeps += 1
        res = residual()
    return joint, sweeps, res


def _margin(joint: torch.Tensor, kept: tuple[int, ...], axes: tuple[int, ...]) -> torch.Tensor:
    """Sum ``joint`` over all axes but ``kept`` (sorted), then order them as ``axes``."""
    drop = [a for a in range(joint.dim()) if a not in kept]
    m = joint.sum(dim=drop) if drop else joint
    return m.permute([kept.index(a) for a in axes])


def _broadcast(factor: torch.Tensor, axes: tuple[int, ...], k: int) -> torch.Tensor:
    """[sizes on ``axes``] → broadcastable to the k-d joint."""
    order = sorted(range(len(axes)), key=lambda i: axes[i])
    f = factor.permute(order)
    shape = [1] * k
    for a in sorted(axes):
        shape[a] = factor.shape[axes.index(a)]
    return f.reshape(shape)


def fit_joint(
    marginals: Sequence[pl.DataFrame],
    categories: Mapping[str, Sequence[str]],
    *,
    count: str = "count",
    prior: pl.DataFrame | None = None,
    tol: float = 1e-10,
    max_iter: int = 2000,
    total_tolerance: float = 1e-9,
) -> pl.DataFrame:
    """Fit a joint table over ``categories`` to the given marginals by IPF.

    Args:
        marginals: polars DataFrames, each with some category columns and ``count``.
        categories: attribute name → labels (order = codes).
        count: name of the count column in marginals and the result.
        prior: optional table (category columns + ``count``) of seed weights; combinations
            absent from it are structural zeros. Default: all combinations weight 1.
        tol, max_iter: IPF convergence.
        total_tolerance: relative disagreement of marginal totals tolerated silently.

    Returns:
        DataFrame with one row per combination (category columns as strings, in codebook
        order) and a float64 ``count``.

    Marginals whose totals disagree are rescaled to the first marginal's total (the first is
    authoritative), with a warning stating each disagreement. If IPF does not converge (the
    marginals disagree on a shared sub-margin), a warning states the residual.
    """
    if not marginals:
        raise MarginalError("fit_joint needs at least one marginal")
    names = list(categories)
    shape = [len(categories[n]) for n in names]
    targets = []
    reference = None
    for i, table in enumerate(marginals):
        dims = check_marginal(table, categories, count, f"#{i}")
        dense = _dense(table, dims, categories, count)
        total = float(dense.sum())
        if reference is None:
            reference = total
            if total <= 0:
                raise MarginalError("marginal #0 sums to zero")
        elif abs(total - reference) > total_tolerance * reference:
            warnings.warn(
                f"marginal #{i} sums to {total:.6g}, marginal #0 to {reference:.6g} "
                f"(difference {total - reference:+.6g}, {100 * (total / reference - 1):+.4f} %); "
                "rescaled to marginal #0's total",
                stacklevel=2,
            )
            if total <= 0:
                raise MarginalError(f"marginal #{i} sums to zero")
            dense = dense * (reference / total)
        targets.append((tuple(names.index(d) for d in dims), dense))
    if prior is None:
        seed = torch.ones(shape, dtype=torch.float64)
    else:
        dims = check_marginal(prior, categories, count, "prior")
        if sorted(dims) != sorted(names):
            raise MarginalError(f"prior must have every category column {names}, has {dims}")
        seed = _dense(prior, dims, categories, count).permute([dims.index(n) for n in names])
    joint, sweeps, res = ipf(seed, targets, tol=tol, max_iter=max_iter)
    if res > max(tol, 1e-6):
        warnings.warn(
            f"IPF stopped after {sweeps} sweeps with relative residual {res:.3g}: the marginals "
            "disagree on a shared sub-margin (or the prior's zeros make them unreachable)",
            stacklevel=2,
        )
    combos = list(itertools.product(*[[str(x) for x in categories[n]] for n in names]))
    cols = {n: [c[j] for c in combos] for j, n in enumerate(names)}
    cols[count] = joint.reshape(-1).tolist()
    return pl.DataFrame(cols)


def integerise(
    weights: torch.Tensor,
    group: torch.Tensor | None = None,
    group_totals: torch.Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Integer counts that preserve (group) totals exactly.

    Each group's weights are scaled to its integer total, floored, and the remaining units go to
    cells by their fractional remainders: the largest remainders when ``generator`` is None
    (deterministic), else a systematic sample over the shuffled cells of each group, in which
    a cell gets its extra unit with probability equal to its remainder, so the expected count
    of every cell equals its weight.

    Args:
        weights: [C] float >= 0.
        group: [C] int64 group of each cell (default: one group).
        group_totals: [G] int64 total of each group (default: the largest-remainder rounding
            of the group sums, which preserves ``round(weights.sum())``).
        generator: None for deterministic rounding, else the source of randomness.

    Returns:
        [C] int64 counts with ``counts[group == g].sum() == group_totals[g]`` for every g.
    """
    w = weights.to(torch.float64)
    if w.dim() != 1:
        raise ValueError(f"integerise: weights must be 1-d, got shape {tuple(w.shape)}")
    if not torch.isfinite(w).all() or (w < 0).any():
        bad = int(torch.nonzero(~torch.isfinite(w) | (w < 0))[0])
        raise ValueError(f"integerise: weight {bad} is {float(w[bad])}, must be finite and >= 0")
    if group is None:
        group = torch.zeros(w.shape[0], dtype=torch.long)
    group = group.to(torch.long)
    n_groups = int(group.max()) + 1 if group.numel() else 0
    sums = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, group, w)
    if group_totals is None:
        total = int(round(float(w.sum())))
        group_totals = integerise(sums, group_totals=torch.tensor([total]), generator=None)
    group_totals = group_totals.to(torch.long)
    if group_totals.shape != (n_groups,):
        raise ValueError(f"integerise: group_totals has shape {tuple(group_totals.shape)}")
    if (group_totals < 0).any():
        raise ValueError("integerise: group totals must be >= 0")
    empty = (sums <= 0) & (group_totals > 0)
    if empty.any():
        g = int(torch.nonzero(empty)[0])
        raise ValueError(f"integerise: group {g} has zero weight but total {int(group_totals[g])}")
    scaled = w * (group_totals.to(torch.float64) / sums.clamp_min(1e-300))[group]
    floor = scaled.floor()
    remainder = scaled - floor
    counts = floor.to(torch.long)
    extra = group_totals - torch.zeros(n_groups, dtype=torch.long).index_add_(0, group, counts)
    if generator is None:
        chosen = _largest_remainders(remainder, group, extra)
    else:
        chosen = _systematic_sample(remainder, group, extra, generator)
    return counts + torch.zeros_like(counts).index_add_(0, chosen, torch.ones_like(chosen))


def _group_starts(group: torch.Tensor, n_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """([G] index of each group's first cell, [G] cell count) once cells are sorted by group."""
    size = torch.bincount(group, minlength=n_groups)
    return torch.cumsum(size, 0) - size, size


def _largest_remainders(
    remainder: torch.Tensor, group: torch.Tensor, extra: torch.Tensor
) -> torch.Tensor:
    """[sum(extra)] cells that get one more unit: each group's ``extra`` largest remainders.

    Ties go to the lower cell index (stable sorts).
    """
    order = torch.sort(remainder, descending=True, stable=True).indices
    order = order[torch.sort(group[order], stable=True).indices]
    start, _ = _group_starts(group, extra.numel())
    rank = torch.arange(order.numel()) - start[group[order]]
    return order[rank < extra[group[order]]]


def _systematic_sample(
    remainder: torch.Tensor, group: torch.Tensor, extra: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """[sum(extra)] distinct cells drawn with probability equal to their remainder.

    Systematic sampling inside each group: the cells are shuffled and laid end to end as
    intervals of length ``remainder`` (each < 1, summing to the group's ``extra``); points at
    ``u, u + 1, …, u + extra - 1`` with one uniform ``u`` per group pick the cells they land in.
    A cell is picked with probability exactly its remainder, and the group gets exactly ``extra``.
    """
    n_groups = extra.numel()
    order = torch.randperm(remainder.numel(), generator=generator)
    order = order[torch.sort(group[order], stable=True).indices]
    ends = torch.cumsum(remainder[order], 0)  # [C] right end of each interval
    start, size = _group_starts(group, n_groups)
    base = torch.where(start > 0, ends[(start - 1).clamp_min(0)], torch.zeros_like(ends[:1]))
    u = torch.rand(n_groups, generator=generator, dtype=torch.float64)
    point_group = torch.repeat_interleave(torch.arange(n_groups), extra)
    k = torch.arange(point_group.numel()) - (torch.cumsum(extra, 0) - extra)[point_group]
    points = base[point_group] + u[point_group] + k
    slot = torch.searchsorted(ends, points, right=True)
    first = start[point_group]
    slot = torch.minimum(torch.maximum(slot, first), first + size[point_group] - 1)
    return order[slot]


def agents_from_table(
    table: pl.DataFrame, categories: Mapping[str, Sequence[str]], count: str = "count"
) -> tuple[dict[str, torch.Tensor], Codebook]:
    """One agent per unit of an integer ``count`` column.

    Args:
        table: category columns + integer ``count`` (e.g. from :func:`integerise`).
        categories: attribute → labels; codes are positions in this order.

    Returns:
        (attributes: name → [N] small-int codes in table row order, codebook).
    """
    dims = check_marginal(table, categories, count, "table")
    if table[count].dtype not in (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt32, pl.UInt64):
        raise MarginalError(f"agents_from_table: count column is {table[count].dtype}, not int")
    reps = torch.tensor(table[count].to_list(), dtype=torch.long)
    attributes, codebook = {}, {}
    for d in dims:
        labels = tuple(str(x) for x in categories[d])
        lookup = {label: i for i, label in enumerate(labels)}
        codes = torch.tensor([lookup[str(x)] for x in table[d].to_list()], dtype=torch.long)
        attributes[d] = torch.repeat_interleave(codes, reps).to(_code_dtype(len(labels)))
        codebook[d] = labels
    return attributes, codebook
