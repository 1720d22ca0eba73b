"""Rankings, tiers, schedules, the score file and the curriculum inside the weighted mixture."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from cotrain.curriculum.schedule import (Curriculum, assign_tiers, build_curriculum, merged_rank, ranks, read_scores,
                                         round_to_steps)
from cotrain.data.mixture import MixtureSampler
from cotrain.errors import ConfigError


def _cfg(path, **kw):
    base = dict(scores=str(path), tiers=4, schedule="ascending_stratified_random", merge="mean_rank",
                loss_weights=False)
    return SimpleNamespace(**{**base, **kw})


def _score_file(tmp_path, n=20, seed=0):
    rng = np.random.default_rng(seed)
    path = tmp_path / "scores.jsonl"
    rows = [{"id": f"r{i}", "transfer": float(rng.normal()), "alignment": float(rng.normal()),
             "weight": float(rng.uniform(0.2, 1.9))} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, rows


def test_ranks_share_ties():
    np.testing.assert_allclose(ranks(np.array([3.0, 1.0, 3.0, 2.0])), [2.5, 0.0, 2.5, 1.0])


def test_merge_directions():
    cols = {"transfer": np.array([5.0, 1.0, 3.0]), "alignment": np.array([0.2, -0.1, 0.5])}
    # transfer: larger is easier -> ranks 0, 2, 1; alignment: smaller is easier -> ranks 1, 0, 2
    np.testing.assert_allclose(merged_rank(cols, "transfer"), [0, 2, 1])
    np.testing.assert_allclose(merged_rank(cols, "alignment"), [1, 0, 2])
    np.testing.assert_allclose(merged_rank(cols, "mean_rank"), [0.5, 1.0, 1.5])
    np.testing.assert_allclose(merged_rank(cols, "max_rank"), [1, 2, 2])
    with pytest.raises(ConfigError, match="needs the score column"):
        merged_rank({"transfer": cols["transfer"]}, "alignment")


def test_tiers_are_equal_count_cuts():
    tiers = assign_tiers(np.arange(10.0)[::-1], [f"r{i}" for i in range(10)], 3)
    assert sorted(np.bincount(tiers).tolist()) == [3, 3, 4]
    assert tiers[9] == 0 and tiers[0] == 2  # the smallest difficulty is tier 0
    with pytest.raises(ConfigError, match="at most 3 tiers"):
        assign_tiers(np.arange(3.0), ["a", "b", "c"], 4)
    with pytest.raises(ConfigError, match="constant scores"):
        assign_tiers(np.ones(5), list("abcde"), 2)


def test_score_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="do not exist"):
        read_scores(tmp_path / "none.jsonl")
    p = tmp_path / "s.jsonl"
    p.write_text('{"id": "a", "transfer": 1}\n{"id": "b"}\n')
    with pytest.raises(ConfigError, match=":2: columns"):
        read_scores(p)
    p.write_text('{"id": "a", "transfer": NaN}\n')
    with pytest.raises(ConfigError, match="non-finite transfer"):
        read_scores(p)
    p.write_text('not json\n')
    with pytest.raises(ConfigError, match=":1: not a score line"):
        read_scores(p)
    path, _ = _score_file(tmp_path, n=5)
    with pytest.raises(ConfigError, match="3 of its 8 records have no line") as e:
        build_curriculum("ds", [f"r{i}" for i in range(8)], _cfg(path))
    assert "r5" in str(e.value)


def _cur(schedule, n=20, tiers=4, seed=0):
    diff = np.random.default_rng(seed).permutation(n).astype(float)
    return Curriculum("ds", diff, assign_tiers(diff, [f"r{i}" for i in range(n)], tiers), tiers, schedule)


@pytest.mark.parametrize("schedule,tier_order", [
    ("ascending_stratified_random", [0, 1, 2, 3]), ("descending_stratified_random", [3, 2, 1, 0]),
    ("bidirectional", [0, 3, 1, 2])])
def test_stratified_schedules_walk_the_tiers_in_order(schedule, tier_order):
    cur = _cur(schedule)
    recs = np.arange(20)
    seq = cur.sequence(recs, seed=1, epoch=0)
    tiers = cur.tiers[recs[seq]]
    runs = [int(t) for i, t in enumerate(tiers) if i == 0 or t != tiers[i - 1]]
    assert runs == tier_order
    other = cur.sequence(recs, seed=1, epoch=1)
    assert not np.array_equal(seq, other) and np.array_equal(cur.tiers[recs[other]], tiers)  # new order in tiers


def test_strict_and_random_schedules():
    recs = np.arange(20)
    up = _cur("ascending")
    assert np.all(np.diff(up.difficulty[recs[up.sequence(recs, 0, 0)]]) >= 0)
    down = _cur("descending")
    assert np.all(np.diff(down.difficulty[recs[down.sequence(recs, 0, 0)]]) <= 0)
    rand = _cur("random").sequence(recs, 0, 0)
    assert sorted(rand.tolist()) == list(range(20))


def _sampler(curricula=None, step=4, weights=(1.0, 1.0), seed=3):
    return MixtureSampler([20, 30], list(weights), ["cur", "plain"], seed=seed, curricula=curricula,
                          curriculum_step=step)


def test_curriculum_keeps_the_mix_and_orders_its_own_samples():
    plain, cur = _sampler(), _sampler({0: _cur("ascending_stratified_random")})
    a, b = plain.epoch_order(0), cur.epoch_order(0)
    is_cur = lambda o: o < 20  # noqa: E731
    assert np.array_equal(is_cur(a), is_cur(b))  # same places for each dataset
    assert np.array_equal(a[~is_cur(a)], b[~is_cur(b)])  # the other dataset is untouched
    assert sorted(a[is_cur(a)].tolist()) == sorted(b[is_cur(b)].tolist())  # the same samples
    pos, realised = cur.curriculum_tiers(0, 0)
    assert np.all(np.diff(realised) >= 0)  # easy to hard across the epoch
    steps = pos // 4
    for s in np.unique(steps):
        assert len(set(realised[steps == s].tolist())) == 1  # one tier per optimizer step
    assert np.array_equal(cur.epoch_order(0), _sampler({0: _cur("ascending_stratified_random")}).epoch_order(0))
    assert cur.fingerprint != plain.fingerprint and plain.fingerprint == _sampler().fingerprint


def test_weight_below_one_orders_a_fresh_subset_each_epoch():
    s = _sampler({0: _cur("ascending_stratified_random")}, weights=(0.5, 1.0))
    picked = []
    for epoch in (0, 1):
        order = s.epoch_order(epoch)
        mine = order[order < 20]
        assert len(mine) == 10
        assert np.all(np.diff(s.curricula[0].tiers[mine]) >= 0)  # the drawn half, easy to hard
        picked.append(set(mine.tolist()))
    assert picked[0] != picked[1]


def test_round_to_steps():
    realised = round_to_steps(np.array([0, 0, 1, 1, 1, 2]), np.array([0, 1, 3, 4, 9, 10]), 4)
    # steps of 4 places: [0, 1, 3] in step 0 (first tier 0); [4] step 1 (tier 1); [9, 10] step 2 (tier 1)
    assert realised.tolist() == [0, 0, 0, 1, 1, 1]


def test_build_curriculum_with_weights(tmp_path):
    path, rows = _score_file(tmp_path)
    cur = build_curriculum("ds", [r["id"] for r in rows], _cfg(path, loss_weights=True))
    np.testing.assert_allclose(cur.weights, [r["weight"] for r in rows])
    assert np.bincount(cur.tiers).tolist() == [5, 5, 5, 5]
    noweight = tmp_path / "nw.jsonl"
    noweight.write_text("".join(json.dumps({"id": r["id"], "transfer": r["transfer"]}) + "\n" for r in rows))
    with pytest.raises(ConfigError, match="no 'weight' column"):
        build_curriculum("ds", [r["id"] for r in rows], _cfg(noweight, loss_weights=True))


def test_packing_with_an_ordered_curriculum_is_refused():
    from cotrain.config import load_config

    ds = {"name": "d", "records": "x.jsonl", "curriculum": {"scores": "s.jsonl"}}
    with pytest.raises(ConfigError, match="undo the curriculum order"):
        load_config(raw={"data": {"packing": True, "datasets": [ds]}})
    ds["curriculum"]["schedule"] = "random"  # loss weights only: packing is fine
    assert load_config(raw={"data": {"packing": True, "datasets": [ds]}}).data.packing


def test_irgpt_stage_recipes():
    from pathlib import Path

    from cotrain.config import load_config

    recipes = Path(__file__).resolve().parents[3] / "data_recipes"
    one = load_config(recipes / "irgpt_stage1.yaml")
    m = one.model
    assert (m.train_vision, m.train_merger, m.train_language, m.lora.enabled) == (True, True, False, False)
    cur = one.data.datasets[0].curriculum
    assert (cur.tiers, cur.schedule, cur.merge, cur.loss_weights) == (5, "ascending_stratified_random", "mean_rank", True)
    two = load_config(recipes / "irgpt_stage2.yaml")
    m = two.model
    assert (m.train_vision, m.train_merger, m.lora.enabled, m.lora.language) == (False, True, True, True)
    warm = load_config(recipes / "irgpt_warmup_demo.yaml")
    assert warm.model.kind == "clip" and warm.data.synthetic.kind == "ir_difficulty"
    demo = load_config(recipes / "irgpt_stage1_demo.yaml")
    assert (demo.model.train_vision, demo.model.train_language, demo.data.packing) == (True, False, False)
    assert demo.data.datasets[0].curriculum.loss_weights and demo.data.synthetic.kind == "ir_difficulty"
