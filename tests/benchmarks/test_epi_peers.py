"""The peers' sides (starsim, covasim, LASER) against the laws they were matched to.

They need the peers venv (``make setup-peers``; or ``POPULACE_PEERS_PYTHON`` naming its
interpreter) and are skipped without it: nothing of populace's is skipped here, the populace
side and the runner are tested in ``test_epi_compare.py`` with this venv.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from populace.benchmarks import epi_compare
from populace.benchmarks.peers import side
from populace.models.sir import final_size

ROOT = Path(__file__).resolve().parents[2]
PEERS = os.environ.get("POPULACE_PEERS_PYTHON", str(ROOT / ".venv-peers" / "bin" / "python"))

pytestmark = pytest.mark.skipif(
    not Path(PEERS).exists(), reason=f"peers venv absent ({PEERS}): run make setup-peers"
)

SIR = dict(agents=20_000, steps=150, warmup=2, beta=0.5, gamma=0.25, initial=20)


def run(target: str, **kwargs):
    out = side.spawn(target, kwargs, mode="1", python=PEERS, isolated=True)
    assert out["status"] == "ok", out.get("reason")
    assert "torch" not in out["threads"] and out["threads"].get("numba") == 1
    return out


@pytest.mark.slow
def test_laser_sir_has_populace_law_and_final_size():
    """LASER infects with 1 - exp(-beta I/N) and (matched) recovers after Geometric(gamma)
    steps, so its attack rate is the final size z = 1 - exp(-R0 z)."""
    rates = [run("epi_laser:sir", seed=s, **SIR)["outcomes"]["attack_rate"] for s in (0, 1)]
    assert sum(rates) / 2 == pytest.approx(final_size(2.0), abs=0.015)


@pytest.mark.slow
def test_starsim_sir_mixing_pool_matches_the_final_size():
    """starsim's pool is linear in I/N (beta I/N, not 1 - exp(-beta I/N)): a little above."""
    out = [run("epi_starsim:sir", seed=s, **SIR) for s in (0, 1)]
    rate = sum(o["outcomes"]["attack_rate"] for o in out) / 2
    assert final_size(2.0) - 0.005 < rate < final_size(2.0) + 0.03
    assert all(o["outcomes"]["active"] == 0 for o in out)
    assert out[0]["version"].startswith("3.")


@pytest.mark.slow
def test_starsim_network_sir_on_the_shared_graph_agrees_with_populace(tmp_path):
    n, rates = 20_000, {"starsim": [], "populace": []}
    for seed in (0, 1):
        graph = str(epi_compare.write_graph(n, 10.0, seed, tmp_path))
        kw = dict(agents=n, steps=200, warmup=2, seed=seed, graph=graph, initial=20)
        kw.update(epi_compare.NETWORK)
        rates["starsim"].append(run("epi_starsim:network_sir", **kw)["outcomes"]["attack_rate"])
        ours = side.spawn("epi_populace:network_sir", kw, mode="1", isolated=False)
        rates["populace"].append(ours["outcomes"]["attack_rate"])
    mean = {k: sum(v) / len(v) for k, v in rates.items()}
    assert mean["starsim"] == pytest.approx(mean["populace"], abs=0.03)


@pytest.mark.slow
def test_starsim_seir_with_vaccination_matches_its_final_size():
    """Half vaccinated all-or-nothing (efficacy 0.8) before an R0 = 3 SEIR epidemic."""
    from populace.epi import vaccination

    kw = dict(agents=20_000, steps=200, warmup=2, initial=20, **epi_compare.SEIR_VACCINATION)
    rates = [run("epi_starsim:seir_vaccination", seed=s, **kw)["outcomes"] for s in (0, 1)]
    want = vaccination.final_size(3.0, 0.5, 0.8, "all_or_nothing", seeded=20 / 20_000)
    assert sum(r["attack_rate"] for r in rates) / 2 == pytest.approx(want, abs=0.02)
    assert all(r["active"] == 0 for r in rates)


@pytest.mark.slow
def test_covasim_default_runs_to_the_end_with_a_large_epidemic():
    out = run("epi_starsim:covasim", agents=5_000, steps=120, warmup=2, seed=0, initial=10)
    assert out["version"].startswith("4.") and out["steps_done"] == 120
    assert 0.5 < out["outcomes"]["attack_rate"] <= 1
