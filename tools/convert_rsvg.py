#!/usr/bin/env python
"""Convert DIOR-RSVG / RSVG grounding XML into canonical grounding records (one per described object).

    python tools/convert_rsvg.py --annotations DIOR_RSVG/Annotations --images DIOR_RSVG/JPEGImages \\
        --split DIOR_RSVG/train.txt --out data/dior_rsvg_train.jsonl

--split is DIOR-RSVG's file of global object indices. Prints the conversion report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cotrain.converters import run_converter  # noqa: E402
from cotrain.converters.rsvg import convert_rsvg  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--annotations", required=True, help="folder of per-image XML files")
    ap.add_argument("--images", required=True, help="image folder")
    ap.add_argument("--out", required=True, help="output records JSONL")
    ap.add_argument("--image-root", help="root the record image paths are relative to (default: --images)")
    ap.add_argument("--split", help="optional split file of object indices (train.txt / val.txt / test.txt)")
    ap.add_argument("--on-bad", choices=("skip", "raise"), default="skip", help="count bad inputs or stop")
    args = ap.parse_args(argv)
    return run_converter(convert_rsvg, args.annotations, args.images, args.out, image_root=args.image_root,
                         split=args.split, on_bad=args.on_bad)


if __name__ == "__main__":
    sys.exit(main())
