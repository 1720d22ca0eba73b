#!/usr/bin/env python
"""Contrastive training speed of a ViT-B/32-shaped random CLIP: images/s, float32 vs bfloat16.

    cotrain bench clip [--batch 64] [--steps 5] [--tiny]

Builds a random transformers ``CLIPModel`` with the shapes of openai/clip-vit-base-patch32 (vision
768 wide, 12 layers, patch 32 at 224 px; text 512 wide, 12 layers, 77 tokens; 512-d embeddings) and
times full optimizer steps of the tri-modal loss (``cotrain.contrastive.loss``: B RGB images, their B
IR twins, B original and B IR-aware captions, i.e. 2B images per step) on random inputs. Baseline:
float32; compared in the same run with bfloat16 autocast where the device supports it (CUDA). Prints
images/s of each and their ratio. ``--tiny`` shrinks the model for a quick CPU check of the script.
"""

from __future__ import annotations

import argparse
import time


def build(tiny: bool):
    from transformers import CLIPConfig, CLIPModel

    if tiny:
        text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
        vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
        return CLIPModel(CLIPConfig(text_config=text, vision_config={**vision, "image_size": 64, "patch_size": 16},
                                    projection_dim=32)), 64
    text = dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8,
                max_position_embeddings=77)
    vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                  image_size=224, patch_size=32)
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=512)), 224


def time_steps(model, size: int, batch: int, steps: int, device, dtype) -> float:
    """Seconds per optimizer step (after one warm-up step)."""
    import torch

    from cotrain.contrastive.loss import logit_scale_value, tri_modal_loss

    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(2 * batch, 3, size, size, generator=g).to(device)
    vocab = model.config.text_config.vocab_size
    ids = torch.randint(0, vocab - 1, (2 * batch, 77 if size == 224 else 32), generator=g).to(device)
    ids[:, -1] = vocab - 1  # the end token (highest id) is the pooled position of the legacy rule
    mask = torch.ones_like(ids)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            out = model(pixel_values=pixels, input_ids=ids, attention_mask=mask)
            img, txt = out.image_embeds.float(), out.text_embeds.float()
            loss, _ = tri_modal_loss(img[:batch], img[batch:], txt[:batch], txt[batch:],
                                     logit_scale_value(model.logit_scale), "mixed")
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def main(argv: list[str] | None = None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64, help="triplets per step (2 x batch images)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--tiny", action="store_true", help="a small model (checks the script on CPU)")
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model, size = build(args.tiny)
    model.to(device)
    n = sum(q.numel() for q in model.parameters())
    print(f"CLIP {'tiny' if args.tiny else 'ViT-B/32-shaped'} ({n / 1e6:.1f} M parameters) on {device}, "
          f"batch {args.batch} triplets = {2 * args.batch} images per step")
    base = time_steps(model, size, args.batch, args.steps, device, torch.float32)
    print(f"float32: {2 * args.batch / base:,.1f} images/s ({base:.3f} s/step)")
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        fast = time_steps(model, size, args.batch, args.steps, device, torch.bfloat16)
        print(f"bfloat16 autocast: {2 * args.batch / fast:,.1f} images/s ({fast:.3f} s/step), "
              f"ratio {base / fast:.2f}x")
    else:
        print("bfloat16: not measured (needs a CUDA device)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
