"""Boltzmann wealth: the round-based step equals Mesa's one-agent-at-a-time loop, and its Gini
agrees with Mesa's official example; the synchronous port does not."""

from __future__ import annotations

import dataclasses
import statistics

import pytest
import torch

from populace.engine import Simulation
from populace.engine.activation import random_rank
from populace.models import boltzmann
from tests.conftest import switch_kernel


@pytest.mark.parametrize("path", ["numba", "torch"])
def test_the_step_equals_a_one_at_a_time_loop_with_the_same_numbers(path, monkeypatch):
    """Both the torch step and the numba kernel (where numba is installed) against Python's
    loop."""
    from populace.kernels import exchange

    if path == "numba":
        pytest.importorskip("numba")
    calls = switch_kernel(monkeypatch, exchange, "step", on=path == "numba")
    agents, side, steps = 60, 5, 8
    model = boltzmann.build(agents=agents, width=side, height=side)
    sim = Simulation(model, members=2, seed=4, device="cpu")
    state = sim.state
    ref = Simulation(model, members=2, seed=4, device="cpu")  # the same streams, re-drawn below
    cell, wealth = ref.state.cell.clone(), ref.state.wealth.clone()
    for t in range(steps):
        ctx = ref.ctx.at(t)
        ref.rng.begin(t)
        dest = boltzmann.random_neighbour_cell(cell, side, side, ctx)
        rank = random_rank(ctx, agents)
        u = ctx.rng.uniform(agents, dtype=torch.float64)  # the draw that picks whom one meets
        for b in range(2):
            moved = torch.zeros(agents, dtype=torch.bool)
            for a in torch.argsort(rank[b]).tolist():  # one agent at a time, in the random order
                cell[b, a], moved[a] = dest[b, a], True
                here = [j for j in range(agents) if j != a and cell[b, j] == cell[b, a]]
                # numbered as the engine does: earlier arrivals, then those still here, by rank
                here.sort(key=lambda j: (not moved[j], int(rank[b, j])))
                if wealth[b, a] > 0 and here:
                    j = here[min(int(u[b, a] * len(here)), len(here) - 1)]
                    wealth[b, a] -= 1
                    wealth[b, j] += 1
        sim.rng.begin(t)
        state = sim.model.step(state, sim.params.at(t), sim.ctx.at(t))
        assert torch.equal(state.cell, cell) and torch.equal(state.wealth, wealth), t
    assert int(wealth.sum()) == 2 * agents
    if path == "numba":
        assert len(calls) == steps


def mean_gini(model, steps, seeds):
    result = Simulation(model, members=seeds, seed=1, device="cpu").run(steps)
    return result.series("gini")[:, -1].mean().item()


def test_gini_agrees_with_mesas_official_example_and_the_synchronous_port_does_not():
    from mesa.examples.basic.boltzmann_wealth_model import model as mesa  # the bench extra

    agents, side, steps, seeds = 400, 20, 60, 8
    theirs = []
    for s in range(seeds):
        m = mesa.BoltzmannWealth(n=agents, width=side, height=side, seed=s)
        for _ in range(steps):
            m.step()
        theirs.append(m.compute_gini())
    ours = mean_gini(boltzmann.build(agents=agents, width=side, height=side), steps, seeds)
    sync = boltzmann.build(agents=agents, width=side, height=side, activation="synchronous")
    spread = statistics.stdev(theirs) / seeds**0.5
    assert abs(ours - statistics.mean(theirs)) < 0.02 + 3 * spread
    assert statistics.mean(theirs) - mean_gini(sync, steps, seeds) > 0.15


def test_moves_stay_on_the_grid_next_to_the_old_cell():
    model = boltzmann.build(agents=500, width=7, height=4)
    sim = Simulation(model, members=2, seed=0, device="cpu")
    before = sim.state.cell
    after = boltzmann.random_neighbour_cell(before, 7, 4, sim.ctx)
    dx = (after // 4 - before // 4).abs()
    dy = (after % 4 - before % 4).abs()
    assert ((dx <= 1) & (dy <= 1) & ((dx + dy) > 0)).all()
    assert ((after >= 0) & (after < 28)).all()
    with pytest.raises(ValueError, match="unknown activation"):
        boltzmann.build(activation="random")


def test_each_on_grid_neighbour_is_equally_likely():
    from populace.engine import Context, Streams

    ctx = Context(0, Streams([7]), torch.device("cpu"), torch.float64)
    width, height = 5, 4
    corner, edge, inner = 0, 2, 1 * height + 2  # (0, 0), (0, 2), (1, 2)
    cell = torch.tensor([[corner, edge, inner]]).repeat(1, 4000)
    picks = boltzmann.random_neighbour_cell(cell, width, height, ctx)[0].view(4000, 3)
    for column, size in ((0, 3), (1, 5), (2, 8)):
        counts = torch.bincount(picks[:, column], minlength=width * height)
        hit = counts[counts > 0].double() / 4000
        assert hit.numel() == size
        assert (hit - 1 / size).abs().max() < 0.03


@pytest.mark.parametrize("record_every", [1, 6, 1000])
def test_the_leap_over_unrecorded_steps_equals_stepping(record_every):
    """A run that leaps (the numba loop over the steps between records) records and ends
    exactly as one that steps, leaving the streams where stepping leaves them; it leaps only
    where no step in between is recorded."""
    pytest.importorskip("numba")
    model = boltzmann.build(agents=40, width=6, height=4)
    leaps = []
    real = boltzmann.sequential_leap
    counted = dataclasses.replace(
        model, leap=lambda s, p, c, k: leaps.append((c.step, k)) or real(s, p, c, k)
    )
    stepping = dataclasses.replace(model, leap=None)
    runs = []
    for m in (counted, stepping):
        sim = Simulation(m, members=2, seed=3, device="cpu", record_every=record_every)
        first, second = sim.run(17), sim.run(9)  # a resume in the middle of a record period
        runs.append((first, second, sim.rng.get_state()))
    for a, b in zip(runs[0][:2], runs[1][:2], strict=True):
        assert a.metrics.equals(b.metrics)
        assert torch.equal(a.final_state.cell, b.final_state.cell)
        assert torch.equal(a.final_state.wealth, b.final_state.wealth)
    assert runs[0][2] == runs[1][2]
    expected = {1: [], 6: [(0, 6), (6, 6), (12, 5), (17, 1), (18, 6), (24, 2)]}.get(record_every)
    if expected is None:
        assert leaps == [(0, 17), (17, 9)]
    else:  # a count of one steps without the leap
        assert leaps == [x for x in expected if x[1] > 1]
