"""Checkpoints are sealed: every truncation, byte flip or foreign file is refused by name."""

import io
import textwrap

import pytest
import torch

from populace.engine import Simulation, storage
from populace.engine.simulation import CHECKPOINT_FORMAT
from populace.engine.storage import IntegrityError
from populace.models import sir


def small_sir():
    return sir.build(agents=300, initial_infected=10, beta=0.6, gamma=0.2)


@pytest.fixture
def saved(tmp_path):
    model = small_sir()
    sim = Simulation(model, members=2, seed=3, device="cpu")
    sim.run(5)
    return model, sim.save(tmp_path / "ck.pt")


def reseal(path, edit):
    """Rewrite a checkpoint's payload through ``edit`` and seal it again (a valid digest)."""
    data = storage.read_sealed(path, CHECKPOINT_FORMAT)
    payload = torch.load(io.BytesIO(data), weights_only=True)
    edit(payload)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    storage.write_sealed(path, CHECKPOINT_FORMAT, buffer.getvalue())


def test_every_truncation_is_refused_naming_the_file(saved):
    model, path = saved
    data = path.read_bytes()
    cuts = sorted({*range(0, 120), *range(0, len(data), max(1, len(data) // 150))})
    for cut in cuts:
        path.write_bytes(data[:cut])
        with pytest.raises(IntegrityError, match=str(path)):
            Simulation.resume(path, model, device="cpu")


def test_every_flipped_byte_is_refused_naming_the_file(saved):
    model, path = saved
    data = path.read_bytes()
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 1 << (i % 8)
        path.write_bytes(bytes(flipped))
        with pytest.raises(IntegrityError, match=str(path)):
            Simulation.resume(path, model, device="cpu")
    path.write_bytes(data)
    assert Simulation.resume(path, model, device="cpu").step == 5


def test_a_plain_torch_file_or_an_old_checkpoint_is_refused(saved, tmp_path):
    model, _ = saved
    torch.save({"format": "populace-checkpoint/1", "step": 3}, tmp_path / "old.pt")
    with pytest.raises(IntegrityError, match="not a populace checkpoint.*no digest"):
        Simulation.resume(tmp_path / "old.pt", model, device="cpu")


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda p: p.update(step=-1), ["step -1 is negative"]),
        (lambda p: p.update(step=2.5), ["'step' is float"]),
        (lambda p: p.pop("rng"), ["'rng' is NoneType"]),
        (lambda p: p.update(dtype="save"), ["dtype 'save'"]),
        (lambda p: p.update(seeds=[]), ["member seeds"]),
        (lambda p: p.update(rng=p["rng"][:1]), ["stream state [", "is not [step, site]"]),
        (lambda p: p.update(data={"age": 3}), ["model data digests"]),
        (lambda p: p.update(rules_on=[torch.zeros(3)]), ["trigger flag"]),
        (lambda p: p.update(state={"tensors": {}}), ["tensors or statics"]),
        (lambda p: p.update(format="populace-checkpoint/1"), ["format"]),
    ],
)
def test_a_well_sealed_but_wrong_payload_is_refused(saved, edit, words):
    model, path = saved
    reseal(path, edit)
    with pytest.raises(IntegrityError) as err:
        Simulation.resume(path, model, device="cpu")
    for w in [str(path), *words]:
        assert w in str(err.value)


def test_a_failed_save_keeps_the_old_checkpoint_and_leaves_no_temporary(saved, monkeypatch):
    model, path = saved
    before = path.read_bytes()
    sim = Simulation.resume(path, model, device="cpu")
    sim.run(3)

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial")  # a file or a buffer: what torch.save had written so far
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="No space"):
        sim.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["ck.pt"]


def test_a_killed_saver_leaves_a_whole_checkpoint_and_no_visible_temporary(tmp_path, sigkill_child):
    """SIGKILL a process that saves checkpoints in a loop: what is on disk always resumes."""
    script = textwrap.dedent(
        f"""
        import sys
        from populace.engine import Simulation
        from populace.models import sir
        sim = Simulation(sir.build(agents=20000, initial_infected=10), members=4, device="cpu")
        sim.save({str(tmp_path / "ck.pt")!r})
        print("ready", flush=True)
        while True:
            sim.run(1)
            sim.save({str(tmp_path / "ck.pt")!r})
        """
    )
    sigkill_child(script, after=1.5)
    model = sir.build(agents=20000, initial_infected=10)
    resumed = Simulation.resume(tmp_path / "ck.pt", model, device="cpu")
    assert resumed.step >= 0
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["ck.pt"]
    resumed.save(tmp_path / "ck.pt")  # the next save removes the killed one's temporary
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]
