"""Staying home: a behaviour's weekly answers, a calibratable link, and the contacts kept.

A behaviour supplies a table of raw stay-home probabilities, one row per week and one column per
archetype (``[W, K]``: from a heuristic rule or from LLM answers about the observed epidemic, see
:mod:`populace.flagship`). The model does not take the raw answers at face value: a link with two
free params turns each into the probability agents act on,

    q = sigmoid(link_scale * logit(p) + link_bias),

so the behaviour supplies the *shape* of the response across archetypes and weeks while the data
fixes its strength (``link_scale = 1, link_bias = 0`` is the raw answer; ``link_scale = 0`` a
constant share ``sigmoid(link_bias)``). At the start of every week each agent draws whether it
stays home that week (a Bernoulli choice on its archetype's ``q``). An agent at home keeps its
household contacts and drops a fraction ``stay_home_effect`` of its contacts on every other
channel (school, work, community, mixing).

For forecasts the table is read no further than week ``stay_home_hold`` (a per-member param):
after a forecast origin the behaviour holds its last known answer instead of reading answers
about data the forecast has not seen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from populace.engine import Context, Params, member_view, param, tensor_field

#: days between decisions (the table's rows are weeks).
WEEK = 7
#: raw probabilities are clipped to [EPS, 1 - EPS] before the logit.
EPS = 1e-4


@dataclasses.dataclass(frozen=True)
class StayHomeParams(Params):
    stay_home_effect: float | torch.Tensor = param(
        0.0,
        low=0,
        high=1,
        unit="fraction",
        doc="of its non-household contacts an agent at home drops",
    )
    link_scale: float | torch.Tensor = param(
        1.0, low=0, high=10, unit="x", doc="stay-home link: slope on the answers' log-odds"
    )
    link_bias: float | torch.Tensor = param(
        0.0, low=-20, high=20, unit="log-odds", doc="stay-home link: shift of the log-odds"
    )
    stay_home_hold: float | torch.Tensor = param(
        1e9, low=0, unit="week", doc="the table is read no further than this week"
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class StayHomeState:
    """``staying_home: [B, N]`` bool, at home this week."""

    staying_home: torch.Tensor = tensor_field("B", "N", dtype=torch.bool)


@dataclasses.dataclass(frozen=True)
class StayHome:
    """A behaviour's answers for the model.

    Attributes:
        table: ``[W, K]`` raw stay-home probability of archetype k in week w, in [0, 1].
        archetype: ``[N]`` int64 archetype of every agent, in [0, K).
        labels: the K archetype names (e.g. ``"65+ / BX"``).
        keep: channels an agent at home keeps (default the household).
        source: what made the table (``"heuristic"``, ``"llm"``...), for the record.
    """

    table: torch.Tensor
    archetype: torch.Tensor
    labels: tuple[str, ...]
    keep: tuple[str, ...] = ("household",)
    source: str = ""

    def __post_init__(self) -> None:
        t, a = self.table, self.archetype
        if not isinstance(t, torch.Tensor) or t.dim() != 2 or not t.is_floating_point():
            raise ValueError(f"stay-home table must be a float [W, K] tensor, got {_shape(t)}")
        if t.shape[0] < 1 or t.shape[1] != len(self.labels):
            raise ValueError(
                f"stay-home table has shape {tuple(t.shape)}: needs >= 1 week and one column "
                f"per archetype label ({len(self.labels)})"
            )
        if torch.isnan(t).any() or (t < 0).any() or (t > 1).any():
            bad = torch.nonzero(torch.isnan(t) | (t < 0) | (t > 1))[0].tolist()
            raise ValueError(
                f"stay-home table entry (week {bad[0]}, archetype {self.labels[bad[1]]!r}) is "
                f"{float(t[bad[0], bad[1]])}, not a probability in [0, 1]"
            )
        if not isinstance(a, torch.Tensor) or a.dim() != 1 or a.dtype != torch.int64:
            raise ValueError(f"archetype codes must be an int64 [N] tensor, got {_shape(a)}")
        if a.numel() and (int(a.min()) < 0 or int(a.max()) >= len(self.labels)):
            raise ValueError(
                f"archetype codes run over [{int(a.min())}, {int(a.max())}], outside the "
                f"{len(self.labels)} labels"
            )


def _shape(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"{x.dtype} of shape {tuple(x.shape)}"
    return type(x).__name__


def link(p: torch.Tensor, params: StayHomeParams) -> torch.Tensor:
    """Acted-on probability of raw probabilities ``p``: ``[B, K]`` of ``[B, K]``; of a shared
    ``[K]``, ``[K]`` with one link or ``[B, K]`` with a link per member."""
    shared = p.dim() == 1
    p = (p.unsqueeze(0) if shared else p).clamp(EPS, 1 - EPS)
    scale = member_view(torch.as_tensor(params.link_scale, dtype=p.dtype), 2).to(p.device)
    bias = member_view(torch.as_tensor(params.link_bias, dtype=p.dtype), 2).to(p.device)
    q = torch.sigmoid(scale * torch.logit(p) + bias)
    return q[0] if shared and q.shape[0] == 1 else q


def week_rows(step: int, weeks: int, params: StayHomeParams, members: int) -> torch.Tensor:
    """``[B]`` int64 table row read at ``step``: its week, held at ``stay_home_hold`` and at the
    table's last row."""
    hold = torch.as_tensor(params.stay_home_hold, dtype=torch.float64).reshape(-1)
    hold = hold.detach().cpu().expand(members).floor().clamp(max=weeks - 1).long()
    return torch.clamp(hold, max=step // WEEK)


def acted(table: torch.Tensor, step: int, params: StayHomeParams, members: int) -> torch.Tensor:
    """``[B, K]`` this week's acted-on probability per archetype (table ``[W, K]``)."""
    rows = week_rows(step, table.shape[0], params, members).to(table.device)
    return link(table[rows], params)


def initial(ctx: Context, agents: int) -> dict[str, torch.Tensor]:
    """Nobody at home before the first decision."""
    return {"staying_home": torch.zeros(ctx.members, agents, dtype=torch.bool, device=ctx.device)}


def decide(state, params: StayHomeParams, ctx: Context) -> dict[str, torch.Tensor]:
    """Fields of the week's draw (on the first day of a week; otherwise nothing changes).
    Reads ``ctx.data.stay_home_table`` ``[W, K]`` and ``ctx.data.archetype`` ``[N]``."""
    if ctx.step % WEEK:
        return {}
    table = ctx.data.stay_home_table
    q = acted(table, ctx.step, params, ctx.members)  # [B, K]
    per_agent = q.gather(1, ctx.data.archetype.expand(ctx.members, -1))  # [B, N]
    u = ctx.rng.uniform(per_agent.shape[1], dtype=per_agent.dtype)
    return {"staying_home": u < per_agent}


def contact_factors(
    state, params: StayHomeParams, channels: Sequence[str], keep: Sequence[str], dtype
) -> list[torch.Tensor | None]:
    """Per channel: ``[B, N]`` contact factor ``1 - stay_home_effect * at_home``, or None for a
    channel agents keep at home."""
    cut = 1 - member_view(params.stay_home_effect, 2) * state.staying_home.to(dtype)
    return [None if name in keep else cut for name in channels]
