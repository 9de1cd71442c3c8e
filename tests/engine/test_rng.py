import torch

from populace.engine import Streams, member_seed


def test_member_seeds_differ_and_are_stable():
    seeds = [member_seed(7, b) for b in range(64)]
    assert len(set(seeds)) == 64
    assert member_seed(7, 3) == seeds[3]
    assert member_seed(8, 3) != seeds[3]


def test_member_draws_do_not_depend_on_batch():
    seeds = [member_seed(1, b) for b in range(64)]
    batch = Streams(seeds)
    alone = Streams([seeds[17]])
    for _ in range(3):
        big = batch.uniform(100)
        small = alone.uniform(100)
        assert torch.equal(big[17], small[0])
        assert not torch.equal(big[16], big[17])
    assert torch.equal(batch.permutation(50)[17], alone.permutation(50)[0])


def test_state_roundtrip_replays_draws():
    s = Streams([1, 2])
    saved = s.get_state()
    first = s.normal(10)
    s.set_state(saved)
    assert torch.equal(first, s.normal(10))
    sub = s.select([1])
    assert torch.equal(sub.integers(0, 100, 5)[0], s.integers(0, 100, 5)[1])
