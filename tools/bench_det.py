#!/usr/bin/env python
"""Benchmarks of the detection package (figures go to docs/benchmarks.md).

Subcommands:

* ``iou``: rotated-IoU pairs per second of ``cotrain.geometry.iou.iou_pairs`` against shapely on the same
  pairs (shapely 2's vectorised intersection/union over polygon arrays, the fair baseline, and a
  per-pair Python loop over a subset), checking on the way that both give the same IoU.

* ``apnc``: full APnc50 (all scores 1, rbox IoU, VOC 11-point) of ``detection.metrics.apnc`` on a
  synthetic set the size of DOTA-v1.0 trainval patches (21,046 images, ~270k GT, ~300k predictions,
  15 classes) against a straightforward shapely evaluator (Python loops over classes, images and
  pairs) on the same data, checking that both give the same mAP.

``cotrain bench det iou --pairs 200000``
``cotrain bench det apnc --images 21046``
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from cotrain.geometry.iou import iou_pairs, rboxes_to_quads

ROOT = Path(__file__).resolve().parent.parent


def _timed(fn, repeats: int = 1):
    """Best wall time of ``repeats`` runs (the first run also warms caches) and the last result."""
    best, result = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def _dota_like_pairs(n_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of rotated boxes in a 1024 px patch, like a detection against its nearby GT.

    Box sizes and aspect ratios span DOTA's range (small vehicles to harbours). Three quarters of
    the pairs are a box and a jittered copy (the pairs an evaluator actually clips); the rest are
    independent boxes, mostly disjoint, which the bounding-box prefilter should dismiss.
    """
    rng = np.random.default_rng([seed, n_pairs])
    size = np.exp(rng.uniform(math.log(8), math.log(300), n_pairs))
    aspect = np.exp(rng.uniform(0, math.log(6), n_pairs))
    ra = np.column_stack([rng.uniform(0, 1024, (n_pairs, 2)), size, size / aspect,
                          rng.uniform(-math.pi / 2, math.pi / 2, n_pairs)])
    rb = ra.copy()
    rb[:, :2] += rng.normal(0, 0.15, (n_pairs, 2)) * ra[:, 2:3]
    rb[:, 2:4] *= rng.uniform(0.7, 1.3, (n_pairs, 2))
    rb[:, 4] += rng.normal(0, 0.2, n_pairs)
    far = rng.random(n_pairs) < 0.25
    rb[far, :2] = rng.uniform(0, 1024, (int(far.sum()), 2))
    return rboxes_to_quads(ra), rboxes_to_quads(rb)


def bench_iou(n_pairs: int, seed: int, loop_pairs: int = 20000, repeats: int = 3) -> dict:
    """Pairs/s of ``iou_pairs`` (modes quad and rbox) and of shapely on the same pairs."""
    import shapely

    a, b = _dota_like_pairs(n_pairs, seed)
    t_quad, ours = _timed(lambda: iou_pairs(a, b, mode="quad"), repeats)
    t_rbox, _ = _timed(lambda: iou_pairs(a, b, mode="rbox"), repeats)

    def shapely_vectorised():
        # Polygon construction counts: a caller starts from coordinate arrays, as iou_pairs does.
        pa = shapely.polygons(a.reshape(-1, 4, 2))
        pb = shapely.polygons(b.reshape(-1, 4, 2))
        inter = shapely.area(shapely.intersection(pa, pb))
        union = shapely.area(pa) + shapely.area(pb) - inter
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)

    def shapely_rbox_vectorised():
        # The DOTA / mmrotate convention: both sides through their minimum rotated rectangles first.
        pa = shapely.minimum_rotated_rectangle(shapely.polygons(a.reshape(-1, 4, 2)))
        pb = shapely.minimum_rotated_rectangle(shapely.polygons(b.reshape(-1, 4, 2)))
        inter = shapely.area(shapely.intersection(pa, pb))
        return inter / (shapely.area(pa) + shapely.area(pb) - inter)

    t_shapely, ref = _timed(shapely_vectorised, 1)
    t_shapely_rbox, _ = _timed(shapely_rbox_vectorised, 1)
    m = min(loop_pairs, n_pairs)

    def shapely_loop():
        out = np.zeros(m)
        for i in range(m):
            pa, pb = shapely.Polygon(a[i].reshape(4, 2)), shapely.Polygon(b[i].reshape(4, 2))
            inter = pa.intersection(pb).area
            union = pa.area + pb.area - inter
            out[i] = inter / union if union > 0 else 0.0
        return out

    t_loop, _ = _timed(shapely_loop, 1)
    return {
        "pairs": n_pairs,
        "overlapping": float((ref > 0).mean()),
        "max_abs_diff_vs_shapely": float(np.abs(ours - ref).max()),
        "ours_quad_pairs_per_s": n_pairs / t_quad,
        "ours_rbox_pairs_per_s": n_pairs / t_rbox,
        "shapely_vectorised_pairs_per_s": n_pairs / t_shapely,
        "shapely_rbox_vectorised_pairs_per_s": n_pairs / t_shapely_rbox,
        "shapely_loop_pairs_per_s": m / t_loop,
        "speedup_quad_vs_shapely_vectorised": t_shapely / t_quad,
        "speedup_rbox_vs_shapely_rbox_vectorised": t_shapely_rbox / t_rbox,
        "speedup_quad_vs_shapely_loop": (m / t_loop) ** -1 / (t_quad / n_pairs),
    }


def shapely_apnc(dets, gts, classes, iou_thr: float = 0.5) -> float:
    """The baseline: a plain VOC evaluator with shapely polygons, every score 1, emitted order.

    Min-area rectangles on both sides (rbox IoU), difficult counted, 11-point AP, mAP over
    classes with GT: the options of ``detection.metrics.apnc``'s defaults.
    """
    import shapely
    from shapely.geometry import Polygon

    def rect(quad):
        return shapely.minimum_rotated_rectangle(Polygon(np.asarray(quad).reshape(4, 2)).convex_hull)

    aps = []
    for cls in classes:
        truth = {img: [[rect(g.quad), False] for g in objs if g.label == cls] for img, objs in gts.items()}
        n_pos = sum(len(v) for v in truth.values())
        if n_pos == 0:
            continue
        hits = []
        for img in sorted(dets):
            for d in dets[img]:
                if d.label != cls:
                    continue
                poly, best, best_row = rect(d.quad), -1.0, None
                for row in truth.get(img, []):
                    inter = poly.intersection(row[0]).area
                    union = poly.area + row[0].area - inter
                    v = inter / union if union > 0 else 0.0
                    if v > best:
                        best, best_row = v, row
                if best_row is not None and best >= iou_thr and not best_row[1]:
                    best_row[1] = True
                    hits.append(1)
                else:
                    hits.append(0)
        tp = np.cumsum(hits)
        recall = tp / n_pos
        precision = tp / np.maximum(np.arange(1, len(hits) + 1), np.finfo(np.float32).eps)
        ap = 0.0
        for r in np.arange(0.0, 1.1, 0.1):
            above = precision[recall >= r]
            ap += (above.max() if above.size else 0.0) / 11.0
        aps.append(ap)
    return float(np.mean(aps))


def bench_apnc(n_images: int, seed: int, baseline: bool = True) -> dict:
    """Full APnc50 on a DOTA-sized synthetic set: ours vs the shapely baseline, same data, same run."""
    from cotrain.dota.types import DOTA_V1_CLASSES
    from detection.metrics import apnc
    from detection.synthetic import make_synthetic_dota

    t_gen, (dets, gts) = _timed(lambda: make_synthetic_dota(n_images, seed))
    classes = list(DOTA_V1_CLASSES)
    t_ours, res = _timed(lambda: apnc(dets, gts, classes), repeats=2)
    out = {"images": len(gts), "gt": sum(map(len, gts.values())), "predictions": sum(map(len, dets.values())),
           "classes": len(classes), "generate_s": t_gen, "ours_s": t_ours, "ours_apnc50": res.mAP}
    if baseline:
        t_base, base = _timed(lambda: shapely_apnc(dets, gts, classes))
        out.update({"shapely_s": t_base, "shapely_apnc50": base, "speedup": t_base / t_ours,
                    "abs_diff": abs(base - res.mAP)})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_iou = sub.add_parser("iou", help="rotated IoU pairs/s vs shapely")
    p_iou.add_argument("--pairs", type=int, default=200000, help="number of box pairs (default 200000)")
    p_iou.add_argument("--seed", type=int, default=0, help="seed of the synthetic boxes")
    p_iou.add_argument("--loop-pairs", type=int, default=20000,
                       help="pairs timed in the per-pair shapely loop (a subset: it is slow)")
    p_ap = sub.add_parser("apnc", help="full APnc on a DOTA-sized synthetic set vs a shapely evaluator")
    p_ap.add_argument("--images", type=int, default=21046, help="images (default: DOTA-v1.0 trainval patches)")
    p_ap.add_argument("--seed", type=int, default=0)
    p_ap.add_argument("--no-baseline", action="store_true", help="time ours only (the baseline takes ~1 min)")
    args = parser.parse_args(argv)
    if args.command == "apnc":
        res = bench_apnc(args.images, args.seed, baseline=not args.no_baseline)
        print(f"APnc50 on {res['images']:,} images, {res['gt']:,} GT, {res['predictions']:,} predictions, "
              f"{res['classes']} classes (data generated in {res['generate_s']:.1f} s)")
        print(f"  detection.metrics.apnc : {res['ours_s']:7.2f} s   APnc50 = {res['ours_apnc50']:.6f}")
        if "shapely_s" in res:
            print(f"  shapely loop evaluator : {res['shapely_s']:7.2f} s   APnc50 = {res['shapely_apnc50']:.6f}")
            print(f"  speedup {res['speedup']:.1f}x, |difference| = {res['abs_diff']:.1e}")
    if args.command == "iou":
        res = bench_iou(args.pairs, args.seed, loop_pairs=args.loop_pairs)
        print(f"rotated IoU on {res['pairs']} DOTA-like pairs ({res['overlapping']:.0%} overlapping), "
              f"max |ours - shapely| = {res['max_abs_diff_vs_shapely']:.1e}")
        print(f"  cotrain.geometry.iou.iou_pairs mode=quad : {res['ours_quad_pairs_per_s']:>12,.0f} pairs/s")
        print(f"  cotrain.geometry.iou.iou_pairs mode=rbox : {res['ours_rbox_pairs_per_s']:>12,.0f} pairs/s")
        print(f"  shapely 2 vectorised (quads)      : {res['shapely_vectorised_pairs_per_s']:>12,.0f} pairs/s")
        print(f"  shapely 2 vectorised (min rects)  : {res['shapely_rbox_vectorised_pairs_per_s']:>12,.0f} pairs/s")
        print(f"  shapely per-pair Python loop      : {res['shapely_loop_pairs_per_s']:>12,.0f} pairs/s")
        print(f"  speedup, like for like: quad vs shapely vectorised {res['speedup_quad_vs_shapely_vectorised']:.1f}x, "
              f"rbox vs shapely min rects {res['speedup_rbox_vs_shapely_rbox_vectorised']:.1f}x, "
              f"quad vs shapely loop {res['speedup_quad_vs_shapely_loop']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
