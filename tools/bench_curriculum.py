#!/usr/bin/env python
"""Lesson 1 scoring speed and memory: chunked kernel sums vs the full kernel matrices.

    cotrain bench curriculum [--samples 200000] [--references 20000] [--dim 256] [--subset 4000]

Random features stand in for an image tower's (the cost does not depend on their values). Two
measurements in one run:

1. on ``--subset`` samples and references: the brute-force route (the full samples x references
   Gaussian kernel matrices in float64, then row means) against ``transfer_scores`` (chunked): time,
   peak traced memory (tracemalloc, which numpy reports to) and the largest score difference;
2. ``--samples`` x ``--references`` (IR and visible references each) chunked only: seconds and peak
   memory, next to what the full matrices would need.
"""

from __future__ import annotations

import argparse
import math
import time
import tracemalloc

import numpy as np


def features(n: int, d: int, shift: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, 1.0, (n, d)).astype(np.float32)


def brute(x, r, v, sigma):
    def k(a, b):
        d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
        return np.exp(-np.maximum(d2, 0) / (2 * sigma ** 2))

    x, r, v = (np.asarray(a, np.float64) for a in (x, r, v))
    k_rr, k_vv, k_rv = k(r, r).mean(), k(v, v).mean(), k(r, v).mean()
    mmd = math.sqrt(k_vv + k_rr - 2 * k_rv)
    return (k(x, v).mean(1) - k(x, r).mean(1) - k_rv + k_rr) / mmd + mmd


def measured(fn):
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    secs = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, secs, peak / 2 ** 20


def main(argv: list[str] | None = None) -> int:
    from cotrain.curriculum.transfer import median_bandwidth, transfer_scores

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=200000)
    p.add_argument("--references", type=int, default=20000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--subset", type=int, default=4000)
    args = p.parse_args(argv)
    d, s = args.dim, args.subset
    r_small, v_small, x_small = features(s, d, 0.0, 1), features(s, d, 0.3, 2), features(s, d, 0.1, 3)
    sigma = median_bandwidth(r_small, v_small)
    want, t_b, m_b = measured(lambda: brute(x_small, r_small, v_small, sigma))
    got, t_c, m_c = measured(lambda: transfer_scores(x_small, r_small, v_small, bandwidth=sigma).scores)
    print(f"subset {s} samples x {s} + {s} references, dim {d}: brute force {t_b:.2f} s, peak {m_b:,.0f} MiB; "
          f"chunked {t_c:.2f} s, peak {m_c:,.0f} MiB; time ratio {t_b / t_c:.2f}x, memory ratio {m_b / m_c:.1f}x; "
          f"max |difference| {np.abs(got - want).max():.2e}")
    n, m = args.samples, args.references
    x, r, v = features(n, d, 0.1, 4), features(m, d, 0.0, 5), features(m, d, 0.3, 6)
    res, t_f, m_f = measured(lambda: transfer_scores(x, r, v, bandwidth=sigma))
    full = (2 * n * m + 3 * m * m) * 8 / 2 ** 30
    print(f"full {n} samples x {m} IR + {m} visible references, dim {d}: chunked {t_f:.1f} s "
          f"({n / t_f:,.0f} samples/s), peak {m_f:,.0f} MiB (inputs included); the full kernel matrices would "
          f"take {full:,.1f} GiB; MMD^2 {res.mmd2:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
