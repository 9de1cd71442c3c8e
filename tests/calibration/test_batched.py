"""Batched search: a Sobol design then CMA-ES generations, every candidate one batch row."""

from __future__ import annotations

import math

import pytest
import torch

from populace.calibration.batched import Bound, search


def test_finds_the_minimum_of_a_bowl_and_counts_evaluations():
    calls = []

    def bowl(v):
        calls.append(v["x"].numel())
        return (v["x"] - 0.3) ** 2 + (torch.log10(v["y"]) + 2.0) ** 2

    found = search(
        bowl, [Bound("x", -1.0, 1.0), Bound("y", 1e-4, 1.0, log=True)], popsize=8, generations=6
    )
    assert calls == [8] * 7 and found.evaluations == 56
    assert abs(found.best["x"] - 0.3) < 0.1 and abs(math.log10(found.best["y"]) + 2) < 0.3
    assert found.history == sorted(found.history, reverse=True)  # the best only improves
    # the generations improved on the design
    assert found.history[-1] < found.history[0]


def test_same_seed_same_search():
    def f(v):
        return (v["a"] - 0.1) ** 2

    a = search(f, [Bound("a", 0.0, 1.0)], popsize=4, generations=2, seed=3)
    b = search(f, [Bound("a", 0.0, 1.0)], popsize=4, generations=2, seed=3)
    assert a.best == b.best and a.history == b.history


@pytest.mark.parametrize(
    "objective, message",
    [
        (lambda v: torch.full_like(v["a"], float("nan")), "NaN at"),
        (lambda v: torch.zeros(1), "1 losses for 4 points"),
    ],
)
def test_a_bad_objective_is_named(objective, message):
    with pytest.raises(ValueError, match=message):
        search(objective, [Bound("a", 0.0, 1.0)], popsize=4, generations=0)


def test_bad_boxes_are_refused():
    with pytest.raises(ValueError, match="low < high"):
        Bound("a", 1.0, 1.0)
    with pytest.raises(ValueError, match="log box needs low > 0"):
        Bound("a", 0.0, 1.0, log=True)
    with pytest.raises(ValueError, match="distinct"):
        search(lambda v: v["a"], [Bound("a", 0, 1), Bound("a", 0, 1)])
    with pytest.raises(ValueError, match="popsize"):
        search(lambda v: v["a"], [Bound("a", 0, 1)], popsize=1)
