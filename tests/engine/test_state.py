import dataclasses

import pytest
import torch

from populace.engine import StateError, claim_slots, compact
from tests.conftest import DecayState


def make(b=2, n=5, **over):
    fields = dict(
        x=torch.zeros(b, n),
        alive=torch.ones(b, n, dtype=torch.bool),
        label=torch.arange(n).expand(b, n).clone(),
        size=n,
    )
    fields.update(over)
    return DecayState(**fields)


def test_valid_state_resolves_dims():
    s = make()
    assert s.validate() == {"B": 2, "N": 5}
    assert s.members == 2
    assert s.tensor_names() == ("x", "alive", "label")
    assert s.static_names() == ("size",)


@pytest.mark.parametrize(
    "over, words",
    [
        ({"x": torch.zeros(2, 4)}, ["DecayState.x", "dim 1", "N"]),
        ({"x": torch.zeros(2, 5, 1)}, ["DecayState.x", "2 dims", "(2, 5, 1)"]),
        ({"label": torch.zeros(3, 5, dtype=torch.int64)}, ["DecayState.label", "dim 0"]),
        ({"x": torch.zeros(2, 5, dtype=torch.int32)}, ["DecayState.x", "float"]),
        ({"alive": torch.zeros(2, 5)}, ["DecayState.alive", "bool"]),
        ({"label": torch.zeros(2, 5)}, ["DecayState.label", "torch.int64"]),
        ({"x": [0.0] * 5}, ["DecayState.x", "tensor"]),
        ({"x": torch.zeros(2, 5, device="meta")}, ["DecayState.x", "DecayState.alive", "meta"]),
    ],
)
def test_bad_field_names_the_field(over, words):
    with pytest.raises(StateError) as err:
        make(**over)
    for w in words:
        assert w in str(err.value)


def test_replace_validates_and_rejects_unknown_fields():
    s = make()
    with pytest.raises(StateError, match="no field"):
        s.replace(y=torch.zeros(2, 5))
    with pytest.raises(StateError, match="DecayState.x"):
        s.replace(x=torch.zeros(2, 6))
    t = s.replace(x=torch.ones(2, 5))
    assert s.x.sum() == 0 and t.x.sum() == 10  # the original is untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.x = torch.ones(2, 5)


def test_replace_with_alike_tensors_copies_without_a_new_check(monkeypatch):
    s = make()
    calls = []
    real = DecayState.validate
    monkeypatch.setattr(DecayState, "validate", lambda self: calls.append(1) or real(self))
    t = s.replace(x=torch.ones(2, 5), label=s.label + 1)  # same shapes, dtypes, device
    assert calls == [] and t.dims is s.dims and type(t) is DecayState
    assert t.x.sum() == 10 and s.x.sum() == 0 and torch.equal(t.label, s.label + 1)
    assert t.alive is s.alive and t.size == s.size
    # anything else is validated again: another dtype of the same kind, a static, a bad shape
    u = s.replace(x=torch.ones(2, 5, dtype=torch.float64))
    assert calls == [1] and u.x.dtype == torch.float64
    assert s.replace(size=7).size == 7 and calls == [1, 1]
    with pytest.raises(StateError, match="DecayState.label"):
        s.replace(label=torch.zeros(2, 5))  # float where int64 is declared


def test_replace_runs_a_subclass_own_post_init():
    @dataclasses.dataclass(frozen=True)
    class Checked(DecayState):
        def __post_init__(self) -> None:
            super().__post_init__()
            if (self.x < 0).any():
                raise StateError("Checked.x: negative")

    s = Checked(**{f: getattr(make(), f) for f in ("x", "alive", "label", "size")})
    with pytest.raises(StateError, match="negative"):
        s.replace(x=-torch.ones(2, 5))


def test_to_casts_only_floating_fields():
    s = make().to(dtype=torch.float64)
    assert s.x.dtype == torch.float64 and s.label.dtype == torch.int64


def test_select_members():
    s = make(x=torch.arange(10.0).view(2, 5))
    assert torch.equal(s.select([1]).x, torch.arange(5.0, 10.0).view(1, 5))


def test_claim_slots_fills_free_slots_in_order_and_flags_overflow():
    alive = torch.tensor([[1, 0, 1, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    new, overflow = claim_slots(alive, torch.tensor([2, 3]))
    assert torch.equal(new, torch.tensor([[0, 1, 0, 1, 0], [0, 0, 0, 0, 1]], dtype=torch.bool))
    assert not (new & alive).any()
    assert overflow.tolist() == [False, True]
    with pytest.raises(ValueError, match="count must be a \\[B=2\\] integer"):
        claim_slots(alive, torch.tensor([2, 3, 1]))
    with pytest.raises(ValueError, match="alive must be a \\[B, N\\] bool"):
        compact(make(b=1), torch.ones(1, 5))


def test_compact_moves_alive_first_and_keeps_fields_together():
    alive = torch.tensor([[0, 1, 0, 1, 1]], dtype=torch.bool)
    s = make(b=1, x=torch.arange(5.0).view(1, 5), alive=alive)
    c = compact(s, alive)
    assert c.alive.tolist() == [[True, True, True, False, False]]
    assert c.x.tolist() == [[1.0, 3.0, 4.0, 0.0, 2.0]]  # stable: alive keep their order
    assert torch.equal(c.label.to(c.x.dtype), c.x)  # every agent field moved together
