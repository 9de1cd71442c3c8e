"""Rich HTML for Jupyter: models, states, params and results render as small tables."""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

import torch


def table(rows: Iterable[Iterable[Any]], header: Iterable[str], title: str = "") -> str:
    """An HTML table (values escaped) with an optional bold title line."""
    head = "".join(f"<th style='text-align:left'>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td style='text-align:left'>{html.escape(str(v))}</td>" for v in r)
        + "</tr>"
        for r in rows
    )
    caption = f"<b>{html.escape(title)}</b><br>" if title else ""
    return f"<div>{caption}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def describe_value(value: Any) -> str:
    """Short text for a param value: number, tensor summary, or schedule pieces."""
    from populace.engine.params import Schedule

    if isinstance(value, Schedule):
        pieces = ", ".join(
            f"{s}: {describe_value(v)}" for s, v in zip(value.starts, value.values, strict=True)
        )
        return f"schedule {{{pieces}}}"
    if isinstance(value, torch.Tensor):
        grad = " (grad)" if value.requires_grad else ""
        if value.numel() == 1:
            return f"{value.item():.6g}{grad}"
        lo, hi = value.detach().min().item(), value.detach().max().item()
        return f"[{value.shape[0]} per member] {lo:.4g}..{hi:.4g}{grad}"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def tensor_row(name: str, t: torch.Tensor) -> list[str]:
    """name, shape, dtype, device, range (min..max for numeric fields)."""
    if t.numel() and t.dtype != torch.bool and not t.is_complex() and t.device.type != "meta":
        d = t.detach()
        rng = f"{d.min().item():.4g} .. {d.max().item():.4g}"
    elif t.dtype == torch.bool and t.numel():
        rng = f"{int(t.sum())} true"
    else:
        rng = ""
    return [name, str(tuple(t.shape)), str(t.dtype).removeprefix("torch."), str(t.device), rng]
