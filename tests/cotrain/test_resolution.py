"""smart_resize against transformers' own, and the random-resize area distribution."""

import math

import numpy as np
import pytest

from cotrain.errors import ConfigError, CotrainError
from cotrain.resolution import ImageSizeError, random_resize, smart_resize

# The torchvision-free PIL image processor module carries the reference function.
hf = pytest.importorskip("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl")
hf_smart_resize = hf.smart_resize

BUDGETS = [
    (28, 4 * 28 * 28, 16384 * 28 * 28),     # Qwen2/2.5-VL defaults
    (28, 256 * 28 * 28, 1296 * 28 * 28),    # RSCoVLM-style training budget
    (32, 4 * 32 * 32, 16384 * 32 * 32),     # Qwen3-VL
    (28, 56 * 56, 14 * 14 * 4 * 1280),      # transformers' function defaults
]


def _same(h, w, f, lo, hi):
    try:
        expected = hf_smart_resize(h, w, factor=f, min_pixels=lo, max_pixels=hi)
    except ValueError:
        with pytest.raises(ValueError):
            smart_resize(h, w, f, lo, hi)
        return
    assert smart_resize(h, w, f, lo, hi) == expected, (h, w, f, lo, hi)


def test_smart_resize_equals_transformers_on_random_sizes():
    rng = np.random.default_rng(20240601)
    for f, lo, hi in BUDGETS:
        # Log-uniform sides from 1 to 30000 px cover tiny chips, ordinary tiles and UHR scenes,
        # and some pairs beyond aspect ratio 200 (both must raise).
        sides = np.exp(rng.uniform(0, math.log(30000), size=(1500, 2))).astype(int) + 1
        for h, w in sides:
            _same(int(h), int(w), f, lo, hi)


@pytest.mark.parametrize("h,w", [(1, 1), (28, 28), (14, 14), (42, 42), (70, 70), (42, 70), (1, 200), (200, 1),
                                 (1, 201), (201, 1), (3, 600), (3, 601), (27, 5400), (10000, 50), (20000, 20000),
                                 (1000, 500), (500, 1000), (55, 9)])
@pytest.mark.parametrize("budget", BUDGETS)
def test_smart_resize_edge_cases(h, w, budget):
    # 42 and 70 are 1.5 and 2.5 factors: Python rounds halves to even, and so must we.
    _same(h, w, *budget)


def test_aspect_ratio_error_is_a_cotrain_value_error():
    with pytest.raises(ImageSizeError) as e:
        smart_resize(10, 2010)
    assert isinstance(e.value, ValueError) and isinstance(e.value, CotrainError)
    assert "aspect ratio" in str(e.value) and "200" in str(e.value)
    with pytest.raises(ImageSizeError, match="non-positive"):
        smart_resize(0, 100)


def _ks_uniform(samples, lo, hi):
    """Kolmogorov-Smirnov distance between the samples and U(lo, hi)."""
    u = np.sort((np.asarray(samples, dtype=float) - lo) / (hi - lo))
    n = len(u)
    upper = np.arange(1, n + 1) / n - u
    lower = u - np.arange(0, n) / n
    return float(max(upper.max(), lower.max()))


def test_random_resize_area_is_uniform():
    f, lo, hi = 28, 4 * 28 * 28, 16384 * 28 * 28
    rng = np.random.default_rng(7)
    areas = [h * w for h, w in (random_resize(3000, 4000, factor=f, min_pixels=lo, max_pixels=hi, rng=rng)
                                for _ in range(20000))]
    # 1.95/sqrt(n) is the 0.1% critical value. Sides are multiples of 28, so achievable areas form a
    # lattice: near the top one side step changes the area by about 28 * 4800 px, ~1% of the range;
    # 0.01 more allows for that discreteness (a continuous CDF cannot match a step function closer).
    bound = 1.95 / math.sqrt(len(areas)) + 0.01
    assert _ks_uniform(areas, lo, hi) < bound
    # The check has teeth: a uniform SIDE scale (the wrong augmentation) is far from uniform area.
    side = np.random.default_rng(7).uniform(math.sqrt(lo), math.sqrt(hi), size=20000)
    assert _ks_uniform(side ** 2, lo, hi) > 5 * bound


def test_random_resize_keeps_aspect_ratio_and_budget():
    rng = np.random.default_rng(11)
    sizes = np.random.default_rng(12).integers(200, 6000, size=(500, 2))
    for f, lo, hi in BUDGETS[:3]:
        for H, W in sizes:
            if max(H, W) / min(H, W) > 8:
                continue
            h, w = random_resize(int(H), int(W), factor=f, min_pixels=lo, max_pixels=hi, rng=rng)
            assert h % f == 0 and w % f == 0
            assert lo <= h * w <= hi
            # Each side is within one factor of the exactly scaled side, so the original ratio
            # lies between the extreme ratios those errors allow.
            assert (h - f) / (w + f) <= H / W <= (h + f) / (w - f)


def test_random_resize_is_deterministic_in_the_generator():
    a = [random_resize(900, 1600, factor=28, min_pixels=256 * 784, max_pixels=1296 * 784,
                       rng=np.random.default_rng(5)) for _ in range(3)]
    rng = np.random.default_rng(5)
    b = [random_resize(900, 1600, factor=28, min_pixels=256 * 784, max_pixels=1296 * 784, rng=rng)
         for _ in range(50)]
    assert a[0] == a[1] == a[2] == b[0]
    assert len(set(b)) > 10  # consecutive draws of one generator do differ


def test_random_resize_rejects_inverted_budget_and_bad_sizes():
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="min_pixels"):
        random_resize(100, 100, factor=28, min_pixels=2000, max_pixels=1000, rng=rng)
    with pytest.raises(ImageSizeError):
        random_resize(10, 3000, factor=28, min_pixels=784, max_pixels=10 * 784, rng=rng)


def test_resized_wh_of_reads_both_size_orders():
    """[w, h] everywhere now; files written before (``"resized": [h, w]``) still read the same."""
    from cotrain.resolution import resized_wh_of

    assert resized_wh_of({"resized_wh": [448, 224]}) == (448, 224)
    assert resized_wh_of({"resized": [224, 448]}) == (448, 224)
    assert resized_wh_of({"resized_wh": [448, 224], "resized": [1, 2]}) == (448, 224)  # the new field wins
    with pytest.raises(KeyError, match="resized_wh"):
        resized_wh_of({"width": 3})
