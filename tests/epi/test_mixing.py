"""Age mixing: the proportionate matrix is well mixed, a matrix's R0, bad matrices refused."""

from __future__ import annotations

import pytest
import torch

from populace.engine import ParamError, Simulation
from populace.epi.contact import age_mixed, check_matrix, proportionate_matrix, well_mixed
from populace.models import covid

LABELS = ("0-17", "18-64", "65+")


def test_the_proportionate_matrix_is_well_mixing():
    g = torch.Generator().manual_seed(0)
    age = torch.randint(0, 3, (500,), generator=g)
    x = (torch.rand(2, 500, generator=g) < 0.1).double()
    w = torch.rand(2, 500, generator=g, dtype=torch.float64)
    m = proportionate_matrix(age, 3).double()
    got = age_mixed(x, age, m, torch.tensor(0.3, dtype=torch.float64), w)
    want = well_mixed(x, torch.tensor(0.3, dtype=torch.float64), w)
    assert torch.allclose(got, want)


def test_age_mixing_final_size_follows_the_next_generation_matrix():
    """Two groups that never meet: only the seeded band has an epidemic."""
    bands = 10
    matrix = torch.zeros(bands, bands)
    matrix[9, 9] = 1.0  # only 75+ agents meet (each other)
    model = covid.build(
        agents=8000,
        population="well_mixed",
        mixing="age",
        initial_infected=0,
        by=("age",),
        beta=0.5,
        contact_matrix=matrix,
        vax_coverage0=0.0,
    )
    res = Simulation(model, members=1, seed=0).run(5)
    assert float(res.series("new_infections").sum()) == 0  # nobody seeded, nobody infected
    seeded = covid.build(
        agents=8000,
        population="well_mixed",
        mixing="age",
        initial_infected=400,
        by=("age",),
        beta=0.5,
        contact_matrix=matrix,
    )
    res = Simulation(seeded, members=1, seed=0).run(60)
    m = res.metrics
    labels = seeded.data.labels("age")
    seeds_by_band = m.filter(m["step"] == 0)
    later = m.filter(m["step"] > 0)
    for label in labels[:-1]:
        assert float(later[f"new_infections_{label}"].sum()) == 0, label
    assert float(later["new_infections_75+"].sum()) > 0
    assert float(seeds_by_band["new_infections"].sum()) == 400


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (torch.ones(2, 2), r"shape \(2, 2\), expected \[3, 3\].*0-17, 18-64, 65\+"),
        (torch.tensor([[1.0, -0.5, 0], [0, 1, 0], [0, 0, 1]]), r"-0.5 at \[0-17, 18-64\]"),
        (torch.full((3, 3), float("nan")), "NaN"),
    ],
)
def test_bad_matrices_are_refused_naming_the_problem(matrix, message):
    with pytest.raises(ValueError, match=message):
        check_matrix(matrix, LABELS)


def test_the_model_refuses_a_bad_contact_matrix_before_the_run():
    with pytest.raises(ValueError, match=r"contact_matrix: shape \(3, 3\), expected \[10, 10\]"):
        covid.build(
            agents=300, population="well_mixed", mixing="age", contact_matrix=torch.ones(3, 3)
        )
    with pytest.raises(ValueError, match="contacts must be >= 0"):
        covid.build(
            agents=300, population="well_mixed", mixing="age", contact_matrix=-torch.ones(10, 10)
        )
    model = covid.build(agents=300, population="well_mixed", mixing="age")
    with pytest.raises(ParamError, match=r"'contact_matrix' must lie in \[0, inf\]"):
        Simulation(model.with_params(contact_matrix=-torch.ones(10, 10)), members=1)
