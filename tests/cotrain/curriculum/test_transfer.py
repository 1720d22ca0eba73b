"""Lesson 1 against an explicit feature map (linear kernel) and a brute-force Gaussian route."""

import math

import numpy as np
import pytest

from cotrain.curriculum.transfer import median_bandwidth, transfer_scores


def _sets(seed=0, n=(7, 9, 11), d=4):
    rng = np.random.default_rng(seed)
    ir = rng.normal(0.0, 1.0, (n[0], d))
    vis = rng.normal(1.5, 1.0, (n[1], d))
    x = rng.normal(0.7, 1.2, (n[2], d))
    return x, ir, vis


def test_linear_kernel_equals_the_explicit_feature_map():
    x, ir, vis = _sets()
    got = transfer_scores(x, ir, vis, kernel="linear", chunk=3)
    c_ir, c_vis = ir.mean(0), vis.mean(0)
    gap = np.linalg.norm(c_vis - c_ir)
    want = (x - c_ir) @ (c_vis - c_ir) / gap + gap
    assert got.mmd2 == pytest.approx(gap ** 2)
    np.testing.assert_allclose(got.scores, want, rtol=1e-10)


def _gauss(a, b, sigma):
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * sigma ** 2))


@pytest.mark.parametrize("chunk", [2, 5, 4096])
def test_gaussian_kernel_equals_brute_force(chunk):
    x, ir, vis = _sets(1)
    sigma = 1.7
    got = transfer_scores(x, ir, vis, bandwidth=sigma, chunk=chunk)
    k_rr, k_vv, k_rv = _gauss(ir, ir, sigma).mean(), _gauss(vis, vis, sigma).mean(), _gauss(ir, vis, sigma).mean()
    mmd2 = k_vv + k_rr - 2 * k_rv
    mmd = math.sqrt(mmd2)
    num = _gauss(x, vis, sigma).mean(1) - _gauss(x, ir, sigma).mean(1) - k_rv + k_rr
    assert got.mmd2 == pytest.approx(mmd2, rel=1e-10)
    np.testing.assert_allclose(got.scores, num / mmd + mmd, rtol=1e-9)
    assert got.bandwidth == sigma and got.kernel == "gaussian"


def test_median_bandwidth_and_its_use_by_default():
    _, ir, vis = _sets(2)
    pool = np.concatenate([ir, vis])
    d2 = ((pool[:, None] - pool[None]) ** 2).sum(-1)[np.triu_indices(len(pool), 1)]
    assert median_bandwidth(ir, vis) == pytest.approx(math.sqrt(np.median(d2) / 2))
    assert transfer_scores(ir, ir, vis).bandwidth == pytest.approx(math.sqrt(np.median(d2) / 2))
    scaled = transfer_scores(ir, ir, vis, bandwidth_scale=0.25)
    assert scaled.bandwidth == pytest.approx(0.25 * math.sqrt(np.median(d2) / 2))
    assert scaled.scores == pytest.approx(transfer_scores(ir, ir, vis, bandwidth=scaled.bandwidth).scores)


def test_visible_like_samples_score_higher():
    x, ir, vis = _sets(3)
    got = transfer_scores(np.stack([ir.mean(0), vis.mean(0)]), ir, vis)
    assert got.scores[1] > got.scores[0]


def test_bad_inputs():
    x, ir, vis = _sets()
    with pytest.raises(ValueError, match="NaN"):
        transfer_scores(np.full((2, 4), np.nan), ir, vis)
    with pytest.raises(ValueError, match="not distinguishable"):
        transfer_scores(x, ir, ir.copy(), kernel="linear")
    with pytest.raises(ValueError, match="feature sizes differ"):
        transfer_scores(x[:, :3], ir, vis)
    with pytest.raises(ValueError, match="bandwidth"):
        transfer_scores(x, ir, vis, bandwidth=0.0)
    with pytest.raises(ValueError, match="bandwidth_scale"):
        transfer_scores(x, ir, vis, bandwidth_scale=-1.0)
    with pytest.raises(ValueError, match="identical"):
        median_bandwidth(np.ones((3, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="kernel"):
        transfer_scores(x, ir, vis, kernel="laplace")
