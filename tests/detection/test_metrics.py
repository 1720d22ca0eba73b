"""Tests of detection.metrics: hand-derived AP cases and parity with a loop-and-shapely reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from shapely.geometry import MultiPoint, Polygon

from cotrain.dota.types import GT, Det
from cotrain.errors import ConfigError
from detection import metrics as M
from detection.synthetic import make_synthetic_dota


def box(x, y, w, h):
    """Axis-aligned quad with top-left (x, y)."""
    return [x, y, x + w, y, x + w, y + h, x, y + h]


# --------------------------------------------------------------------------- reference evaluator
# A deliberately plain VOC evaluator: Python loops, shapely polygons, list sorting. It shares no
# code with detection.metrics.

def _poly(quad, mode):
    hull = MultiPoint([(quad[i], quad[i + 1]) for i in range(0, 8, 2)]).convex_hull
    return hull.minimum_rotated_rectangle if mode == "rbox" else hull


def _iou(p, q):
    if p.area <= 0 or q.area <= 0:
        return 0.0
    inter = p.intersection(q).area
    return inter / (p.area + q.area - inter)


def _ref_ap(rec, prec, method):
    if method == "11point":
        total = 0.0
        for i in range(11):
            r = 0.1 * i  # equals np.arange(0, 1.1, 0.1)[i] bit for bit
            vals = [p for p, rr in zip(prec, rec) if rr >= r]
            total += max(vals) if vals else 0.0
        return total / 11
    mrec = [0.0] + list(rec) + [1.0]
    mpre = [0.0] + list(prec) + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])


def ref_eval(dets, gts, classes, iou_thr=0.5, method="11point", mode="rbox", difficult="count",
             use_scores=True, score_gt=None):
    aps = {}
    for cls in classes:
        gt_polys, npos = {}, 0
        for img, objs in gts.items():
            rows = []
            for g in objs:
                if g.label != cls:
                    continue
                ign = difficult == "ignore" and g.difficult > 0
                npos += 0 if ign else 1
                rows.append([_poly(g.quad, mode), ign, False])
            gt_polys[img] = rows
        cand = []
        for img in sorted(dets):
            for d in dets[img]:
                if d.label == cls and (score_gt is None or d.score > score_gt):
                    cand.append((d.score if use_scores and score_gt is None else 1.0, img, _poly(d.quad, mode)))
        cand.sort(key=lambda c: -c[0])  # Python's sort is stable
        tp, fp = [], []
        for _, img, p in cand:
            best, best_j = -1.0, -1
            for j, row in enumerate(gt_polys.get(img, [])):
                v = _iou(p, row[0])
                if v > best:
                    best, best_j = v, j
            if best_j >= 0 and best >= iou_thr:
                row = gt_polys[img][best_j]
                if row[1]:
                    continue
                if not row[2]:
                    row[2] = True
                    tp.append(1), fp.append(0)
                else:
                    tp.append(0), fp.append(1)
            else:
                tp.append(0), fp.append(1)
        if npos == 0:
            continue
        ctp = np.cumsum(tp).tolist()
        cfp = np.cumsum(fp).tolist()
        rec = [t / npos for t in ctp]
        prec = [t / (t + f) for t, f in zip(ctp, cfp)]
        aps[cls] = _ref_ap(rec, prec, method)
    return aps


def random_scene(seed, n_images=30, classes=("a", "b", "c"), convex_jitter=0.0):
    """Clustered rotated boxes so that detections overlap several GT, with tied scores."""
    rng = np.random.default_rng((seed, 17))
    dets, gts = {}, {}
    for i in range(n_images):
        img = f"img{rng.integers(0, 1000):03d}_{i}"
        g_list, d_list = [], []
        for _ in range(rng.integers(0, 8)):
            cx, cy = rng.uniform(0, 100, 2)
            w, h = rng.uniform(5, 30, 2)
            th = rng.uniform(-math.pi, math.pi)
            quad = _rot(cx, cy, w, h, th) + rng.uniform(-convex_jitter, convex_jitter, 8)
            g_list.append(GT(str(rng.choice(classes)), quad, int(rng.random() < 0.2)))
            for _ in range(rng.integers(0, 3)):
                j = _rot(cx + rng.normal(0, 3), cy + rng.normal(0, 3), w * rng.uniform(0.8, 1.2),
                         h * rng.uniform(0.8, 1.2), th + rng.normal(0, 0.2))
                label = g_list[-1].label if rng.random() < 0.85 else str(rng.choice(classes))
                d_list.append(Det(label, j, round(float(rng.random()), 1)))
        for _ in range(rng.integers(0, 3)):
            d_list.append(Det(str(rng.choice(classes)), _rot(*rng.uniform(0, 100, 2), *rng.uniform(5, 30, 2), 0.3),
                              round(float(rng.random()), 1)))
        dets[img], gts[img] = d_list, g_list
    return dets, gts


def _rot(cx, cy, w, h, th):
    c, s = math.cos(th), math.sin(th)
    out = []
    for a, b in ((-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)):
        out += [cx + a * w * c - b * h * s, cy + a * w * s + b * h * c]
    return np.array(out)


# --------------------------------------------------------------------------- hand-derived cases

def test_single_top_ranked_tp_with_low_recall_gives_one_eleventh():
    gts = {"im": [GT("a", box(100 * k, 0, 10, 10)) for k in range(11)]}
    dets = {"im": [Det("a", box(0, 0, 10, 10), 0.9), Det("a", box(5000, 0, 10, 10), 0.5)]}
    r = M.eval_map(dets, gts, ["a"])
    assert r.ap[0, 0] == pytest.approx(1 / 11, abs=1e-12)  # recall 1/11 < 0.1: only the r=0 point
    assert r.n_gt[0] == 11 and r.n_det[0] == 2


def test_all_true_positives_with_full_recall_give_one():
    gts = {"x": [GT("a", box(0, 0, 10, 10)), GT("a", box(50, 50, 20, 10))], "y": [GT("a", box(5, 5, 8, 8))]}
    dets = {k: [Det("a", g.quad, 0.7) for g in v] for k, v in gts.items()}
    for method in M.AP_METHODS:
        assert M.eval_map(dets, gts, ["a"], ap_method=method).mAP == pytest.approx(1.0, abs=1e-12)


def _ignored_case():
    gts = {"im": [GT("a", box(0, 0, 10, 10), difficult=1), GT("a", box(100, 0, 10, 10))]}
    dets = {"im": [Det("a", box(0, 0, 10, 10), 0.9), Det("a", box(500, 0, 10, 10), 0.8),
                   Det("a", box(100, 0, 10, 10), 0.7)]}
    return dets, gts


def test_match_to_ignored_gt_is_neither_tp_nor_fp():
    dets, gts = _ignored_case()
    r = M.eval_map(dets, gts, ["a"], difficult="ignore")
    # Ranked: ignored (dropped), FP, TP -> precision [0, 1/2], recall [0, 1]: every 11-point value is 1/2.
    # Counting the first detection as an FP instead would give 1/3.
    assert r.ap[0, 0] == pytest.approx(0.5, abs=1e-12)
    assert r.n_gt[0] == 1
    np.testing.assert_allclose(r.precision[0], [0.0, 0.5])


def test_difficult_counted_by_default():
    dets, gts = _ignored_case()
    r = M.eval_map(dets, gts, ["a"])
    # TP, FP, TP over 2 GT: precision [1, 1/2, 2/3], recall [1/2, 1/2, 1] -> (6 * 1 + 5 * 2/3) / 11.
    assert r.n_gt[0] == 2
    assert r.ap[0, 0] == pytest.approx((6 + 5 * 2 / 3) / 11, abs=1e-12)


def test_map_is_over_classes_with_gt_only():
    gts = {"im": [GT("a", box(0, 0, 10, 10))]}
    dets = {"im": [Det("a", box(0, 0, 10, 10)), Det("b", box(40, 40, 10, 10))]}
    r = M.eval_map(dets, gts, ["a", "b", "c"])
    assert r.mAP == pytest.approx(1.0)
    assert math.isnan(r.ap[1, 0]) and math.isnan(r.ap[2, 0])
    assert list(r.n_det) == [1, 1, 0]


def test_ap50_95_averages_ten_thresholds():
    # Shift a 10 x 10 square by d along x: IoU = (10 - d) / (10 + d) = 0.78, so AP = 1 at 0.50..0.75 only.
    d = 10 * (1 - 0.78) / 1.78
    gts = {"im": [GT("a", box(0, 0, 10, 10))]}
    dets = {"im": [Det("a", box(d, 0, 10, 10))]}
    r = M.eval_map(dets, gts, ["a"], iou_thrs=M.IOU_THRS_50_95)
    assert len(r.iou_thrs) == 10
    np.testing.assert_allclose(r.maps, [1] * 6 + [0] * 4)
    assert r.map_mean == pytest.approx(0.6)
    assert r.map_at(0.75) == 1.0 and r.map_at(0.8) == 0.0


def test_apnc_tie_order_is_sorted_image_ids_then_emitted_order():
    # Image "a" holds a false positive, "b" a true positive. Sorted ids put the FP first: AP = 1/2
    # (precision [0, 1/2] at recall [0, 1]) whatever the dict's insertion order.
    gt_b = GT("x", box(0, 0, 10, 10))
    fp, tp = Det("x", box(50, 50, 10, 10)), Det("x", box(0, 0, 10, 10))
    for gts, dets in (({"a": [], "b": [gt_b]}, {"a": [fp], "b": [tp]}),
                      ({"b": [gt_b], "a": []}, {"b": [tp], "a": [fp]})):
        assert M.apnc(dets, gts, ["x"]).mAP == pytest.approx(0.5)


def test_apnc_depends_on_emitted_order_within_an_image_but_not_on_dict_order():
    gts = {"im": [GT("x", box(0, 0, 10, 10))]}
    tp, fp = Det("x", box(0, 0, 10, 10), 0.9), Det("x", box(50, 50, 10, 10), 0.1)
    assert M.apnc({"im": [tp, fp]}, gts, ["x"]).mAP == pytest.approx(1.0)
    assert M.apnc({"im": [fp, tp]}, gts, ["x"]).mAP == pytest.approx(0.5)
    # With real scores the emitted order does not matter.
    assert M.eval_map({"im": [fp, tp]}, gts, ["x"]).mAP == pytest.approx(1.0)
    dets, gts = random_scene(3)
    classes = ["a", "b", "c"]
    base = M.apnc(dets, gts, classes).maps
    keys = list(dets)
    rng = np.random.default_rng(5)
    shuffled = [keys[i] for i in rng.permutation(len(keys))]
    np.testing.assert_array_equal(M.apnc({k: dets[k] for k in shuffled}, {k: gts[k] for k in shuffled},
                                         classes).maps, base)


def test_best_gt_only_is_tried():
    # The detection's best GT is already claimed; the second-best (IoU >= 0.5 too) is not tried.
    g1, g2 = GT("a", box(0, 0, 10, 10)), GT("a", box(2, 0, 10, 10))
    dets = {"im": [Det("a", box(0, 0, 10, 10), 0.9), Det("a", box(0.5, 0, 10, 10), 0.8)]}
    r = M.eval_map(dets, {"im": [g1, g2]}, ["a"], ap_method="area")
    np.testing.assert_allclose(r.precision[0], [1.0, 0.5])
    np.testing.assert_allclose(r.recall[0], [0.5, 0.5])


# --------------------------------------------------------------------------- parity

@pytest.mark.parametrize("seed,method,mode,difficult,use_scores", [
    (0, "11point", "rbox", "count", True),
    (1, "area", "rbox", "ignore", True),
    (2, "11point", "quad", "ignore", False),
    (3, "area", "quad", "count", False),
    (4, "11point", "rbox", "ignore", False),
])
def test_parity_with_shapely_reference(seed, method, mode, difficult, use_scores):
    dets, gts = random_scene(seed, convex_jitter=1.0 if mode == "quad" else 0.0)
    classes = ["a", "b", "c"]
    for thr in (0.5, 0.75):
        ours = M.eval_map(dets, gts, classes, iou_thrs=(thr,), ap_method=method, iou_mode=mode,
                          difficult=difficult, use_scores=use_scores)
        ref = ref_eval(dets, gts, classes, thr, method, mode, difficult, use_scores)
        assert set(ref) == {c for c, n in zip(classes, ours.n_gt) if n > 0}
        for c, name in enumerate(classes):
            if name in ref:
                assert ours.ap[c, 0] == pytest.approx(ref[name], abs=1e-9)
        assert ours.mAP == pytest.approx(np.mean(list(ref.values())), abs=1e-9)


def test_parity_on_synthetic_dota():
    dets, gts = make_synthetic_dota(40, seed=1)
    classes = ["plane", "small-vehicle", "ship", "harbor", "storage-tank"]
    ours = M.apnc(dets, gts, classes, difficult="ignore")
    ref = ref_eval(dets, gts, classes, difficult="ignore", use_scores=False)
    for c, name in enumerate(classes):
        if name in ref:
            assert ours.ap[c, 0] == pytest.approx(ref[name], abs=1e-9)


def test_threshold_sweep_and_transfer_match_reference():
    classes = ["a", "b", "c"]
    calib, calib_gt = random_scene(10)
    evald, eval_gt = random_scene(11)
    grid = (0.05, 0.25, 0.45, 0.65)
    sweep = M.threshold_sweep(evald, eval_gt, classes, grid)
    ref = [(t, float(np.mean(list(ref_eval(evald, eval_gt, classes, score_gt=t).values())))) for t in grid]
    for (t1, v1), (t2, v2) in zip(sweep, ref):
        assert t1 == t2 and v1 == pytest.approx(v2, abs=1e-9)
    ref_calib = [(t, float(np.mean(list(ref_eval(calib, calib_gt, classes, score_gt=t).values())))) for t in grid]
    out = M.transfer_and_oracle(calib, calib_gt, evald, eval_gt, classes, grid)
    t_calib = max(ref_calib, key=lambda tv: tv[1])[0]
    assert out["t_transfer"] == t_calib
    assert out["apnc_transfer"] == pytest.approx(dict(ref)[t_calib], abs=1e-9)
    assert out["apnc_oracle"] == pytest.approx(max(v for _, v in ref), abs=1e-9)
    with_scores = np.mean(list(ref_eval(evald, eval_gt, classes).values()))
    assert out["map_with_scores"] == pytest.approx(with_scores, abs=1e-9)


def test_parity_with_mmrotate_eval_rbbox_map():
    pytest.importorskip("mmcv.ops")
    functional = pytest.importorskip("mmrotate.evaluation.functional")
    import torch  # noqa: F401  (mmrotate needs it)

    dets, gts = random_scene(7)
    classes = ["a", "b", "c"]
    ids = sorted(gts)
    from cotrain.geometry.iou import min_area_rect

    # Distinct scores: mmrotate's unstable argsort makes tied ranks arbitrary.
    for i in ids:
        for k, d in enumerate(dets[i]):
            d.score = d.score + 1e-6 * (k + 1) + 1e-4 * ids.index(i)

    def rboxes(quads):
        out = []
        for q in min_area_rect(np.asarray(quads).reshape(-1, 8)):
            p = Polygon(q.reshape(4, 2))
            (x0, y0), (x1, y1), (x2, y2) = p.exterior.coords[:3]
            w, h = math.hypot(x1 - x0, y1 - y0), math.hypot(x2 - x1, y2 - y1)
            out.append([p.centroid.x, p.centroid.y, w, h, math.atan2(y1 - y0, x1 - x0)])
        return np.asarray(out, dtype=np.float32).reshape(-1, 5)

    det_results = [[np.hstack([rboxes([d.quad for d in dets[i] if d.label == c]),
                               np.array([[d.score] for d in dets[i] if d.label == c], np.float32).reshape(-1, 1)])
                    for c in classes] for i in ids]
    annotations = [{"bboxes": rboxes([g.quad for g in gts[i]]),
                    "labels": np.array([classes.index(g.label) for g in gts[i]], dtype=np.int64),
                    "bboxes_ignore": np.zeros((0, 5), np.float32), "labels_ignore": np.zeros(0, np.int64)}
                   for i in ids]
    ref_map, _ = functional.eval_rbbox_map(det_results, annotations, iou_thr=0.5, use_07_metric=True, nproc=1,
                                           logger="silent")
    assert M.eval_map(dets, gts, classes).mAP == pytest.approx(ref_map, abs=1e-5)


# --------------------------------------------------------------------------- mF1

def test_mf1_hand_derived_confusion_matrix():
    gts = {"im": [GT("a", box(0, 0, 10, 10)), GT("b", box(100, 0, 10, 10)), GT("a", box(200, 0, 10, 10))]}
    dets = {"im": [Det("a", box(0, 0, 10, 10)),       # TP for a
                   Det("b", box(200, 0, 10, 10)),     # on a GT "a": cm[a, b]
                   Det("a", box(500, 500, 10, 10))]}  # background FP: cm[bg, a]
    out = M.mf1(dets, gts, ["a", "b"])
    np.testing.assert_array_equal(out["confusion_matrix"], [[1, 1, 1], [0, 0, 1], [1, 0, 0]])
    # P = [1/2, 0, 0], R = [1/3, 0, 0] -> mean P 1/6, mean R 1/9, F1 = 2/15.
    assert out["mF1"] == pytest.approx(2 / 15)
    assert out["precision"] == pytest.approx(1 / 6) and out["recall"] == pytest.approx(1 / 9)
    assert out["per_class_f1"] == pytest.approx({"a": 0.4, "b": 0.0})
    assert out["score_thr"] == 0.0 and len(out["f1_by_threshold"]) == 1


def test_mf1_counts_a_detection_for_every_overlapping_gt_and_maximises_over_thresholds():
    gts = {"im": [GT("a", box(0, 0, 10, 10)), GT("b", box(0, 0, 10, 10))]}
    dets = {"im": [Det("a", box(0, 0, 10, 10), 0.9), Det("a", box(50, 50, 10, 10), 0.2)]}
    out = M.mf1(dets, gts, ["a", "b"], score_thrs=(0.1, 0.5))
    # At 0.5: cm[a, a] = cm[b, a] = 1, GT b missed -> cm[b, bg] = 1; P = [1/2, 0, 0], R = [1, 0, 0],
    # F1 = 2 (1/6)(1/3) / (1/2) = 2/9. At 0.1 the low-score FP adds cm[bg, a]: P_a = 1/3, F1 = 1/6.
    np.testing.assert_array_equal(out["confusion_matrix"], [[1, 0, 0], [1, 0, 1], [0, 0, 0]])
    assert out["score_thr"] == 0.5
    assert out["mF1"] == pytest.approx(2 / 9)
    np.testing.assert_allclose(np.array(out["f1_by_threshold"]), [[0.1, 1 / 6], [0.5, 2 / 9]], rtol=1e-9)
    assert out["mF1_mean_over_thresholds"] == pytest.approx((1 / 6 + 2 / 9) / 2)


def _ref_mf1(dets, gts, classes, thr, iou_thr=0.5):
    """LMMRotate's per-image loops, over shapely rectangles."""
    n = len(classes)
    cm = np.zeros((n + 1, n + 1))
    for img in gts.keys() | dets.keys():
        g_list = gts.get(img, [])
        polys = [_poly(g.quad, "rbox") for g in g_list]
        hits = [0] * len(g_list)
        for d in dets.get(img, []):
            if d.score < thr:
                continue
            p, matched = _poly(d.quad, "rbox"), 0
            for j, g in enumerate(g_list):
                if _iou(p, polys[j]) >= iou_thr:
                    matched += 1
                    hits[j] += g.label == d.label
                    cm[classes.index(g.label), classes.index(d.label)] += 1
            if not matched:
                cm[n, classes.index(d.label)] += 1
        for j, g in enumerate(g_list):
            if not hits[j]:
                cm[classes.index(g.label), n] += 1
    return cm


def test_mf1_parity_with_loop_reference():
    dets, gts = random_scene(21)
    classes = ["a", "b", "c"]
    out = M.mf1(dets, gts, classes, score_thrs=(0.3,))
    np.testing.assert_array_equal(out["confusion_matrix"], _ref_mf1(dets, gts, classes, 0.3))


# --------------------------------------------------------------------------- misc

def test_per_class_rows_use_dota_abbreviations():
    gts = {"im": [GT("plane", box(0, 0, 10, 10))]}
    r = M.eval_map({"im": [Det("plane", box(0, 0, 10, 10))]}, gts, ["plane", "mystery"], iou_thrs=(0.5, 0.75))
    rows = M.per_class_rows(r)
    assert rows[0]["abbr"] == "PL" and rows[0]["AP50"] == 1.0 and rows[0]["AP75"] == 1.0
    assert rows[1]["abbr"] == "mystery" and math.isnan(rows[1]["AP50"])


def test_unknown_labels_are_skipped_and_counted():
    gts = {"im": [GT("a", box(0, 0, 10, 10)), GT("zzz", box(0, 0, 10, 10))]}
    dets = {"im": [Det("a", box(0, 0, 10, 10)), Det("qqq", box(0, 0, 5, 5)), Det("qqq", box(0, 0, 5, 5))]}
    r = M.eval_map(dets, gts, ["a"])
    assert r.mAP == 1.0 and r.skipped == {"det:qqq": 2, "gt:zzz": 1}


def test_bad_options_raise_config_error():
    with pytest.raises(ConfigError, match="ap_method"):
        M.eval_map({}, {}, ["a"], ap_method="101point")
    with pytest.raises(ConfigError, match="iou_mode"):
        M.apnc({}, {}, ["a"], iou_mode="hbb")
    with pytest.raises(ConfigError, match="map_at|evaluated"):
        M.eval_map({}, {}, ["a"]).map_at(0.75)


def test_empty_inputs():
    r = M.eval_map({}, {"im": [GT("a", box(0, 0, 1, 1))]}, ["a"])
    assert r.mAP == 0.0
    assert math.isnan(M.eval_map({"im": [Det("a", box(0, 0, 1, 1))]}, {}, ["a"]).mAP)


def test_synthetic_dota_is_deterministic_and_dota_shaped():
    d1, g1 = make_synthetic_dota(200, seed=3)
    d2, g2 = make_synthetic_dota(200, seed=3)
    assert list(d1) == list(d2)
    assert all(np.array_equal(a.quad, b.quad) and a.score == b.score for k in d1 for a, b in zip(d1[k], d2[k]))
    n_gt, n_det = sum(map(len, g1.values())), sum(map(len, d1.values()))
    # Full size (21,046 images) targets ~270k GT and ~300k detections: ~12.8 and ~14.3 per image.
    assert 9 < n_gt / 200 < 17 and 10 < n_det / 200 < 19
    assert max(map(len, g1.values())) > 40  # the crowded tail


def test_simulated_detector_is_per_image_and_duplicates_only_when_asked():
    from detection.synthetic import simulate_detector

    _, gts = make_synthetic_dota(30, seed=2)
    classes = ["plane", "ship", "small-vehicle"]
    sizes = dict.fromkeys(gts, (1024, 1024))
    full = simulate_detector(gts, classes, sizes, seed=4)
    one = simulate_detector({"P00007": gts["P00007"]}, classes, {"P00007": (1024, 1024)}, seed=4)
    assert [d.quad.tolist() for d in one["P00007"]] == [d.quad.tolist() for d in full["P00007"]]
    no_fp = dict(recall=1.0, fp_per_image=0.0, confusion=0.0)
    n_gt = sum(map(len, gts.values()))
    assert sum(map(len, simulate_detector(gts, classes, sizes, seed=4, **no_fp).values())) == n_gt
    twice = simulate_detector(gts, classes, sizes, seed=4, duplicate_rate=1.0, **no_fp)
    assert sum(map(len, twice.values())) == 2 * n_gt
