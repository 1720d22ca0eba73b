#!/usr/bin/env python
"""Contrastive training speed of a ViT-B/32-shaped random CLIP: images/s, float32 vs bfloat16.

    cotrain bench clip [--batch 64] [--steps 5] [--tiny]

Times full optimizer steps of the tri-modal loss on random inputs (``cotrain.contrastive.speed``:
B RGB images, their B IR twins, B original and B IR-aware captions, i.e. 2B images per step).
Baseline: float32; compared in the same run with bfloat16 autocast where the device supports it
(CUDA). Prints images/s of each and their ratio. ``--tiny`` shrinks the model for a quick CPU check.
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64, help="triplets per step (2 x batch images)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--tiny", action="store_true", help="a small model (checks the script on CPU)")
    args = p.parse_args(argv)
    from cotrain.contrastive.speed import images_per_second

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    r = images_per_second(args.tiny, args.batch, args.steps, device)
    print(f"CLIP {r['model']} ({r['parameters'] / 1e6:.1f} M parameters) on {device}, batch {args.batch} triplets = "
          f"{2 * args.batch} images per step")
    print(f"float32: {r['fp32_images_per_s']:,.1f} images/s")
    if "bf16_images_per_s" in r:
        print(f"bfloat16 autocast: {r['bf16_images_per_s']:,.1f} images/s, ratio {r['bf16_speedup']:.2f}x")
    else:
        print("bfloat16: not measured (needs a CUDA device)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
