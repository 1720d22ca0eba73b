"""Synthetic DOTA-like ground truth and detector output for metric tests and the APnc benchmark.

This module owns ``make_synthetic_dota``: rotated objects in 1024 x 1024 patches with a crowded
tail (a few images hold hundreds of objects, as small-vehicle patches do), and detections made
from them the way a detector errs: jittered copies of most GT (true positives, sometimes with the
wrong class or a duplicate), misses, and random false positives with lower scores. It must not
compute metrics or IoU; every random choice comes from one ``numpy.random.default_rng((seed, ...))``.

At ``n_images=21046`` (DOTA-v1.0 trainval patches) it gives about 270k GT and 300k detections.
"""

from __future__ import annotations

import numpy as np

from cotrain.dota.types import DOTA_V1_CLASSES, GT, Det, Detections, GroundTruth

# Typical long side in pixels per class index (plane ... helicopter): vehicles are small, fields large.
_CLASS_SIZE = np.array([60, 80, 120, 220, 18, 40, 35, 50, 60, 30, 200, 150, 90, 40, 50], dtype=np.float64)


def _corners(cx, cy, w, h, theta) -> np.ndarray:
    """(N, 8) corners of rotated rectangles, theta in radians from +x towards +y."""
    c, s = np.cos(theta), np.sin(theta)
    out = []
    for a, b in ((-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)):
        dx, dy = a * w, b * h
        out += [cx + dx * c - dy * s, cy + dx * s + dy * c]
    return np.stack(out, axis=1)


def make_synthetic_dota(n_images: int, seed: int, *, classes=DOTA_V1_CLASSES, mean_objects: float = 12.8,
                        recall: float = 0.8, fp_per_image: float = 4.0, duplicate_rate: float = 0.03,
                        wrong_class_rate: float = 0.03, difficult_rate: float = 0.05,
                        image_size: int = 1024) -> tuple[Detections, GroundTruth]:
    """(detections, ground truth) for ``n_images`` images ``P00000``, ``P00001``, ...

    Objects per image follow a geometric law with mean ``mean_objects`` (the crowded tail); each
    image draws its objects from up to 3 classes. A GT is detected with probability ``recall``
    (jittered box, score ~ Beta(5, 2)); detections also include duplicates, wrong-class copies and
    ``fp_per_image`` random boxes on average (score ~ Beta(2, 5)). Detections of an image come in a
    shuffled emitted order.
    """
    rng = np.random.default_rng((seed, n_images))
    n_cls = len(classes)
    sizes = np.resize(_CLASS_SIZE, n_cls)
    per_image = rng.geometric(1.0 / (1.0 + mean_objects), size=n_images) - 1
    img = np.repeat(np.arange(n_images), per_image)
    n = len(img)
    image_classes = rng.integers(0, n_cls, size=(n_images, 3))
    label = image_classes[img, rng.integers(0, 3, size=n)]
    w = sizes[label] * rng.lognormal(0.0, 0.3, size=n)
    h = w * rng.uniform(0.3, 1.0, size=n)
    cx, cy = rng.uniform(0, image_size, size=(2, n))
    theta = rng.uniform(-np.pi / 2, np.pi / 2, size=n)
    difficult = (rng.random(n) < difficult_rate).astype(int)

    # Detections: jittered copies of found GT (a few found twice), then random false positives.
    found = np.flatnonzero(rng.random(n) < recall)
    twice = found[rng.random(len(found)) < duplicate_rate]
    src = np.concatenate([found, twice])
    k = len(src)
    d_img = img[src]
    d_label = label[src].copy()
    swap = rng.random(k) < wrong_class_rate
    d_label[swap] = rng.integers(0, n_cls, size=int(swap.sum()))
    d_w = w[src] * rng.normal(1.0, 0.1, size=k)
    d_h = h[src] * rng.normal(1.0, 0.1, size=k)
    d_cx = cx[src] + rng.normal(0.0, 0.08, size=k) * w[src]
    d_cy = cy[src] + rng.normal(0.0, 0.08, size=k) * h[src]
    d_theta = theta[src] + rng.normal(0.0, 0.08, size=k)
    d_score = rng.beta(5, 2, size=k)
    n_fp = rng.poisson(fp_per_image, size=n_images)
    f_img = np.repeat(np.arange(n_images), n_fp)
    m = len(f_img)
    f_label = image_classes[f_img, rng.integers(0, 3, size=m)]
    f_w = sizes[f_label] * rng.lognormal(0.0, 0.3, size=m)
    det_img = np.concatenate([d_img, f_img])
    det_label = np.concatenate([d_label, f_label])
    det_quad = np.concatenate([
        _corners(d_cx, d_cy, np.abs(d_w), np.abs(d_h), d_theta),
        _corners(*rng.uniform(0, image_size, size=(2, m)), f_w, f_w * rng.uniform(0.3, 1.0, size=m),
                 rng.uniform(-np.pi / 2, np.pi / 2, size=m)),
    ])
    det_score = np.concatenate([d_score, rng.beta(2, 5, size=m)])
    # Shuffled emitted order inside each image: sort by (image, random key).
    order = np.lexsort((rng.random(len(det_img)), det_img))

    names = [f"P{i:05d}" for i in range(n_images)]
    gt_quad = _corners(cx, cy, w, h, theta)
    gts: GroundTruth = {name: [] for name in names}
    for i in range(n):
        gts[names[img[i]]].append(GT(classes[label[i]], gt_quad[i], int(difficult[i])))
    dets: Detections = {name: [] for name in names}
    for i in order:
        dets[names[det_img[i]]].append(Det(classes[det_label[i]], det_quad[i], float(det_score[i])))
    return dets, gts
