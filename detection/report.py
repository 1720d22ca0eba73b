"""The comparison table: VLMs (APnc) next to conventional detectors (mAP, transfer and oracle APnc).

``compare_methods`` computes one row per (method, setting) in the shape of the published
tables: method, score threshold, per-class AP50, APnc50, APnc75, APnc50:95, mF1. A VLM gets one
row (all scores 1). A detector gets up to three: its usual mAP with real scores, APnc at the
threshold chosen on a calibration split ("transfer", when one is given) and the best APnc on the
evaluation split itself ("oracle", the reference's mAP_ac). ``write_report`` writes the JSON,
``report.md``, a per-class bar chart, precision-recall curves and overlay images.
Never parses or reads files of a format: callers hand over ``Detections`` / ``GroundTruth``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from cotrain.dota.types import DOTA_ABBREVIATIONS, Det, Detections, GroundTruth  # noqa: E402
from cotrain.files import write_text_atomic  # noqa: E402
from detection.metrics import (  # noqa: E402
    IOU_THRS_50_95,
    MapResult,
    apnc,
    eval_map,
    mf1,
    threshold_sweep,
)


@dataclass
class MethodRow:
    """One row of the comparison table."""

    method: str
    """Name given on the command line."""
    kind: str
    """vlm | detector."""
    setting: str
    """'all scores = 1', 'real scores', 'transfer' or 'oracle'."""
    threshold: float | None
    """Score threshold applied (kept: score > t), None when no threshold."""
    per_class_ap50: dict[str, float]
    """AP50 per class (nan for classes without GT)."""
    ap50: float
    ap75: float
    ap50_95: float
    mf1: float | None
    """LMMRotate mF1 of the kept detections."""
    n_det: int
    """Detections evaluated."""
    notes: str = ""
    diagnostics: dict = field(default_factory=dict)


def _keep_above(dets: Detections, t: float | None) -> Detections:
    if t is None:
        return dets
    return {k: [d for d in v if d.score > t] for k, v in dets.items()}


def restrict_to_gt(dets: Detections, gts: GroundTruth) -> tuple[Detections, dict]:
    """Detections of images that have GT, plus how many ids were extra and how many GT images unanswered.

    Detections on an image the GT does not know would all count as false positives (the DOTA devkit
    fails on them instead); they are dropped here and counted, so a mismatched file is visible.
    """
    kept = {k: v for k, v in dets.items() if k in gts}
    coverage = {"extra_ids": len(set(dets) - set(gts)),
                "extra_id_detections": sum(len(v) for k, v in dets.items() if k not in gts),
                "unanswered_gt_images": len(set(gts) - set(dets))}
    return kept, coverage


def _row(method: str, kind: str, setting: str, t: float | None, res: MapResult, dets: Detections, gts: GroundTruth,
         classes: list[str], options: dict, notes: str = "", use_scores: bool = False) -> MethodRow:
    f1 = mf1(dets, gts, classes, iou_thr=0.5, score_thrs=None if use_scores else (0.0,),
             iou_mode=options.get("iou_mode", "rbox"), difficult=options.get("difficult", "count"))
    return MethodRow(
        method=method, kind=kind, setting=setting, threshold=t,
        per_class_ap50={c: float(res.ap[i, 0]) for i, c in enumerate(res.classes)},
        ap50=res.map_at(0.5), ap75=res.map_at(0.75), ap50_95=res.map_mean, mf1=float(f1["mF1"]),
        n_det=int(res.n_det.sum()), notes=notes,
        diagnostics={"skipped_labels": dict(res.skipped)} if res.skipped else {})


def compare_methods(gts: GroundTruth, classes: list[str], *, vlms: dict[str, Detections] | None = None,
                    detectors: dict[str, Detections] | None = None, calib_gts: GroundTruth | None = None,
                    calib_detectors: dict[str, Detections] | None = None, thresholds=None,
                    ap_method: str = "11point", iou_mode: str = "rbox",
                    difficult: str = "count") -> tuple[list[MethodRow], dict[str, Any]]:
    """Rows of the table plus extras for plotting: PR curves at IoU 0.5 and the threshold sweeps."""
    options = {"ap_method": ap_method, "iou_mode": iou_mode, "difficult": difficult}
    sweep_kw = {} if thresholds is None else {"thresholds": thresholds}
    rows: list[MethodRow] = []
    extras: dict[str, Any] = {"pr": {}, "sweeps": {}}
    extras["coverage"] = {}
    for name, dets in (vlms or {}).items():
        dets, extras["coverage"][name] = restrict_to_gt(dets, gts)
        res = apnc(dets, gts, classes, iou_thrs=IOU_THRS_50_95, **options)
        rows.append(_row(name, "vlm", "all scores = 1", None, res, dets, gts, classes, options))
        extras["pr"][name] = res
    for name, dets in tqdm(list((detectors or {}).items()), desc="detectors", leave=False):
        dets, extras["coverage"][name] = restrict_to_gt(dets, gts)
        scored = eval_map(dets, gts, classes, iou_thrs=IOU_THRS_50_95, use_scores=True, **options)
        rows.append(_row(name, "detector", "real scores", None, scored, dets, gts, classes, options,
                         notes="usual mAP (ranked by score)", use_scores=True))
        extras["pr"][f"{name} (scores)"] = scored
        sweep_eval = threshold_sweep(dets, gts, classes, iou_thr=0.5, **sweep_kw, **options)
        extras["sweeps"][name] = {"eval": sweep_eval}
        t_oracle = _best(sweep_eval)
        calib = (calib_detectors or {}).get(name)
        if calib is not None and calib_gts is not None:
            calib, _ = restrict_to_gt(calib, calib_gts)
            sweep_calib = threshold_sweep(calib, calib_gts, classes, iou_thr=0.5, **sweep_kw, **options)
            extras["sweeps"][name]["calib"] = sweep_calib
            t_transfer = _best(sweep_calib)
            kept = _keep_above(dets, t_transfer)
            res = apnc(kept, gts, classes, iou_thrs=IOU_THRS_50_95, **options)
            rows.append(_row(name, "detector", "transfer", t_transfer, res, kept, gts, classes, options,
                             notes="threshold chosen on the calibration split"))
        kept = _keep_above(dets, t_oracle)
        res = apnc(kept, gts, classes, iou_thrs=IOU_THRS_50_95, **options)
        rows.append(_row(name, "detector", "oracle", t_oracle, res, kept, gts, classes, options,
                         notes="best threshold on this split (mAP_ac)"))
    for r in rows:
        r.diagnostics.update(extras["coverage"].get(r.method, {}))
    return rows, extras


def _best(sweep: list[tuple[float, float]]) -> float:
    """Threshold of the highest APnc50 (ties: the lowest threshold)."""
    best_t, best_v = sweep[0]
    for t, v in sweep[1:]:
        if (0.0 if math.isnan(v) else v) > (0.0 if math.isnan(best_v) else best_v):
            best_t, best_v = t, v
    return float(best_t)


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100 * v:.1f}"


def table_markdown(rows: list[MethodRow], classes: list[str]) -> str:
    """The published-table shape, numbers in percent."""
    abbr = [DOTA_ABBREVIATIONS.get(c, c) for c in classes]
    head = ["method", "setting", "thr"] + abbr + ["AP50", "AP75", "AP50:95", "mF1", "#det"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.method, r.setting, "-" if r.threshold is None else f"{r.threshold:.2f}"]
        cells += [_fmt(r.per_class_ap50.get(c)) for c in classes]
        cells += [_fmt(r.ap50), _fmt(r.ap75), _fmt(r.ap50_95), _fmt(r.mf1), str(r.n_det)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plot_per_class(rows: list[MethodRow], classes: list[str], out: Path) -> None:
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(classes) + 2), 3.8), dpi=120)
    width = 0.8 / max(1, len(rows))
    x = np.arange(len(classes))
    for i, r in enumerate(rows):
        vals = [np.nan_to_num(r.per_class_ap50.get(c, np.nan)) for c in classes]
        ax.bar(x + i * width, vals, width, label=f"{r.method} ({r.setting})")
    ax.set_xticks(x + width * (len(rows) - 1) / 2, [DOTA_ABBREVIATIONS.get(c, c) for c in classes], rotation=30)
    ax.set_ylabel("AP50 per class")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def _plot_pr(curves: dict[str, MapResult], out: Path) -> None:
    """Precision-recall at IoU 0.5, pooled per method as the mean over classes of interpolated precision."""
    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=120)
    grid = np.linspace(0, 1, 101)
    for name, res in curves.items():
        per_class = []
        for c in range(len(res.classes)):
            if res.n_gt[c] == 0:
                continue
            rec, prec = res.recall[c], res.precision[c]
            if len(rec) == 0:
                per_class.append(np.zeros_like(grid))
                continue
            # interpolated precision: best precision at recall >= r
            env = np.maximum.accumulate(prec[::-1])[::-1]
            idx = np.searchsorted(rec, grid, side="left")
            per_class.append(np.where(idx < len(env), env[np.minimum(idx, len(env) - 1)], 0.0))
        if per_class:
            ax.plot(grid, np.mean(per_class, axis=0), label=name)
    ax.set_xlabel("recall")
    ax.set_ylabel("interpolated precision (mean over classes)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def draw_overlay(image_path: str | Path, gts: list, preds: dict[str, list[Det]], out: Path, max_side: int = 800) -> None:
    """GT in green, each method's detections in its own colour, labels beside the first vertex."""
    colours = ["red", "deepskyblue", "orange", "magenta", "yellow"]
    with Image.open(image_path) as im:
        im = im.convert("RGB")
    scale = min(1.0, max_side / max(im.size))
    if scale < 1.0:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))))
    d = ImageDraw.Draw(im)

    def poly(q, colour, width):
        pts = [(float(q[i]) * scale, float(q[i + 1]) * scale) for i in range(0, 8, 2)]
        d.polygon(pts, outline=colour, width=width)
        return pts[0]

    for g in gts:
        poly(g.quad, "lime", 3)
    for k, (name, dets) in enumerate(preds.items()):
        for det in dets:
            x, y = poly(det.quad, colours[k % len(colours)], 2)
            d.text((x + 2, y + 2), det.label[:12], fill=colours[k % len(colours)])
    legend = "GT: green; " + "; ".join(f"{n}: {colours[k % len(colours)]}" for k, n in enumerate(preds))
    d.rectangle([0, 0, min(im.width, 7 * len(legend)), 14], fill="black")
    d.text((2, 1), legend, fill="white")
    im.save(out)


def _json_safe(v: Any) -> Any:
    """NaN -> None (JSON has no NaN), tuples -> lists, numpy scalars -> Python numbers, recursively."""
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, (np.floating, float)):
        return None if math.isnan(float(v)) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def write_report(out_dir: str | Path, rows: list[MethodRow], classes: list[str], extras: dict[str, Any], *,
                 gts: GroundTruth, options: dict, inputs: dict, overlays: list[tuple[str, str]] = (),
                 predictions: dict[str, Detections] | None = None) -> dict:
    """Write results.json, report.md, per_class_ap50.png, pr_curves.png and overlays/*.png."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_gt = {c: 0 for c in classes}
    for objs in gts.values():
        for g in objs:
            if g.label in n_gt:
                n_gt[g.label] += 1
    result = {"options": options, "inputs": inputs, "classes": classes, "n_images": len(gts), "n_gt": n_gt,
              "rows": [asdict(r) for r in rows],
              "sweeps": extras.get("sweeps", {})}
    write_text_atomic(out / "results.json", json.dumps(_json_safe(result), indent=2, allow_nan=False))
    _plot_per_class(rows, classes, out / "per_class_ap50.png")
    if extras.get("pr"):
        _plot_pr(extras["pr"], out / "pr_curves.png")
    shown = []
    if overlays and predictions:
        (out / "overlays").mkdir(exist_ok=True)
        for image_id, path in overlays:
            name = f"{image_id}.png".replace("/", "_")
            draw_overlay(path, gts.get(image_id, []), {m: d.get(image_id, []) for m, d in predictions.items()},
                         out / "overlays" / name)
            shown.append(name)
    repeats = ("removed (--drop-repeats)" if options.get("drop_repeats")
               else "kept and scored, as in the published protocol")
    lines = ["# Detection evaluation", "",
             f"{len(gts)} images, {sum(n_gt.values())} GT objects, classes: {', '.join(classes)}.", "",
             f"Options: IoU {options.get('iou_mode')}, AP {options.get('ap_method')}, difficult "
             f"{options.get('difficult')}. Numbers in percent. VLM rows score every detection 1 (APnc); "
             "ties are ranked by sorted image id, then the order the model emitted them. Detector rows: "
             "'real scores' is the usual mAP; 'transfer' keeps score > t chosen on the calibration split; "
             "'oracle' keeps score > t chosen on this split (the reference's mAP_ac). Exact repeats in VLM "
             f"answers are {repeats}.", "",
             table_markdown(rows, classes), ""]
    cov = {m: c for m, c in extras.get("coverage", {}).items() if any(c.values())}
    if cov:
        lines += ["## Image coverage", "", "| method | ids not in GT (dropped) | their detections | GT images without "
                  "an answer (all misses) |", "|---|---|---|---|"]
        lines += [f"| {m} | {c['extra_ids']} | {c['extra_id_detections']} | {c['unanswered_gt_images']} |"
                  for m, c in cov.items()]
        lines.append("")
    diag_rows = [r for r in rows if r.kind == "vlm" and "responses" in r.diagnostics]
    if diag_rows:
        lines += ["## Parsing diagnostics", "", "| method | responses | objects | malformed lines | unknown labels "
                  "| duplicates removed | truncated | empty answers |", "|---|---|---|---|---|---|---|---|"]
        for r in diag_rows:
            dg = r.diagnostics
            unknown = ", ".join(f"{k} x{v}" for k, v in list(dg.get("unknown_labels", {}).items())[:5]) or "0"
            lines.append(f"| {r.method} | {dg.get('responses')} | {dg.get('objects')} | {dg.get('malformed')} | "
                         f"{unknown} | {dg.get('duplicates_removed')} | {dg.get('truncated_responses')} | "
                         f"{dg.get('empty_answers')} |")
        lines.append("")
    lines += ["![per-class AP50](per_class_ap50.png)", "", "![precision-recall](pr_curves.png)", ""]
    lines += [f"![{n}](overlays/{n})" for n in shown]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return result
