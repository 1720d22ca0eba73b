#!/usr/bin/env python
"""Convert DIOR-R oriented XML annotations into canonical detection records (quads, 20 DIOR classes).

    python tools/convert_dior_r.py --annotations "DIOR/Annotations/Oriented Bounding Boxes" \\
        --images DIOR/JPEGImages-trainval DIOR/JPEGImages-test --split DIOR/ImageSets/Main/test.txt \\
        --out data/dior_r_test.jsonl

Prints the conversion report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cotrain.converters import run_converter  # noqa: E402
from cotrain.converters.dior import convert_dior_r  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--annotations", required=True, help="folder of per-image XML files")
    ap.add_argument("--images", required=True, nargs="+", help="image folder(s), searched in order")
    ap.add_argument("--out", required=True, help="output records JSONL")
    ap.add_argument("--image-root", help="root the record image paths are relative to (default: parent of the "
                    "first image folder)")
    ap.add_argument("--split", help="optional id-list file, e.g. ImageSets/Main/test.txt")
    ap.add_argument("--on-bad", choices=("skip", "raise"), default="skip", help="count bad inputs or stop")
    args = ap.parse_args(argv)
    return run_converter(convert_dior_r, args.annotations, args.images, args.out, image_root=args.image_root,
                         split=args.split, on_bad=args.on_bad)


if __name__ == "__main__":
    sys.exit(main())
