"""Retrieval metrics: Recall@K from a similarity matrix, and the image<->text summary of RS papers.

This module owns ranking rules (ties!) and the RSICD/RSITMD-style report: text retrieval
("txt_r@k", an image queries the captions) and image retrieval ("img_r@k", a caption queries the
images), R@1/5/10 in percent, and their mean ("mR").

It must not compute embeddings or run models: callers pass scores.

Ties are broken pessimistically: among items with the same score, every irrelevant item ranks
above every relevant one. Any other rule lets a degenerate scorer look good: with an
"optimistic" or index-order tie break (a stable sort where the ground truth happens to come
first, e.g. caption t of image t//5), a model that gives every pair the same score would reach
R@1 = 100%. Pessimistic ties give that constant scorer R@k = 0 until k exceeds the number of
irrelevant items, which is the honest "it ranks nothing" answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["recall_at_k", "retrieval_summary"]


def recall_at_k(scores: np.ndarray, positives: Sequence[Iterable[int]], ks: Sequence[int] = (1, 5, 10)) -> dict:
    """``{"r@k": share of queries with a relevant item among their top k}`` for each k (fractions).

    ``scores[q, i]``: similarity of query q to item i, higher is better (``-inf`` allowed).
    ``positives[q]``: the relevant items of query q (at least one each). Ties: pessimistic (see
    the module docstring). Raises ValueError for NaN scores, a query without positives, an item
    index out of range or a k < 1.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must be a 2-D (queries x items) matrix; got shape {s.shape}")
    n_q, n_items = s.shape
    if len(positives) != n_q:
        raise ValueError(f"positives has {len(positives)} entries for {n_q} queries (one set per query)")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN; a NaN similarity has no rank (fix the scorer)")
    if any(k < 1 for k in ks):
        raise ValueError(f"k must be >= 1; got {list(ks)}")
    relevant = np.zeros((n_q, n_items), dtype=bool)
    for q, pos in enumerate(positives):
        idx = list(pos)
        if not idx:
            raise ValueError(f"query {q} has no relevant item; recall is undefined for it")
        if min(idx) < 0 or max(idx) >= n_items:
            raise ValueError(f"query {q}: relevant items {sorted(idx)} outside 0..{n_items - 1}")
        relevant[q, idx] = True
    if n_q == 0:
        return {f"r@{k}": None for k in ks}
    best = np.where(relevant, s, -np.inf).max(axis=1, keepdims=True)
    # 0-based rank of the best relevant item: everything scored higher, plus irrelevant ties.
    rank = (s > best).sum(axis=1) + ((s == best) & ~relevant).sum(axis=1)
    return {f"r@{k}": float((rank < k).mean()) for k in ks}


def retrieval_summary(sim_img_text: np.ndarray, text_to_image: Sequence[int]) -> dict:
    """Image<->text retrieval as reported in RSICD/RSITMD papers, in percent.

    ``sim_img_text[i, t]``: similarity of image i and text t; ``text_to_image[t]``: the one image
    text t describes (every image needs at least one text). Keys: ``txt_r@1/5/10`` (image queries,
    a hit when any of its texts is in the top k), ``img_r@1/5/10`` (text queries, a hit when its
    image is in the top k) and ``mean_recall`` (mean of the six).
    """
    sim = np.asarray(sim_img_text, dtype=np.float64)
    if sim.ndim != 2 or sim.shape[1] != len(text_to_image):
        raise ValueError(f"sim_img_text must be (images x texts) with {len(text_to_image)} texts; got {sim.shape}")
    texts_of: list[set[int]] = [set() for _ in range(sim.shape[0])]
    for t, i in enumerate(text_to_image):
        if not 0 <= i < sim.shape[0]:
            raise ValueError(f"text {t} belongs to image {i}, outside 0..{sim.shape[0] - 1}")
        texts_of[i].add(t)
    lonely = [i for i, ts in enumerate(texts_of) if not ts]
    if lonely or not texts_of:
        raise ValueError(f"every image needs at least one text; images without one: {lonely[:10]} "
                         f"(of {len(texts_of)} images); drop them from sim_img_text first")
    ks = (1, 5, 10)
    txt = recall_at_k(sim, texts_of, ks)
    img = recall_at_k(sim.T, [{i} for i in text_to_image], ks)
    out = {f"txt_r@{k}": 100.0 * txt[f"r@{k}"] for k in ks}
    out.update({f"img_r@{k}": 100.0 * img[f"r@{k}"] for k in ks})
    out["mean_recall"] = sum(out.values()) / 6.0
    return out
