"""Synthetic detection data: a simulated scored detector, and DOTA-like ground truth for the benchmark.

``simulate_detector`` is the one model of how a detector errs, used by the detection demo
(``cotrain make-demo-detections``) and by ``make_synthetic_dota``: jittered copies of most GT (true
positives, sometimes with the wrong class or found twice), misses, and random false positives with
lower scores, every choice seeded by (seed, image id). ``make_synthetic_dota`` adds rotated
objects in 1024 x 1024 patches with a crowded tail (a few images hold hundreds of objects, as
small-vehicle patches do) and shuffles each image's emitted order. This module must not compute
metrics or IoU.

At ``n_images=21046`` (DOTA-v1.0 trainval patches) it gives about 270k GT and 300k detections.
"""

from __future__ import annotations

import zlib

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
    image draws its objects from up to 3 classes. Detections come from ``simulate_detector`` (recall,
    duplicates, wrong classes, ``fp_per_image`` false positives on average) in a shuffled emitted
    order per image.
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

    names = [f"P{i:05d}" for i in range(n_images)]
    gt_quad = _corners(cx, cy, w, h, theta)
    gts: GroundTruth = {name: [] for name in names}
    for i in range(n):
        gts[names[img[i]]].append(GT(classes[label[i]], gt_quad[i], int(difficult[i])))
    dets = simulate_detector(gts, list(classes), dict.fromkeys(names, (image_size, image_size)), seed=seed,
                             recall=recall, fp_per_image=fp_per_image, jitter=0.08, confusion=wrong_class_rate,
                             duplicate_rate=duplicate_rate)
    for name in names:  # shuffled emitted order inside each image (APnc ranks by it)
        dets[name] = [dets[name][k] for k in rng.permutation(len(dets[name]))]
    return dets, gts


def _rng(seed: int, image_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(image_id.encode())])


def simulate_detector(gts: GroundTruth, classes: list[str], image_sizes: dict[str, tuple[int, int]], *,
                      seed: int = 0, recall: float = 0.85, fp_per_image: float = 1.0, jitter: float = 0.08,
                      confusion: float = 0.05, duplicate_rate: float = 0.0) -> Detections:
    """A scored detector output: each GT found with probability ``recall`` (jittered by ``jitter`` of its
    size, score ~ Beta(5, 2)), sometimes with the wrong class (``confusion``) and, with probability
    ``duplicate_rate``, found twice; plus Poisson(``fp_per_image``) false positives per image with
    score ~ Beta(2, 5). Deterministic in (seed, image id): an image's output does not depend on the
    other images."""
    out: Detections = {}
    for image_id in sorted(gts):
        rng = _rng(seed, image_id)
        dets: list[Det] = []
        for g in gts[image_id]:
            if rng.random() >= recall:
                continue
            q = g.quad.reshape(4, 2)
            size = np.ptp(q, axis=0)
            shift = rng.normal(0.0, jitter, size=2) * size
            scale = 1.0 + rng.normal(0.0, jitter)
            centre = q.mean(axis=0)
            quad = ((q - centre) * scale + centre + shift).reshape(-1)
            label = g.label if rng.random() >= confusion else classes[int(rng.integers(len(classes)))]
            dets.append(Det(label, quad, float(rng.beta(5, 2))))
            if duplicate_rate and rng.random() < duplicate_rate:  # no draw at rate 0: demo outputs unchanged
                dup = (q - centre) * (1.0 + rng.normal(0.0, jitter)) + centre + rng.normal(0.0, jitter, size=2) * size
                dets.append(Det(label, dup.reshape(-1), float(rng.beta(5, 2))))
        w, h = image_sizes[image_id]
        for _ in range(int(rng.poisson(fp_per_image))):
            bw, bh = rng.uniform(8, 60, size=2)
            x, y = rng.uniform(0, max(1.0, w - bw)), rng.uniform(0, max(1.0, h - bh))
            quad = np.array([x, y, x + bw, y, x + bw, y + bh, x, y + bh])
            dets.append(Det(classes[int(rng.integers(len(classes)))], quad, float(rng.beta(2, 5))))
        out[image_id] = dets
    return out
