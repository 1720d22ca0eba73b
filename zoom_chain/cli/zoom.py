"""Ask a question about a large image with the zoom-in chain; print the answer, write a trace.

    cotrain zoom --image big.tif --question "How many ships are in the harbour?" --model outputs/zoom_demo/final
    cotrain zoom --image scene.tif --question "..." --model CKPT --backend vllm --max-steps 4 --token-budget 8192

The model sees an overview of the whole image, may call ``image_zoom_in`` with a box, receives that
window read from the ORIGINAL pixels (only the tiles it needs for tiled TIFF / GeoTIFF), and answers.
Writes ``<out>/trace.json`` (every step: the box as written in overview coordinates, the window in
original pixels and, for georeferenced images, in map coordinates) and ``<out>/trace.png`` (the
overview with the zoom windows drawn, the crops beside it).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cotrain.errors import CotrainError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", required=True, help="image file (tiled GeoTIFF / TIFF read by windows; PNG / JPEG whole)")
    p.add_argument("--question", required=True)
    p.add_argument("--model", required=True, help="saved model directory")
    p.add_argument("--adapter", default=None, help="LoRA adapter directory of a cotrain run")
    p.add_argument("--backend", default="hf", choices=("hf", "vllm"))
    p.add_argument("--max-steps", type=int, default=3, help="zoom calls allowed")
    p.add_argument("--token-budget", type=int, default=4096, help="visual tokens per question (overview + crops)")
    p.add_argument("--max-pixels", type=int, default=None, help="overview / crop pixel budget (default: the checkpoint's)")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--out", default="outputs/zoom", help="directory for trace.json and trace.png")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from cotrain.inference import load_backend, override_limits
    from zoom_chain.controller import ChainConfig, Question, ZoomChain
    from zoom_chain.trace import write_trace

    try:
        question = Question("q0", args.image, args.question)
        if not Path(args.image).is_file():
            raise CotrainError(f"image {args.image} does not exist")
        backend = load_backend(args.backend, args.model, adapter=args.adapter)
        override_limits(backend, max_pixels=args.max_pixels)
        cfg = ChainConfig(max_steps=args.max_steps, token_budget=args.token_budget, max_new_tokens=args.max_new_tokens)
        (result,) = ZoomChain(backend, cfg).run([question])
        if result.status == "error":
            raise CotrainError(result.error or "the image could not be used")
    except CotrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    js, png = write_trace(result, args.out)
    for k, s in enumerate(result.steps, 1):
        where = f" -> window {s.box_original}" + (f" (map {s.box_map[0]}..{s.box_map[2]})" if s.box_map else "") \
            if s.box_original else ""
        print(f"step {k}: {s.action}{where}: {s.response[:100]!r}")
    print(f"answer: {result.answer}")
    print(f"status: {result.status}; visual tokens {result.visual_tokens} (full resolution {result.full_resolution_tokens}, "
          f"{result.visual_tokens / max(result.full_resolution_tokens, 1):.2%})")
    print(f"trace: {js} {png}")
    return 0
