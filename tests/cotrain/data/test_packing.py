"""The pack plan: a partition within budget, deterministic, best fit, with a hand case."""

import numpy as np
import pytest

from cotrain.data.packing import pack_fill, plan_packs


def test_plan_is_a_partition_within_budget_and_deterministic():
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 900, 500).tolist()
    packs = plan_packs(lengths, 1024, seed=1, epoch=0)
    assert sorted(i for p in packs for i in p) == list(range(500))
    assert all(sum(lengths[i] for i in p) <= 1024 for p in packs)
    assert all(p == sorted(p) for p in packs)
    assert packs == plan_packs(lengths, 1024, seed=1, epoch=0)
    assert packs != plan_packs(lengths, 1024, seed=1, epoch=1)  # pack order reshuffled per epoch
    # no packing beats ceil(total / max_length) packs; lengths up to 900 of 1024 leave gaps
    assert len(packs) <= int(np.ceil(sum(lengths) / 1024)) * 1.05 + 1
    short = rng.integers(40, 400, 2000).tolist()  # a mix dominated by shorter samples packs tightly
    assert pack_fill(short, plan_packs(short, 1024, seed=1, epoch=0), 1024) > 0.98


def test_plan_refuses_items_over_budget():
    with pytest.raises(ValueError, match="item 1 has length 2000"):
        plan_packs([10, 2000], 1024, seed=0, epoch=0)


def test_plan_hand_case():
    # best fit decreasing: 6 -> A (room 4), 5 -> B (room 5), 4 -> A (fits exactly), 3 -> B (room 2),
    # 2 -> B (the only open pack), so two full packs
    packs = plan_packs([4, 6, 2, 5, 3], 10, seed=0, epoch=0)
    assert sorted(map(tuple, packs)) == [(0, 1), (2, 3, 4)]
    # best fit, not first fit: 3 goes to the pack with room 4, not the older one with room 5
    packs = plan_packs([5, 6, 3], 10, seed=0, epoch=0)
    assert sorted(map(tuple, packs)) == [(0,), (1, 2)]
