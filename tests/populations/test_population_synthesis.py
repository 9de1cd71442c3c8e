"""IPF against the analytic independence solution, integerisation totals, marginal errors."""

import polars as pl
import pytest
import torch

from populace.populations import MarginalError, agents_from_table, fit_joint, integerise, ipf


def test_ipf_two_way_matches_independence_solution():
    rows = torch.tensor([10.0, 30.0, 60.0], dtype=torch.float64)
    cols = torch.tensor([25.0, 75.0], dtype=torch.float64)
    joint, sweeps, res = ipf(torch.ones(3, 2, dtype=torch.float64), [((0,), rows), ((1,), cols)])
    assert res < 1e-10 and sweeps <= 3
    torch.testing.assert_close(joint, torch.outer(rows, cols) / 100)


def test_ipf_three_way_structural_zeros_and_axis_order():
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(4, 3, 5, generator=g, dtype=torch.float64)
    truth[0, 1] = 0  # structural zeros kept
    prior = (truth > 0).double()
    targets = [((0, 1), truth.sum(2)), ((2, 0), truth.sum(1).T), ((1, 2), truth.sum(0))]
    joint, _, res = ipf(prior, targets, tol=1e-11)
    assert res < 1e-10
    assert (joint[0, 1] == 0).all()
    for axes, target in targets:
        drop = [a for a in range(3) if a not in axes]
        got = joint.sum(drop).permute([sorted(axes).index(a) for a in axes])
        torch.testing.assert_close(got, target)


def test_ipf_rejects_bad_target_shape():
    with pytest.raises(ValueError, match="shape"):
        ipf(torch.ones(3, 2), [((0,), torch.ones(2))])


@pytest.mark.parametrize("stochastic", [False, True])
def test_integerise_preserves_group_totals_exactly(stochastic):
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        w = torch.rand(200, generator=g, dtype=torch.float64) * 7
        group = torch.randint(0, 9, (200,), generator=g)
        group[:9] = torch.arange(9)  # every group present
        totals = torch.randint(0, 500, (9,), generator=g)
        counts = integerise(w, group, totals, generator=g if stochastic else None)
        assert counts.dtype == torch.long and (counts >= 0).all()
        got = torch.zeros(9, dtype=torch.long).index_add_(0, group, counts)
        assert torch.equal(got, totals)
        sums = torch.zeros(9, dtype=torch.float64).index_add_(0, group, w)
        scaled = w * (totals / sums)[group]
        assert (counts >= scaled.floor()).all() and (counts <= scaled.ceil()).all()


def test_integerise_default_total_is_rounded_sum():
    w = torch.tensor([0.4, 0.4, 0.4, 1.9], dtype=torch.float64)
    counts = integerise(w)
    assert int(counts.sum()) == round(float(w.sum()))
    assert counts.tolist() == [1, 0, 0, 2]  # largest remainders, ties to the lower index


@pytest.mark.parametrize(
    "weights",
    [
        [0.2, 0.5, 1.3, 2.0],  # one unit left over
        [0.9, 0.9, 0.2],  # two left over: weighted sampling without replacement is biased here
        [0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.7, 0.5],
    ],
)
def test_integerise_stochastic_is_unbiased(weights):
    w = torch.tensor(weights, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([integerise(w, generator=g) for _ in range(4000)])
    assert (draws.sum(1) == round(sum(weights))).all()
    assert ((draws >= w.floor()) & (draws <= w.ceil())).all()
    se = (w.frac() * (1 - w.frac()) / draws.shape[0]).sqrt()
    assert ((draws.double().mean(0) - w).abs() <= 4.5 * se + 1e-12).all()


def test_integerise_stochastic_keeps_group_totals():
    w = torch.tensor([0.4, 0.4, 0.4, 1.9, 0.25, 0.25, 0.5], dtype=torch.float64)
    group = torch.tensor([0, 0, 0, 0, 2, 2, 2])
    totals = torch.tensor([3, 0, 2])
    g = torch.Generator().manual_seed(1)
    draws = torch.stack([integerise(w, group, totals, generator=g) for _ in range(2000)])
    assert (draws[:, :4].sum(1) == 3).all() and (draws[:, 4:].sum(1) == 2).all()
    scaled = torch.cat([w[:4] * 3 / w[:4].sum(), w[4:] * 2 / w[4:].sum()])
    se = (scaled.frac() * (1 - scaled.frac()) / draws.shape[0]).sqrt()
    assert ((draws.double().mean(0) - scaled).abs() <= 4.5 * se + 1e-12).all()


def test_integerise_rejects_bad_weights():
    with pytest.raises(ValueError, match="weight 1"):
        integerise(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="zero weight"):
        integerise(torch.zeros(2), group_totals=torch.tensor([3]))


CATS = {"area": ["a", "b"], "age": ["young", "old"]}


def test_fit_joint_and_agents_preserve_totals():
    areas = pl.DataFrame({"area": ["a", "b"], "count": [30.0, 70.0]})
    ages = pl.DataFrame({"age": ["young", "old"], "count": [40.0, 60.0]})
    joint = fit_joint([areas, ages], CATS)
    assert joint["count"].sum() == pytest.approx(100)
    row = joint.filter((pl.col("area") == "b") & (pl.col("age") == "old"))
    assert row["count"].item() == pytest.approx(42.0)
    counts = integerise(torch.tensor(joint["count"].to_list()))
    table = joint.with_columns(pl.Series("count", counts.tolist()))
    attrs, book = agents_from_table(table, CATS)
    assert book == {"area": ("a", "b"), "age": ("young", "old")}
    assert attrs["area"].dtype == torch.int8 and attrs["area"].numel() == 100
    assert int((attrs["area"] == 1).sum()) == 70


def test_fit_joint_warns_with_size_of_disagreement_and_rescales():
    areas = pl.DataFrame({"area": ["a", "b"], "count": [30.0, 70.0]})
    ages = pl.DataFrame({"age": ["young", "old"], "count": [44.0, 66.0]})
    with pytest.warns(UserWarning, match=r"110.*100.*\+10"):
        joint = fit_joint([areas, ages], CATS)
    assert joint["count"].sum() == pytest.approx(100)


@pytest.mark.parametrize(
    "table, match",
    [
        (pl.DataFrame({"area": ["a", "b"], "n": [1.0, 2.0]}), "no count column"),
        (pl.DataFrame({"area": ["a", "zz"], "count": [1.0, 2.0]}), "row 1: unknown area label"),
        (pl.DataFrame({"area": ["a", "b"], "count": [1.0, -2.0]}), "row 1: count -2.0"),
        (pl.DataFrame({"area": ["a", "b"], "count": [1.0, float("nan")]}), "row 1: count nan"),
        (pl.DataFrame({"area": ["a", "b"], "count": ["1", "x"]}), "is String"),
        (pl.DataFrame({"town": ["a", "b"], "count": [1.0, 2.0]}), "not categories"),
        (pl.DataFrame({"area": ["a", "a"], "count": [1.0, 2.0]}), "row 1: duplicate"),
    ],
)
def test_fit_joint_bad_marginals_name_the_problem(table, match):
    with pytest.raises(MarginalError, match=match):
        fit_joint([table], CATS)
