"""Observation model: from a model's daily onsets to the expected reported cases.

``reported[t] = multiplier * ascertainment * sum_k w_k(delay) onsets[t - k]``: a fraction
``ascertainment`` of onsets is reported, after a delay whose discretised distribution ``w`` is a
Gaussian bump centred on ``delay`` days (spread ``spread``), truncated to ``0..max_delay`` and
normalised. Both ``ascertainment`` and ``delay`` are differentiable, so they can be calibrated with
the model's own parameters. ``multiplier`` rescales a reduced-scale population to the real one.
"""

from __future__ import annotations

import torch


def delay_weights(
    delay: torch.Tensor | float, spread: float = 2.0, max_delay: int = 21
) -> torch.Tensor:
    """``[max_delay + 1]`` (or ``[B, max_delay + 1]`` for a ``[B]`` delay), rows summing to 1."""
    if not spread > 0 or max_delay < 0:
        raise ValueError(f"spread must be > 0 and max_delay >= 0, got {spread}, {max_delay}")
    d = delay if isinstance(delay, torch.Tensor) else torch.tensor(float(delay))
    if not d.is_floating_point():
        d = d.to(torch.get_default_dtype())
    if d.dim() > 1:
        raise ValueError(f"delay must be [] or [B], got shape {tuple(d.shape)}")
    k = torch.arange(max_delay + 1, dtype=d.dtype, device=d.device)
    logits = -0.5 * ((k - d.unsqueeze(-1)) / spread) ** 2
    return torch.softmax(logits, dim=-1)


def reported_cases(
    onsets: torch.Tensor,
    ascertainment: torch.Tensor | float = 1.0,
    delay: torch.Tensor | float = 0.0,
    *,
    multiplier: float = 1.0,
    spread: float = 2.0,
    max_delay: int = 21,
) -> torch.Tensor:
    """Expected reported cases per day.

    Args:
        onsets: ``[B, T]`` daily onsets (may carry gradients).
        ascertainment: ``[]`` or ``[B]``, fraction of onsets reported.
        delay: ``[]`` or ``[B]``, mean reporting delay in days.
        multiplier: e.g. ``real population / simulated agents``.

    Returns:
        ``[B, T]``: day t sums onsets up to ``max_delay`` days earlier (earlier days are 0).
    """
    if onsets.dim() != 2:
        raise ValueError(f"onsets must be [B, T], got shape {tuple(onsets.shape)}")
    b, t = onsets.shape
    delay = torch.as_tensor(delay, dtype=onsets.dtype, device=onsets.device)
    w = delay_weights(delay.to(onsets.dtype), spread, max_delay).to(onsets)  # [K] or [B, K]
    w = w.expand(b, -1) if w.dim() == 1 else w
    k = w.shape[-1]
    padded = torch.nn.functional.pad(onsets, (k - 1, 0))  # [B, T + K - 1]
    windows = padded.unfold(1, k, 1)  # [B, T, K]: windows[b, t, j] = onsets[b, t - (K-1) + j]
    delayed = (windows * w.flip(-1).unsqueeze(1)).sum(dim=-1)
    scale = torch.as_tensor(ascertainment, dtype=onsets.dtype, device=onsets.device)
    scale = scale.reshape(-1, 1) if scale.dim() == 1 else scale
    return multiplier * scale * delayed
