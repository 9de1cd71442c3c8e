"""Kuramoto: the Lorentzian mean-field theory r = sqrt(1 - K_c/K) and incoherence below K_c."""

from __future__ import annotations

import math

import pytest
import torch

from populace import models
from populace.engine import ParamError, Simulation
from populace.models import kuramoto


@pytest.fixture(autouse=True)
def one_thread():
    """These runs are memory-bound; on the shared 2-core CI box one thread is several times
    faster than two competing with other processes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _time_averaged_r(coupling, agents, steps, initial, dt, average_last, seed=0):
    model = kuramoto.build(agents=agents, gamma=0.5, initial=initial, coupling=coupling, dt=dt)
    result = Simulation(model, seed=seed, device="cpu", progress=False).run(steps)
    r = result.series("r")[0]
    return float(r[-average_last:].mean())


def test_lorentzian_order_parameter_above_critical_coupling():
    # gamma = 0.5 → K_c = 1; K = 2 → r = sqrt(1/2) = 0.707 (Kuramoto 1975)
    want = kuramoto.lorentzian_order(2.0, 0.5)
    assert want == pytest.approx(math.sqrt(0.5))
    got = _time_averaged_r(2.0, 100_000, 200, "synchronized", dt=0.1, average_last=100)
    assert abs(got - want) < 0.03


def test_incoherent_below_critical_coupling():
    got = _time_averaged_r(0.5, 100_000, 120, "uniform", dt=0.2, average_last=60)
    assert got < 0.05


def test_runs_in_zoo_batched_and_reproducible():
    assert "kuramoto" in models.ZOO
    model = kuramoto.build(
        agents=500, distribution="gaussian", initial="synchronized", coupling=3.0
    )
    a = Simulation(model, members=2, seed=4, device="cpu", progress=False).run(20)
    b = Simulation(model, members=2, seed=4, device="cpu", progress=False).run(20)
    assert a.metrics.equals(b.metrics)
    r = a.series("r")
    assert r.shape == (2, 21) and ((r >= 0) & (r <= 1 + 1e-6)).all()
    # gaussian sigma = 0.5: K_c = sqrt(8/pi)/2 = 0.8 < 3, so the oscillators lock
    assert float(r[:, -1].min()) > 0.8
    theta = a.final_state.theta
    assert ((theta >= 0) & (theta < 2 * math.pi + 1e-6)).all()


def test_member_alone_equals_member_in_batch():
    model = kuramoto.build(agents=300)
    batch = Simulation(model, members=3, seed=9, device="cpu", progress=False)
    alone = Simulation(model, seeds=[batch.rng.seeds[2]], device="cpu", progress=False)
    rb, ra = batch.run(10).series("r"), alone.run(10).series("r")
    torch.testing.assert_close(rb[2], ra[0])


def test_bad_options_raise():
    with pytest.raises(ValueError, match="distribution"):
        kuramoto.build(agents=10, distribution="cauchy-ish")
    with pytest.raises(ValueError, match="initial"):
        kuramoto.build(agents=10, initial="random")
    with pytest.raises(ValueError, match="gamma"):
        kuramoto.build(agents=10, gamma=0.0)
    with pytest.raises(ParamError, match=r"kuramoto parameter 'dt' must lie in \[0, inf\]"):
        Simulation(kuramoto.build(agents=10, dt=-0.1), device="cpu")
    with pytest.raises(ParamError, match="kuramoto parameter 'dt' must be > 0"):
        Simulation(kuramoto.build(agents=10, dt=0.0), device="cpu")
