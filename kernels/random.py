"""Counter-based random numbers: every draw is a pure function of a key and a counter.

For ensemble member b, a draw site with 64-bit constant ``c`` and element counter ``i``::

    key_b  = mix(member_b XOR c)
    bits_i = mix(key_b + (i + 1) * GOLDEN)          (all arithmetic mod 2^64)

where ``mix`` is the SplitMix64 finaliser. A uniform on [0, 1) is the top 24 bits (float32) or
53 bits (float64) of ``bits_i`` times 2^-24 or 2^-53, exact in either dtype. Nothing depends on
which other members are drawn, how many elements before ``i`` exist, or which device computes
it: the torch reference (CPU, any device), the numba kernel (CPU, when numba is installed) and
the Triton kernel (CUDA) give the same bits, so runs agree bit for bit across backends,
ensemble batching and population sharding. One launch draws for every member.
"""

from __future__ import annotations

import torch

from populace.kernels._backend import HAS_TRITON, choose

GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
_MASK = (1 << 64) - 1


def signed(x: int) -> int:
    """A 64-bit pattern as the int64 value torch stores."""
    x &= _MASK
    return x - (1 << 64) if x >> 63 else x


def mix_int(x: int) -> int:
    """SplitMix64 finaliser of a Python int (mod 2^64), as an unsigned 64-bit value."""
    x &= _MASK
    x = ((x ^ (x >> 30)) * MIX1) & _MASK
    x = ((x ^ (x >> 27)) * MIX2) & _MASK
    return x ^ (x >> 31)


if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _uniform_kernel(
        member_ptr,  # [B] int64 member keys
        out_ptr,  # [B, n] float32 or float64 out
        c,  # uint64 draw-site constant
        start,  # counter of element 0
        n,
        golden,  # uint64 constants (passed as args: literals above 2^63 are not int64)
        mix1,
        mix2,
        DOUBLE: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        pid = tl.program_id(0)
        b = tl.program_id(1).to(tl.int64)
        offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        k = tl.load(member_ptr + b).to(tl.uint64, bitcast=True) ^ c
        k = (k ^ (k >> 30)) * mix1
        k = (k ^ (k >> 27)) * mix2
        k = k ^ (k >> 31)
        z = k + (start + offs + 1).to(tl.uint64) * golden
        z = (z ^ (z >> 30)) * mix1
        z = (z ^ (z >> 27)) * mix2
        z = z ^ (z >> 31)
        if DOUBLE:
            v = (z >> 11).to(tl.float64) * 1.1102230246251565e-16  # 2^-53
        else:
            v = (z >> 40).to(tl.float32) * 5.960464477539063e-08  # 2^-24
        tl.store(out_ptr + b * n + offs, v, mask=mask)


def _srl(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns (torch's ``>>`` is arithmetic)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def _mix(z: torch.Tensor) -> torch.Tensor:
    z = (z ^ _srl(z, 30)) * signed(MIX1)
    z = (z ^ _srl(z, 27)) * signed(MIX2)
    return z ^ _srl(z, 31)


def bits_reference(member: torch.Tensor, c: int, start: int, n: int) -> torch.Tensor:
    """``[B, n]`` int64 bit patterns of elements ``start..start+n-1`` (pure torch)."""
    key = _mix(member ^ signed(c)).unsqueeze(1)
    i = torch.arange(start + 1, start + n + 1, dtype=torch.int64, device=member.device)
    return _mix(key + i * signed(GOLDEN))


def uniform_reference(
    member: torch.Tensor, c: int, start: int, n: int, dtype: torch.dtype
) -> torch.Tensor:
    """``[B, n]`` uniforms on [0, 1) in ``dtype`` (float32: 24 bits, float64: 53 bits)."""
    z = bits_reference(member, c, start, n)
    if dtype == torch.float64:
        return _srl(z, 11).to(torch.float64) * 2.0**-53
    return (_srl(z, 40).to(torch.float32) * 2.0**-24).to(dtype)


def _uniform_triton(member, c, start, n, dtype) -> torch.Tensor:
    out = torch.empty(member.shape[0], n, dtype=dtype, device=member.device)
    if n:
        block = 1024
        grid = (triton.cdiv(n, block), member.shape[0])
        _uniform_kernel[grid](
            member,
            out,
            c,
            start,
            n,
            GOLDEN,
            MIX1,
            MIX2,
            DOUBLE=dtype == torch.float64,
            BLOCK=block,
        )
    return out


def _uniform_numba(member, c, start, n, dtype) -> torch.Tensor:
    from populace.kernels import _numba_random

    out = torch.empty(member.shape[0], n, dtype=dtype)
    if n:
        kernel = _numba_random.uniform64 if dtype == torch.float64 else _numba_random.uniform32
        kernel(member.numpy(), signed(c), start, out.numpy())
    return out


def uniform(
    member: torch.Tensor,
    c: int,
    start: int,
    n: int,
    dtype: torch.dtype = torch.float32,
    backend: str = "auto",
) -> torch.Tensor:
    """``[B, n]`` uniforms on [0, 1) for members ``member`` (``[B]`` int64 keys) at draw site
    ``c``, elements ``start..start+n-1``.

    Args:
        backend: ``"auto"`` (Triton on CUDA, numba on CPU when installed, else torch),
            ``"triton"``, ``"numba"`` or ``"torch"``; all give the same numbers.
    """
    if member.dtype != torch.int64 or member.dim() != 1:
        raise ValueError(f"member keys must be [B] int64, got {member.dtype} {tuple(member.shape)}")
    if not dtype.is_floating_point:
        raise ValueError(f"uniform: dtype must be floating, got {dtype}")
    c &= _MASK
    how = choose(backend, member)
    if how == "triton":
        out = _uniform_triton(
            member, c, start, n, torch.float64 if dtype == torch.float64 else torch.float32
        )
        return out.to(dtype)
    if how == "numba" and dtype in (torch.float32, torch.float64):
        return _uniform_numba(member, c, start, n, dtype)
    return uniform_reference(member, c, start, n, dtype)
