#!/usr/bin/env python
"""LLaVA / ShareGPT conversation JSON (GeoChat, VHM style) -> conversation records.

    python tools/convert_llava.py GeoChat_Instruct.json data/geochat.jsonl --image-root images \\
        --box-convention geochat

Box conventions (boxes written in the text become structured boxes + <box>i</box>):
  geochat  {<x1><y1><x2><y2>|<theta>}, 0..100      qwen2vl  <|box_start|>(x1,y1),(x2,y2)<|box_end|>, 0..1000
  unit     [x1, y1, x2, y2] decimals in 0..1        none     leave the text unchanged (default)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a clone without installing



def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("json", help="conversation list (.json) or one conversation per line (.jsonl)")
    p.add_argument("out", help="output JSONL")
    p.add_argument("--image-root", required=True, help="folder the 'image' paths are relative to")
    p.add_argument("--box-convention", choices=("none", "geochat", "qwen2vl", "unit"), default="none",
                   help="how the source writes boxes in text (default: none = leave text unchanged)")
    p.add_argument("--split", default=None, help="keep only entries whose 'split' is this value")
    p.add_argument("--modality", default="rgb", help="image modality (rgb, ir, sar, ms)")
    p.add_argument("--on-bad", choices=("skip", "raise"), default="skip", help="bad entries: count and skip, or stop")
    args = p.parse_args(argv)
    from cotrain.converters import run_converter
    from cotrain.converters.llava import convert_llava

    return run_converter(convert_llava, args.json, args.out, image_root=args.image_root, split=args.split,
                         box_convention=args.box_convention, modality=args.modality, on_bad=args.on_bad)


if __name__ == "__main__":
    sys.exit(main())
