"""One day of an epidemic's transitions in one pass over the agents (CPU, numba).

The torch references are :meth:`populace.epi.disease.Disease.advance` (the Markov SIR/SEIR) and
:meth:`populace.epi.course.Course.advance` (stages with durations and branches): a dozen
elementwise passes over ``[B, C, N]`` one-hot health, each allocating its result. Without a
gradient estimator (``estimator="none"``) they are comparisons of counter-based uniforms with
probabilities and sums of 0/1 values, so one pass that reads each agent's column, draws its
uniforms inline (:mod:`populace.kernels.random`'s bits) and writes the new state gives the same
numbers bit for bit: :func:`markov` repeats the reference's arithmetic in its order, and
:func:`course` moves each agent between stages, which is the reference's arithmetic when the
health is one-hot (it checks). The probabilities stay computed by torch
(``1 - exp(-hazard)``), as libm's and torch's ``expm1`` need not agree to the last bit.

A function returns None when it cannot run (no numba, a CUDA tensor, a dtype other than
float32/float64, a tensor that needs a gradient; :func:`course`: health not one-hot); the
caller then runs the reference, which defines the law.
"""

from __future__ import annotations

import numpy as np
import torch

from populace.kernels._backend import HAS_NUMBA

_NUMPY = {torch.float32: np.float32, torch.float64: np.float64, torch.int8: np.int8}

#: draw site of a kernel's uniforms: ``(keys [B] int64, site constant, counter of agent 0)``
Site = tuple[torch.Tensor, int, int]


def available(*tensors: torch.Tensor) -> bool:
    """Whether the kernels can take these tensors (CPU, float32/float64, no gradient), outside
    a ``torch.compile`` trace (which would trace into numba: the compiled step takes the torch
    reference instead)."""
    if not HAS_NUMBA or torch.compiler.is_compiling():
        return False
    for t in tensors:  # a loop, not all(...): this runs every step of a small model
        if t.device.type != "cpu" or t.requires_grad:
            return False
        if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
            return False
    return True


def _empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A new CPU tensor for a kernel's output, allocated by numpy, which asks the OS for
    transparent huge pages on large arrays: fewer address-translation misses for passes that
    stream many arrays at once."""
    return torch.from_numpy(np.empty(shape, dtype=_NUMPY[dtype]))


def _per_agent(p: torch.Tensor) -> bool:
    """Whether probabilities broadcastable to ``[B, N]`` differ along the agents."""
    return p.dim() >= 1 and p.shape[-1] != 1


def _member(t: torch.Tensor, b: int):
    """A per-member value (``[]``, ``[B]`` or ``[B, 1]``) as a ``[b]`` numpy array."""
    if t.numel() not in (1, b):
        raise ValueError(f"expected one value per member ({b}), got shape {tuple(t.shape)}")
    return t.reshape(-1).expand(b).numpy()


def markov(
    health: torch.Tensor,
    p_infect: torch.Tensor,
    p_onset: torch.Tensor | None,
    p_recover: torch.Tensor,
    site: Site,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """New ``(health, infected, onset)`` of one Markov SIR (C = 3) or SEIR (C = 4) step.

    Args:
        health: ``[B, C, N]``, compartments S, [E,] I, R.
        p_infect: infection probabilities broadcastable to ``[B, N]``.
        p_onset, p_recover: per member (``[]``, ``[B]`` or ``[B, 1]``; ``p_onset`` None
            without E).
        site: the step's one uniform per agent.
    """
    b = health.shape[0]
    rates = (p_recover,) if p_onset is None else (p_onset, p_recover)
    if not available(health, p_infect, *rates) or any(r.numel() not in (1, b) for r in rates):
        return None
    from populace.kernels import _numba_epi

    b, c, n = health.shape
    latent = c == 4
    if latent == (p_onset is None) or c not in (3, 4):
        raise ValueError(f"markov: health has {c} compartments but p_onset is {p_onset!r}")
    keys, const, start = site
    out = _empty((b, c, n), health.dtype)
    infected = _empty((b, n), health.dtype)
    onset = infected if not latent else _empty((b, n), health.dtype)
    p_infect = p_infect.expand(b, n if _per_agent(p_infect) else 1)
    unit = torch.ones(2, dtype=health.dtype).numpy()
    _numba_epi.markov(
        health.numpy(),
        p_infect.numpy(),
        _member(p_recover if p_onset is None else p_onset, b),
        _member(p_recover, b),
        keys.numpy(),
        const,
        start,
        health.dtype == torch.float64,
        unit[0],
        unit[0] * 0,
        out.numpy(),
        infected.numpy(),
        onset.numpy(),
    )
    return out, infected, onset


def course(
    health: torch.Tensor,
    timer: torch.Tensor,
    fate: torch.Tensor,
    p_infect: torch.Tensor,
    p_branch: list[torch.Tensor],
    stages: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]],
    onset_stage: int,
    sites: tuple[Site, Site, Site],
) -> dict[str, torch.Tensor] | None:
    """One step of a course, but for the entrants' durations (see
    :func:`populace.kernels._numba_epi.move` and :func:`~._numba_epi.settle`).

    Args:
        health: ``[B, C, N]``; timer, fate: ``[B, N]``; p_infect: broadcastable to ``[B, N]``.
        p_branch: per branching stage (in stage order), its probability broadcastable to
            ``[B, N]``.
        stages: per stage ``(go, alt, branch_row)``: the stage entered when the time is up
            (-1: untimed; stage 0: the stage infection leads to), by the branch, and the row
            of ``p_branch`` (-1: none).
        sites: the uniforms of infection, branch and duration.

    Returns:
        ``health``, ``timer`` (the entrants' still to set), ``fate``, ``entered`` (int8),
        ``infected``, ``onset``, and the entrants: ``index`` (flat ``b N + i``), ``slot``
        (duration slot), ``u`` (its uniform); None when ``health`` is not one-hot.
    """
    if not available(health, timer, fate, p_infect, *p_branch):
        return None
    if timer.dtype != health.dtype or fate.dtype != health.dtype:
        return None
    from populace.kernels import _numba_epi

    b, c, n = health.shape
    dtype = health.dtype
    double = dtype == torch.float64
    go, alt, branch_row = (torch.tensor(x).numpy() for x in stages)
    per_agent = _per_agent(p_infect)
    (keys, c_infect, start), (_, c_fate, _), (_, c_days, _) = sites
    out = _empty((b, c, n), dtype)
    got = {name: _empty((b, n), dtype) for name in ("timer", "infected", "onset")}
    # without branches every fate stays 0: all-zero fates are kept as they are
    keep_fate = not p_branch and not bool(fate.any())
    got["fate"] = fate if keep_fate else _empty((b, n), dtype)
    entered = _empty((b, n), torch.int8)
    unit = torch.ones(1, dtype=dtype).numpy()
    ok = _numba_epi.move(
        health.numpy(),
        timer.numpy(),
        fate.numpy(),
        p_infect.expand(b, n if per_agent else 1).numpy(),
        go,
        alt,
        keys.numpy(),
        c_infect,
        start,
        double,
        keep_fate,
        unit[0],
        unit[0] * 0,
        out.numpy(),
        got["timer"].numpy(),
        got["fate"].numpy(),
        entered.numpy(),
        got["infected"].numpy(),
        got["onset"].numpy(),
        onset_stage,
    )
    if not ok:
        return None
    if not p_branch:
        branch = torch.zeros(1, 1, 1, dtype=dtype).expand(1, b, n)
    elif not any(_per_agent(p) for p in p_branch):  # per member: stride 0
        branch = torch.stack([p.to(dtype).expand(b, 1) for p in p_branch]).expand(-1, b, n)
    else:
        branch = torch.stack([p.to(dtype).expand(b, n) for p in p_branch])
    index = torch.empty(b * n, dtype=torch.int64)
    slot = torch.empty(b * n, dtype=torch.int64)
    u = torch.empty(b * n, dtype=dtype)
    m = _numba_epi.settle(
        entered.numpy(),
        got["fate"].numpy(),
        branch.numpy(),
        branch_row,
        keys.numpy(),
        c_fate,
        c_days,
        start,
        double,
        unit[0],
        index.numpy(),
        slot.numpy(),
        u.numpy(),
    )
    return {
        "health": out,
        **got,
        "entered": entered,
        "index": index[:m],
        "slot": slot[:m],
        "u": u[:m],
    }
