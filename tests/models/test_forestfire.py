from collections import deque

import pytest
import torch

from populace.engine import ParamError, Simulation
from populace.models import forestfire as ff


def flood_fill(trees: torch.Tensor) -> torch.Tensor:
    """Trees 4-connected to column 0 (bounded grid), by breadth-first search. trees: [H, W]."""
    H, W = trees.shape
    burnt = torch.zeros(H, W, dtype=torch.bool)
    todo = deque((y, 0) for y in range(H) if trees[y, 0])
    for y, x in todo:
        burnt[y, x] = True
    while todo:
        y, x = todo.popleft()
        for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
            if 0 <= ny < H and 0 <= nx < W and trees[ny, nx] and not burnt[ny, nx]:
                burnt[ny, nx] = True
                todo.append((ny, nx))
    return burnt


def burn_out(model, members=3, seed=0):
    sim = Simulation(model, members=members, seed=seed, device="cpu", progress=False)
    start = sim.state.grid.clone()
    res = sim.run(20)
    while (res.final_state.grid == ff.BURNING).any():
        assert sim.step < 2_000, "fire did not stop"
        res = sim.run(20)
    return start, res


@pytest.mark.parametrize("density", [0.55, 0.6, 0.75])
def test_burnt_set_is_the_cluster_connected_to_the_first_column(density):
    start, res = burn_out(ff.build(agents=30 * 30, density=density))
    for b in range(start.shape[0]):
        want = flood_fill(start[b] != ff.EMPTY)
        got = res.final_state.grid[b] == ff.BURNT
        assert torch.equal(got, want)
        assert ((res.final_state.grid[b] == ff.FINE) == ((start[b] != ff.EMPTY) & ~want)).all()


def test_front_moves_one_cell_per_step_in_a_full_forest():
    res = Simulation(ff.build(agents=100, density=1.0), device="cpu").run(4)
    grid = res.final_state.grid[0]
    assert (grid[:, :4] == ff.BURNT).all() and (grid[:, 4] == ff.BURNING).all()
    assert (grid[:, 5:] == ff.FINE).all()
    assert torch.equal(res.series("burning")[0], torch.full((5,), 10))


def test_same_forest_burns_the_same_trees_in_mesa():
    """The sequential Mesa model ends with exactly the same burnt trees from the same forest."""
    peers = pytest.importorskip("populace.benchmarks.peers.forestfire")
    start, res = burn_out(ff.build(agents=25 * 25, density=0.65), members=2, seed=3)
    for b in range(2):
        trees = (start[b] != ff.EMPTY).tolist()
        mesa = peers.ForestFire(agents=25 * 25, seed=b, trees=trees)
        steps = 0
        while mesa.burning():
            mesa.step()
            steps += 1
        burnt = torch.zeros(25, 25, dtype=torch.bool)
        for tree in mesa.agents:
            x, y = tree.pos
            burnt[y, x] = tree.condition == peers.BURNT
        assert torch.equal(burnt, res.final_state.grid[b] == ff.BURNT)
        frac = res.series("burnt_fraction")[b, -1].item()
        assert mesa.burnt_fraction() == pytest.approx(frac, abs=1e-6)  # float32 metric


def test_tree_count_is_conserved_and_burnt_never_falls():
    res = Simulation(ff.build(agents=400, density=0.7), members=2, device="cpu").run(10)
    for b in range(2):
        mb = res.metrics.filter(res.metrics["member"] == b)
        assert (mb["fine"] + mb["burning"] + mb["burnt"]).n_unique() == 1
        assert (mb["burnt"].diff().drop_nulls() >= 0).all()


def test_bad_forestfire_inputs():
    with pytest.raises(ValueError, match="not a square grid"):
        ff.build(agents=1000)
    with pytest.raises(ParamError, match=r"forestfire parameter 'density' must lie in \[0, 1\]"):
        Simulation(ff.build(agents=100, density=1.5), device="cpu")
