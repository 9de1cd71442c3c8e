"""The course of an infection as stages with durations and branches.

A :class:`Course` is a list of :class:`Stage` s. The first is the susceptible stage, which an
agent leaves when infected (into the stage it names as ``next``). Every other stage either has a
:class:`~populace.epi.durations.Duration` — the agent stays that many whole days, then moves to
``next``, or to ``alt`` if it drew the stage's branch on entry — or none, and the agent stays
for good (death) or until something else moves it.

State (:class:`CourseState`): ``health: [B, C, N]`` one-hot over the C stages (exactly 0/1
forward, so counts are sums and, with a gradient estimator of :mod:`populace.behaviors.choice`,
gradients reach the params through them); ``timer: [B, N]`` days left in a timed stage;
``fate: [B, N]`` the branch drawn on entry; ``entered: [B, N]`` the code of the stage entered in
the last step (-1: none), from which flows (new infections, new deaths) are counted.

Each step, from the state at the start of the step:

1. :meth:`Course.move`: a susceptible agent is infected with probability ``1 - exp(-hazard)``
   (or a probability the model computed: ``p_infect``); an agent whose timer runs out leaves
   its stage; every other timer counts down one day.
2. the model may act on where agents landed (hospital admission, say) and set the branch
   probabilities of this step's entrants (vaccine protection against severe disease, worse
   care without a bed);
3. :meth:`Course.settle`: each entrant draws its branch (probability from a param, per agent)
   and its duration in the new stage.

:meth:`Course.advance` does all three with the branch probabilities of the params. Three
uniforms per agent and step (infection, branch, duration), always drawn, keep runs reproducible
and scenarios on common random numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import torch

from populace.behaviors.choice import ESTIMATORS, bernoulli
from populace.engine import Context, Params, member_view, tensor_field
from populace.epi.disease import InfectionState, check_backend, seed
from populace.epi.durations import Duration, Table, fixed
from populace.kernels import transition

#: probabilities the gradient estimators see are kept this far from 0 and 1.
_SAFE = 1e-6


@dataclasses.dataclass(frozen=True)
class Stage:
    """One compartment of a course.

    Attributes:
        name: compartment name (a metric column: ``S``, ``I_mild``, ``ICU``).
        duration: days spent here (None: the agent stays until moved — the susceptible stage
            and absorbing ones such as death).
        next: stage entered when the time is up (for the first stage: on infection).
        branch: name of the param giving each entrant's probability of going to ``alt``
            instead of ``next`` (a plain param or one along one axis, e.g. ``("age",)``).
        alt: the stage of the branch.
        alt_duration: days spent here by agents who drew the branch (default ``duration``).
        infectious: relative infectiousness: a number or the name of a plain param.
    """

    name: str
    duration: Duration | None = None
    next: str | None = None
    branch: str | None = None
    alt: str | None = None
    alt_duration: Duration | None = None
    infectious: float | str = 0.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class CourseState(InfectionState):
    """State fields of a :class:`Course` (mix into a model's state).

    Attributes (besides :class:`~populace.epi.disease.InfectionState`'s):
        timer: ``[B, N]`` whole days left in the current timed stage (0 elsewhere).
        fate: ``[B, N]`` 0/1, the entrant drew its stage's branch (goes to ``alt``).
        entered: ``[B, N]`` int8 code of the stage entered in the last step, -1 for none.
    """

    timer: torch.Tensor = tensor_field("B", "N")
    fate: torch.Tensor = tensor_field("B", "N", domain=(0, 1))
    entered: torch.Tensor = tensor_field("B", "N", dtype=torch.int8)


@dataclasses.dataclass(frozen=True)
class Moves:
    """Step 1 of :class:`Course`: where agents are after infection and the end of their times.

    Attributes:
        health: ``[B, C, N]`` the new one-hot health.
        entered: stage code → ``[B, N]`` 0/1, who entered it this step (stages nobody can
            enter this step are left out).
        timer: ``[B, N]`` timers counted down (0 for agents that left a stage).
        fate: ``[B, N]`` the fates before this step's draws.
        infected: ``[B, N]`` 0/1 newly infected.
        log_prob: ``[B]`` the trajectory's log-probability so far.
        code: ``[B, N]`` the stage each agent entered (-1: none), as a float.
    """

    health: torch.Tensor
    entered: dict[int, torch.Tensor]
    timer: torch.Tensor
    fate: torch.Tensor
    infected: torch.Tensor
    log_prob: torch.Tensor
    code: torch.Tensor


def agent_value(params: Params, name: str, ctx: Context) -> torch.Tensor:
    """Param ``name`` broadcastable to ``[B, N]``: a plain param as ``[]``/``[B, 1]``, a param
    along one axis gathered to agents by their codes (``ctx.data[axis]``) as ``[N]``/``[B, N]``."""
    axes = params.declarations()[name].axes
    value = getattr(params, name)
    if not axes:
        return member_view(value, 2)
    if len(axes) != 1 or value.dim() not in (1, 2):
        raise ValueError(
            f"parameter {name!r} runs along {list(axes)} with shape {tuple(value.shape)}; one "
            f"axis, [A] or [B, A], here"
        )
    return value.index_select(-1, ctx.data[axes[0]])  # per_agent, without advanced indexing


@dataclasses.dataclass(frozen=True)
class Course:
    """A natural history: stages with durations and branches (see the module docstring).

    Attributes:
        stages: the first is the susceptible stage (no duration, ``next``: the stage infection
            leads to).
        onset: the stage whose entry is counted in ``onset`` (default: the first infectious).
        estimator: gradient estimator of infection and branch choices (``"none"``,
            ``"straight_through"``, ``"score_function"``).
        temperature: straight-through relaxation temperature.
        backend: ``"auto"`` (:meth:`advance` by the fused CPU kernel without an estimator,
            where it can) or ``"torch"`` (always the reference); the same numbers.
    """

    stages: tuple[Stage, ...]
    onset: str | None = None
    estimator: str = "none"
    temperature: float = 0.1
    backend: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        if self.estimator not in ESTIMATORS:
            raise ValueError(
                f"unknown estimator {self.estimator!r}; valid: {', '.join(ESTIMATORS)}"
            )
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        check_backend(self.backend)
        names = [s.name for s in self.stages]
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError(f"a course needs two or more stages with distinct names: {names}")
        if len(names) > 127:
            raise ValueError(f"a course has at most 127 stages, got {len(names)}")
        first = self.stages[0]
        if first.duration is not None or first.next is None or first.branch is not None:
            raise ValueError(
                f"the first stage {first.name!r} is the susceptible one: no duration or branch, "
                f"and next= the stage infection leads to"
            )
        for st in self.stages:
            where = f"stage {st.name!r}"
            for target in (st.next, st.alt):
                if target is not None and target not in names:
                    raise ValueError(f"{where} leads to unknown stage {target!r}; stages: {names}")
            if st is not first and st.duration is None and st.next is not None:
                raise ValueError(f"{where}: next= needs a duration (or it is absorbing)")
            if st.duration is not None and st.next is None:
                raise ValueError(f"{where}: a stage with a duration needs next=")
            if (st.branch is None) != (st.alt is None):
                raise ValueError(f"{where}: branch= and alt= go together")
            if st.alt_duration is not None and st.branch is None:
                raise ValueError(f"{where}: alt_duration= needs a branch")
            if st.branch is not None and st.duration is None:
                raise ValueError(f"{where}: a branch needs a duration")
        # slot 2k: stage k's duration, 2k + 1: its branch's (untimed stages: a placeholder)
        laws = []
        for st in self.stages:
            main = st.duration or fixed(1)
            laws += [main, st.alt_duration or main]
        object.__setattr__(self, "_table", Table(tuple(laws)))
        onset = self.onset
        if onset is None:
            onset = next((s.name for s in self.stages if s.infectious != 0), names[1])
            object.__setattr__(self, "onset", onset)
        if onset not in names:
            raise ValueError(f"onset stage {onset!r} unknown; stages: {names}")
        # the stages as the fused kernel reads them: where time up leads (stage 0: infection),
        # where the branch leads, the row of the branch's probability
        branching = [k for k, st in enumerate(self.stages) if st.branch]
        table = [
            [
                names.index(st.next) if st.next and (k == 0 or st.duration) else -1
                for k, st in enumerate(self.stages)
            ],
            [names.index(st.alt) if st.alt else -1 for st in self.stages],
            [branching.index(k) if k in branching else -1 for k in range(len(names))],
        ]
        object.__setattr__(self, "_kernel_stages", tuple(tuple(t) for t in table))

    # -- names -----------------------------------------------------------------------------
    @property
    def compartments(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def index(self, name: str) -> int:
        """Position of stage ``name`` on the C axis."""
        if name not in self.compartments:
            raise KeyError(f"unknown compartment {name!r}; valid: {', '.join(self.compartments)}")
        return self.compartments.index(name)

    def stage(self, name: str) -> Stage:
        return self.stages[self.index(name)]

    @property
    def infectious_stages(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages if s.infectious != 0)

    def param_names(self) -> tuple[str, ...]:
        """Params the course reads (branch probabilities, infectiousness)."""
        out = [s.branch for s in self.stages if s.branch]
        out += [s.infectious for s in self.stages if isinstance(s.infectious, str)]
        return tuple(out)

    def check_params(self, params: Params) -> None:
        """Refuse params that lack a name the course reads, before any run."""
        missing = [n for n in self.param_names() if n not in params.names()]
        if missing:
            raise ValueError(
                f"the course reads parameter(s) {missing}, which {type(params).__name__} does "
                f"not declare"
            )

    # -- reading the state -------------------------------------------------------------------
    def share(self, state: CourseState, name: str) -> torch.Tensor:
        """``[B, N]`` 0/1: agents in stage ``name``."""
        return state.health[:, self.index(name)]

    def any_of(self, state: CourseState, names: Sequence[str]) -> torch.Tensor:
        """``[B, N]`` 0/1: agents in any of the stages ``names``."""
        return state.health[:, [self.index(n) for n in names]].sum(dim=1)

    def infectiousness(self, state: CourseState, params: Params) -> torch.Tensor:
        """``[B, N]``: each agent's relative infectiousness (0 outside infectious stages; a view
        of the health when one stage of weight 1 is infectious: read, do not write)."""
        h = state.health
        out = None
        for c, st in enumerate(self.stages):
            if st.infectious == 0:
                continue
            row = h[:, c]
            if isinstance(st.infectious, str) or st.infectious != 1:  # weight 1: the row itself
                w = (
                    getattr(params, st.infectious)
                    if isinstance(st.infectious, str)
                    else st.infectious
                )
                row = member_view(torch.as_tensor(w, dtype=h.dtype, device=h.device), 2) * row
            out = row if out is None else out + row
        return torch.zeros_like(h[:, 0]) if out is None else out

    def branch_probs(self, params: Params, ctx: Context) -> dict[str, torch.Tensor]:
        """Stage name → branch probability of its entrants, broadcastable to ``[B, N]``."""
        return {s.name: agent_value(params, s.branch, ctx) for s in self.stages if s.branch}

    def infectious_days(self, params: Params) -> torch.Tensor:
        """Expected infectiousness-weighted days of one infection (what ``beta`` multiplies into
        R0 when mixing is uniform): from the stage infection leads to, each stage adds its
        weight times its expected days (by branch), until the agent is susceptible again or
        absorbed. Branch params along an axis give one value per label (``[A]``)."""

        def value(v) -> torch.Tensor:
            return torch.as_tensor(v, dtype=torch.float64)

        def days(name: str) -> torch.Tensor:
            st = self.stage(name)
            if st.duration is None or name == self.stages[0].name:
                return value(0.0)
            w = getattr(params, st.infectious) if isinstance(st.infectious, str) else st.infectious
            main = value(w) * st.duration.expected() + days(st.next)
            if st.branch is None:
                return main
            alt_days = (st.alt_duration or st.duration).expected()
            alt = value(w) * alt_days + days(st.alt)
            p = value(getattr(params, st.branch))
            return (1 - p) * main + p * alt

        return days(self.stages[0].next)

    # -- choices -----------------------------------------------------------------------------
    def _choose(self, probs: torch.Tensor, u: torch.Tensor):
        """(value, log_prob or None): ``u < probs``, exactly, with the estimator's gradient.

        The estimator sees probabilities kept inside [1e-6, 1 - 1e-6]: in float32 a
        probability of exactly 0 or 1 (common here: a branch no entrant takes, a factor
        capped at 1) has an infinite logit gradient, and NaN once multiplied by the zero of
        an agent that is not at risk. The forward value stays ``u < probs``.
        """
        hard = (u < probs.detach()).to(u.dtype)
        if self.estimator == "none":
            return hard, None
        safe = probs.clamp(_SAFE, 1 - _SAFE)
        c = bernoulli(safe, u, estimator=self.estimator, temperature=self.temperature)
        value = hard + (c.value - c.value.detach())
        return value, c.log_prob if self.estimator == "score_function" else None

    # -- dynamics ----------------------------------------------------------------------------
    def initial(
        self,
        params: Params,
        ctx: Context,
        agents: int,
        *,
        p: torch.Tensor | None = None,
        count: int | None = None,
        stage: str | None = None,
    ) -> dict[str, torch.Tensor]:
        """Initial :class:`CourseState` fields: seeded agents enter ``stage`` (default: the
        stage infection leads to), drawing branch and duration as any entrant does.

        Args:
            p: probability of each agent being seeded (``[]``, ``[B]`` or ``[B, N]``).
            count: or exactly ``count`` seeded agents per member, chosen at random.
        """
        seeded, log_prob = seed(ctx, agents, self._choose, p=p, count=count)
        zeros = torch.zeros_like(seeded)
        target = self.index(stage or self.stages[0].next)
        if target == 0:
            raise ValueError(f"seeded agents cannot enter the susceptible stage {stage!r}")
        c = len(self.stages)
        rows = [zeros] * c
        rows[0], rows[target] = 1 - seeded, seeded
        health = torch.stack(rows, dim=1)
        entered = {target: seeded}
        code = target * seeded.detach() + seeded.detach() - 1  # the seeded entered `target`
        moves = Moves(health, entered, zeros, zeros, seeded, log_prob, code)
        return self.settle(moves, self.branch_probs(params, ctx), ctx)

    def move(
        self,
        state: CourseState,
        hazard: torch.Tensor | None,
        ctx: Context,
        *,
        p_infect: torch.Tensor | None = None,
    ) -> Moves:
        """Step 1: infection (``hazard``: ``[B, N]`` or broadcastable, >= 0; or, instead, its
        probability ``p_infect = 1 - exp(-hazard)``) and the end of timed stages, from the state
        at the start of the step."""
        h = state.health
        b, c, n = h.shape
        u = ctx.rng.uniform(n, dtype=h.dtype)
        s = h[:, 0]
        infect, lp = self._choose(infection_probability(hazard, p_infect).expand(b, n), u)
        infected = s * infect
        log_prob = state.log_prob if lp is None else state.log_prob + (s * lp).sum(dim=1)
        up = (state.timer <= 1).to(h.dtype)  # time is up this step (in a timed stage)
        rows = [h[:, k] for k in range(c)]
        incoming: dict[int, torch.Tensor] = {}

        def arrive(k: int, flow: torch.Tensor) -> None:
            incoming[k] = incoming[k] + flow if k in incoming else flow

        rows[0] = rows[0] - infected
        arrive(self.index(self.stages[0].next), infected)
        for k, st in enumerate(self.stages):
            if st.duration is None:
                continue
            out = h[:, k] * up
            rows[k] = rows[k] - out
            if st.branch is None:
                arrive(self.index(st.next), out)
            else:
                arrive(self.index(st.next), out * (1 - state.fate))
                arrive(self.index(st.alt), out * state.fate)
        health = torch.stack(
            [rows[k] + incoming[k] if k in incoming else rows[k] for k in range(c)], dim=1
        )
        # each agent enters one stage at most: its code is sum_k (k + 1) entered_k - 1
        code = sum((k + 1) * flow.detach() for k, flow in incoming.items()) - 1
        timer = (state.timer - 1).clamp_min(0)
        return Moves(health, incoming, timer, state.fate, infected, log_prob, code)

    def settle(
        self, moves: Moves, probs: Mapping[str, torch.Tensor], ctx: Context
    ) -> dict[str, torch.Tensor]:
        """Step 3: entrants draw their branch (``probs``: stage → probability broadcastable to
        ``[B, N]``) and their duration; returns the new :class:`CourseState` fields.

        Only this step's entrants are drawn for (found with ``nonzero``, one host
        synchronisation): a day moves a few agents, and per-agent work on all N would cost
        more than the rest of the step. The uniforms are drawn for every agent, so the draws
        do not depend on who entered.
        """
        health, entered, code = moves.health, moves.entered, moves.code
        b, c, n = health.shape
        u_fate = ctx.rng.uniform(n, dtype=health.dtype)
        u_days = ctx.rng.uniform(n, dtype=health.dtype)
        bi, ii = torch.nonzero(code >= 0, as_tuple=True)
        stage = code[bi, ii].to(torch.int64)
        took = torch.zeros(bi.shape, dtype=health.dtype, device=health.device)
        log_prob = moves.log_prob
        for k, st in enumerate(self.stages):
            if st.branch is None:
                continue
            sel = torch.nonzero(stage == k).flatten()
            if sel.numel() == 0:
                continue
            rb, ri = bi[sel], ii[sel]
            p = probs[st.name].to(health.dtype).expand(b, n)[rb, ri]
            value, lp = self._choose(p, u_fate[rb, ri])
            took = took.index_put((sel,), entered[k][rb, ri] * value)
            if lp is not None:
                log_prob = log_prob.index_add(0, rb, lp)
        stays = (code < 0).to(health.dtype)
        fate = (moves.fate * stays).index_put((bi, ii), took)
        slot = 2 * stage + (took.detach() > 0.5).to(torch.int64)
        days = self._table.sample(slot, u_days[bi, ii])
        timer = moves.timer.index_put((bi, ii), days)
        onset = entered.get(self.index(self.onset), torch.zeros_like(moves.infected))
        return {
            "health": health,
            "infected": moves.infected,
            "onset": onset,
            "log_prob": log_prob,
            "timer": timer,
            "fate": fate,
            "entered": code.to(torch.int8),
        }

    def advance(
        self,
        state: CourseState,
        hazard: torch.Tensor | None,
        params: Params,
        ctx: Context,
        *,
        p_infect: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """:meth:`move` (from ``hazard`` or ``p_infect``) then :meth:`settle` with the params'
        branch probabilities."""
        probs = self.branch_probs(params, ctx)
        p_infect = infection_probability(hazard, p_infect)  # once, for the kernel or move
        if self.estimator == "none" and self.backend == "auto":
            fused = self._fused(state, p_infect, probs, ctx)
            if fused is not None:
                return fused
        return self.settle(self.move(state, None, ctx, p_infect=p_infect), probs, ctx)

    def _fused(
        self,
        state: CourseState,
        p_infect: torch.Tensor,
        probs: Mapping[str, torch.Tensor],
        ctx: Context,
    ) -> dict[str, torch.Tensor] | None:
        """:meth:`advance` by the fused kernel (same numbers), or None where it cannot run
        (the random streams then stand where they stood)."""
        h = state.health
        branch = [probs[st.name] for st in self.stages if st.branch]
        if not transition.available(h, state.timer, state.fate, p_infect, *branch):
            return None
        before = ctx.rng.get_state()
        n = h.shape[2]
        sites = (ctx.rng.claim(n), ctx.rng.claim(n), ctx.rng.claim(n))  # as move and settle
        got = transition.course(
            h,
            state.timer,
            state.fate,
            p_infect,
            branch,
            self._kernel_stages,
            self.index(self.onset),
            sites,
        )
        if got is None:
            ctx.rng.set_state(before)
            return None
        timer = got["timer"]
        if got["index"].numel():
            timer.view(-1)[got["index"]] = self._table.sample(got["slot"], got["u"])
        return {
            "health": got["health"],
            "infected": got["infected"],
            "onset": got["onset"],
            "log_prob": state.log_prob,
            "timer": timer,
            "fate": got["fate"],
            "entered": got["entered"],
        }


def infection_probability(
    hazard: torch.Tensor | None, p_infect: torch.Tensor | None
) -> torch.Tensor:
    """``1 - exp(-hazard)``, computed as ``-expm1(-hazard)``, or ``p_infect`` as it is (one of
    the two, not both)."""
    if (hazard is None) == (p_infect is None):
        raise ValueError("give exactly one of the infection hazard and its probability p_infect")
    if p_infect is not None:
        return p_infect
    if hazard.requires_grad:
        return -torch.expm1(-hazard)
    return torch.neg(hazard).expm1_().neg_()  # one new tensor


def seir(
    latent: Duration,
    infectious: Duration,
    immunity: Duration | None = None,
    estimator: str = "none",
    temperature: float = 0.1,
) -> Course:
    """S → E → I → R (→ S after ``immunity`` when given: waning and reinfection)."""
    stages = (
        Stage("S", next="E"),
        Stage("E", latent, next="I"),
        Stage("I", infectious, next="R", infectious=1.0),
        Stage("R", immunity, next="S" if immunity is not None else None),
    )
    return Course(stages, estimator=estimator, temperature=temperature)
