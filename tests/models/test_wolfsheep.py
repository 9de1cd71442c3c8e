import pytest
import torch

from populace.engine import Context, ParamError, Simulation, Streams
from populace.models import wolfsheep as ws
from tests.conftest import switch_kernel


def ctx(members=2, seed=0):
    return Context(
        0, Streams([seed + b for b in range(members)]), torch.device("cpu"), torch.float32
    )


def test_winners_pick_exactly_one_candidate_per_cell():
    g = torch.Generator().manual_seed(0)
    cell = torch.randint(0, 6, (3, 40), generator=g)
    candidate = torch.rand(3, 40, generator=g) < 0.6
    key = torch.rand(3, 40, generator=g)
    win = ws.winners(cell, candidate, key, 6)
    for b in range(3):
        for c in range(6):
            here = candidate[b] & (cell[b] == c)
            assert win[b][cell[b] == c].sum() == int(here.any())
            if here.any():
                assert key[b][win[b] & (cell[b] == c)] == key[b][here].max()
    assert not (win & ~candidate).any()


def test_walk_moves_to_one_of_the_eight_moore_neighbours():
    cell = torch.full((2, 4000), 3 * 7 + 0)  # y=3, x=0 on a 7 x 7 torus
    alive = torch.ones(2, 4000, dtype=torch.bool)
    alive[:, -1000:] = False  # empty slots keep their cell
    new = ws.walk(cell, alive, 7, ctx())
    assert torch.equal(new[:, -1000:], cell[:, -1000:])
    new = new[:, :-1000]
    dy = (new // 7 - 3 + 3) % 7 - 3
    dx = (new % 7 + 3) % 7 - 3
    assert (dy.abs() <= 1).all() and (dx.abs() <= 1).all() and ((dy != 0) | (dx != 0)).all()
    counts = torch.bincount(((dy + 1) * 3 + dx + 1).flatten(), minlength=9)
    assert counts[4] == 0 and (counts[[0, 1, 2, 3, 5, 6, 7, 8]] > 600).all()  # ~750 each


def test_reproduce_copies_parents_into_free_slots_and_counts_overflow():
    cell = torch.arange(6).repeat(2, 1)
    energy = torch.full((2, 6), 8.0)
    alive = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    new_cell, new_energy, new_alive, dropped = ws.reproduce(
        cell, energy, alive, torch.tensor(1.0), ctx()
    )
    assert new_alive[0].tolist() == [1, 1, 1, 1, 0, 0]
    assert new_cell[0, 2:4].tolist() == [0, 1] and (new_energy[0, :4] == 4.0).all()
    assert new_alive[1].all() and dropped.tolist() == [0, 4]
    assert new_cell[1, 5] == 0  # the first parent's child
    # only the parent whose child found a slot halves its energy; the dropped births cost none
    assert new_energy[1].tolist() == [4.0, 8.0, 8.0, 8.0, 8.0, 4.0]
    none = ws.reproduce(cell, energy, alive, torch.tensor(0.0), ctx())
    assert torch.equal(none[2], alive) and torch.equal(none[1], energy)


def test_without_wolves_sheep_eat_each_grass_once_and_it_regrows():
    model = ws.build(agents=60, width=12, wolves=0, sheep_reproduce=0.0)
    sim = Simulation(model, members=2, seed=3, device="cpu")
    state, params = sim.state, sim.params
    after = ws.sheep_phase(state, params, sim.ctx)
    eaten = state.grown & ~after.grown
    gained = (after.sheep_energy - (state.sheep_energy - 1)).round()
    alive = after.sheep_alive
    assert torch.equal((gained[alive] == 5).sum(), eaten.sum())  # one sheep per eaten cell
    assert torch.equal(after.countdown[eaten], torch.full((int(eaten.sum()),), 10))
    grass = ws.grass_phase(after, params, sim.ctx)
    assert not (grass.grown & eaten).any()  # eaten grass needs `regrowth` steps
    res = sim.run(40)
    assert (res.series("wolves") == 0).all()


def test_wolves_starve_without_sheep():
    model = ws.build(agents=50, width=10, wolves=50, wolf_reproduce=0.0)
    res = Simulation(model, members=2, seed=0, device="cpu").run(30)  # energy < 26 at start
    assert (res.series("wolves")[:, -1] == 0).all()


def test_population_means_match_the_sequential_mesa_model():
    """Tolerance: 15 % on the mean sheep and wolf counts over 100 steps, 8 runs each."""
    peers = pytest.importorskip("populace.benchmarks.peers.wolfsheep")
    res = Simulation(ws.build(agents=150, width=20), members=8, seed=0, device="cpu").run(100)
    assert (res.series("dropped") == 0).all()
    ours = res.series("sheep").float().mean().item(), res.series("wolves").float().mean().item()
    sheep = wolves = 0.0
    for seed in range(8):
        m = peers.WolfSheep(agents=150, width=20, seed=seed)
        for _ in range(100):
            m.step()
            sheep += m.sheep() / 800
            wolves += m.wolves() / 800
    assert ours[0] == pytest.approx(sheep, rel=0.15)
    assert ours[1] == pytest.approx(wolves, rel=0.15)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numba_step_equals_the_torch_phases_bit_for_bit(dtype, monkeypatch):
    """The fused kernel against the three torch phases over 30 steps: per-member params, full
    slots (births dropped), both populations alive at the end."""
    pytest.importorskip("numba")
    from populace.kernels import predation

    model = ws.build(agents=150, width=20, capacity=150).with_params(
        sheep_gain=torch.tensor([4.0, 5.0, 6.0]), wolf_reproduce=torch.tensor([0.1, 0.2, 0.3])
    )

    def run():
        sim = Simulation(model, members=3, seed=1, device="cpu", dtype=dtype)
        return sim.run(30)

    calls = switch_kernel(monkeypatch, predation, "step", on=True)
    kernel = run()
    assert len(calls) == 30 and all(calls)
    switch_kernel(monkeypatch, predation, "step", on=False)  # the kernel cannot run
    torch_run = run()
    for name, value in kernel.final_state.tensors().items():
        other = getattr(torch_run.final_state, name)
        assert value.dtype == other.dtype and torch.equal(value, other), name
    assert kernel.metrics.equals(torch_run.metrics)
    last = kernel.metrics.filter(kernel.metrics["step"] == 30)
    assert (last["sheep"] > 0).all() and (last["wolves"] > 0).all()
    assert (last["dropped"] > 0).any()
    state = kernel.final_state  # empty slots too, which keep their cells
    assert (~state.sheep_alive).any() and (~state.wolf_alive).any()


def test_same_seed_same_run():
    model = ws.build(agents=90, width=15)
    a = Simulation(model, members=2, seed=5, device="cpu").run(10).metrics
    b = Simulation(model, members=2, seed=5, device="cpu").run(10).metrics
    assert a.equals(b)


def test_bad_wolfsheep_inputs():
    with pytest.raises(ValueError, match="wolves=20"):
        ws.build(agents=10, wolves=20)
    with pytest.raises(ValueError, match="capacity=5"):
        ws.build(agents=30, width=10, capacity=5)
    with pytest.raises(ValueError, match="capacity=0"):  # 0 is not "the default"
        ws.build(agents=30, width=10, capacity=0)
    with pytest.raises(ValueError, match="wolves must be an integer"):
        ws.build(agents=30, width=10, wolves="abc")
    match = r"wolfsheep parameter 'sheep_reproduce' must lie in \[0, 1\] \(probability/step\)"
    with pytest.raises(ParamError, match=match):
        Simulation(ws.build(agents=30, width=10, sheep_reproduce=1.5), device="cpu")
    with pytest.raises(ParamError, match="whole number"):
        Simulation(ws.build(agents=30, width=10, regrowth=2.5), device="cpu")
    with pytest.raises(ParamError, match="one value for all members"):
        Simulation(
            ws.build(agents=30, width=10).with_params(regrowth=torch.tensor([3.0, 4.0])),
            members=2,
            device="cpu",
        )
    with pytest.raises(ValueError, match="width"):
        ws.build(agents=30, width=0)
