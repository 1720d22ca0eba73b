#!/usr/bin/env python
"""Convert one RSVQA LR/HR split (official images/questions/answers JSON triple) into vqa records.

    python tools/convert_rsvqa.py --json-dir RSVQA_LR --images RSVQA_LR/Images_LR --split train \\
        --out data/rsvqa_lr_train.jsonl
    python tools/convert_rsvqa.py --json-dir RSVQA_HR --images RSVQA_HR/Data --split test_phili --prefix USGS ...

Prints the conversion report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cotrain.converters import run_converter  # noqa: E402
from cotrain.converters.rsvqa import convert_rsvqa  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json-dir", required=True, help="folder holding <prefix>_split_<split>_*.json")
    ap.add_argument("--images", required=True, help="image folder (Images_LR or Data)")
    ap.add_argument("--out", required=True, help="output records JSONL")
    ap.add_argument("--split", default="train", help="train | val | test | test_phili (HR)")
    ap.add_argument("--prefix", help="LR or USGS (default: the only prefix with this split)")
    ap.add_argument("--image-name", default="{id}.tif", help="image file name pattern given the image id")
    ap.add_argument("--image-root", help="root the record image paths are relative to (default: --images)")
    ap.add_argument("--on-bad", choices=("skip", "raise"), default="skip", help="count bad inputs or stop")
    args = ap.parse_args(argv)
    return run_converter(convert_rsvqa, args.json_dir, args.images, args.out, split=args.split, prefix=args.prefix,
                         image_root=args.image_root, image_name=args.image_name, on_bad=args.on_bad)


if __name__ == "__main__":
    sys.exit(main())
