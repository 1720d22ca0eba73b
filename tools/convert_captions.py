#!/usr/bin/env python
"""Karpathy-style caption JSON (RSICD, UCM-captions, Sydney-captions, RSITMD) -> captioning records.

    python tools/convert_captions.py RSICD/dataset_rsicd.json data/rsicd_train.jsonl \\
        --image-root RSICD/RSICD_images --split train
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a clone without installing



def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("json", help="the dataset_*.json caption file")
    p.add_argument("out", help="output JSONL")
    p.add_argument("--image-root", required=True, help="folder holding the images named in the file")
    p.add_argument("--split", default=None, help="keep only entries of this split (train, val, test, restval)")
    p.add_argument("--modality", default="rgb", help="image modality (rgb, ir, sar, ms)")
    p.add_argument("--keep-duplicates", action="store_true", help="keep repeated captions of an image")
    p.add_argument("--on-bad", choices=("skip", "raise"), default="skip", help="bad entries: count and skip, or stop")
    args = p.parse_args(argv)
    from cotrain.converters import run_converter
    from cotrain.converters.captions import convert_captions

    return run_converter(convert_captions, args.json, args.out, image_root=args.image_root, split=args.split,
                         modality=args.modality, dedupe=not args.keep_duplicates, on_bad=args.on_bad)


if __name__ == "__main__":
    sys.exit(main())
