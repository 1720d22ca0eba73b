"""Detection evaluation as a library: VLM responses and conventional detectors on one ground truth.

``evaluate`` is what ``cotrain eval-det`` runs: it reads the ground truth (a DOTA labelTxt
directory or canonical detection records), parses each VLM's responses with the family's box
codec, reads each detector's results (mmrotate pickle or DOTA Task1 directory), builds the
comparison table (APnc next to mAP, calibrated thresholds, mF1) and writes ``report.md``.

``summarise_responses`` is the detection summary of the evaluation harness
(``cotrain eval --bench ...`` on a detection set); ``register`` hands it to the harness through
the ``cotrain.plugins`` entry point, so that ``cotrain`` never imports this package.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import numpy as np

from cotrain.boxes import BoxCodec
from cotrain.dota.formats import read_labeltxt_dir, read_mmrotate_pickle, read_task1_dir
from cotrain.dota.types import DOTA_V1_CLASSES, DOTA_V15_CLASSES, GT, Det
from cotrain.errors import CotrainError
from cotrain.resolution import resized_wh_of
from cotrain.geometry.quads import box_to_quad, enclosing_hbb
from cotrain.metrics.grounding import mean_normalised_hbb, scale_normalised_hbb
from cotrain.model.families import get_family
from detection.labels import LabelNormaliser
from detection.metrics import IOU_THRS_50_95, apnc, mf1
from detection.parse import ParseSummary, parse_response, parse_responses_file
from detection.records import gts_from_records
from detection.report import MethodRow, compare_methods, write_report

__all__ = ["evaluate", "fixed_box_detections", "load_gt", "load_detector", "summarise_responses", "register"]


def load_gt(path: str):
    """(gts, classes, image sizes by id or {}, image paths by id or {}) from a labelTxt dir or records JSONL."""
    p = Path(path)
    if p.is_dir():
        gts = read_labeltxt_dir(p)
        classes = sorted({g.label for objs in gts.values() for g in objs})
        return gts, classes, {}, {}
    if not p.is_file():
        raise CotrainError(f"--gt {path!r} does not exist; give a DOTA labelTxt directory or a records JSONL")
    gts, classes, by_id = gts_from_records(str(p))
    sizes = {k: (r["images"][0]["width"], r["images"][0]["height"]) for k, r in by_id.items()}
    paths = {k: r["images"][0]["path"] for k, r in by_id.items()}
    return gts, classes, sizes, paths


def detector_label_order(classes: list[str], given: str | None) -> list[str]:
    """Class names in the order of an mmrotate pickle's label indices.

    mmrotate numbers classes in the dataset's own order (DOTA: plane = 0), not alphabetically, so
    the order is DOTA-v1.0's or v1.5's when the evaluated classes fit in one, else must be given.
    """
    if given:
        return [c.strip() for c in given.split(",") if c.strip()]
    for table in (DOTA_V1_CLASSES, DOTA_V15_CLASSES):
        if set(classes) <= set(table):
            return list(table)
    raise CotrainError("an mmrotate pickle numbers its classes in its dataset's order; the evaluated classes "
                       f"{classes} are not all DOTA classes, so pass --detector-classes c0,c1,... in label order")


def load_detector(path: str, classes: list[str], label_order: str | None):
    """Detections of a conventional detector: a DOTA Task1 directory or an mmrotate result pickle."""
    p = Path(path)
    if p.is_dir():
        return read_task1_dir(p, classes)
    if p.suffix in (".pkl", ".pickle") and p.is_file():
        return read_mmrotate_pickle(p, detector_label_order(classes, label_order))
    raise CotrainError(f"detector result {path!r}: expected a DOTA Task1 directory or an mmrotate .pkl file")


def check_convention(path: str, convention: str, family: str) -> None:
    """Refuse a responses file written by a model whose box convention differs from ``family``'s."""
    with open(path) as f:
        for lineno, line in enumerate(f, start=1):
            try:
                found = json.loads(line).get("box_convention")
            except (json.JSONDecodeError, AttributeError):
                continue
            if found is not None and found != convention:
                raise CotrainError(f"{path}:{lineno}: responses use box convention {found!r} but --family {family} "
                                   f"uses {convention!r}; pass the --family of the model that wrote them")


def _vlm_detections(vlm: dict[str, str], codec: BoxCodec, family: str, classes: list[str], sizes: dict,
                    **parse_options) -> tuple[dict, dict]:
    vlms, diagnostics = {}, {}
    for name, path in vlm.items():
        if not Path(path).is_file():
            raise CotrainError(f"--vlm {name}={path!r}: no such file; `cotrain predict` writes responses JSONL")
        check_convention(path, codec.convention, family)
        dets, summary = parse_responses_file(path, codec=codec, classes=classes, image_sizes=sizes or None,
                                             **parse_options)
        vlms[name] = dets
        # not dataclasses.asdict: it rebuilds Counters from (key, count) tuples
        diagnostics[name] = {f.name: (dict(v) if isinstance(v, dict) else v)
                             for f in fields(summary) for v in [getattr(summary, f.name)]}
    return vlms, diagnostics


def _overlays(gts, paths: dict, gt: str, image_root: str | None, n: int) -> list[tuple[str, str]]:
    if not paths:
        return []
    root = Path(image_root) if image_root else Path(gt).resolve().parent.parent
    ids = sorted((i for i in gts if gts[i]), key=lambda i: (-len(gts[i]), i))[:n]
    return [(i, str(root / paths[i])) for i in ids if (root / paths[i]).is_file()]


def evaluate(gt: str, *, vlm: dict[str, str] | None = None, detector: dict[str, str] | None = None,
             calib_gt: str | None = None, calib_detector: dict[str, str] | None = None,
             classes: list[str] | None = None, image_root: str | None = None, family: str = "qwen2_5_vl",
             box_format: str = "auto", iou_mode: str = "rbox", ap_method: str = "11point",
             difficult: str = "count", fuzzy_cutoff: float | None = None, drop_repeats: bool = False,
             detector_classes: str | None = None, n_overlays: int = 4,
             out: str = "outputs/det_eval") -> tuple[list[MethodRow], list[str]]:
    """Score VLM responses and detector results against one ground truth; write ``out``/report.md.

    ``vlm`` / ``detector`` / ``calib_detector`` map a method name to its file; ``classes``
    defaults to the classes in the ground truth. Returns the comparison table's rows and the
    evaluated classes.
    """
    vlm, detector, calib_detector = vlm or {}, detector or {}, calib_detector or {}
    gts, gt_classes, sizes, paths = load_gt(gt)
    classes = list(classes) if classes else gt_classes
    n_objects = sum(1 for objs in gts.values() for g in objs if g.label in classes)
    if not classes or n_objects == 0:
        raise CotrainError(f"--gt {gt!r} has no objects of the evaluated classes {classes}; check the path "
                           "and --classes")
    codec = BoxCodec.for_family(get_family(family))
    vlms, diagnostics = _vlm_detections(vlm, codec, family, classes, sizes, kind=box_format,
                                        fuzzy_cutoff=fuzzy_cutoff, drop_repeats=drop_repeats)
    detectors = {name: load_detector(path, classes, detector_classes) for name, path in detector.items()}
    calib_gts = calib_dets = None
    if calib_detector:
        if not calib_gt:
            raise CotrainError("--calib-detector needs --calib-gt (the calibration split's ground truth)")
        calib_gts = load_gt(calib_gt)[0]
        calib_dets = {n: load_detector(path, classes, detector_classes) for n, path in calib_detector.items()}
        unknown = sorted(set(calib_dets) - set(detectors))
        if unknown:
            raise CotrainError(f"--calib-detector names {unknown} have no --detector of the same name")
    options = {"iou_mode": iou_mode, "ap_method": ap_method, "difficult": difficult}
    rows, extras = compare_methods(gts, classes, vlms=vlms, detectors=detectors, calib_gts=calib_gts,
                                   calib_detectors=calib_dets, **options)
    for r in rows:
        if r.kind == "vlm":
            r.diagnostics.update(diagnostics[r.method])
    inputs = {"gt": gt, "vlm": [f"{k}={v}" for k, v in vlm.items()],
              "detector": [f"{k}={v}" for k, v in detector.items()], "calib_gt": calib_gt,
              "calib_detector": [f"{k}={v}" for k, v in calib_detector.items()], "family": family}
    write_report(out, rows, classes, extras, gts=gts, options={**options, "drop_repeats": drop_repeats},
                 inputs=inputs, overlays=_overlays(gts, paths, gt, image_root, n_overlays),
                 predictions={**vlms, **detectors})
    return rows, classes


def summarise_responses(rows: list[dict], records: dict[int, dict], *, codec: BoxCodec, options: dict) -> dict:
    """APnc50 / 75 / 50:95 and parse diagnostics of a benchmark's detection rows (the harness's summary)."""
    mine = [records[r["index"]] for r in rows]  # a mixed set holds other tasks' records too
    classes = sorted({o["label"] for rec in mine for o in rec["objects"]}
                     | {c for rec in mine for c in rec.get("classes") or []})
    box_format = options.get("box_format", "quad")
    norm = LabelNormaliser(classes, None, None)
    dets, gts = {}, {}
    summary = ParseSummary()
    for r in rows:
        rec = records[r["index"]]
        rid = str(rec["id"])
        img = r["images"][0]
        w, h = resized_wh_of(img)  # cache rows of older runs carry "resized": [h, w]
        parsed = parse_response(r["response"], kind=box_format, codec=codec,
                                orig_wh=(int(img["width"]), int(img["height"])), resized_wh=(w, h),
                                normaliser=norm, drop_repeats=False)
        summary.add(rid, parsed.diagnostics)
        dets[rid] = parsed.objects
        # hbb answers are scored against each object's enclosing axis-aligned box (DOTA's HBB task)
        gts[rid] = [GT(o["label"], np.asarray(box_to_quad(enclosing_hbb(o) if box_format == "hbb" else o)),
                       int(o.get("difficult", 0))) for o in rec["objects"]]
    res = apnc(dets, gts, classes, iou_thrs=IOU_THRS_50_95)
    base = fixed_box_detections(mine, classes)
    base_res = apnc(base, gts, classes, iou_thrs=(0.5,))
    return {"APnc50": res.map_at(0.5), "APnc75": res.map_at(0.75), "APnc50:95": res.map_mean,
            "mF1": mf1(dets, gts, classes)["mF1"],
            "objects_parsed": int(sum(len(v) for v in dets.values())),
            "objects_gt": int(sum(len(v) for v in gts.values())),
            "parse": {k: v for k, v in vars(summary).items() if isinstance(v, (int, float))},
            "fixed_box_baseline": {"APnc50": base_res.map_at(0.5), "mF1": mf1(base, gts, classes)["mF1"]}}


def fixed_box_detections(records: list[dict], classes: list[str]) -> dict[str, list[Det]]:
    """The detector that never looks at the pixels: every image gets, for every class with ground truth
    in ``records``, one box at that class's mean enclosing box (as a fraction of each image's size,
    fitted on these very records, so it is the best such fixed answer). The detection analogue of the
    grounding harness's fixed-box baseline; a model must beat it to show it localises."""
    per_class: dict[str, list] = {}
    for rec in records:
        img = rec["images"][0]
        wh = (int(img["width"]), int(img["height"]))
        for o in rec["objects"]:
            per_class.setdefault(o["label"], []).append((enclosing_hbb(o)["hbb"], wh))
    means = {c: mean_normalised_hbb(per_class[c]) for c in classes if c in per_class}
    out = {}
    for rec in records:
        img = rec["images"][0]
        wh = (int(img["width"]), int(img["height"]))
        out[str(rec["id"])] = [Det(c, np.asarray(box_to_quad({"hbb": scale_normalised_hbb(m, wh)})))
                               for c, m in means.items()]
    return out


def register() -> None:
    """Entry point of the ``cotrain.plugins`` group: the harness scores detection sets with this package."""
    from cotrain.eval.scoring import register_summary

    register_summary("detection", summarise_responses)


