"""Evaluate large-image VQA in three modes: overview only, zoom chain, oracle zoom (ground-truth regions).

    cotrain eval-zoom --model outputs/zoom_demo/final --questions outputs/demo_data/records/syn_zoom_test.jsonl \
        --image-root outputs/demo_data --out outputs/zoom_eval
    cotrain eval-zoom --model CKPT --questions LRS_VQA/questions.jsonl --image-root LRS_VQA/images   # LRS-VQA rows

Writes ``<out>/{overview,chain,oracle}.jsonl`` (one trace per question), ``metrics.json`` and ``report.md``:
accuracy overall / per category / per source, the average over categories, and visual tokens per
question against the full-resolution equivalent.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cotrain.errors import CotrainError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--questions", required=True, help="canonical zoom_vqa records or LRS-VQA-style JSONL")
    p.add_argument("--image-root", default=None, help="directory image paths are relative to (default: the file's)")
    p.add_argument("--adapter", default=None)
    p.add_argument("--backend", default="hf", choices=("hf", "vllm"))
    p.add_argument("--modes", default="overview,chain,oracle")
    p.add_argument("--max-steps", type=int, default=3)
    p.add_argument("--token-budget", type=int, default=4096)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--max-pixels", type=int, default=None)
    p.add_argument("--max-samples", type=int, default=None)
    p.add_argument("--out", default="outputs/zoom_eval")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from cotrain.inference import load_backend, override_limits
    from zoom_chain.controller import ChainConfig
    from zoom_chain.evaluate import evaluate_zoom, load_items

    try:
        items = load_items(args.questions, args.image_root)[: args.max_samples]
        backend = load_backend(args.backend, args.model, adapter=args.adapter)
        override_limits(backend, max_pixels=args.max_pixels)
        cfg = ChainConfig(max_steps=args.max_steps, token_budget=args.token_budget, max_new_tokens=args.max_new_tokens)
        metrics = evaluate_zoom(backend, items, args.out, modes=[m.strip() for m in args.modes.split(",")], config=cfg,
                                progress=True)
    except CotrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print((Path(args.out) / "report.md").read_text())
    for mode, m in metrics.items():
        if "accuracy" in m:
            print(f"{mode:<9} accuracy {m['accuracy']:.3f}  tokens/question {m['visual_tokens_mean']:.0f} "
                  f"({m['token_share']:.2%} of full resolution)")
    return 0
