"""World sizes 1, 2 and 3 (gloo on CPU) give the single-process metrics bit for bit: a sharded
SIR ensemble, a population-sharded network SIR, a slab-sharded Vicsek swarm and a study with a
trigger; a calibration ensemble's loss and gradient reduced over the ranks; a checkpoint saved
on 2 ranks resumes on 1 and on 3 to the same trajectory; bad input (seeds or code that differ
across ranks, more ranks than members or agents) is one clear error on every rank."""

from __future__ import annotations

import io

import pytest
import torch
from sharded_runs import (
    CHECKPOINTS,
    calibration_step,
    in_process,
    launch,
    read_frame,
    save_checkpoints,
    scenarios,
)

from populace.engine import storage
from populace.engine.simulation import CHECKPOINT_FORMAT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process, then 2 ranks (saving checkpoints), then 3 and 1 rank (resuming them)."""
    folder = tmp_path_factory.mktemp("ranks")
    single = tmp_path_factory.mktemp("single")
    reference = scenarios(sharded=False)
    after = save_checkpoints(single, distributed=False)
    return {
        "reference": reference,
        "calibration": calibration_step(False),
        "after": after,
        "single": single,
        "folder": folder,
        2: launch(2, "save", folder),
        3: launch(3, "resume", folder),
        1: in_process("resume", folder),
    }


def _same(got: bytes, want):
    frame = read_frame(got)
    assert frame.schema == want.schema
    assert frame.equals(want), (frame.tail(3), want.tail(3))


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("name", ["ensemble", "network", "swarm", "study"])
def test_every_world_size_gives_the_single_process_metrics(runs, world, name):
    want = runs["reference"][name]
    assert want.height > 0
    for rank_result in runs[world]:  # every rank holds the whole table
        _same(rank_result[name], want)


def test_the_scenarios_are_not_trivial(runs):
    ref = runs["reference"]
    assert ref["network"]["R"].max() > 10  # the epidemic spread over the cut edges
    assert ref["network"]["distancing"].any()  # the trigger read the whole population
    lockdown = ref["study"].filter(ref["study"]["scenario"] == "lockdown")
    assert lockdown["lockdown"].any() and not lockdown["lockdown"].all()
    assert ref["ensemble"]["member"].n_unique() == 5


@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_a_checkpoint_of_two_ranks_is_the_single_process_one(runs, name):
    def payload(folder):
        data = storage.read_sealed(folder / f"{name}.ckpt", CHECKPOINT_FORMAT)
        return torch.load(io.BytesIO(data), weights_only=True)

    ranks, one = payload(runs["folder"]), payload(runs["single"])
    assert ranks.keys() == one.keys()
    for field, t in one["state"]["tensors"].items():
        assert torch.equal(ranks["state"]["tensors"][field], t), field
    for key in ("step", "params", "seeds", "rng", "data", "model"):
        assert ranks[key] == one[key], key


@pytest.mark.parametrize("world", [2, 1, 3])
@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_a_checkpoint_of_two_ranks_resumes_on_one_and_three(runs, world, name):
    want = runs["after"][name]
    for rank_result in runs[world]:
        got = rank_result["after" if world == 2 else "resumed"][name]
        _same(got, want)


@pytest.mark.parametrize(
    "case, words",
    [
        ("seeds", ["member seeds", "rank 0", "rank 1"]),
        ("version", ["code version", "install the same populace"]),
        ("members", ["world size 2 is larger than the 1 ensemble member"]),
        ("agents", ["world size 2 is larger than the 1 agents"]),
    ],
)
def test_bad_input_is_one_clear_error_on_every_rank(runs, case, words):
    for rank_result in runs[2]:
        message = rank_result["errors"][case]
        assert message.startswith("DistributedError"), message
        for w in words:
            assert w in message, message


@pytest.mark.parametrize("world", [1, 2, 3])
def test_calibration_losses_and_gradients_are_reduced_over_the_ranks(runs, world):
    loss, grad = runs["calibration"]
    assert grad != 0.0
    for rank_result in runs[world]:
        got_loss, got_grad = rank_result["calibration"]
        assert got_loss == loss  # the whole ensemble's mean, summed in member order
        assert got_grad == pytest.approx(grad, rel=1e-12)  # the ranks' parts, summed
