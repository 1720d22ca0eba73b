"""MixtureSampler: weight semantics, purity, rank shards (exact resume of a Trainer run: test_resume.py)."""

from collections import Counter

import pytest

from cotrain.data.mixture import MixtureSampler
from cotrain.errors import ConfigError


def _named(s: MixtureSampler, indices) -> list[tuple[str, int]]:
    """Global indices -> (dataset name, record index), the order-independent view of a sample."""
    out = []
    for i in indices:
        d, r = s.locate(int(i))
        out.append((s.names[d], r))
    return out


def _records_of(s: MixtureSampler, name: str, indices) -> list[int]:
    return [r for n, r in _named(s, indices) if n == name]


# -- weight semantics (DESIGN.md section 5), counts derived by hand ------------------------------

def test_integer_weight_uses_every_record_exactly_that_often():
    s = MixtureSampler([7], [2.0], ["a"], seed=0)
    got = list(s)
    assert len(got) == len(s) == 14
    assert Counter(got) == {i: 2 for i in range(7)}


def test_fractional_weight_is_a_fresh_share_each_epoch_without_replacement():
    s = MixtureSampler([100], [0.3], ["a"], seed=5)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    assert len(e0) == len(e1) == 30
    assert len(set(e0)) == 30 and len(set(e1)) == 30  # without replacement
    assert set(e0) != set(e1)  # fresh draw per epoch
    again = MixtureSampler([100], [0.3], ["a"], seed=5)
    assert list(again) == e0  # same (seed, epoch) -> same draw and order


def test_one_and_a_half_is_once_plus_a_random_half():
    s = MixtureSampler([10], [1.5], ["a"], seed=1)
    c = Counter(s)
    assert sum(c.values()) == 15 and set(c) == set(range(10))
    assert sorted(c.values()) == [1] * 5 + [2] * 5


def test_fractional_draw_ignores_other_weights_and_dataset_order():
    base = MixtureSampler([50, 30], [0.4, 0.5], ["a", "b"], seed=3)
    heavier_b = MixtureSampler([50, 30], [0.4, 2.7], ["a", "b"], seed=3)
    swapped = MixtureSampler([30, 50], [0.5, 0.4], ["b", "a"], seed=3)
    for epoch in (0, 4):
        for s in (base, heavier_b, swapped):
            s.set_epoch(epoch)
        want = sorted(_records_of(base, "a", base))
        assert len(want) == 20
        assert sorted(_records_of(heavier_b, "a", heavier_b)) == want
        assert sorted(_records_of(swapped, "a", swapped)) == want
    renamed = MixtureSampler([50, 30], [0.4, 0.5], ["a2", "b"], seed=3)
    assert sorted(_records_of(renamed, "a2", renamed)) != want  # the name seeds the draw


def test_epoch_sequence_does_not_depend_on_dataset_listing_order():
    ab = MixtureSampler([12, 9], [1.5, 0.7], ["a", "b"], seed=11)
    ba = MixtureSampler([9, 12], [0.7, 1.5], ["b", "a"], seed=11)
    assert _named(ab, ab) == _named(ba, ba)


def test_realised_mix_counts_and_shares():
    s = MixtureSampler([10, 20], [2.0, 0.25], ["two", "quarter"], seed=0, num_replicas=2, rank=1)
    mix = s.realised_mix(3)
    assert mix["two"]["samples"] == 20 and mix["quarter"]["samples"] == 5
    assert mix["two"]["share"] == pytest.approx(0.8) and mix["quarter"]["share"] == pytest.approx(0.2)
    assert mix["two"]["records"] == 10 and mix["quarter"]["weight"] == 0.25
    assert mix["two"]["rank_samples"] + mix["quarter"]["rank_samples"] == len(s) == 13  # ceil(25 / 2)
    s.set_epoch(3)
    assert mix["quarter"]["rank_samples"] == sum(1 for i in s if i >= 10)


# -- determinism -------------------------------------------------------------------------------

def test_order_is_a_pure_function_of_seed_and_epoch():
    args = ([30, 20], [1.2, 0.5], ["a", "b"])
    walked = MixtureSampler(*args, seed=2)
    seen = []
    for e in range(3):
        walked.set_epoch(e)
        seen.append(list(walked))
    jumped = MixtureSampler(*args, seed=2)
    jumped.set_epoch(2)
    assert list(jumped) == seen[2]
    assert list(jumped) == seen[2]  # a second pass over the same epoch repeats it
    assert seen[0] != seen[1]
    assert list(MixtureSampler(*args, seed=3)) != seen[0]


# -- rank shards -------------------------------------------------------------------------------

def test_rank_shards_are_equal_length_and_cover_the_epoch_with_wrap_padding():
    args = ([13, 8], [1.0, 1.5], ["a", "b"])  # 13 + 12 = 25 samples per epoch
    whole = list(MixtureSampler(*args, seed=4))
    shards = [list(MixtureSampler(*args, seed=4, num_replicas=3, rank=r)) for r in range(3)]
    assert [len(x) for x in shards] == [9, 9, 9]  # ceil(25 / 3)
    interleaved = [shards[r][i] for i in range(9) for r in range(3)]
    assert interleaved == whole + whole[:2]  # disjoint positions; the 2 pad items wrap to the start
    counts = Counter(_named(MixtureSampler(*args, seed=4), whole))
    assert all(counts[("a", i)] == 1 for i in range(13))  # weight 1.0: each once
    assert sorted(counts[("b", i)] for i in range(8)) == [1] * 4 + [2] * 4  # 1.5: once plus a random half


def test_rank_shards_with_drop_last_are_disjoint_whole_batches():
    args = ([20, 9], [1.0, 1.0], ["a", "b"])  # 29 distinct samples
    shards = [list(MixtureSampler(*args, seed=0, num_replicas=4, rank=r, batch_size=3, drop_last=True))
              for r in range(4)]
    assert [len(x) for x in shards] == [6] * 4  # floor(29 / 12) = 2 batches of 3 per rank
    for a in range(4):
        for b in range(a + 1, 4):
            assert not set(shards[a]) & set(shards[b])
    whole = list(MixtureSampler(*args, seed=0))
    assert [shards[r][i] for i in range(6) for r in range(4)] == whole[:24]


@pytest.mark.parametrize("sizes,weights,names,kw,match", [
    ([5, 5], [1.0, 1.0], ["a", "a"], {}, "appears twice"),
    ([5], [0.0], ["a"], {}, "weight"),
    ([5], [float("nan")], ["a"], {}, "weight"),
    ([0], [1.0], ["a"], {}, "no records|0 records"),
    ([5], [1.0], ["a"], {"num_replicas": 2, "rank": 2}, "rank"),
    ([5], [1.0, 2.0], ["a"], {}, "one size, weight and name"),
    ([5], [1.0], ["a"], {"batch_size": 4, "num_replicas": 2, "drop_last": True}, "drop_last"),
    ([5], [0.01], ["a"], {}, "empty"),
])
def test_bad_arguments_raise_config_errors(sizes, weights, names, kw, match):
    with pytest.raises(ConfigError, match=match):
        MixtureSampler(sizes, weights, names, seed=0, **kw)


def test_locate_bounds():
    s = MixtureSampler([3, 4], [1.0, 1.0], ["a", "b"], seed=0)
    assert [s.locate(i) for i in (0, 2, 3, 6)] == [(0, 0), (0, 2), (1, 0), (1, 3)]
    with pytest.raises(IndexError):
        s.locate(7)
