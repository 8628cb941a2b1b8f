"""EpochSampler: a (seed, epoch)-determined order, shared out across processes, restored from the step."""

from __future__ import annotations

import pytest

from tridense.training.data import EpochSampler


def _indices(sampler: EpochSampler) -> list[int]:
    return [i for i, _ in sampler]


def test_unshuffled_is_the_identity_and_carries_the_epoch():
    sampler = EpochSampler(5, shuffle=False)
    sampler.set_epoch(3)
    assert list(sampler) == [(0, 3), (1, 3), (2, 3), (3, 3), (4, 3)]
    assert len(sampler) == 5


def test_order_is_a_permutation_fixed_by_seed_and_epoch():
    a, b = EpochSampler(50, shuffle=True, seed=7), EpochSampler(50, shuffle=True, seed=7)
    assert sorted(_indices(a)) == list(range(50))
    assert _indices(a) == _indices(b)
    first = _indices(a)
    a.set_epoch(1)
    assert _indices(a) != first  # a new order each epoch
    a.set_epoch(0)
    assert _indices(a) == first  # ... and the same one again for the same epoch
    assert _indices(EpochSampler(50, shuffle=True, seed=8)) != first


def test_epoch_fn_overrides_set_epoch():
    step = {"epoch": 2}
    sampler = EpochSampler(20, shuffle=True, seed=0, epoch_fn=lambda: step["epoch"])
    sampler.set_epoch(9)
    reference = EpochSampler(20, shuffle=True, seed=0)
    reference.set_epoch(2)
    assert list(sampler) == list(reference)
    assert {e for _, e in sampler} == {2}


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("length", [10, 11, 13])
def test_ranks_partition_the_epoch(length: int, drop_last: bool):
    world = 4
    ranks = [
        EpochSampler(length, shuffle=True, seed=3, rank=r, world_size=world, drop_last=drop_last) for r in range(world)
    ]
    shares = [_indices(s) for s in ranks]
    for s, share in zip(ranks, shares, strict=True):
        assert len(share) == len(s)
    seen = [i for share in shares for i in share]
    assert len(seen) == len(set(seen))  # no sample twice in one epoch
    expected = (length // world) * world if drop_last else length
    assert len(seen) == expected
    if drop_last:
        assert len({len(share) for share in shares}) == 1  # equal shares: DDP steps stay in lockstep
