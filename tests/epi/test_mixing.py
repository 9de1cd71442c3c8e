"""Age mixing: the proportionate matrix is well mixed, a matrix's R0, bad matrices refused."""

from __future__ import annotations

import pytest
import torch

from populace.engine import ParamError, Simulation
from populace.epi import severity, vaccination
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


@pytest.mark.slow
def test_age_mixing_final_size_follows_the_contact_matrix():
    """Only the 75+ band meets (itself, 0.4 contacts a day): the other bands stay uninfected
    after their seeds, and the 75+ epidemic has the final size of R0 = beta M[a, a] D_a."""
    bands = 10
    matrix = torch.zeros(bands, bands)
    matrix[9, 9] = 0.4
    model = covid.build(
        agents=30_000,
        population="well_mixed",
        mixing="age",
        initial_infected=600,
        by=("age",),
        beta=0.5,
        contact_matrix=matrix,
    )
    res = Simulation(model, members=2, seed=0).run(200)
    m = res.metrics
    labels = model.data.labels("age")
    later = m.filter(m["step"] > 0)
    for label in labels[:-1]:
        assert float(later[f"new_infections_{label}"].sum()) == 0, label
    size = int((model.data.age == 9).sum())
    seeds = float(m.filter(m["step"] == 0)["new_infections_75+"].mean())
    attack = float(m["new_infections_75+"].sum()) / 2 / size
    days = severity.course().infectious_days(model.params)[9]
    r0 = 0.5 * 0.4 * float(days)
    assert 1.4 < r0 < 2.2
    want = vaccination.final_size(r0, 0.0, 0.0, seeded=seeds / size)
    assert abs(attack - want) < 0.03, (attack, want)


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
