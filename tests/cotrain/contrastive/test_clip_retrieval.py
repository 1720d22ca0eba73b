"""Tri-modal retrieval: chunked exact ranks vs a brute-force route, hand-derived R@k, duplicates, chance."""

import numpy as np
import pytest

from cotrain.contrastive.evaluate import DIRECTIONS, retrieval_scores, retrieval_table, text_pool
from cotrain.metrics.retrieval import chance_recall, embedding_recall


def brute_force_recall(scores, positives, k):
    """Sort each query's items by (score descending, irrelevant before relevant); a hit in the first k."""
    hits = [any(i in pos for i in sorted(range(len(row)), key=lambda i: (-row[i], i in pos))[:k])
            for row, pos in zip(scores, positives)]
    return sum(hits) / len(hits)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("chunk", [1, 3, 1024])
def test_chunked_ranks_equal_brute_force_with_ties(seed, chunk):
    rng = np.random.default_rng(seed)
    n_q, n_items, d = rng.integers(1, 15), rng.integers(2, 25), 3
    # small integer embeddings: many exactly equal dot products (ties)
    q = rng.integers(-1, 2, size=(n_q, d)).astype(np.float32)
    items = rng.integers(-1, 2, size=(n_items, d)).astype(np.float32)
    positives = [set(rng.choice(n_items, size=rng.integers(1, 4), replace=False).tolist()) for _ in range(n_q)]
    ks = (1, 2, 5, 10)
    got = embedding_recall(q, items, positives, ks, chunk=chunk)
    scores = (q @ items.T).tolist()
    for k in ks:
        assert got[f"r@{k}"] == pytest.approx(brute_force_recall(scores, positives, k))


def test_hand_derived_case():
    # 2-D unit vectors; query 0 = x, query 1 = y; items at angles 0, 45, 90 degrees
    s = np.sqrt(0.5)
    items = np.array([[1, 0], [s, s], [0, 1]], np.float32)
    queries = np.array([[1, 0], [0, 1]], np.float32)
    # query 0 scores 1, .71, 0: relevant item 2 ranks 3rd; query 1 scores 0, .71, 1: relevant 1 ranks 2nd
    got = embedding_recall(queries, items, [{2}, {1}], ks=(1, 2, 3))
    assert got == {"r@1": 0.0, "r@2": 0.5, "r@3": 1.0}
    # a tie with an irrelevant item counts against the query (pessimistic)
    tied = embedding_recall(np.array([[1, 0]], np.float32), np.array([[1, 0], [1, 0]], np.float32), [{1}], ks=(1, 2))
    assert tied == {"r@1": 0.0, "r@2": 1.0}


def test_bad_inputs_raise():
    e = np.eye(2, dtype=np.float32)
    with pytest.raises(ValueError, match="NaN"):
        embedding_recall(np.array([[np.nan, 0]], np.float32), e, [{0}])
    with pytest.raises(ValueError, match="no relevant item"):
        embedding_recall(e, e, [{0}, set()])
    with pytest.raises(ValueError, match="outside"):
        embedding_recall(e, e, [{0}, {5}])
    with pytest.raises(ValueError, match="same embedding size"):
        embedding_recall(e, np.eye(3, dtype=np.float32), [{0}, {1}])


def test_duplicate_captions_become_one_text_of_both_images():
    texts, owners, dup = text_pool([["a road", "a  road", "trees"], ["a road"], ["water"]])
    assert texts == ["a road", "trees", "water"]
    assert owners == [{0, 1}, {0}, {2}]
    assert dup == 2


def test_six_directions_hand_case():
    # 3 images; RGB and IR embeddings equal to the text of the image: every direction is perfect
    e = np.eye(3, dtype=np.float32)
    out = retrieval_scores(e, e, e, [{0}, {1}, {2}], e, [{0}, {1}, {2}])
    assert {k for k in out if k.endswith("_r@1")} == {f"{q}2{i}_r@1" for q, i in DIRECTIONS}
    assert all(out[f"{q}2{i}_r@{k}"] == 100.0 for q, i in DIRECTIONS for k in (1, 5, 10))
    assert out["mean_recall"] == 100.0
    # IR now points at the wrong text and image (a cyclic shift): IR<->text and RGB<->IR R@1 drop to 0
    ir = np.roll(e, 1, axis=0)
    out = retrieval_scores(e, ir, e, [{0}, {1}, {2}], e, [{0}, {1}, {2}])
    assert out["ir2text_r@1"] == out["text2ir_r@1"] == out["rgb2ir_r@1"] == out["ir2rgb_r@1"] == 0.0
    assert out["rgb2text_r@1"] == out["text2rgb_r@1"] == 100.0
    assert out["chance_mean_recall"] == pytest.approx(100 * (1 / 3 + 1 + 1) / 3)  # 3 items: R@5, R@10 are 1
    assert "| syn | 3 |" in retrieval_table({"syn": {"n": 3, **out}})


def test_chance_recall():
    # 10 items, 2 relevant, k = 1: 1 - C(8,1)/C(10,1) = 0.2; k = 5: 1 - C(8,5)/C(10,5) = 1 - 56/252
    got = chance_recall(10, [2, 2], ks=(1, 5, 10))
    assert got["r@1"] == pytest.approx(0.2)
    assert got["r@5"] == pytest.approx(1 - 56 / 252)
    assert got["r@10"] == 1.0
