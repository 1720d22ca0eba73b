"""Contrastive training speed: a ViT-B/32-shaped random CLIP and timed optimizer steps of the tri-modal loss.

Used by ``cotrain bench clip`` (tools/bench_clip.py) and the GPU check (``cotrain.gpu_check``): the
shapes of openai/clip-vit-base-patch32 (vision 768 wide, 12 layers, patch 32 at 224 px; text 512
wide, 12 layers, 77 tokens; 512-d embeddings), random inputs, B RGB + B IR images and B + B captions
per step. Must not read data.
"""

from __future__ import annotations

import time


def build(tiny: bool):
    """(random CLIPModel, image side): ViT-B/32 shapes, or a small model for dry runs."""
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


def images_per_second(tiny: bool, batch: int, steps: int, device) -> dict:
    """float32 images/s, and bfloat16 autocast images/s with the ratio where CUDA supports it."""
    import torch

    torch.manual_seed(0)
    model, size = build(tiny)
    model.to(device)
    base = time_steps(model, size, batch, steps, device, torch.float32)
    out = {"model": "tiny" if tiny else "ViT-B/32-shaped", "parameters": sum(p.numel() for p in model.parameters()),
           "batch_triplets": batch, "fp32_images_per_s": round(2 * batch / base, 1)}
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        fast = time_steps(model, size, batch, steps, device, torch.bfloat16)
        out.update(bf16_images_per_s=round(2 * batch / fast, 1), bf16_speedup=round(base / fast, 2))
    return out
