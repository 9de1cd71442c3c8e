"""Model data: shared read-only tensors, moved once, read by steps, checkpointed by digest."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from populace.engine import (
    Context,
    Data,
    DataError,
    Model,
    Params,
    Simulation,
    State,
    StateError,
    param,
    per,
    per_agent,
    static_field,
    tensor_field,
)
from populace.populations.graphs import erdos_renyi


@dataclasses.dataclass(frozen=True)
class AgeParams(Params):
    growth: float | torch.Tensor = param(
        torch.tensor([0.1, 0.2, 0.3]), low=0, axes=("age",), doc="growth per age band"
    )


@dataclasses.dataclass(frozen=True)
class WealthState(State):
    wealth: torch.Tensor = tensor_field("B", "N")


def growth_model(agents: int = 6, seen: list | None = None) -> Model:
    """wealth *= 1 + growth[age]; the per-age totals come from the data's codes. ``seen``
    collects the ``ctx.data.age`` tensor each step is given."""
    ages = torch.arange(agents) % 3
    seen = [] if seen is None else seen

    def init(params, ctx: Context) -> WealthState:
        return WealthState(wealth=torch.ones(ctx.members, agents, dtype=ctx.dtype))

    def grow(state, params, ctx):
        seen.append(ctx.data.age)
        return state.replace(wealth=state.wealth * (1 + per_agent(params.growth, ctx.data.age)))

    def by_age(state, params, ctx):
        out = torch.zeros(state.wealth.shape[0], 3, dtype=state.wealth.dtype)
        return out.index_add(1, ctx.data.age, state.wealth)

    return Model(
        name="growth",
        params=AgeParams(),
        init=init,
        steps=(grow,),
        metrics={"wealth": per("age", by_age)},
        agents=agents,
        data=Data(
            {"age": ages, "layer": erdos_renyi(agents, 2.0, 0)},
            axes={"age": ("young", "adult", "old")},
        ),
    )


def test_data_is_moved_once_shared_by_members_and_read_by_steps_and_metrics():
    seen = []
    model = growth_model(seen=seen)
    sim = Simulation(model, members=4, device="cpu", dtype=torch.float64)
    result = sim.run(2)
    assert seen[0] is seen[1]  # the same tensor every step: moved once
    assert seen[0].shape == (6,)  # no copy per member
    assert result.metrics.columns == [
        "member",
        "step",
        "wealth_young",
        "wealth_adult",
        "wealth_old",
    ]
    last = result.metrics.filter(result.metrics["step"] == 2)
    assert last["wealth_old"].to_list() == pytest.approx([2 * 1.3**2] * 4)
    assert sim.data.layer.values().dtype == torch.float64  # floating data take the run dtype
    html = model._repr_html_()
    assert "data age" in html and "axis age" in html and "csr" in html


def test_a_checkpoint_refuses_other_data_naming_the_tensor(tmp_path):
    model = growth_model()
    sim = Simulation(model, members=2, device="cpu")
    sim.run(2)
    path = sim.save(tmp_path / "ck.pt")
    Simulation.resume(path, model, device="cpu")  # the same data: fine
    other = dataclasses.replace(
        model,
        data=Data(
            {"age": torch.tensor([2, 1, 0, 2, 1, 0]), "layer": model.data.layer},
            axes=model.data.axes,
        ),
    )
    with pytest.raises(DataError, match=r"different values in \['age'\]"):
        Simulation.resume(path, other, device="cpu")


def test_bad_data_and_misplaced_tensors_are_refused():
    with pytest.raises(DataError, match="codes 0..5 outside 0..2 of axis 'age'"):
        Data({"age": torch.arange(6)}, axes={"age": ("a", "b", "c")})
    with pytest.raises(DataError, match="axis 'age' has no label 'elderly'; valid: a, b, c"):
        Data(axes={"age": ("a", "b", "c")}).codes("age", "elderly")
    with pytest.raises(ValueError, match="belongs in the model's data"):
        tensor_field("N")

    @dataclasses.dataclass(frozen=True)
    class Bad(State):
        x: torch.Tensor = tensor_field("B", "N")
        table: object = static_field(None)

    with pytest.raises(StateError, match="Bad.table: a static field cannot hold a tensor"):
        Bad(x=torch.zeros(1, 3), table=torch.zeros(3))
