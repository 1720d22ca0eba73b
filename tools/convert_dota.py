#!/usr/bin/env python
"""Convert a DOTA v1.0/v1.5 split (labelTxt + images) into canonical detection records.

    python tools/convert_dota.py --labels DOTA/train/labelTxt --images DOTA/train/images \\
        --out data/dota_train.jsonl [--version 1.5] [--split-patches --patch-dir data/dota_train_1024]

With --split-patches, 1024 px patches (gap 200, IoF >= 0.7, cut objects difficult 2) are written
under --patch-dir and one record per patch is written. Prints the conversion report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cotrain.converters import run_converter  # noqa: E402
from cotrain.converters.dota import convert_dota  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", required=True, help="DOTA labelTxt folder (one .txt per image)")
    ap.add_argument("--images", required=True, help="DOTA images folder")
    ap.add_argument("--out", required=True, help="output records JSONL")
    ap.add_argument("--image-root", help="root the record image paths are relative to (default: --images, "
                    "or --patch-dir with --split-patches)")
    ap.add_argument("--version", choices=("1.0", "1.5"), default="1.0", help="DOTA class list")
    ap.add_argument("--split", help="optional id-list file (one image id per line) restricting the images")
    ap.add_argument("--split-patches", action="store_true", help="split images into patches (DOTA devkit rules)")
    ap.add_argument("--patch-dir", help="folder the patch images and labelTxt are written to")
    ap.add_argument("--patch", type=int, default=1024, help="patch size in pixels")
    ap.add_argument("--gap", type=int, default=200, help="overlap between neighbouring patches in pixels")
    ap.add_argument("--iof-thr", type=float, default=0.7, help="keep an object in a patch when IoF >= this")
    ap.add_argument("--drop-empty", action="store_true", help="do not write records for patches without objects")
    ap.add_argument("--on-bad", choices=("skip", "raise"), default="skip", help="count bad inputs or stop")
    args = ap.parse_args(argv)
    return run_converter(convert_dota, args.labels, args.images, args.out, image_root=args.image_root,
                         version=args.version, split=args.split, split_patches=args.split_patches,
                         patch_dir=args.patch_dir, patch=args.patch, gap=args.gap, iof_thr=args.iof_thr,
                         keep_empty=not args.drop_empty, on_bad=args.on_bad)


if __name__ == "__main__":
    sys.exit(main())
