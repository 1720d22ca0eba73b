"""Generate the synthetic remote-sensing demo data (images, JSONL records, manifest).

    cotrain make-demo-data --out outputs/demo_data --seed 0
    cotrain make-demo-data --full-layout outputs/full_syn   # data_recipes/full.yaml's names
    cotrain make-demo-data --kind localize --out outputs/localize_data --n-scenes 3000

Thin wrapper over ``cotrain.data.synthetic.generate_demo_data``; prints one row per dataset
with its task and record counts per split.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cotrain.data.synthetic import generate_demo_data
from cotrain.errors import CotrainError


def summary_table(manifest: dict) -> str:
    """Plain-text table: dataset, task, train/val/test record counts."""
    rows = [("dataset", "task", "train", "val", "test")]
    for ds in manifest["datasets"]:
        c = ds["counts"]
        rows.append((ds["name"], ds["task"], str(c["train"]), str(c["val"]), str(c["test"])))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="outputs/demo_data", help="output directory (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default: %(default)s)")
    p.add_argument("--n-scenes", type=int, default=1200, help="ordinary scenes (default: %(default)s)")
    p.add_argument("--n-large", type=int, default=2, help="large zoom images (default: %(default)s)")
    p.add_argument("--large-size", type=int, default=8192, help="side of large images, px (default: %(default)s)")
    p.add_argument("--kind", choices=("scenes", "localize", "multisensor"), default="scenes",
                   help="scenes: the demo's land-cover scenes (every task); localize: large objects on plain "
                        "ground for grounding and detection (--n-scenes images); multisensor: co-registered S1 / S2 "
                        "patches (--n-scenes patches) (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--full-layout", metavar="DIR", help="also link the data under data_recipes/full.yaml's dataset "
                   "names into DIR (then run full.yaml with data.data_root=DIR)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        if args.full_layout:
            from cotrain.data.synthetic import ensure_demo_data
            from cotrain.data.synthetic.full_layout import FULL_STANDINS, link_full_layout

            ensure_demo_data(args.out, seed=args.seed, n_scenes=args.n_scenes, n_large=args.n_large,
                             large_size=args.large_size)
            link_full_layout(args.out, args.full_layout)
            for name, syn in FULL_STANDINS.items():
                print(f"{name:<14} -> {syn}")
            print(f"linked {args.out} into {args.full_layout} in {time.perf_counter() - t0:.1f} s")
            return 0
        if args.kind == "multisensor":  # --n-scenes = the number of 120 x 120 S1 / S2 patches
            from cotrain.data.synthetic.multisensor import generate_multisensor_data

            manifest = generate_multisensor_data(args.out, n_patches=args.n_scenes, seed=args.seed)
        elif args.kind == "localize":
            from cotrain.data.synthetic import generate_localize_data

            manifest = generate_localize_data(args.out, seed=args.seed, n_images=args.n_scenes,
                                              progress=not args.no_progress)
        else:
            manifest = generate_demo_data(args.out, seed=args.seed, n_scenes=args.n_scenes, n_large=args.n_large,
                                          large_size=args.large_size, progress=not args.no_progress)
    except CotrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary_table(manifest))
    print(f"wrote {args.out} in {time.perf_counter() - t0:.1f} s (manifest: {Path(args.out) / 'manifest.json'})")
    return 0
