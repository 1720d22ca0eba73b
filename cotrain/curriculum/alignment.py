"""Lesson 2: IR-text alignment difficulty from the loss variation of a warm-up run, and the loss weights.

For each IR-text pair i, l_i is its contrastive loss under the model before a warm-up run and l'_i
under the model after it (``pair_losses``). The loss variation rate is

    alpha_i = (l'_i - l_i) / l_i

(negative: the warm-up made the pair easier to align; positive: harder). The weight of pair i is

    w_i = 1 - sigmoid( alpha_i / median{alpha_j : alpha_j > 0} )          if alpha_i > 0
    w_i = 1 + sigmoid( -alpha_i / median{-alpha_j : alpha_j <= 0} )       otherwise

so pairs whose loss rose weigh in (0, 0.5) and pairs whose loss fell weigh in [1.5, 2). Each median is
taken over its own branch only, so "alpha all positive" never asks for the median of an empty set.
When the non-positive branch's median is 0 (its alphas are all 0) the ratio is taken as 0, giving
w = 1.5 (sigmoid(0) = 1/2); a positive alpha always has a positive median. Lesson 2's difficulty is
alpha itself: the curriculum ranks it ASCENDING (the pairs the warm-up helped most come first).

``pair_losses``: per pair, the symmetric InfoNCE row loss (mean of the IR->text and text->IR cross
entropies of that pair) inside fixed, deterministic batches of ``batch`` pairs (record order; a last batch of
one pair joins the one before), the same batches before and after the warm-up, so l and l' see the
same negatives. ``record_pair_losses``: a record with several texts (captions) gets the mean of its
pairs' losses, each text slot batched on its own.
"""

from __future__ import annotations

import numpy as np


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def variation_rate(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """alpha_i = (l'_i - l_i) / l_i; losses must be finite and positive."""
    l0, l1 = np.asarray(before, np.float64), np.asarray(after, np.float64)
    if l0.shape != l1.shape or l0.ndim != 1 or l0.size == 0:
        raise ValueError(f"before {l0.shape} and after {l1.shape} must be equal-length non-empty vectors")
    if not (np.isfinite(l0).all() and np.isfinite(l1).all()):
        raise ValueError("pair losses contain NaN or inf; check the checkpoints and the pairs")
    if (l0 <= 0).any():
        bad = np.flatnonzero(l0 <= 0)[:5].tolist()
        raise ValueError(f"{int((l0 <= 0).sum())} pairs have a loss <= 0 before the warm-up (e.g. positions {bad}); "
                         "alpha divides by it. A contrastive loss is > 0 unless the batch has one pair")
    return (l1 - l0) / l0


def loss_weights(alpha: np.ndarray) -> np.ndarray:
    """w_i of the module docstring, from the variation rates."""
    a = np.asarray(alpha, np.float64)
    if not np.isfinite(a).all():
        raise ValueError("alpha contains NaN or inf")
    w = np.empty_like(a)
    up = a > 0
    if up.any():
        w[up] = 1.0 - _sigmoid(a[up] / np.median(a[up]))
    down = ~up
    if down.any():
        med = float(np.median(-a[down]))
        ratio = -a[down] / med if med > 0 else np.zeros(int(down.sum()))
        w[down] = 1.0 + _sigmoid(ratio)
    return w


def pair_losses(image_emb: np.ndarray, text_emb: np.ndarray, scale: float, batch: int = 256) -> np.ndarray:
    """Per-pair symmetric InfoNCE loss inside consecutive batches of ``batch`` pairs (L2-normalised rows)."""
    im, tx = np.asarray(image_emb, np.float64), np.asarray(text_emb, np.float64)
    if im.shape != tx.shape or im.ndim != 2:
        raise ValueError(f"image {im.shape} and text {tx.shape} embeddings must have the same (n, d) shape")
    n = len(im)
    if n < 2:
        raise ValueError("a contrastive pair loss needs at least 2 pairs (one negative)")
    out = np.empty(n)
    bounds = [*range(0, n, batch), n]
    if bounds[-1] - bounds[-2] == 1:  # a last batch of one pair joins the previous batch
        del bounds[-2]
    for s, e in zip(bounds[:-1], bounds[1:]):
        logits = scale * im[s:e] @ tx[s:e].T
        diag = np.diag(logits)

        def lse(m, axis):
            top = m.max(axis=axis, keepdims=True)
            return (top + np.log(np.exp(m - top).sum(axis=axis, keepdims=True))).squeeze(axis)

        out[s:e] = ((lse(logits, 1) - diag) + (lse(logits, 0) - diag)) / 2
    return out


def record_pair_losses(image_emb: np.ndarray, text_emb: np.ndarray, n_texts: list[int], scale: float,
                       batch: int = 256) -> np.ndarray:
    """Per record, the mean ``pair_losses`` of its image with each of its texts.

    ``text_emb`` holds the records' texts in record order, ``n_texts[i]`` of record i (>= 1). Slot j pairs
    every record that has a j-th text with it, in record order, so a batch never holds two texts of one
    image (one would be the other's false negative). A record with fewer texts sits out the later slots;
    a later slot left with a single record is dropped (it has no negative).
    """
    counts = np.asarray(n_texts, dtype=np.int64)
    if len(counts) != len(image_emb) or (counts < 1).any() or counts.sum() != len(text_emb):
        raise ValueError(f"{len(image_emb)} images, {len(counts)} text counts (each >= 1) summing to {counts.sum()}, "
                         f"but {len(text_emb)} text embeddings")
    start = np.cumsum(counts) - counts
    im, tx = np.asarray(image_emb), np.asarray(text_emb)
    total, used = np.zeros(len(counts)), np.zeros(len(counts))
    for j in range(int(counts.max())):
        idx = np.flatnonzero(counts > j)
        if j and len(idx) < 2:
            break
        total[idx] += pair_losses(im[idx], tx[start[idx] + j], scale, batch)
        used[idx] += 1
    return total / used
