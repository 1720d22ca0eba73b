"""Retrieval metrics: Recall@K against a brute-force ranking loop, pessimistic ties, the RS summary."""

import numpy as np
import pytest

from cotrain.metrics.retrieval import recall_at_k, retrieval_summary


def brute_force_recall(scores, positives, k):
    """Rank each query's items one by one: by score, and at equal score irrelevant items first."""
    hits = 0
    for q, row in enumerate(scores):
        order = sorted(range(len(row)), key=lambda i: (-row[i], i in positives[q]))
        hits += any(i in positives[q] for i in order[:k])
    return hits / len(scores)


@pytest.mark.parametrize("seed", range(20))
def test_recall_matches_brute_force_with_many_ties(seed):
    rng = np.random.default_rng(seed)
    n_q, n_items = rng.integers(1, 12), rng.integers(1, 30)
    # few distinct values so that ties are everywhere, plus some -inf
    scores = rng.integers(0, 4, size=(n_q, n_items)).astype(float)
    scores[rng.random(scores.shape) < 0.1] = -np.inf
    positives = [set(rng.choice(n_items, size=rng.integers(1, n_items + 1), replace=False).tolist())
                 for _ in range(n_q)]
    ks = (1, 2, 5, 10, 40)
    out = recall_at_k(scores, positives, ks)
    for k in ks:
        assert out[f"r@{k}"] == pytest.approx(brute_force_recall(scores.tolist(), positives, k))


def test_hand_case():
    scores = np.array([[0.9, 0.1, 0.5],    # relevant item 1 ranks 3rd
                       [0.2, 0.8, 0.3],    # relevant item 1 ranks 1st
                       [0.5, 0.5, 0.1]])   # relevant item 0 tied with irrelevant item 1 -> 2nd
    out = recall_at_k(scores, [{1}, {1}, {0}], ks=(1, 2, 3))
    assert out == {"r@1": pytest.approx(1 / 3), "r@2": pytest.approx(2 / 3), "r@3": 1.0}


def test_constant_scorer_gets_no_credit():
    # index-order or optimistic tie breaks would give this scorer R@1 = 1 (item q is query q's answer)
    scores = np.zeros((8, 8))
    out = recall_at_k(scores, [{q} for q in range(8)], ks=(1, 5, 7, 8))
    assert out == {"r@1": 0.0, "r@5": 0.0, "r@7": 0.0, "r@8": 1.0}


def test_ties_among_relevant_items_do_not_hurt():
    out = recall_at_k(np.array([[1.0, 1.0, 0.0]]), [{0, 1}], ks=(1,))
    assert out["r@1"] == 1.0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="NaN"):
        recall_at_k(np.array([[np.nan, 1.0]]), [{0}])
    with pytest.raises(ValueError, match="no relevant item"):
        recall_at_k(np.zeros((1, 3)), [set()])
    with pytest.raises(ValueError, match="outside"):
        recall_at_k(np.zeros((1, 3)), [{3}])
    with pytest.raises(ValueError, match="entries for 2 queries"):
        recall_at_k(np.zeros((2, 3)), [{0}])
    assert recall_at_k(np.zeros((0, 3)), [], ks=(1,)) == {"r@1": None}


def test_retrieval_summary_hand_case():
    # 3 images, 6 texts (2 per image). Image->text: image 0's best text is t1 (rank 1), image 1's
    # texts rank 2nd at best, image 2's texts rank last (5th and 6th).
    text_to_image = [0, 0, 1, 1, 2, 2]
    sim = np.array([
        [0.1, 0.9, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.7, 0.2, 0.0, 0.8],
        [0.6, 0.6, 0.6, 0.6, 0.1, 0.1],
    ])
    out = retrieval_summary(sim, text_to_image)
    # txt: image 0 hit@1; image 1 hit@5 (rank 2); image 2 best positive rank 5 -> hit@5
    assert out["txt_r@1"] == pytest.approx(100 / 3)
    assert out["txt_r@5"] == pytest.approx(100.0) and out["txt_r@10"] == pytest.approx(100.0)
    # text queries (columns): t0 (image 0): image 2 scores higher -> miss@1; t1: hit; t2 (image 1):
    # 0.7 > 0.6 -> hit; t3 (image 1): image 2 scores higher -> miss@1; t4 (image 2): 0.1 > 0, 0 -> hit;
    # t5 (image 2): image 1 scores 0.8 -> miss@1. Every text's image is within the top 3 images.
    assert out["img_r@1"] == pytest.approx(100 * 3 / 6)
    assert out["img_r@5"] == pytest.approx(100.0) and out["img_r@10"] == pytest.approx(100.0)
    assert out["mean_recall"] == pytest.approx((100 / 3 + 100 + 100 + 50 + 100 + 100) / 6)


def test_retrieval_summary_matches_brute_force():
    rng = np.random.default_rng(7)
    n_img = 15
    text_to_image = [i for i in range(n_img) for _ in range(5)]
    sim = np.round(rng.normal(size=(n_img, len(text_to_image))), 1)  # rounding makes ties
    out = retrieval_summary(sim, text_to_image)
    texts_of = [{t for t, i in enumerate(text_to_image) if i == img} for img in range(n_img)]
    for k in (1, 5, 10):
        assert out[f"txt_r@{k}"] == pytest.approx(100 * brute_force_recall(sim.tolist(), texts_of, k))
        assert out[f"img_r@{k}"] == pytest.approx(
            100 * brute_force_recall(sim.T.tolist(), [{i} for i in text_to_image], k))


def test_retrieval_summary_rejects_images_without_texts():
    with pytest.raises(ValueError, match="without one: \\[1\\]"):
        retrieval_summary(np.zeros((2, 2)), [0, 0])
    with pytest.raises(ValueError, match="texts"):
        retrieval_summary(np.zeros((2, 3)), [0, 1])
