#!/usr/bin/env python
"""Tri-modal retrieval scoring from precomputed embeddings: chunked exact ranks vs the dense route.

    cotrain bench retrieval [--images 10000] [--captions-per-image 5] [--dim 512] [--subset 2000]

Random L2-normalised embeddings stand in for a CLIP model's (the cost of scoring does not depend on
their values). Two measurements in one run:

1. on ``--subset`` images (and their captions), image->text and text->image R@1/5/10 two ways:
   the dense route (the whole float64 score matrix, then ``recall_at_k``) and the chunked route
   (``embedding_recall``); their ratio, and a check that both give the same numbers;
2. image->text and text->image at full size (``--images`` x ``--images * captions-per-image``), chunked;
3. the six directions of ``cotrain.contrastive.evaluate.retrieval_scores`` (IR<->text, RGB<->IR,
   RGB<->text) at full size (``--images`` x ``--images * captions-per-image`` captions, twice:
   original and IR-aware captions), chunked only: seconds and queries/s.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def both_ways(img: np.ndarray, txt: np.ndarray, owner: np.ndarray, route) -> dict:
    texts_of = [set() for _ in range(img.shape[0])]
    for t, i in enumerate(owner):
        texts_of[int(i)].add(t)
    a = route(img, txt, texts_of)
    b = route(txt, img, [{int(i)} for i in owner])
    return {**{f"i2t_{k}": v for k, v in a.items()}, **{f"t2i_{k}": v for k, v in b.items()}}


def dense(q, items, pos):
    from cotrain.metrics.retrieval import recall_at_k

    return recall_at_k((q @ items.T).astype(np.float64), pos)


def chunked(q, items, pos):
    from cotrain.metrics.retrieval import embedding_recall

    return embedding_recall(q, items, pos)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=10000)
    p.add_argument("--captions-per-image", type=int, default=5)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--subset", type=int, default=2000, help="images of the dense-vs-chunked comparison")
    args = p.parse_args(argv)
    n, c, d = args.images, args.captions_per_image, args.dim

    s = min(args.subset, n)
    img, txt = unit_rows(s, d, 1), unit_rows(s * c, d, 2)
    owner = np.repeat(np.arange(s), c)
    t0 = time.perf_counter()
    base = both_ways(img, txt, owner, dense)
    t_dense = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = both_ways(img, txt, owner, chunked)
    t_chunk = time.perf_counter() - t0
    same = all(abs(base[k] - ours[k]) < 1e-12 for k in base)
    print(f"subset {s} images x {s * c} captions, both ways: dense {t_dense:.2f} s, chunked {t_chunk:.2f} s, "
          f"ratio {t_dense / t_chunk:.2f}x, identical results: {same}")

    from cotrain.contrastive.evaluate import retrieval_scores

    rgb, ir = unit_rows(n, d, 3), unit_rows(n, d, 4)
    texts, ir_texts = unit_rows(n * c, d, 5), unit_rows(n * c, d, 6)
    owners = [{i} for i in range(n) for _ in range(c)]
    t0 = time.perf_counter()
    both_ways(rgb, texts, np.repeat(np.arange(n), c), chunked)
    print(f"full {n} images x {n * c} captions, image->text and text->image: {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    out = retrieval_scores(rgb, ir, texts, owners, ir_texts, owners)
    t_full = time.perf_counter() - t0
    queries = 2 * (n + n * c) + 2 * n
    print(f"full {n} images x {n * c} captions (x2 caption sets), six directions: {t_full:.1f} s, "
          f"{queries / t_full:,.0f} queries/s; mean R {out['mean_recall']:.3f} (random {out['chance_mean_recall']:.3f})")
    if not same:
        print("MISMATCH between the dense and the chunked route")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
