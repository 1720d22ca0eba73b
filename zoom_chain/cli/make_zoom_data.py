"""Build zoom-chain training conversations from the synthetic zoom (and optionally detection) splits.

    cotrain make-zoom-data --data-root outputs/demo_data --out outputs/zoom_data
    cotrain make-zoom-data --detection          # also chains from syn_det_* questions

Reads ``<data-root>/records/syn_zoom_<split>.jsonl`` (and ``syn_det_<split>.jsonl`` with
``--detection``), writes the overview and crop PNGs under ``<out>/images/`` and the records to
``<out>/records/zoom_chain_<split>.jsonl`` (atomically), and prints counts and skips per split.
Thin wrapper over ``zoom_chain.training_data.build_chain_records``. The defaults are those of
``data_recipes/zoom_demo.yaml``; a run with other pixel limits or family must train with the same.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from cotrain.errors import CotrainError
from cotrain.files import write_jsonl_atomic
from cotrain.model.families import FAMILIES
from cotrain.records import read_records
from zoom_chain.training_data import build_chain_records

SPLITS = ("train", "val", "test")
DEFAULTS = {"family": "qwen2_5_vl", "min_pixels": 3136, "max_pixels": 50176, "max_steps": 3}
"""Must equal data_recipes/zoom_demo.yaml (model.tiny.family, data.min_pixels, data.max_pixels)."""


def write_jsonl(records: list[dict], path: Path) -> None:
    """All records, one per line, replacing ``path`` only once the whole file is written."""
    write_jsonl_atomic(path, records, ensure_ascii=False, separators=(",", ":"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default="outputs/demo_data", help="synthetic data root (default: %(default)s)")
    p.add_argument("--out", default="outputs/zoom_data", help="output directory (default: %(default)s)")
    p.add_argument("--family", default=DEFAULTS["family"], choices=sorted(FAMILIES),
                   help="model family whose resize factor sizes the overviews (default: %(default)s)")
    p.add_argument("--min-pixels", type=int, default=DEFAULTS["min_pixels"], help="default: %(default)s")
    p.add_argument("--max-pixels", type=int, default=DEFAULTS["max_pixels"],
                   help="pixel budget per image, as in training (default: %(default)s)")
    p.add_argument("--max-steps", type=int, default=DEFAULTS["max_steps"],
                   help="zooms per question (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the detection question choice (default: %(default)s)")
    p.add_argument("--detection", action="store_true", help="also build chains from syn_det_<split> records")
    p.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS, help="default: all")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    root, out = Path(args.data_root), Path(args.out)
    total_skips: Counter = Counter()
    try:
        for split in args.splits:
            sources = [("syn_zoom", root / "records" / f"syn_zoom_{split}.jsonl")]
            if args.detection:
                sources.append(("syn_det", root / "records" / f"syn_det_{split}.jsonl"))
            records, skips, n_in = [], Counter(), 0
            for name, path in sources:
                if not path.is_file():
                    print(f"error: {path} does not exist; generate the demo data first "
                          f"(cotrain make-demo-data --out {root})", file=sys.stderr)
                    return 2
                inputs = read_records(path)
                n_in += len(inputs)
                recs, sk = build_chain_records(
                    inputs, root, out, family=args.family, min_pixels=args.min_pixels, max_pixels=args.max_pixels,
                    max_steps=args.max_steps, seed=args.seed, source=name,
                    progress=not args.no_progress)
                records += recs
                skips += sk
            target = out / "records" / f"zoom_chain_{split}.jsonl"
            write_jsonl(records, target)
            calls = Counter(len(r["boxes"]) for r in records)
            native = sum(sum(r["zoom_chain"]["native"]) for r in records)
            crops = sum(len(r["zoom_chain"]["native"]) for r in records)
            skip_text = ", ".join(f"{k} {v}" for k, v in sorted(skips.items())) or "none"
            print(f"{split:<5} {n_in:5d} in -> {len(records):5d} chains  zooms per chain "
                  f"{dict(sorted(calls.items()))}  native crops {native}/{crops}  skipped: {skip_text}  -> {target}")
            total_skips += skips
    except CotrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} in {time.perf_counter() - t0:.1f} s")
    return 0
