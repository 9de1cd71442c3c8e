"""Metapopulation SIR: isolated regions stay clean; full mixing gives the well-mixed final size."""

from __future__ import annotations

import pytest
import torch

from populace import models
from populace.engine import Schedule, Simulation
from populace.models import metapop, sir


@pytest.fixture(autouse=True)
def one_thread():
    """These runs are memory-bound; on the shared 2-core CI box one thread is several times
    faster than two competing with other processes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_isolated_regions_stay_uninfected():
    model = metapop.build(agents=6_000, regions=3, initial_infected=20, beta=0.6, gamma=0.2)
    result = Simulation(model.with_params(travel=0.0), seed=0, device="cpu", progress=False).run(
        120
    )
    assert result.final()["regions_reached"] == 1
    # region 0 alone is a well-mixed SIR with R0 = 3
    assert result.final()["R"] / 2_000 == pytest.approx(sir.final_size(3.0), abs=0.04)


def test_travel_spreads_to_every_region():
    model = metapop.build(
        agents=6_000, regions=3, stay=0.9, initial_infected=20, beta=0.6, gamma=0.2
    )
    result = Simulation(model, seed=0, device="cpu", progress=False).run(150)
    assert result.final()["regions_reached"] == 3


@pytest.mark.parametrize("regions", [1, 4])
def test_full_mixing_matches_well_mixed_final_size(regions):
    # stay = 1/R: everyone spends equal time everywhere, so regions do not matter
    n = 20_000
    model = metapop.build(
        agents=n,
        regions=regions,
        stay=1 / regions,
        initial_infected=50,
        seed_region=None,
        beta=0.5,
        gamma=0.25,
    )
    result = Simulation(model, members=2, seed=3, device="cpu", progress=False).run(200)
    final = result.series("R")[:, -1].double() / n
    assert (final - sir.final_size(2.0)).abs().max() < 0.03


def test_regional_force_is_prevalence_where_residents_stay():
    m = torch.eye(3).unsqueeze(0)
    infectious = torch.tensor([[1.0, 5.0, 0.0]])
    residents = torch.tensor([[10.0, 10.0, 20.0]])
    force = metapop.regional_force(m, infectious, residents)
    torch.testing.assert_close(force, infectious / residents)
    # travel schedule: 0 at first, then as built
    eff = metapop.effective_mobility(metapop.uniform_mobility(3, 0.5), torch.tensor(0.0))
    torch.testing.assert_close(eff[0], torch.eye(3))


def test_travel_schedule_and_errors():
    assert "metapop" in models.ZOO
    model = metapop.build(agents=900, regions=3, initial_infected=5, beta=0.8, gamma=0.2)
    later = model.with_params(travel=Schedule([0.0, 1.0], (0, 1000)))
    res = Simulation(later, seed=0, device="cpu", progress=False).run(60)
    assert res.final()["regions_reached"] == 1
    with pytest.raises(ValueError, match="sum to 1"):
        metapop.build(agents=100, regions=2, mobility=torch.ones(2, 2))
    with pytest.raises(ValueError, match="shape"):
        metapop.build(agents=100, regions=2, mobility=torch.eye(3))
    with pytest.raises(ValueError, match="regions"):
        metapop.build(agents=5, regions=10)
