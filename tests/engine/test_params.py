import math

import pytest
import torch

from populace.engine import ParamError, Schedule, member_view
from tests.conftest import DecayParams


def test_schedule_is_piecewise_constant():
    s = Schedule([1.0, 2.0, 3.0], (0, 10, 25))
    assert [float(s.at(t)) for t in (0, 9, 10, 24, 25, 1000)] == [1, 1, 2, 2, 3, 3]
    w = Schedule.every([0.5, 0.7], period=7)
    assert w.starts == (0, 7) and float(w.at(6)) == 0.5 and float(w.at(7)) == pytest.approx(0.7)
    for bad in (0, -7, 1.5):
        with pytest.raises(ParamError, match="period must be a positive integer"):
            Schedule.every([0.5, 0.7], period=bad)


@pytest.mark.parametrize(
    "values, starts",
    [([1.0, 2.0], (0,)), ([1.0, 2.0], (1, 3)), ([1.0, 2.0], (0, 0)), ([[[1.0]]], (0,))],
)
def test_bad_schedules_raise(values, starts):
    with pytest.raises(ParamError, match="Schedule"):
        Schedule(values, starts)


def test_schedule_gradient_reaches_each_piece():
    values = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    s = Schedule(values, (0, 2, 4))
    total = sum(s.at(t) for t in range(6))  # two steps per piece
    total.backward()
    assert values.grad.tolist() == [2.0, 2.0, 2.0]


def test_params_to_at_and_replace():
    p = DecayParams(rate=Schedule([0.1, 0.2], (0, 5))).to("cpu", torch.float64)
    assert p.noise.dtype == torch.float64 and p.rate.values.dtype == torch.float64
    assert float(p.at(7).rate) == pytest.approx(0.2)
    assert isinstance(p.rate, Schedule)  # `at` returns a resolved copy
    with pytest.raises(ParamError, match=r"unknown parameter\(s\) \['rte'\].*rate"):
        p.replace(rte=0.3)


@pytest.mark.parametrize("bad", [math.nan, math.inf, torch.tensor([0.1, math.nan])])
def test_non_finite_params_raise_naming_the_param(bad):
    with pytest.raises(ParamError, match="'rate'.*NaN"):
        DecayParams(rate=bad).to("cpu")


def test_wrong_param_types_raise():
    with pytest.raises(ParamError, match="'rate'"):
        DecayParams(rate="fast").to("cpu")
    with pytest.raises(ParamError, match=r"'rate'.*shape"):
        DecayParams(rate=torch.zeros(2, 2)).to("cpu")


def test_grad_survives_to():
    rate = torch.tensor(0.3, requires_grad=True)
    p = DecayParams(rate=rate).to("cpu", torch.float64)
    assert p.requires_grad() and p.rate.dtype == torch.float64
    p.rate.backward()
    assert rate.grad == 1.0


def test_member_view():
    assert member_view(torch.tensor(2.0), 3).shape == ()
    assert member_view(torch.arange(4.0), 3).shape == (4, 1, 1)


def test_check_range_names_the_param_and_its_bound():
    p = DecayParams(rate=Schedule([0.1, -0.2], (0, 5)), noise=1.5)
    with pytest.raises(ParamError, match="decay parameter 'rate' must be >= 0"):
        p.check_range("decay")
    with pytest.raises(ParamError, match=r"'noise' must lie in \[0, 1\] \(a probability\)"):
        p.check_range("decay", ("noise",), 0, 1, "a probability")
    DecayParams(rate=0.1, noise=1.0).check_range("decay", high=1)  # bounds are inclusive
