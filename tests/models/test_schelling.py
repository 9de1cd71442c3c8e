import pytest
import torch

from populace.engine import ParamError, Simulation
from populace.models import schelling
from tests.conftest import switch_kernel


def brute_counts(grid: torch.Tensor, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    B, H, W = grid.shape
    similar = torch.zeros(B, H, W)
    occupied = torch.zeros(B, H, W)
    for b in range(B):
        for y in range(H):
            for x in range(W):
                for dy in range(-radius, radius + 1):
                    for dx in range(-radius, radius + 1):
                        if dy == dx == 0:
                            continue
                        other = int(grid[b, (y + dy) % H, (x + dx) % W])
                        occupied[b, y, x] += other != 0
                        similar[b, y, x] += other != 0 and other == int(grid[b, y, x])
    return similar, occupied


@pytest.mark.parametrize("path", ["kernel", "torch"])
@pytest.mark.parametrize("radius, shape", [(1, (3, 7)), (2, (9, 6)), (2, (5, 12))])
def test_neighbour_counts_match_brute_force_on_a_torus(radius, shape, path, monkeypatch):
    """Both the numba counts (running sums over wrapped windows) and the torch ones, on grids
    whose sides are the window itself or barely above it."""
    from populace.kernels import segregation

    if path == "kernel":
        pytest.importorskip("numba")
    calls = switch_kernel(monkeypatch, segregation, "counts", on=path == "kernel")
    g = torch.Generator().manual_seed(radius)
    grid = torch.randint(0, 3, (2, *shape), generator=g, dtype=torch.int8)
    similar, occupied = schelling.neighbour_counts(grid, radius)
    if path == "kernel":
        assert calls and similar.dtype == occupied.dtype == torch.float32
    want_similar, want_occupied = brute_counts(grid, radius)
    assert torch.equal(similar, want_similar)
    assert torch.equal(occupied, want_occupied)


def test_relocate_moves_only_unhappy_agents_into_empty_cells():
    model = schelling.build(agents=300, width=20, radius=1, min_similar=4)
    sim = Simulation(model, members=3, seed=4, device="cpu", progress=False)
    before = sim.state
    movers = schelling.unhappy(before, sim.params)
    after = schelling.relocate(before, sim.params, sim.ctx)
    g0, g1 = before.grid, after.grid
    for code in (schelling.GROUP_A, schelling.GROUP_B):  # agents are conserved per group
        assert torch.equal((g0 == code).sum((1, 2)), (g1 == code).sum((1, 2)))
    stayed = (g0 != 0) & ~movers
    assert torch.equal(g1[stayed], g0[stayed])  # happy agents never move
    left = movers & (g1 == 0)
    arrived = (g0 == 0) & (g1 != 0)
    want = torch.minimum(movers.sum((1, 2)), (g0 == 0).sum((1, 2)))
    assert torch.equal(left.sum((1, 2)), want) and torch.equal(arrived.sum((1, 2)), want)
    assert torch.equal(after.moved, want)
    assert not (movers & (g1 != 0) & (g1 != g0)).any()  # a vacated cell stays empty this step


def test_more_movers_than_empty_cells_fill_every_empty_cell():
    model = schelling.build(agents=390, width=20, radius=1, min_similar=8)  # everyone unhappy
    sim = Simulation(model, members=2, seed=1, device="cpu", progress=False)
    after = schelling.relocate(sim.state, sim.params, sim.ctx)
    assert torch.equal(after.moved, torch.tensor([10, 10]))
    assert (after.grid != 0).sum().item() == 2 * 390


def test_segregation_emerges_and_happiness_rises():
    res = Simulation(schelling.build(), members=2, seed=0, device="cpu", progress=False).run(20)
    sim = res.series("similarity")
    assert (sim[:, 0] - 0.5).abs().max() < 0.03  # random placement: half the neighbours alike
    assert (sim[:, -1] > 0.75).all() and (res.series("happy")[:, -1] > 0.98).all()


def test_final_similarity_matches_the_sequential_mesa_model():
    """Tolerance: 0.03 on the mean final similarity (member spread ~0.007), 0.01 on happy."""
    peers = pytest.importorskip("populace.benchmarks.peers.schelling")
    size = dict(agents=1200, width=40, radius=1, min_similar=3)
    res = Simulation(schelling.build(**size), members=8, seed=0, device="cpu").run(20)
    ours = res.final()
    theirs = {"similarity": 0.0, "happy": 0.0}
    for seed in range(8):
        m = peers.Schelling(**size, seed=seed)
        for _ in range(20):
            m.step()
        theirs["similarity"] += m.similarity() / 8
        theirs["happy"] += m.happy() / 8
    assert ours["similarity"] == pytest.approx(theirs["similarity"], abs=0.03)
    assert ours["happy"] == pytest.approx(theirs["happy"], abs=0.01)


def test_same_seed_same_grid():
    model = schelling.build(agents=200, width=16, radius=1, min_similar=3)
    a = Simulation(model, members=2, seed=7, device="cpu").run(5).final_state.grid
    b = Simulation(model, members=2, seed=7, device="cpu").run(5).final_state.grid
    assert torch.equal(a, b)


def test_bad_schelling_inputs():
    with pytest.raises(ValueError, match="agents=500"):
        schelling.build(agents=500, width=20)
    with pytest.raises(ValueError, match="window"):
        schelling.build(agents=10, width=4, radius=2)
    with pytest.raises(ValueError, match="radius"):
        schelling.build(agents=10, width=10, radius=0)
    with pytest.raises(
        ParamError, match=r"schelling parameter 'min_similar' must lie in \[0, inf\]"
    ):
        Simulation(schelling.build(agents=10, width=10, min_similar=-1.0), device="cpu")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numba_step_equals_the_torch_step(dtype, monkeypatch):
    """The kernel against the torch ops over 10 steps: per-member thresholds, one member with
    more unhappy agents than empty cells."""
    pytest.importorskip("numba")
    from populace.kernels import segregation

    model = schelling.build(agents=200, width=20, radius=1).with_params(
        min_similar=torch.tensor([3.0, 5.0, 8.0])
    )

    def run():
        return Simulation(model, members=3, seed=2, device="cpu", dtype=dtype).run(10)

    calls = switch_kernel(monkeypatch, segregation, "step", on=True)
    kernel = run()
    assert len(calls) == 10
    for name in ("step", "counts"):  # the kernels cannot run
        switch_kernel(monkeypatch, segregation, name, on=False)
    reference = run()
    assert torch.equal(kernel.final_state.grid, reference.final_state.grid)
    assert kernel.metrics.equals(reference.metrics)
    moved = kernel.series("moved")[:, -1]
    assert moved[0] < moved[1] < moved[2] == 200  # 200 agents, 200 empty cells: all move
