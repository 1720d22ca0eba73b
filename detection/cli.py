"""``cotrain eval-det``: score VLM detections (APnc) next to conventional detectors, as in the
published comparison table. A thin shell over ``detection.evaluate.evaluate``.

    cotrain eval-det --gt outputs/demo_data/records/syn_det_test.jsonl \\
        --vlm tiny=outputs/det_demo/responses_tiny.jsonl --vlm oracle=outputs/det_demo/responses_oracle.jsonl \\
        --detector simdet=outputs/det_demo/detector_test \\
        --calib-gt outputs/demo_data/records/syn_det_val.jsonl --calib-detector simdet=outputs/det_demo/detector_val \\
        --out outputs/det_eval

GT: a DOTA labelTxt directory or a canonical detection records JSONL. VLM responses: JSONL lines
{"id", "response", "resized_wh": [w, h], "orig_wh": [w, h]} (``cotrain predict`` writes them; older files
with "resized": [h, w] are read too); boxes
are mapped back to original pixels with the family's box codec. Detectors: an mmrotate 1.x result
pickle (*.pkl: unpickling runs code, so only pass files you trust) or a DOTA Task1 directory.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cotrain.errors import CotrainError
from detection.evaluate import evaluate
from detection.report import table_markdown


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
        classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
        rows, classes = evaluate(
            args.gt, vlm=_named(args.vlm, "--vlm"), detector=_named(args.detector, "--detector"),
            calib_gt=args.calib_gt, calib_detector=_named(args.calib_detector, "--calib-detector"),
            classes=classes, image_root=args.image_root, family=args.family, box_format=args.box_format,
            iou_mode=args.iou_mode, ap_method=args.ap_method, difficult=args.difficult,
            fuzzy_cutoff=args.fuzzy_cutoff, drop_repeats=args.drop_repeats,
            detector_classes=args.detector_classes, n_overlays=args.n_overlays, out=args.out)
    except CotrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table_markdown(rows, classes))
    print(f"\nreport: {Path(args.out) / 'report.md'}")
    return 0


