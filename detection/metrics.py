"""Detection metrics: VOC mAP, confidence-free APnc, the score-threshold sweep and LMMRotate's mF1.

This module owns turning matched detections into numbers. It takes ``Detections`` and
``GroundTruth`` (cotrain.dota.types) and a class list; it must not parse text, read files or
compute polygon geometry itself (IoU comes from ``cotrain.geometry.iou``).

Matching (VOC / mmrotate ``tpfp_default`` style), per class and per image:

* Detections of a class are ranked by score, DESCENDING, with a STABLE sort. Ties keep the
  "tie order": images in ascending (string-sorted) id order, then detections in the order they
  were emitted (list order in ``Detections``). With ``use_scores=False`` (APnc) every score is 1,
  so the rank IS the tie order. mmrotate uses ``np.argsort(-scores)`` (quicksort, not stable), so
  its APnc depends on numpy's internal tie handling; ours does not (DESIGN.md section 7: this
  moves APnc by up to about 0.02).
* A detection only tries its best-IoU ground truth in its image (``argmax`` over ALL ground truth
  of that class, ignored ones included; equal IoUs pick the earlier GT). If that IoU >= the
  threshold: an ignored GT makes the detection neither TP nor FP; an unclaimed GT makes it a TP
  and claims the GT; an already claimed GT makes it an FP. Below the threshold it is an FP.
  mmrotate compares with ``>=``; the DOTA devkit with ``>`` (differs only at exact equality).
  Because the best GT does not depend on earlier matches, the greedy loop is vectorised: a
  detection is a TP iff it is the first, in rank order, to reach its best GT.
* AP: ``"11point"`` (VOC07; the recall grid is ``np.arange(0, 1.1, 0.1)`` exactly as in the
  DOTA devkit and mmdet, so its fourth point is 0.30000000000000004) or ``"area"`` (VOC12, area
  under the monotone precision envelope). mAP is the mean over classes with at least one
  non-ignored GT; a class without GT has AP = nan and is left out.

Difficult objects (``GT.difficult`` > 0; DOTA writes 1, 2 marks truncated):

* ``difficult="count"`` (default): every GT counts. This is mmrotate 1.x's default
  (``DOTADataset(diff_thr=100)`` ignores only difficulty > 100, i.e. nothing), which is what the
  published LMMRotate/APnc numbers were computed with.
* ``difficult="ignore"``: difficult GT are not counted in recall and a detection whose best GT
  is difficult is neither TP nor FP. This is the DOTA devkit's Task1 evaluation
  (``dota_evaluation_task1.py``), i.e. the official server.

IoU: ``iou_mode="rbox"`` (default) replaces every quad, GT and detection, by its minimum-area
rectangle first (mmrotate's ``qbox2rbox`` + ``box_iou_rotated``); ``"quad"`` is the exact IoU of
the quads as given (the DOTA devkit's polygon IoU).

Labels not in ``classes`` are skipped and counted in ``MapResult.skipped``.

Entry points: ``eval_map`` (scores ranked), ``apnc`` (all scores 1), ``threshold_sweep`` and
``transfer_and_oracle`` (conventional detectors, DESIGN.md section 7), ``mf1`` (LMMRotate's
confusion-matrix F1, protocol in its docstring), ``per_class_rows`` (table with DOTA abbreviations).

Speed: objects are flattened to arrays once; every same-image (detection, GT) pair of a class is
enumerated with numpy, pairs whose bounding boxes do not overlap are dropped, and the rest go to
``iou_pairs`` in one call per class. The best-GT search and the greedy matching are segment
reductions, so there is no Python loop over images or detections (DOTA-v1.0 trainval size, ~300k
detections: a few seconds on one core).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cotrain.dota.types import DOTA_ABBREVIATIONS, Detections, GroundTruth
from cotrain.errors import ConfigError
from cotrain.geometry.iou import iou_pairs, min_area_rect

IOU_THRS_50_95 = tuple(float(t) for t in np.round(np.arange(0.5, 0.951, 0.05), 2))
"""The COCO-style IoU list whose mean AP is reported as AP50:95."""
SWEEP_THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.05, 0.96, 0.05), 2))
"""Default score-threshold grid for conventional detectors (DESIGN.md section 7)."""

AP_METHODS = ("11point", "area")
IOU_MODES = ("rbox", "quad")
DIFFICULT_MODES = ("count", "ignore")
# numpy's grid, not [i / 10]: 0.1 * 3 != 0.3 and the references use this exact grid.
_RECALL_GRID_11 = np.arange(0.0, 1.1, 0.1)
_EPS = np.finfo(np.float32).eps  # mmdet's denominator guard
_PAIR_BUDGET = 2_000_000  # (detection, GT) pairs enumerated per chunk in _best_gt


@dataclass
class MapResult:
    """Per-class AP at each IoU threshold plus the PR curve at the first threshold."""

    classes: list[str]
    """Class names, in the order of every per-class array."""
    iou_thrs: tuple[float, ...]
    """IoU thresholds; column j of ``ap`` belongs to ``iou_thrs[j]``."""
    ap: np.ndarray
    """(n_classes, n_thrs) AP; nan for a class without non-ignored GT."""
    n_gt: np.ndarray
    """(n_classes,) non-ignored GT count."""
    n_det: np.ndarray
    """(n_classes,) detections evaluated (after score filtering)."""
    precision: list[np.ndarray] = field(repr=False)
    """Per class, precision after each ranked detection (ignored matches dropped), at iou_thrs[0]."""
    recall: list[np.ndarray] = field(repr=False)
    """Per class, recall after each ranked detection, at iou_thrs[0]."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Objects left out because their label is not in ``classes``: ``{"det:<label>": n, "gt:<label>": n}``."""

    @property
    def maps(self) -> np.ndarray:
        """(n_thrs,) mAP over classes with GT at each IoU threshold (nan when no class has GT)."""
        has_gt = self.n_gt > 0
        if not has_gt.any():
            return np.full(len(self.iou_thrs), np.nan)
        return self.ap[has_gt].mean(axis=0)

    @property
    def mAP(self) -> float:
        """mAP at the first IoU threshold (AP50 for the defaults)."""
        return float(self.maps[0])

    def map_at(self, iou_thr: float) -> float:
        """mAP at one of ``iou_thrs`` (e.g. 0.75)."""
        for j, t in enumerate(self.iou_thrs):
            if abs(t - iou_thr) < 1e-9:
                return float(self.maps[j])
        raise ConfigError(f"IoU threshold {iou_thr} was not evaluated; evaluated: {list(self.iou_thrs)}. "
                          f"Pass it in iou_thrs.")

    @property
    def map_mean(self) -> float:
        """mAP averaged over all IoU thresholds (AP50:95 when iou_thrs is IOU_THRS_50_95)."""
        return float(np.mean(self.maps))


def _check_options(ap_method: str, iou_mode: str, difficult: str) -> None:
    for name, value, allowed in (("ap_method", ap_method, AP_METHODS), ("iou_mode", iou_mode, IOU_MODES),
                                 ("difficult", difficult, DIFFICULT_MODES)):
        if value not in allowed:
            raise ConfigError(f"{name}={value!r} is not supported; use one of {list(allowed)}.")


@dataclass
class _ClassMatches:
    """One class's detections in tie order with their best GT; enough to score any subset."""

    score: np.ndarray
    """(n,) detection scores, in tie order."""
    best_gt: np.ndarray
    """(n,) index into this class's GT of the best-IoU GT in the same image; -1 when there is none."""
    best_iou: np.ndarray
    """(n,) IoU with that GT (0 when none)."""
    gt_ignored: np.ndarray
    """(g,) True for GT that neither count nor make FPs (difficult="ignore")."""
    n_gt: int
    """Non-ignored GT of the class."""


def _collect(objs: dict, image_index: dict, classes: dict, skipped: dict, kind: str):
    """Flatten image -> objects into arrays in tie order (sorted image ids, then list order)."""
    ids = sorted(objs)
    flat = [o for img in ids for o in objs[img]]
    images = np.repeat(np.asarray([image_index[img] for img in ids], dtype=np.int64),
                       [len(objs[img]) for img in ids])
    labels = np.asarray([classes.get(o.label, -1) for o in flat], dtype=np.int64)
    quads = np.asarray([o.quad for o in flat], dtype=np.float64).reshape(-1, 8)
    extra = np.asarray([o.score for o in flat] if kind == "det" else [o.difficult for o in flat],
                       dtype=np.float64)
    known = labels >= 0
    if not known.all():
        for k in np.flatnonzero(~known):
            key = f"{kind}:{flat[k].label}"
            skipped[key] = skipped.get(key, 0) + 1
    return images[known], labels[known], quads[known], extra[known]


def _collect_both(dets: Detections, gts: GroundTruth, classes: list[str], skipped: dict):
    """Detections and GT as arrays over one image index (ascending ids), plus the image count."""
    image_index = {img: i for i, img in enumerate(sorted(set(dets) | set(gts)))}
    class_index = {c: i for i, c in enumerate(classes)}
    d = _collect(dets, image_index, class_index, skipped, "det")
    g = _collect(gts, image_index, class_index, skipped, "gt")
    return (*d, *g, len(image_index))


def _prepare_iou_quads(quads: np.ndarray, iou_mode: str) -> np.ndarray:
    # The min-area rectangle of each object is fitted once here, not once per pair it is in.
    if iou_mode == "rbox" and len(quads):
        return min_area_rect(quads, ordered=False)  # IoU does not depend on vertex order
    return quads


def _pair_chunks(d_img: np.ndarray, g_img: np.ndarray, n_images: int):
    """Yield (lo, hi, cnt, first_pair, det, gt): every same-image (detection, GT) pair of detections lo..hi-1.

    Both sides are sorted by image. Pairs are grouped per detection (``cnt[k]`` pairs starting at
    ``first_pair[k]``) with GT ascending. Chunks hold whole detections and about _PAIR_BUDGET pairs,
    so crowded images do not blow up memory.
    """
    g_starts = np.searchsorted(g_img, np.arange(n_images + 1))
    ng = np.diff(g_starts)[d_img]
    ends = np.cumsum(ng)
    lo, n = 0, len(d_img)
    while lo < n:
        base = ends[lo - 1] if lo else 0
        hi = max(int(np.searchsorted(ends, base + _PAIR_BUDGET, side="right")), lo + 1)
        cnt = ng[lo:hi]
        first_pair = np.cumsum(cnt) - cnt
        det = np.repeat(np.arange(lo, hi), cnt)
        gt = g_starts[d_img[det]] + (np.arange(len(det)) - np.repeat(first_pair, cnt))
        yield lo, hi, cnt, first_pair, det, gt
        lo = hi


def _pair_ious(d_quad: np.ndarray, g_quad: np.ndarray, det: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of each (det, gt) pair; pairs whose bounding boxes do not overlap are 0 without clipping."""
    ious = np.zeros(len(det))
    d_lo, d_hi = d_quad.reshape(-1, 4, 2).min(axis=1), d_quad.reshape(-1, 4, 2).max(axis=1)
    g_lo, g_hi = g_quad.reshape(-1, 4, 2).min(axis=1), g_quad.reshape(-1, 4, 2).max(axis=1)
    overlap = ((d_lo[det] < g_hi[gt]) & (g_lo[gt] < d_hi[det])).all(axis=1)
    cand = np.flatnonzero(overlap)
    if len(cand):
        ious[cand] = iou_pairs(d_quad[det[cand]], g_quad[gt[cand]], mode="quad")
    return ious


def _best_gt(d_img: np.ndarray, d_quad: np.ndarray, g_img: np.ndarray, g_quad: np.ndarray, n_images: int):
    """Index and IoU of each detection's best GT in its image (-1, 0 when the image has none).

    A segment max per detection plus "first pair reaching it" reproduces ``np.argmax`` (equal IoUs
    pick the earlier GT) without a Python loop over images.
    """
    best_gt = np.full(len(d_img), -1, dtype=np.int64)
    best_iou = np.zeros(len(d_img))
    if len(d_img) == 0 or len(g_img) == 0:
        return best_gt, best_iou
    for lo, _, cnt, first_pair, det, gt in _pair_chunks(d_img, g_img, n_images):
        if not len(det):
            continue
        ious = _pair_ious(d_quad, g_quad, det, gt)
        has = np.flatnonzero(cnt > 0)
        seg = first_pair[has]
        top = np.maximum.reduceat(ious, seg)
        at_top = np.where(ious == np.repeat(top, cnt[has]), np.arange(len(det)), len(det))
        best_gt[lo + has] = gt[np.minimum.reduceat(at_top, seg)]
        best_iou[lo + has] = top
    return best_gt, best_iou


def _match_classes(dets: Detections, gts: GroundTruth, classes: list[str], iou_mode: str,
                   difficult: str) -> tuple[list[_ClassMatches], dict[str, int]]:
    """Best GT and its IoU for every detection, per class."""
    skipped: dict[str, int] = {}
    d_img, d_lab, d_quad, d_score, g_img, g_lab, g_quad, g_diff, n_images = _collect_both(
        dets, gts, classes, skipped)
    d_quad = _prepare_iou_quads(d_quad, iou_mode)
    g_quad = _prepare_iou_quads(g_quad, iou_mode)
    out = []
    for c in range(len(classes)):
        d_idx = np.flatnonzero(d_lab == c)  # stays in tie order: sorted images, emitted order
        g_idx = np.flatnonzero(g_lab == c)
        ignored = (g_diff[g_idx] > 0) if difficult == "ignore" else np.zeros(len(g_idx), dtype=bool)
        best_gt, best_iou = _best_gt(d_img[d_idx], d_quad[d_idx], g_img[g_idx], g_quad[g_idx], n_images)
        out.append(_ClassMatches(score=d_score[d_idx], best_gt=best_gt, best_iou=best_iou, gt_ignored=ignored,
                                 n_gt=int((~ignored).sum())))
    return out, skipped


def average_precision(recall: np.ndarray, precision: np.ndarray, method: str = "11point") -> float:
    """VOC AP from a ranked PR curve: 11-point interpolated (VOC07) or area under the envelope (VOC12)."""
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if method == "11point":
        total = 0.0
        for r in _RECALL_GRID_11:
            reached = precision[recall >= r]
            total += reached.max() if reached.size else 0.0
        return total / 11.0
    if method == "area":
        mrec = np.concatenate(([0.0], recall, [1.0]))
        mpre = np.concatenate(([0.0], precision, [0.0]))
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        step = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))
    raise ConfigError(f"ap_method={method!r} is not supported; use one of {list(AP_METHODS)}.")


def _pr_curve(m: _ClassMatches, keep: np.ndarray | None, use_scores: bool, iou_thr: float):
    """Ranked (recall, precision) of one class for the kept detections at one IoU threshold."""
    order = np.arange(len(m.score)) if keep is None else np.flatnonzero(keep)
    if use_scores and len(order):
        order = order[np.argsort(-m.score[order], kind="stable")]
    gt = m.best_gt[order]
    hit = (m.best_iou[order] >= iou_thr) & (gt >= 0)
    on_ignored = hit.copy()
    on_ignored[hit] = m.gt_ignored[gt[hit]]
    claims = np.flatnonzero(hit & ~on_ignored)
    tp = np.zeros(len(order), dtype=bool)
    if len(claims):
        _, first = np.unique(gt[claims], return_index=True)
        tp[claims[first]] = True
    counted = ~on_ignored
    tp_c = np.cumsum(tp[counted])
    fp_c = np.cumsum(~tp[counted])
    recall = tp_c / max(m.n_gt, _EPS)
    precision = tp_c / np.maximum(tp_c + fp_c, _EPS)
    return recall, precision, len(order)


def _evaluate(matches: list[_ClassMatches], classes: list[str], skipped: dict, iou_thrs, ap_method: str,
              use_scores: bool, score_thr: float | None) -> MapResult:
    thrs = tuple(float(t) for t in iou_thrs)
    if not thrs:
        raise ConfigError("iou_thrs is empty; pass at least one IoU threshold such as (0.5,).")
    ap = np.full((len(classes), len(thrs)), np.nan)
    n_gt = np.array([m.n_gt for m in matches], dtype=np.int64)
    n_det = np.zeros(len(classes), dtype=np.int64)
    precisions, recalls = [], []
    for c, m in enumerate(matches):
        keep = None if score_thr is None else m.score > score_thr
        for j, t in enumerate(thrs):
            recall, precision, n = _pr_curve(m, keep, use_scores, t)
            if j == 0:
                precisions.append(precision)
                recalls.append(recall)
                n_det[c] = n
            if m.n_gt > 0:
                ap[c, j] = average_precision(recall, precision, ap_method)
    return MapResult(classes=list(classes), iou_thrs=thrs, ap=ap, n_gt=n_gt, n_det=n_det, precision=precisions,
                     recall=recalls, skipped=dict(skipped))


def eval_map(dets: Detections, gts: GroundTruth, classes, *, iou_thrs=(0.5,), ap_method: str = "11point",
             iou_mode: str = "rbox", difficult: str = "count", use_scores: bool = True) -> MapResult:
    """VOC-style mAP of rotated detections (matching, tie order and defaults in the module docstring)."""
    _check_options(ap_method, iou_mode, difficult)
    matches, skipped = _match_classes(dets, gts, list(classes), iou_mode, difficult)
    return _evaluate(matches, list(classes), skipped, iou_thrs, ap_method, use_scores, None)


def apnc(dets: Detections, gts: GroundTruth, classes, **options) -> MapResult:
    """APnc: ``eval_map`` with every score treated as 1, so the rank is the tie order."""
    options["use_scores"] = False
    return eval_map(dets, gts, classes, **options)


def threshold_sweep(dets: Detections, gts: GroundTruth, classes, thresholds=SWEEP_THRESHOLDS, *,
                    iou_thr: float = 0.5, ap_method: str = "11point", iou_mode: str = "rbox",
                    difficult: str = "count") -> list[tuple[float, float]]:
    """[(t, APnc)] keeping detections with score > t and treating the kept scores as 1.

    The IoU matching is computed once and reused for every t: a detection's best GT does not
    depend on which other detections were kept.
    """
    _check_options(ap_method, iou_mode, difficult)
    matches, skipped = _match_classes(dets, gts, list(classes), iou_mode, difficult)
    return [(float(t), _evaluate(matches, list(classes), skipped, (iou_thr,), ap_method, False, float(t)).mAP)
            for t in thresholds]


def _best_threshold(sweep: list[tuple[float, float]]) -> tuple[float, float]:
    """Highest APnc; on a tie the lowest threshold (first in the grid) wins."""
    if not sweep:
        raise ConfigError("the threshold grid is empty; pass thresholds such as (0.05, 0.1, ..., 0.95).")
    best = max(range(len(sweep)), key=lambda i: (np.nan_to_num(sweep[i][1], nan=-1.0), -i))
    return sweep[best]


def transfer_and_oracle(calib_dets: Detections, calib_gts: GroundTruth, eval_dets: Detections,
                        eval_gts: GroundTruth, classes, thresholds=SWEEP_THRESHOLDS, **options) -> dict:
    """Conventional-detector row of the comparison table.

    ``t_transfer`` is the threshold with the best APnc on the calibration split, ``apnc_transfer``
    the eval-split APnc at that threshold; ``t_oracle``/``apnc_oracle`` the best threshold on the
    eval split itself (the reference's mAP_ac); ``map_with_scores`` the usual mAP with real scores.
    """
    calib = threshold_sweep(calib_dets, calib_gts, classes, thresholds, **options)
    evaluated = threshold_sweep(eval_dets, eval_gts, classes, thresholds, **options)
    t_transfer, _ = _best_threshold(calib)
    t_oracle, apnc_oracle = _best_threshold(evaluated)
    apnc_transfer = dict(evaluated)[t_transfer]
    map_options = {k: v for k, v in options.items() if k != "iou_thr"}
    with_scores = eval_map(eval_dets, eval_gts, classes, iou_thrs=(options.get("iou_thr", 0.5),), **map_options)
    return {"t_transfer": t_transfer, "apnc_transfer": float(apnc_transfer), "t_oracle": t_oracle,
            "apnc_oracle": float(apnc_oracle), "map_with_scores": with_scores.mAP,
            "sweep_calib": calib, "sweep_eval": evaluated}


def per_class_rows(result: MapResult, classes=None) -> list[dict]:
    """Table rows ``{"class", "abbr", "n_gt", "n_det", "AP50", ...}``; DOTA classes get their abbreviation."""
    classes = list(result.classes if classes is None else classes)
    rows = []
    for name in classes:
        c = result.classes.index(name)
        row = {"class": name, "abbr": DOTA_ABBREVIATIONS.get(name, name), "n_gt": int(result.n_gt[c]),
               "n_det": int(result.n_det[c])}
        for j, t in enumerate(result.iou_thrs):
            row[f"AP{round(t * 100):d}"] = float(result.ap[c, j])
        if len(result.iou_thrs) > 1:
            row["AP_mean"] = float(np.mean(result.ap[c]))
        rows.append(row)
    return rows


def _f1_from_confusion(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float, float]:
    """Per-entry precision/recall and LMMRotate's (mean P, mean R, F1 of the means) over all C+1 entries."""
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    precision = tp / np.where(tp + fp == 0, 1.0, tp + fp)
    recall = tp / np.where(tp + fn == 0, 1.0, tp + fn)
    p, r = float(precision.mean()), float(recall.mean())
    return precision, recall, p, r, (2 * p * r / (p + r) if p + r > 0 else 0.0)


def mf1(dets: Detections, gts: GroundTruth, classes, *, iou_thr: float = 0.5, score_thrs=None,
        iou_mode: str = "rbox", difficult: str = "count") -> dict:
    """mF1 as in LMMRotate's confusion-matrix script, maximised over score thresholds.

    Protocol (rows = GT class, columns = detected class, index C = background), per image, for
    every detection with score >= t: each GT of ANY class with IoU >= ``iou_thr`` adds 1 to
    cm[gt class, det class] (a detection can count several times); a detection with no such GT
    adds 1 to cm[background, det class]. A GT that no same-class detection reached adds 1 to
    cm[gt class, background]. Then TP = diag, FP = column sum - TP, FN = row sum - TP, precision
    and recall per entry (0/0 -> 0) and, as in the reference, mean P and mean R over all C + 1
    entries (the background entry has P = R = 0) and F1 = 2 P R / (P + R) of those means.
    The reference averages that F1 over its threshold list; the issue asks for the maximum, so
    ``mF1`` is the maximum over ``score_thrs`` (ties: the lowest t) and the mean is also returned.
    ``score_thrs=None``: (0.0,) when all scores are equal (a VLM: one threshold), else
    SWEEP_THRESHOLDS. ``difficult="ignore"`` drops difficult GT entirely, as mmrotate leaves
    ignored GT out of ``gt_instances`` (a detection on one then counts as background).
    ``per_class_f1`` is 2 P R / (P + R) of each class's own P and R at the chosen threshold and
    ``mean_class_f1`` their mean over classes with GT or detections (not the reference's number).
    """
    _check_options("11point", iou_mode, difficult)
    classes = list(classes)
    skipped: dict[str, int] = {}
    d_img, d_lab, d_quad, d_score, g_img, g_lab, g_quad, g_diff, n_images = _collect_both(
        dets, gts, classes, skipped)
    if difficult == "ignore":
        keep = g_diff == 0
        g_img, g_lab, g_quad = g_img[keep], g_lab[keep], g_quad[keep]
    d_quad = _prepare_iou_quads(d_quad, iou_mode)
    g_quad = _prepare_iou_quads(g_quad, iou_mode)
    pair_d, pair_g = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    if len(d_img) and len(g_img):
        for _, _, _, _, det, gt in _pair_chunks(d_img, g_img, n_images):
            hit = _pair_ious(d_quad, g_quad, det, gt) >= iou_thr
            pair_d.append(det[hit])
            pair_g.append(gt[hit])
    pair_d, pair_g = np.concatenate(pair_d), np.concatenate(pair_g)
    same = d_lab[pair_d] == g_lab[pair_g]
    if score_thrs is None:
        score_thrs = (0.0,) if len(d_score) == 0 or np.all(d_score == d_score[0]) else SWEEP_THRESHOLDS
    n_cls = len(classes)
    runs = []
    for t in score_thrs:
        active = d_score >= t
        live = active[pair_d]
        cm = np.zeros((n_cls + 1, n_cls + 1), dtype=np.int64)
        np.add.at(cm, (g_lab[pair_g[live]], d_lab[pair_d[live]]), 1)
        matched = np.zeros(len(d_lab), dtype=bool)
        matched[pair_d[live]] = True
        np.add.at(cm, (n_cls, d_lab[active & ~matched]), 1)
        found = np.zeros(len(g_lab), dtype=bool)
        found[pair_g[live & same]] = True
        np.add.at(cm, (g_lab[~found], n_cls), 1)
        runs.append((float(t), cm, *_f1_from_confusion(cm)))
    if not runs:
        raise ConfigError("score_thrs is empty; pass None or thresholds such as (0.3, 0.5).")
    best = max(range(len(runs)), key=lambda i: (runs[i][6], -i))
    t, cm, precision, recall, p, r, f1 = runs[best]
    per_class = {}
    for c, name in enumerate(classes):
        pc, rc = precision[c], recall[c]
        per_class[name] = float(2 * pc * rc / (pc + rc)) if pc + rc > 0 else 0.0
    present = [name for c, name in enumerate(classes) if cm[c, :].sum() + cm[:, c].sum() > 0]
    return {"mF1": f1, "score_thr": t, "precision": p, "recall": r, "per_class_f1": per_class,
            "mean_class_f1": float(np.mean([per_class[n] for n in present])) if present else 0.0,
            "confusion_matrix": cm, "labels": classes + ["background"],
            "f1_by_threshold": [(run[0], run[6]) for run in runs],
            "mF1_mean_over_thresholds": float(np.mean([run[6] for run in runs])), "skipped": skipped}
