"""Calibration over ranks (gloo on CPU): a fit whose members are split over 2 or 3 processes
(Adam on the members' mean loss with a fitted dispersion and a Schedule penalty, score-function
gradients of per-member losses, a neural calibrator) takes the steps one process takes, on
every rank; without averaging the gradients over the ranks it would not; ranks that start
from different points or calibrators stop with one clear error."""

from __future__ import annotations

import pytest
from sharded_fits import EPOCHS, fits, worker
from sharded_runs import launch

pytestmark = pytest.mark.slow

NAMES = ["mean", "score", "neural"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fits")
    return {
        "single": fits(),
        2: launch(2, "controls", folder, target=worker),
        3: launch(3, "plain", folder, target=worker),
    }


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("name", NAMES)
def test_every_rank_makes_the_one_process_fit(runs, world, name):
    want = runs["single"][name]
    assert len(want["history"]) == (3 if name == "neural" else EPOCHS)
    first = runs[world][0][name]
    for got in runs[world]:
        assert got[name] == first  # the same steps on every rank, bit for bit
    # the start is the same computation on the gathered members: the same bits
    assert first["history"][0] == want["history"][0]
    # later steps follow gradients summed in another order: equal to rounding
    assert first["history"] == pytest.approx(want["history"], rel=1e-9)
    assert first["theta"] == pytest.approx(want["theta"], rel=1e-9, abs=1e-12)
    assert first["loss"] == pytest.approx(want["loss"], rel=1e-9)
    if "gradient" in want:  # the objective's gradient itself (Adam forgives a scale)
        assert first["gradient"] == pytest.approx(want["gradient"], rel=1e-9, abs=1e-12)
    if name == "neural":
        for w, v in zip(first["weights"], want["weights"], strict=True):
            assert w == pytest.approx(v, rel=1e-9, abs=1e-12)


def test_the_fits_move(runs):
    for name in NAMES:
        history = runs["single"][name]["history"]
        assert min(history[1:]) < history[0], name  # the gradient steps improve the loss


def test_without_averaging_the_gradients_the_ranks_would_differ(runs):
    want = runs["single"]["mean"]["theta"]
    ranks = [r["unaveraged"]["theta"] for r in runs[2]]
    assert ranks[0] != ranks[1]  # each rank stepped along its own members' gradient
    for theta in ranks:
        assert max(abs(a - b) for a, b in zip(theta, want, strict=True)) > 1e-4


@pytest.mark.parametrize(
    "case, words",
    [("start", ["start point", "rank 0", "rank 1"]), ("calibrator", ["calibrator", "rank 1"])],
)
def test_ranks_that_start_apart_are_one_clear_error_on_every_rank(runs, case, words):
    for rank_result in runs[2]:
        message = rank_result["errors"][case]
        assert message.startswith("DistributedError: ranks disagree on"), message
        for w in words:
            assert w in message, message
