"""Counter-based random numbers: backends agree bit for bit; the numbers look uniform and
independent; draws are a pure function of (member, step, site, index)."""

from __future__ import annotations

import math

import pytest
import torch

from populace.engine import Streams
from populace.kernels import random as counter
from populace.kernels._backend import HAS_TRITON

KEYS = torch.tensor([0, 1, -5, 2**62, -(2**63)], dtype=torch.int64)
SITE = 0xDEADBEEFCAFEBABE


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numba_and_triton_give_the_reference_bits(dtype):
    want = counter.uniform(KEYS, SITE, 3, 5000, dtype, backend="torch")
    assert torch.equal(counter.uniform(KEYS, SITE, 3, 5000, dtype, backend="numba"), want)
    if HAS_TRITON:  # under TRITON_INTERPRET=1 on CPU, for real on CUDA
        assert torch.equal(counter.uniform(KEYS, SITE, 3, 5000, dtype, backend="triton"), want)


def test_reference_matches_splitmix64_written_out_in_python():
    def mix(x):
        x = ((x ^ (x >> 30)) * counter.MIX1) % 2**64
        x = ((x ^ (x >> 27)) * counter.MIX2) % 2**64
        return x ^ (x >> 31)

    key = mix((2**62) ^ SITE)
    want = [(mix((key + (i + 1) * counter.GOLDEN) % 2**64) >> 40) / 2**24 for i in range(7, 12)]
    got = counter.uniform(torch.tensor([2**62]), SITE, 7, 5, torch.float32, backend="torch")
    assert got[0].tolist() == want


def test_a_window_of_the_counter_is_the_same_numbers():
    whole = counter.uniform(KEYS, SITE, 0, 1000, torch.float64)
    assert torch.equal(counter.uniform(KEYS, SITE, 400, 300, torch.float64), whole[:, 400:700])


def test_uniforms_are_uniform_and_uncorrelated():
    u = counter.uniform(KEYS[:2], SITE, 0, 200_000, torch.float64)
    n = u.shape[1]
    for row in u:
        assert abs(row.mean().item() - 0.5) < 4 * math.sqrt(1 / 12 / n)
        assert abs(row.var().item() - 1 / 12) < 0.002
        counts = torch.histc(row, bins=50, min=0, max=1)
        chi2 = (((counts - n / 50) ** 2) / (n / 50)).sum().item()
        assert chi2 < 100  # 49 degrees of freedom: p ~ 1e-5
        lag = torch.corrcoef(torch.stack([row[:-1], row[1:]]))[0, 1].item()
        assert abs(lag) < 4 / math.sqrt(n)
    across = torch.corrcoef(u)[0, 1].item()  # two members
    assert abs(across) < 4 / math.sqrt(n)
    other_site = counter.uniform(KEYS[:1], SITE + 1, 0, n, torch.float64)[0]
    assert abs(torch.corrcoef(torch.stack([u[0], other_site]))[0, 1].item()) < 4 / math.sqrt(n)


def test_streams_are_batch_invariant_numbered_by_site_and_replayable():
    big, alone = Streams([11, 22, 33]), Streams([22])
    for step in (-1, 0, 5):
        big.begin(step)
        alone.begin(step)
        assert torch.equal(big.uniform(50)[1], alone.uniform(50)[0])
        assert torch.equal(big.normal(20)[1], alone.normal(20)[0])
        assert torch.equal(big.permutation(30)[1], alone.permutation(30)[0])
        assert torch.equal(big.integers(3, 9, 4, 2)[1], alone.integers(3, 9, 4, 2)[0])
    s = Streams([7])
    s.begin(4)
    first, second = s.uniform(10), s.uniform(10)
    assert not torch.equal(first, second)  # sites differ
    s.begin(4)
    assert torch.equal(s.uniform(10), first)  # the same step replays
    s.begin(5)
    assert not torch.equal(s.uniform(10), first)


def test_normal_and_integer_laws():
    s = Streams([3])
    z = s.normal(200_000, dtype=torch.float64)[0]
    assert torch.isfinite(z).all()
    assert abs(z.mean().item()) < 0.01 and abs(z.std().item() - 1) < 0.01
    assert abs((z.abs() < 1.96).double().mean().item() - 0.95) < 0.003
    k = s.integers(-2, 3, 50_000)[0]
    assert set(k.tolist()) == {-2, -1, 0, 1, 2}
    assert (torch.bincount(k + 2).double() / 50_000 - 0.2).abs().max() < 0.01
    p = s.permutation(1000)[0]
    assert torch.equal(torch.sort(p).values, torch.arange(1000))
