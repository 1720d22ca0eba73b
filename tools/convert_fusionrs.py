#!/usr/bin/env python
"""FusionRS-style RGB/IR/caption triplets -> rgb scene, IR-aware and dual-modal captioning records.

    python tools/convert_fusionrs.py FusionRS/triplets.jsonl data/fusionrs.jsonl --image-root FusionRS
    python tools/convert_fusionrs.py FusionRS/ data/fusionrs.jsonl          # rgb/, ir/, captions.json

The two accepted layouts are documented in cotrain/converters/fusion.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a clone without installing



def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="triplet list (.json/.jsonl) or folder with rgb/, ir/ and captions.json")
    p.add_argument("out", help="output JSONL")
    p.add_argument("--image-root", default=None, help="folder image paths are relative to "
                   "(default: the list file's folder, or the folder itself)")
    p.add_argument("--split", default=None, help="keep only entries whose 'split' is this value")
    p.add_argument("--kinds", default="rgb,ir,dual", help="record kinds to write (comma list of rgb, ir, dual)")
    p.add_argument("--on-bad", choices=("skip", "raise"), default="skip", help="bad entries: count and skip, or stop")
    args = p.parse_args(argv)
    from cotrain.converters import run_converter
    from cotrain.converters.fusion import convert_fusionrs

    return run_converter(convert_fusionrs, args.src, args.out, image_root=args.image_root, split=args.split,
                         kinds=[k.strip()
                         for k in args.kinds.split(",") if k.strip()], on_bad=args.on_bad)


if __name__ == "__main__":
    sys.exit(main())
