#!/usr/bin/env python
"""Folder-per-class scene set (UCM, AID, NWPU-RESISC45, WHU-RS19) -> classification records.

    python tools/convert_scenes.py AID/ data/aid.jsonl
    python tools/convert_scenes.py AID/ 'data/aid_{split}.jsonl' --split all --ratios 0.8,0.1,0.1 --seed 0

Class names are the folder names normalised (CamelCase and _/- become spaces, lower case); see
cotrain/converters/scenes.py for the naming and the seeded per-class split.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a clone without installing

from cotrain.errors import CotrainError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", help="folder with one sub-folder of images per class")
    p.add_argument("out", help="output JSONL (with --split all: a pattern containing {split})")
    p.add_argument("--image-root", default=None, help="folder image paths are relative to (default: ROOT)")
    p.add_argument("--split", choices=("train", "val", "test", "all"), default=None,
                   help="write one part of a seeded per-class split (needs --ratios), or all three")
    p.add_argument("--ratios", default=None, help="train,val,test fractions, e.g. 0.8,0.1,0.1")
    p.add_argument("--seed", type=int, default=0, help="seed of the split draw")
    p.add_argument("--modality", default="rgb", help="image modality (rgb, ir, sar, ms)")
    p.add_argument("--on-bad", choices=("skip", "raise"), default="skip", help="bad images: count and skip, or stop")
    args = p.parse_args(argv)
    try:
        from cotrain.converters.scenes import convert_scene_splits, convert_scenes

        ratios = [float(r) for r in args.ratios.split(",")] if args.ratios else None
        common = dict(image_root=args.image_root, seed=args.seed, modality=args.modality, on_bad=args.on_bad)
        if args.split == "all":
            parts = convert_scene_splits(args.root, args.out, ratios=ratios or (0.8, 0.1, 0.1), **common)
            reports = list(parts.values())
        else:
            reports = [convert_scenes(args.root, args.out, split=args.split, ratios=ratios, **common)]
    except (CotrainError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for r in reports:
        print(r.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
