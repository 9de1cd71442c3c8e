"""Network SIR/SEIR: bond percolation final size on Erdős–Rényi, layers, interventions."""

from __future__ import annotations

import networkx as nx
import pytest
import torch

from populace import models
from populace.engine import Schedule, Simulation
from populace.models import network_sir
from populace.populations.graphs import erdos_renyi, from_networkx


@pytest.fixture(autouse=True)
def one_thread():
    """These runs are memory-bound; on the shared 2-core CI box one thread is several times
    faster than two competing with other processes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_final_size_matches_bond_percolation_on_erdos_renyi():
    # one step of infectiousness (gamma = 1): each edge transmits once with probability T
    n, k, t = 100_000, 6.0, 1.0 / 3.0
    model = network_sir.build(
        agents=n, degree=k, graph_seed=1, initial_infected=20, transmissibility=t, gamma=1.0
    )
    result = Simulation(model, members=2, seed=0, device="cpu", progress=False).run(60)
    assert result.series("I")[:, -1].sum() == 0  # the outbreak is over
    final = result.series("R")[:, -1].double() / n
    want = network_sir.percolation_final_size(k, t)
    assert want == pytest.approx(0.797, abs=1e-3)
    assert (final - want).abs().max() < 0.02


def test_no_outbreak_when_transmissibility_zero_and_full_when_one():
    model = network_sir.build(agents=2_000, degree=5, initial_infected=5, gamma=1.0)
    none = Simulation(model.with_params(transmissibility=0.0), seed=1, progress=False).run(5)
    assert none.final()["R"] == 5
    # T = 1, gamma = 1: the outbreak reaches exactly the components of the seeds
    layer = erdos_renyi(2_000, 5.0, seed=0)
    full = Simulation(
        model.with_params(transmissibility=1.0), seed=1, device="cpu", progress=False
    ).run(200)
    seeds = Simulation(model, seed=1, device="cpu", progress=False).state.health[0, 1] == 1
    g = nx.Graph()
    g.add_nodes_from(range(2_000))
    crow, col = layer.crow_indices(), layer.col_indices()
    for i in range(2_000):
        g.add_edges_from((i, int(j)) for j in col[crow[i] : crow[i + 1]])
    reached = set()
    for s in seeds.nonzero().flatten().tolist():
        reached |= nx.node_connected_component(g, s)
    assert full.final()["R"] == len(reached)


def test_layer_scale_schedule_closes_a_layer():
    # two disjoint layers: "home" is empty of cross-links, "school" carries all contacts
    n = 1_000
    school = erdos_renyi(n, 8.0, seed=3)
    home = torch.sparse_csr_tensor(
        torch.zeros(n + 1, dtype=torch.int64),
        torch.zeros(0, dtype=torch.int64),
        torch.zeros(0),
        size=(n, n),
    )
    model = network_sir.build(
        agents=n,
        graph={"home": home, "school": school},
        initial_infected=10,
        transmissibility=0.5,
        gamma=0.5,
    )
    assert set(model.params.names()) >= {"home", "school", "transmissibility"}
    closed = model.with_params(school=Schedule([0.0], (0,)))
    r = Simulation(closed, seed=0, device="cpu", progress=False).run(30).final()
    assert r["S"] == n - 10  # nobody else was infected
    open_ = Simulation(model, seed=0, device="cpu", progress=False).run(30).final()
    assert open_["S"] < n / 2


def test_seir_passes_through_exposed_and_networkx_graphs_work():
    g = nx.watts_strogatz_graph(400, 6, 0.1, seed=2)
    model = network_sir.build(
        agents=400,
        graph=g,
        seir=True,
        initial_infected=4,
        transmissibility=0.3,
        sigma=0.5,
        gamma=0.3,
    )
    result = Simulation(model, members=2, seed=2, device="cpu", progress=False).run(40)
    assert {"S", "E", "I", "R"} <= set(result.metrics.columns)
    assert result.series("E").max() > 0
    total = sum(result.series(c) for c in "SEIR")
    assert (total == 400).all()


def test_zoo_and_errors():
    assert "network_sir" in models.ZOO
    with pytest.raises(ValueError, match="unknown graph"):
        network_sir.build(agents=10, graph="small_world")
    with pytest.raises(ValueError, match=r"\[10, 10\]"):
        network_sir.build(agents=10, graph=from_networkx(nx.path_graph(5)))
    model = network_sir.build(agents=50, degree=3)
    with pytest.raises(ValueError, match=r"'transmissibility' must lie in \[0, 1\]"):
        Simulation(model.with_params(transmissibility=1.5), progress=False)
    layer = erdos_renyi(10, 2.0, 0)
    for bad in ("values", "check", "replace", "beta-2"):
        with pytest.raises(ValueError, match=f"layer name '{bad}'"):
            network_sir.build(agents=10, graph={bad: layer, "home": layer})


def test_a_layer_closed_in_one_area_only_stops_that_areas_transmission_on_it():
    from populace.engine import Data
    from populace.engine.intervention import SetParam

    n = 2_000
    area = torch.arange(n) % 2  # two areas, mixed by the contacts
    layer = erdos_renyi(n, 8.0, seed=5)
    model = network_sir.build(
        agents=n,
        graph={"school": layer},
        data=Data({"area": area}, axes={"area": ("east", "west")}),
        layer_axis="area",
        initial_infected=20,
        transmissibility=0.3,
        gamma=0.3,
    )
    assert model.params.declarations()["school"].axes == ("area",)
    closed = SetParam("school", 0.0, start=0, where={"area": "west"}).apply(
        model.params, model.data
    )
    run = Simulation(model, params=closed, members=2, seed=1, device="cpu").run(40)
    ever = 1 - run.final_state.health[:, 0]  # [B, N] ever infected
    seeded = Simulation(model, params=closed, members=2, seed=1, device="cpu").state.health[:, 1]
    west = area == 1
    # westerners miss every school contact: only the seeded ones were ever infected
    assert torch.equal(ever[:, west], seeded[:, west])
    assert (ever[:, ~west].sum(dim=1) > 100).all()  # the east still has an epidemic
    with pytest.raises(ValueError, match="layer_axis 'borough' is not an axis"):
        network_sir.build(agents=n, graph={"school": layer}, layer_axis="borough")
