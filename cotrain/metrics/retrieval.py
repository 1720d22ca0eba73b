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

__all__ = ["chance_recall", "embedding_recall", "recall_at_k", "retrieval_summary"]


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


def _positive_lists(positives: Sequence[Iterable[int]], n_items: int) -> list[np.ndarray]:
    out = []
    for q, pos in enumerate(positives):
        idx = np.unique(np.fromiter(pos, dtype=np.int64))
        if idx.size == 0:
            raise ValueError(f"query {q} has no relevant item; recall is undefined for it")
        if idx.min() < 0 or idx.max() >= n_items:
            raise ValueError(f"query {q}: relevant items {sorted(idx.tolist())[:10]} outside 0..{n_items - 1}")
        out.append(idx)
    return out


def embedding_recall(queries: np.ndarray, items: np.ndarray, positives: Sequence[Iterable[int]],
                     ks: Sequence[int] = (1, 5, 10), chunk: int = 1024) -> dict:
    """``recall_at_k`` of the dot-product scores ``queries @ items.T``, without the full score matrix.

    Query rows are scored ``chunk`` at a time; each query's 0-based rank is the count of items
    scored above its best relevant item plus the irrelevant ties (pessimistic, as ``recall_at_k``),
    so memory is ``chunk x items`` and the result equals ``recall_at_k`` on the full float32 scores.
    """
    q = np.ascontiguousarray(queries, dtype=np.float32)
    it = np.ascontiguousarray(items, dtype=np.float32)
    if q.ndim != 2 or it.ndim != 2 or q.shape[1] != it.shape[1]:
        raise ValueError(f"queries {q.shape} and items {it.shape} must be 2-D with the same embedding size")
    if len(positives) != q.shape[0]:
        raise ValueError(f"positives has {len(positives)} entries for {q.shape[0]} queries (one set per query)")
    if any(k < 1 for k in ks):
        raise ValueError(f"k must be >= 1; got {list(ks)}")
    if not (np.isfinite(q).all() and np.isfinite(it).all()):
        raise ValueError("embeddings contain NaN or inf; a NaN similarity has no rank (fix the encoder)")
    pos = _positive_lists(positives, it.shape[0])
    if not pos:
        return {f"r@{k}": None for k in ks}
    ranks = np.empty(len(pos), dtype=np.int64)
    for start in range(0, len(pos), chunk):
        part = pos[start:start + chunk]
        s = q[start:start + len(part)] @ it.T
        lens = np.array([len(p) for p in part])
        firsts = np.concatenate([[0], np.cumsum(lens)[:-1]])
        rows = np.repeat(np.arange(len(part)), lens)
        vals = s[rows, np.concatenate(part)]  # the relevant items' scores, read from the same matrix
        best = np.maximum.reduceat(vals, firsts)
        relevant_ties = np.add.reduceat(vals == best[rows], firsts)
        # above the best relevant item, plus the items tied with it that are not relevant
        ranks[start:start + len(part)] = ((s > best[:, None]).sum(axis=1) + (s == best[:, None]).sum(axis=1)
                                          - relevant_ties)
    return {f"r@{k}": float((ranks < k).mean()) for k in ks}


def chance_recall(n_items: int, n_relevant: Sequence[int], ks: Sequence[int] = (1, 5, 10)) -> dict:
    """Expected R@k of random scores: per query 1 - C(m - r, k) / C(m, k), averaged over the queries."""
    from math import comb

    def hit(r: int, k: int) -> float:
        return 1.0 if k >= n_items else 1 - comb(n_items - r, k) / comb(n_items, k)

    n = max(len(n_relevant), 1)
    return {f"r@{k}": sum(hit(int(r), k) for r in n_relevant) / n for k in ks}
