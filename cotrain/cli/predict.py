"""Generate model responses for a canonical records file (greedy, HF generate).

    cotrain predict --model outputs/demo/final --records outputs/demo_data/records/syn_det_test.jsonl \
        --image-root outputs/demo_data --out outputs/det_eval/responses.jsonl

Prompts are built exactly as in training. Each output line holds id, prompt, response and the
resized / original image sizes, so boxes can be mapped back to original pixels (`cotrain eval-det`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cotrain.errors import CotrainError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="saved model directory (e.g. outputs/demo/final)")
    p.add_argument("--records", required=True, help="canonical records JSONL")
    p.add_argument("--image-root", required=True, help="directory the record image paths are relative to")
    p.add_argument("--out", required=True, help="responses JSONL to write")
    p.add_argument("--box-format", default="quad", choices=("hbb", "obb", "quad"))
    p.add_argument("--prompt-style", default="plain", choices=("plain", "json"))
    p.add_argument("--max-samples", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--max-pixels", type=int, default=None, help="pixel budget per image (default 256 visual tokens)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from cotrain.eval.harness import predict_records

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    try:
        n = predict_records(args.model, args.records, args.image_root, args.out, box_format=args.box_format,
                             prompt_style=args.prompt_style, max_samples=args.max_samples,
                             batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                             max_pixels=args.max_pixels)
    except CotrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {n} responses to {args.out}")
    return 0
