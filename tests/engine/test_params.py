import dataclasses
import math

import pytest
import torch

from populace.engine import ParamError, Params, Schedule, member_view, param, per_agent
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
    [
        ([1.0, 2.0], (0,)),
        ([1.0, 2.0], (1, 3)),
        ([1.0, 2.0], (0, 0)),
        ([1.0, 2.0], (0, 1.5)),  # a start between steps
        ([], ()),
        ("fast", (0,)),
    ],
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


def test_declared_bounds_are_checked_naming_the_param_and_its_bound():
    p = DecayParams(rate=Schedule([0.1, -0.2], (0, 5))).to("cpu")
    bound = r"decay parameter 'rate' must lie in \[0, inf\] \(1/step\)"
    with pytest.raises(ParamError, match=bound):
        p.validate("decay")
    DecayParams(rate=0.0, noise=1.0).to("cpu").validate("decay")  # bounds are inclusive
    decl = DecayParams.declarations()["rate"]
    assert (decl.low, decl.high, decl.unit, decl.default) == (0, None, "1/step", 0.1)


def test_a_value_that_overflows_the_run_dtype_is_refused():
    DecayParams(rate=1e39).to("cpu", torch.float64)  # fine in float64
    with pytest.raises(ParamError, match="'rate': NaN/Inf value 1e\\+39 in float32"):
        DecayParams(rate=1e39).to("cpu", torch.float32)
    with pytest.raises(ParamError, match="'rate': schedule has NaN/Inf values in float32"):
        DecayParams(rate=Schedule([0.1, 1e39], (0, 2))).to("cpu", torch.float32)


def test_schedule_at_refuses_a_negative_step():
    with pytest.raises(ParamError, match="step must be >= 0"):
        Schedule([1.0], (0,)).at(-1)


@dataclasses.dataclass(frozen=True)
class AreaParams(Params):
    rate: float | torch.Tensor = param(0.5, low=0, high=1, axes=("area",), doc="per area")
    base: float | torch.Tensor = param(1.0)


def test_axis_params_take_scalar_per_axis_or_per_member_values():
    axes = {"area": 3}
    p = AreaParams().to("cpu", torch.float64, axes=axes)
    assert p.rate.shape == (3,) and p.members() == {}
    q = AreaParams(rate=torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])).to(axes=axes)
    assert q.members() == {"rate": 2}
    s = AreaParams(rate=Schedule(torch.tensor([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]]), (0, 4)))
    s = s.to(axes=axes)
    assert s.at(5).rate.tolist() == pytest.approx([0.3, 0.2, 0.1])
    gathered = per_agent(q.rate, torch.tensor([2, 0, 0, 1]))
    want = torch.tensor([[0.3, 0.1, 0.1, 0.2], [0.6, 0.4, 0.4, 0.5]])
    torch.testing.assert_close(gathered, want)
    with pytest.raises(ParamError, match=r"'rate': trailing shape \(2,\) does not match"):
        AreaParams(rate=torch.ones(2)).to(axes=axes)
    with pytest.raises(ParamError, match="axis 'area', which the model's data does not define"):
        AreaParams().to(axes={"age": 3})
    with pytest.raises(ParamError, match=r"'rate' must lie in \[0, 1\]"):
        AreaParams(rate=torch.tensor([0.1, 2.0, 0.3])).to(axes=axes).validate()
