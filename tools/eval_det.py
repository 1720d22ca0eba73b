#!/usr/bin/env python
"""Score VLM detections (APnc) next to conventional detectors, as in the published comparison table.

    python tools/eval_det.py --gt outputs/demo_data/records/syn_det_test.jsonl \\
        --vlm tiny=outputs/det_demo/responses_tiny.jsonl --vlm oracle=outputs/det_demo/responses_oracle.jsonl \\
        --detector simdet=outputs/det_demo/detector_test \\
        --calib-gt outputs/demo_data/records/syn_det_val.jsonl --calib-detector simdet=outputs/det_demo/detector_val \\
        --out outputs/det_eval

GT: a DOTA labelTxt directory or a canonical detection records JSONL. VLM responses: JSONL lines
{"id", "response", "resized": [h, w], "orig_wh": [w, h]} (tools/predict.py writes them); boxes are
mapped back to original pixels with the family's box codec. Detectors: an mmrotate 1.x result
pickle (*.pkl: unpickling runs code, so only pass files you trust) or a DOTA Task1 directory.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cotrain.errors import CotrainError  # noqa: E402


def _named(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = Path(item).stem, item
        if name in out:
            raise CotrainError(f"{flag}: the name {name!r} is used twice; give NAME=PATH with distinct names")
        out[name] = path
    return out


def load_gt(path: str):
    """(gts, classes, image paths by id or {}) from a labelTxt dir or a records JSONL."""
    from detection.dota import read_labeltxt_dir

    p = Path(path)
    if p.is_dir():
        gts = read_labeltxt_dir(p)
        classes = sorted({g.label for objs in gts.values() for g in objs})
        return gts, classes, {}, {}
    if not p.is_file():
        raise CotrainError(f"--gt {path!r} does not exist; give a DOTA labelTxt directory or a records JSONL")
    from detection.records import gts_from_records

    gts, classes, by_id = gts_from_records(str(p))
    sizes = {k: (r["images"][0]["width"], r["images"][0]["height"]) for k, r in by_id.items()}
    paths = {k: r["images"][0]["path"] for k, r in by_id.items()}
    return gts, classes, sizes, paths


def detector_label_order(classes: list[str], given: str | None) -> list[str]:
    """Class names in the order of an mmrotate pickle's label indices.

    mmrotate numbers classes in the dataset's own order (DOTA: plane = 0), not alphabetically, so
    the order is DOTA-v1.0's or v1.5's when the evaluated classes fit in one, else must be given.
    """
    from detection.types import DOTA_V1_CLASSES, DOTA_V15_CLASSES

    if given:
        return [c.strip() for c in given.split(",") if c.strip()]
    for table in (DOTA_V1_CLASSES, DOTA_V15_CLASSES):
        if set(classes) <= set(table):
            return list(table)
    raise CotrainError("an mmrotate pickle numbers its classes in its dataset's order; the evaluated classes "
                       f"{classes} are not all DOTA classes, so pass --detector-classes c0,c1,... in label order")


def load_detector(path: str, classes: list[str], label_order: str | None):
    from detection.dota import read_mmrotate_pickle, read_task1_dir

    p = Path(path)
    if p.is_dir():
        return read_task1_dir(p, classes)
    if p.suffix in (".pkl", ".pickle") and p.is_file():
        return read_mmrotate_pickle(p, detector_label_order(classes, label_order))
    raise CotrainError(f"detector result {path!r}: expected a DOTA Task1 directory or an mmrotate .pkl file")


def check_convention(path: str, convention: str, family: str) -> None:
    """Refuse a responses file written by a model whose box convention differs from --family's."""
    import json

    with open(path) as f:
        for lineno, line in enumerate(f, start=1):
            try:
                found = json.loads(line).get("box_convention")
            except (json.JSONDecodeError, AttributeError):
                continue
            if found is not None and found != convention:
                raise CotrainError(f"{path}:{lineno}: responses use box convention {found!r} but --family {family} "
                                   f"uses {convention!r}; pass the --family of the model that wrote them")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gt", required=True, help="DOTA labelTxt directory or canonical detection records JSONL")
    p.add_argument("--vlm", action="append", default=[], help="NAME=responses.jsonl (repeatable)")
    p.add_argument("--detector", action="append", default=[], help="NAME=result.pkl or NAME=Task1_dir (repeatable)")
    p.add_argument("--calib-gt", default=None, help="GT of the calibration split (for 'transfer' thresholds)")
    p.add_argument("--calib-detector", action="append", default=[], help="NAME=... on the calibration split")
    p.add_argument("--classes", default=None, help="comma-separated class list (default: classes in the GT)")
    p.add_argument("--image-root", default=None, help="image root of the records (for overlay images)")
    p.add_argument("--family", default="qwen2_5_vl", help="model family whose box convention the VLM used")
    p.add_argument("--box-format", default="auto", choices=("auto", "hbb", "obb", "quad"))
    p.add_argument("--iou-mode", default="rbox", choices=("rbox", "quad"))
    p.add_argument("--ap-method", default="11point", choices=("11point", "area"))
    p.add_argument("--difficult", default="count", choices=("count", "ignore"))
    p.add_argument("--fuzzy-cutoff", type=float, default=None, help="opt in to fuzzy label matching (e.g. 0.8)")
    p.add_argument("--drop-repeats", action="store_true",
                   help="remove exact repeats in VLM answers (generation loops); off = published protocol")
    p.add_argument("--detector-classes", default=None,
                   help="class names in an mmrotate pickle's label order (default: DOTA v1.0 / v1.5 order)")
    p.add_argument("--n-overlays", type=int, default=4)
    p.add_argument("--out", default="outputs/det_eval")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except CotrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(args) -> int:
    from cotrain.boxes import BoxCodec
    from cotrain.model.families import get_family
    from detection.parse import parse_responses_file
    from detection.report import compare_methods, write_report

    gts, classes, sizes, paths = load_gt(args.gt)
    if args.classes:
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    n_objects = sum(1 for objs in gts.values() for g in objs if g.label in classes)
    if not classes or n_objects == 0:
        raise CotrainError(f"--gt {args.gt!r} has no objects of the evaluated classes {classes}; check the path "
                           "and --classes")
    codec = BoxCodec.for_family(get_family(args.family))
    vlms, diagnostics = {}, {}
    for name, path in _named(args.vlm, "--vlm").items():
        if not Path(path).is_file():
            raise CotrainError(f"--vlm {name}={path!r}: no such file; tools/predict.py writes responses JSONL")
        check_convention(path, codec.convention, args.family)
        dets, summary = parse_responses_file(path, kind=args.box_format, codec=codec, classes=classes,
                                             fuzzy_cutoff=args.fuzzy_cutoff, drop_repeats=args.drop_repeats,
                                             image_sizes=sizes or None)
        vlms[name] = dets
        # not dataclasses.asdict: it rebuilds Counters from (key, count) tuples
        diagnostics[name] = {f.name: (dict(v) if isinstance(v, dict) else v)
                             for f in fields(summary) for v in [getattr(summary, f.name)]}
    detectors = {name: load_detector(path, classes, args.detector_classes)
                 for name, path in _named(args.detector, "--detector").items()}
    calib_gts = calib_dets = None
    if args.calib_detector:
        if not args.calib_gt:
            raise CotrainError("--calib-detector needs --calib-gt (the calibration split's ground truth)")
        calib_gts = load_gt(args.calib_gt)[0]
        calib_dets = {n: load_detector(path, classes, args.detector_classes)
                      for n, path in _named(args.calib_detector, "--calib-detector").items()}
        unknown = sorted(set(calib_dets) - set(detectors))
        if unknown:
            raise CotrainError(f"--calib-detector names {unknown} have no --detector of the same name")
    options = {"iou_mode": args.iou_mode, "ap_method": args.ap_method, "difficult": args.difficult}
    rows, extras = compare_methods(gts, classes, vlms=vlms, detectors=detectors, calib_gts=calib_gts,
                                   calib_detectors=calib_dets, **options)
    for r in rows:
        if r.kind == "vlm":
            r.diagnostics.update(diagnostics[r.method])
    overlays = []
    if paths:
        root = Path(args.image_root) if args.image_root else Path(args.gt).resolve().parent.parent
        ids = sorted((i for i in gts if gts[i]), key=lambda i: (-len(gts[i]), i))[: args.n_overlays]
        overlays = [(i, str(root / paths[i])) for i in ids if (root / paths[i]).is_file()]
    inputs = {"gt": args.gt, "vlm": args.vlm, "detector": args.detector, "calib_gt": args.calib_gt,
              "calib_detector": args.calib_detector, "family": args.family}
    write_report(args.out, rows, classes, extras, gts=gts, options={**options, "drop_repeats": args.drop_repeats},
                 inputs=inputs, overlays=overlays,
                 predictions={**vlms, **detectors})
    from detection.report import table_markdown

    print(table_markdown(rows, classes))
    print(f"\nreport: {Path(args.out) / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
