"""CPU kernels of one day of an epidemic (numba): infection draw and progression in one pass.

Imported lazily by :mod:`populace.kernels.transition` when numba is installed. The uniforms are
the counter-based ones of :mod:`populace.kernels.random`, computed inline (the same bits), and
every other number is a comparison or an exact 0/1, so the results equal the torch reference's
(:meth:`populace.epi.disease.Disease.advance`, :meth:`populace.epi.course.Course.advance`)
bit for bit. :func:`markov` repeats the reference's arithmetic in its order (equal on any values);
:func:`move` reads each agent's stage and returns False when the health is not one-hot (each
agent's column all 0, or a single 1): the caller then runs the reference. :func:`settle` draws
the branches of the entrants and lists them for the caller's duration table.
"""

from __future__ import annotations

import numba
import numpy as np

from populace.kernels._numba_random import GOLDEN, S11, S40, _mix

#: agents a kernel moves per pass (its scratch stays in cache)
_BLOCK = 4096


@numba.njit(cache=True, nogil=True, inline="always")
def _u32(key, counter):
    """Uniform ``counter`` of a float32 draw (24 bits) of member key ``key`` mixed with the
    site, as :func:`populace.kernels._numba_random.uniform32`."""
    z = _mix(key + np.uint64(counter + 1) * GOLDEN)
    return np.float32(z >> S40) * np.float32(5.960464477539063e-08)  # 2^-24


@numba.njit(cache=True, nogil=True, inline="always")
def _u64(key, counter):
    """As :func:`_u32`, float64 with 53 bits."""
    z = _mix(key + np.uint64(counter + 1) * GOLDEN)
    return np.float64(z >> S11) * 1.1102230246251565e-16  # 2^-53


@numba.njit(cache=True, nogil=True, inline="always")
def _uniform(key, counter, double):
    """:func:`_u64` or :func:`_u32` by ``double``, as a float64 (exactly the float32 value)."""
    if double:
        return _u64(key, counter)
    return np.float64(_u32(key, counter))


@numba.njit(cache=True, nogil=True, inline="always")
def _fill_block(u, p, key, first, m, double, p_member, lo, per_agent):
    """The block's ``m`` uniforms (counters ``first ..``; 53 or 24 bits by ``double``) into
    ``u`` and its infection probabilities (``p_member[lo:]``, or the one value) into ``p``, in
    loops that compile to vector code."""
    if double:
        for i in range(m):
            u[i] = _u64(key, first + i)
    else:
        for i in range(m):
            u[i] = _u32(key, first + i)
    if per_agent:
        p[:m] = p_member[lo : lo + m]
    else:
        p[:m] = p_member[0]


@numba.njit(cache=True, nogil=True)
def _seir_block(h, o, infected, onset, u, p, sig, gam, one, zero):
    """One block of agents of one member (``h``, ``o``: tuples of the S, E, I, R rows, each a
    1-d slice, as ``infected``, ``onset``, the uniforms ``u`` and probabilities ``p``), as the
    reference's sums. A function of its own on 1-d slices, not inlined: so LLVM sees one plain
    loop over contiguous rows and compiles it to vector code (inlined into the member loop it
    did not, at about 2.3x the time)."""
    s0, e0, i0, r0 = h
    s1, e1, i1, r1 = o
    for k in range(u.shape[0]):
        new_inf = s0[k] * (one if u[k] < p[k] else zero)
        onset_k = e0[k] * (one if u[k] < sig else zero)
        new_rec = i0[k] * (one if u[k] < gam else zero)
        s1[k] = s0[k] - new_inf
        e1[k] = e0[k] + new_inf - onset_k
        i1[k] = i0[k] + onset_k - new_rec
        r1[k] = r0[k] + new_rec
        infected[k] = new_inf
        onset[k] = onset_k


@numba.njit(cache=True, nogil=True)
def _sir_block(h, o, infected, u, p, gam, one, zero):
    """As :func:`_seir_block` for S, I, R (the onset is the infection)."""
    s0, i0, r0 = h
    s1, i1, r1 = o
    for k in range(u.shape[0]):
        new_inf = s0[k] * (one if u[k] < p[k] else zero)
        new_rec = i0[k] * (one if u[k] < gam else zero)
        s1[k] = s0[k] - new_inf
        i1[k] = i0[k] + new_inf - new_rec
        r1[k] = r0[k] + new_rec
        infected[k] = new_inf


@numba.njit(cache=True, nogil=True)
def markov(
    health, p_infect, p_onset, p_recover, keys, c, start, double, one, zero, out, infected, onset
):
    """One step of :class:`~populace.epi.disease.Disease` (S, [E,] I, R), one uniform an agent,
    with the reference's arithmetic in its order (so equal bit for bit on any values).

    Args:
        health: ``[B, C, N]`` health at the start of the step (C = 4: with E).
        p_infect: ``[B, N]`` or ``[B, 1]`` (the same for every agent) infection of S.
        p_onset, p_recover: ``[B]`` onset of E (read only with E) and recovery of I.
        keys: ``[B]`` int64 member keys; ``c``: the draw site's constant (int64 bit pattern);
            ``start``: the counter of agent 0.
        double: the uniforms have 53 bits (float64 runs), else 24.
        one, zero: 1 and 0 in health's dtype.
        out, infected, onset: written, ``[B, C, N]``, ``[B, N]``, ``[B, N]`` (``onset`` may
            be ``infected`` without E).
    """
    # block by block: the block's uniforms and probabilities in passes that compile to vector
    # code, then the agents (the choices between float32/float64 draws and one or many
    # probabilities made outside the per-agent loop)
    b_count, _, n = health.shape
    per_agent = p_infect.shape[1] != 1
    u = np.empty(_BLOCK, health.dtype)  # float64 exactly when double
    p = np.empty(_BLOCK, p_infect.dtype)
    for b in range(b_count):
        key = _mix(np.uint64(keys[b]) ^ np.uint64(c))
        h, o, inf, ons = health[b], out[b], infected[b], onset[b]
        sig, gam = p_onset[b], p_recover[b]
        for lo in range(0, n, _BLOCK):
            m = min(_BLOCK, n - lo)
            hi = lo + m
            _fill_block(u, p, key, start + lo, m, double, p_infect[b], lo, per_agent)
            if h.shape[0] == 4:
                _seir_block(
                    (h[0, lo:hi], h[1, lo:hi], h[2, lo:hi], h[3, lo:hi]),
                    (o[0, lo:hi], o[1, lo:hi], o[2, lo:hi], o[3, lo:hi]),
                    inf[lo:hi], ons[lo:hi], u[:m], p[:m], sig, gam, one, zero,
                )  # fmt: skip
            else:
                _sir_block(
                    (h[0, lo:hi], h[1, lo:hi], h[2, lo:hi]),
                    (o[0, lo:hi], o[1, lo:hi], o[2, lo:hi]),
                    inf[lo:hi], u[:m], p[:m], gam, one, zero,
                )  # fmt: skip


@numba.njit(cache=True, nogil=True)
def move(
    health,
    timer,
    fate,
    p_infect,
    go,
    alt,
    keys,
    c,
    start,
    double,
    keep_fate,
    one,
    zero,
    out,
    timer_out,
    fate_out,
    code_out,
    infected,
    onset,
    onset_stage,
):
    """Step 1 of a course (:meth:`~populace.epi.course.Course.move`) for one-hot health: a
    susceptible agent (stage 0) whose uniform (site ``c``) is below ``p_infect`` enters
    ``go[0]``; an agent of a timed stage k (``go[k] >= 0``) whose timer is <= 1 enters
    ``alt[k]`` if its fate is 1, else ``go[k]``; timers count down.

    Args:
        health: ``[B, C, N]`` one-hot (or all-zero: an empty slot); timer, fate: ``[B, N]``.
        p_infect: ``[B, N]`` or ``[B, 1]`` (the same for every agent).
        go, alt: ``[C]`` int64, the stage entered when the time is up (-1: untimed; for stage
            0 the stage infection leads to) and by the branch (-1: none).
        keep_fate: do not write ``fate_out`` (the caller keeps ``fate``, all 0, as it is).
        out, timer_out, fate_out, code_out (int8: stage entered, -1: none), infected,
        onset (entrants of ``onset_stage``): written; ``fate_out`` is 0 for the entrants.

    Returns:
        False (outputs half-written) when ``health`` is not one-hot or a leaving agent's fate
        of a branching stage is not 0/1.
    """
    # Block by block, in passes that compile to vector code: each agent's stage and where its
    # time up and its branch lead (stage by stage, no gathers), the block's uniforms, then the
    # moves (branch-free: agents of every stage are mixed, so branches on the stage would
    # mispredict), then the new rows. Every choice between float32/float64 draws, one or many
    # probabilities and kept fates is made outside the per-agent loops.
    b_count, c_count, n = health.shape
    per_agent = p_infect.shape[1] != 1
    stage = np.empty(_BLOCK, np.int8)
    dest = np.empty(_BLOCK, np.int8)
    other = np.empty(_BLOCK, np.int8)
    ones = np.empty(_BLOCK, np.int8)
    u = np.empty(_BLOCK, health.dtype)  # float64 exactly when double
    p = np.empty(_BLOCK, p_infect.dtype)
    first = np.int8(go[0])
    no, yes = np.int8(0), np.int8(1)
    bad = 0
    for b in range(b_count):
        key = _mix(np.uint64(keys[b]) ^ np.uint64(c))
        for lo in range(0, n, _BLOCK):
            m = min(_BLOCK, n - lo)
            stage[:m] = -1  # -1: an empty slot (all zero)
            dest[:m] = -1
            other[:m] = -1
            ones[:m] = 0
            for j in range(c_count):
                hj, jj, gj = health[b, j, lo : lo + m], np.int8(j + 1), np.int8(go[j])
                aj = np.int8(alt[j] if alt[j] >= 0 else go[j])
                for i in range(m):
                    v = hj[i]
                    hit = v == one
                    stage[i] += jj if hit else no  # -1 + (j + 1)
                    dest[i] = gj if hit else dest[i]
                    other[i] = aj if hit else other[i]
                    ones[i] += yes if hit else no
                    bad += (v != zero) & (v != one)
            _fill_block(u, p, key, start + lo, m, double, p_infect[b], lo, per_agent)
            t_in, f_in = timer[b, lo : lo + m], fate[b, lo : lo + m]
            t_out, code = timer_out[b, lo : lo + m], code_out[b, lo : lo + m]
            inf_out, ons_out = infected[b, lo : lo + m], onset[b, lo : lo + m]
            for i in range(m):
                k, t, f = stage[i], t_in[i], f_in[i]
                to = other[i] if f == one else dest[i]
                leaving = (k > 0) & (to >= 0) & (t <= one)
                bad += leaving & (other[i] != dest[i]) & (f != zero) & (f != one)
                caught = (k == 0) & (u[i] < p[i])
                ent = first if caught else np.int8(-1)
                ent = to if leaving else ent
                stage[i] = ent if ent >= 0 else k  # the stage after the step
                t_out[i] = max(t - one, zero)
                code[i] = ent
                inf_out[i] = one if caught else zero
                ons_out[i] = one if ent == onset_stage else zero
            if not keep_fate:
                f_out = fate_out[b, lo : lo + m]
                for i in range(m):
                    f_out[i] = f_in[i] if code[i] < 0 else zero
            for j in range(c_count):
                oj, jj = out[b, j, lo : lo + m], np.int8(j)
                for i in range(m):
                    oj[i] = one if stage[i] == jj else zero
            for i in range(m):
                bad += ones[i] > 1
    return bad == 0


@numba.njit(cache=True, nogil=True)
def settle(
    code,
    fate_out,
    p_branch,
    branch_row,
    keys,
    c_fate,
    c_days,
    start,
    double,
    one,
    ent_index,
    ent_slot,
    ent_u,
):
    """The entrants of a move (``code >= 0``, ``[B, N]`` int8): each of a stage with a branch
    (``branch_row[k] >= 0``) takes it when its uniform of site ``c_fate`` is below
    ``p_branch[branch_row[k], b, i]`` (``fate_out`` set to 1); its duration slot ``2 k +
    took`` and uniform of site ``c_days`` are written to ``ent_slot``, ``ent_u`` and its flat
    index ``b N + i`` to ``ent_index`` (``[B N]``), in member then agent order.

    Returns:
        m, the entrants written.
    """
    b_count, n = code.shape
    m = 0
    branching = False
    for r in branch_row:
        branching |= r >= 0
    for b in range(b_count):
        k_fate = _mix(np.uint64(keys[b]) ^ np.uint64(c_fate))
        k_days = _mix(np.uint64(keys[b]) ^ np.uint64(c_days))
        for i in range(n):
            ent = code[b, i]
            if ent < 0:
                continue
            took = 0
            r = branch_row[ent] if branching else -1
            if r >= 0:
                uf = _uniform(k_fate, start + i, double)
                if uf < p_branch[r, b, i]:
                    took = 1
                    fate_out[b, i] = one
            ent_index[m] = b * n + i
            ent_slot[m] = 2 * ent + took
            ent_u[m] = _uniform(k_days, start + i, double)  # a float32 value when not double
            m += 1
    return m
