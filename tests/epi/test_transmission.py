"""Source attribution: each term of the hazard is drawn in proportion to its size."""

from __future__ import annotations

import pytest
import torch

from populace.epi import transmission
from populace.populations.graphs import csr_layer


def test_sources_are_drawn_in_proportion_to_their_share_of_the_hazard():
    # agent 0 meets 1 (weight 1) and 2 (weight 2) on a layer, and everyone in a mixing channel
    layer = csr_layer(
        torch.tensor([0, 2, 3, 4, 4]), torch.tensor([1, 2, 0, 0]), torch.tensor([1.0, 2, 1, 2]), 4
    )
    members = 3000
    x = torch.tensor([0.0, 1.0, 1.0, 1.0], dtype=torch.float64).expand(members, 4)
    ones = torch.ones(members, 4, dtype=torch.float64)
    channels = transmission.Channels(
        infectiousness=x,
        layers=[layer],
        factors=[ones],
        norm=1.0,
        mixing="well_mixed",
        mix_factor=ones,
    )
    infected = torch.zeros(members, 4, dtype=torch.float64)
    infected[:, 0] = 1
    u = torch.zeros(members, 4, dtype=torch.float64)
    u[:, 0] = (torch.arange(members, dtype=torch.float64) + 0.5) / members  # a fine grid
    source, channel = transmission.attribute(infected, channels, u)
    # hazard terms: layer 1 -> 1, layer 2 -> 2, mixing 3/4 (a third each from 1, 2, 3)
    total = 1 + 2 + 0.75
    share = {
        (1, 0): 1 / total,
        (2, 0): 2 / total,
        (1, 1): 0.25 / total,
        (2, 1): 0.25 / total,
        (3, 1): 0.25 / total,
    }
    for (j, c), want in share.items():
        got = float(((source[:, 0] == j) & (channel[:, 0] == c)).double().mean())
        assert got == pytest.approx(want, abs=2 / members), (j, c)
    assert bool((source[:, 1:] == -1).all()) and bool((channel[:, 1:] == -1).all())


def test_generations_and_reproduction_numbers_follow_the_sources():
    seeded = torch.tensor([[1.0, 0, 0, 0, 0]])
    state = transmission.TransmissionState(**transmission.initial(seeded))
    assert state.generation.tolist() == [[0, -1, -1, -1, -1]]

    class Ctx:
        step = 3

    infected = torch.tensor([[0.0, 1, 1, 0, 0]])
    source = torch.tensor([[-1, 0, 0, -1, -1]])
    channel = torch.tensor([[-1, 0, 0, -1, -1]], dtype=torch.int8)
    state = state.replace(**transmission.record(state, infected, source, channel, Ctx()))
    infected = torch.tensor([[0.0, 0, 0, 1, 0]])
    source = torch.tensor([[-1, -1, -1, 2, -1]])
    state = state.replace(**transmission.record(state, infected, source, channel, Ctx()))
    assert state.generation.tolist() == [[0, 1, 1, 2, -1]]
    r = transmission.reproduction_by_generation(state, 2)
    assert r.tolist() == [[2.0, 0.5]]
    assert transmission.secondary_cases(state).tolist() == [[2, 0, 1, 0, 0]]
