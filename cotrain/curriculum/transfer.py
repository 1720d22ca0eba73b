"""Lesson 1: IR-visible transfer difficulty by the kernel trick, in chunks.

With a kernel k(x, y) = phi(x) . phi(y), the IR features R = {r_j} (n_r) and the visible features
V = {v_j} (n_v), the domain centres are c_ir = mean_j phi(r_j) and c_vis = mean_j phi(v_j), and

    MMD^2 = ||c_vis - c_ir||^2 = K(V, V) + K(R, R) - 2 K(R, V)           (K(A, B): the mean of k over A x B)

(the biased V-statistic: every pair, diagonals included, as the centres define it). The score of a
sample x_i (an IR image of the training set) is its position along the IR -> visible axis:

    d_i = (phi(x_i) - c_ir) . (c_vis - c_ir) / ||c_vis - c_ir|| + MMD
        = ( K(x_i, V) - K(x_i, R) - K(R, V) + K(R, R) ) / MMD + MMD

so no feature map is ever formed, and ||c_vis - c_ir|| is the MMD itself. d_i = MMD when x_i projects
onto c_ir, 2 MMD when it projects onto c_vis: a LARGER d_i is a sample closer to the visible domain,
which the visible-light model transfers to more easily. The curriculum therefore ranks lesson 1 by
DESCENDING d_i (easiest first); see ``cotrain.curriculum.schedule``.

Kernel: Gaussian k(x, y) = exp(-||x - y||^2 / (2 sigma^2)). Bandwidth: the median heuristic, sigma^2 =
median of ||a - b||^2 / 2 over pairs of a sample of at most 2,000 points of R u V (seeded), times
``bandwidth_scale`` (default 1); or ``bandwidth`` given outright. A scale below 1 makes the kernel
local: K(x, V) then weighs the visible images nearest to x, not the whole set's spread, which ranked the
synthetic knob far better with small random encoders (docs/benchmarks.md, "Curriculum scores").
``linear`` (k = x . y, phi = identity) is there for checking against an explicit feature map.

Memory: every mean is a sum over blocks of ``chunk x chunk`` kernel values, so 200,000 samples
against 20,000 references never hold more than one block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

KERNELS = ("gaussian", "linear")


def _check(name: str, x: np.ndarray) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (n, d) feature matrix, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds NaN or inf features; fix the encoder or drop those images")
    return a


def median_bandwidth(ir: np.ndarray, vis: np.ndarray, *, max_points: int = 2000, seed: int = 0) -> float:
    """sigma of the median heuristic: sigma^2 = median over distinct pairs of ||a - b||^2 / 2."""
    pool = np.concatenate([_check("ir", ir), _check("vis", vis)])
    if len(pool) > max_points:
        pool = pool[np.random.default_rng(seed).choice(len(pool), max_points, replace=False)]
    sq = (pool * pool).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * pool @ pool.T, 0.0)
    med = float(np.median(d2[np.triu_indices(len(pool), 1)]))
    if med <= 0:
        raise ValueError("all features are identical: the median distance is 0 and no bandwidth exists; "
                         "pass bandwidth= explicitly or check the encoder")
    return math.sqrt(med / 2)


def _block(a: np.ndarray, b: np.ndarray, kernel: str, sigma: float) -> np.ndarray:
    dots = a @ b.T
    if kernel == "linear":
        return dots
    d2 = np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * dots, 0.0)
    return np.exp(-d2 / (2 * sigma * sigma))


def row_means(x: np.ndarray, refs: np.ndarray, kernel: str, sigma: float, chunk: int = 2048) -> np.ndarray:
    """K(x_i, refs) for every row i: the mean kernel value against the references, block by block."""
    out = np.zeros(len(x))
    for i in range(0, len(x), chunk):
        xi = x[i:i + chunk]
        for j in range(0, len(refs), chunk):
            out[i:i + chunk] += _block(xi, refs[j:j + chunk], kernel, sigma).sum(1)
    return out / len(refs)


@dataclass
class TransferScores:
    scores: np.ndarray
    """d_i per sample (larger = closer to the visible domain = easier)."""
    mmd2: float
    bandwidth: float | None
    kernel: str


def transfer_scores(samples: np.ndarray, ir: np.ndarray, vis: np.ndarray, *, kernel: str = "gaussian",
                    bandwidth: float | None = None, bandwidth_scale: float = 1.0, chunk: int = 2048,
                    seed: int = 0) -> TransferScores:
    """d_i of every row of ``samples`` given the IR and visible reference features (see the module docstring)."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel={kernel!r}; use one of {', '.join(KERNELS)}")
    x, r, v = _check("samples", samples), _check("ir", ir), _check("vis", vis)
    if not x.shape[1] == r.shape[1] == v.shape[1]:
        raise ValueError(f"feature sizes differ: samples {x.shape[1]}, ir {r.shape[1]}, vis {v.shape[1]}")
    sigma = None
    if kernel == "gaussian":
        if not bandwidth_scale > 0:
            raise ValueError(f"bandwidth_scale={bandwidth_scale}; it must be > 0")
        sigma = float(bandwidth) if bandwidth is not None else bandwidth_scale * median_bandwidth(r, v, seed=seed)
        if not sigma > 0:
            raise ValueError(f"bandwidth={bandwidth}; it must be > 0")
    k_rr = float(row_means(r, r, kernel, sigma, chunk).mean())
    k_vv = float(row_means(v, v, kernel, sigma, chunk).mean())
    k_rv = float(row_means(r, v, kernel, sigma, chunk).mean())
    mmd2 = k_vv + k_rr - 2 * k_rv
    if not mmd2 > 1e-12:
        raise ValueError(f"MMD^2 = {mmd2:.3g}: the IR and visible feature sets are not distinguishable, so the "
                         "transfer direction is undefined; check that the two sets differ")
    mmd = math.sqrt(mmd2)
    proj = row_means(x, v, kernel, sigma, chunk) - row_means(x, r, kernel, sigma, chunk) - k_rv + k_rr
    return TransferScores(proj / mmd + mmd, mmd2, sigma, kernel)
