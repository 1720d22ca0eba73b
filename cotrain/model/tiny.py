"""Tiny random-weight Qwen-VL models for tests, the CPU demo and offline checkpoints.

Owns the small configs of qwen2_vl / qwen2_5_vl / qwen3_vl and the traps that make a small
config silently wrong or crash (shared/PLATFORM.md):

* ``mrope_section`` must sum to head_dim / 2 (three slices of the rotary half: t, h, w);
* the vision tower's output width must equal the text hidden size (the merger feeds the LM);
* Qwen2.5-VL ``fullatt_block_indexes`` and Qwen3-VL ``deepstack_visual_indexes`` must be < depth;
* Qwen3-VL interleaves its M-RoPE sections (``mrope_interleaved``);
* the config's image/vision token ids must be the ids of the tokenizer that feeds the model.

Must not download anything. Weights are drawn from an explicit seed inside a forked RNG, so
building a tiny model never disturbs the caller's global torch RNG state.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import transformers

from cotrain.model.families import get_family
from cotrain.model.processor import build_offline_processor, save_processor, special_token_ids

_NUM_HEADS = 4
"""Text attention heads of every tiny model (head_dim = hidden_size / 4)."""


def _mrope_section(head_dim: int) -> list[int]:
    """Split the rotary half (head_dim/2 frequencies) into (t, h, w) slices, h and w not smaller.

    The released models give t the largest slice (16/24/24 of 64); any split that sums to
    head_dim/2 is valid, and a tiny model only needs every axis to get some frequencies.
    """
    half = head_dim // 2
    if half < 3:
        raise ValueError(f"head_dim {head_dim} too small for 3-axis M-RoPE; use hidden_size >= {6 * _NUM_HEADS}")
    spatial = half // 3
    return [half - 2 * spatial, spatial, spatial]


def tiny_config(family: str, *, hidden_size: int = 64, num_layers: int = 2, vision_depth: int = 2,
                vocab_size: int | None = None, token_ids: dict[str, int]):
    """Transformers config of a tiny ``family`` model whose special ids are ``token_ids``.

    ``token_ids`` is :func:`cotrain.model.processor.special_token_ids` of the tokenizer that will
    feed the model. ``vocab_size`` defaults to the largest id + 1 rounded up to a multiple of 16
    (real checkpoints also pad their embedding rows beyond the tokenizer).
    """
    spec = get_family(family)
    if hidden_size % (2 * _NUM_HEADS) or hidden_size < 6 * _NUM_HEADS:
        raise ValueError(f"hidden_size must be a multiple of {2 * _NUM_HEADS} and >= {6 * _NUM_HEADS}, "
                         f"got {hidden_size}")
    if vision_depth < 1 or num_layers < 1:
        raise ValueError("num_layers and vision_depth must be >= 1")
    if vocab_size is None:
        vocab_size = -(-(max(token_ids.values()) + 1) // 16) * 16
    head_dim = hidden_size // _NUM_HEADS
    vision_width = 32
    text = dict(
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=_NUM_HEADS, num_key_value_heads=2,
        max_position_embeddings=4096, rms_norm_eps=1e-6,
        bos_token_id=token_ids["bos_token_id"], eos_token_id=token_ids["eos_token_id"],
        pad_token_id=token_ids["pad_token_id"],
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                         "mrope_section": _mrope_section(head_dim)},
    )
    ids = {key: token_ids[key] for key in
           ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")}
    config_class = getattr(transformers, spec.config_class)
    last_block = vision_depth - 1

    if spec.name == "qwen2_vl":
        vision = dict(depth=vision_depth, embed_dim=vision_width, hidden_size=hidden_size, num_heads=2,
                      mlp_ratio=2, patch_size=spec.patch_size, spatial_merge_size=spec.merge_size,
                      temporal_patch_size=spec.temporal_patch_size)
    elif spec.name == "qwen2_5_vl":
        # window_size 112 = 4 merged tokens per side: small images still exercise windowing.
        vision = dict(depth=vision_depth, hidden_size=vision_width, intermediate_size=2 * vision_width,
                      num_heads=2, out_hidden_size=hidden_size, patch_size=spec.patch_size,
                      spatial_merge_size=spec.merge_size, temporal_patch_size=spec.temporal_patch_size,
                      window_size=112, fullatt_block_indexes=[last_block])
    elif spec.name == "qwen3_vl":
        text["head_dim"] = head_dim
        text["rope_parameters"]["mrope_interleaved"] = True
        # 8x8 learned position grid, bilinearly interpolated to any image size by the model.
        vision = dict(depth=vision_depth, hidden_size=vision_width, intermediate_size=2 * vision_width,
                      num_heads=2, out_hidden_size=hidden_size, patch_size=spec.patch_size,
                      spatial_merge_size=spec.merge_size, temporal_patch_size=spec.temporal_patch_size,
                      num_position_embeddings=64, deepstack_visual_indexes=[last_block])
    else:  # pragma: no cover - FAMILIES and this function are edited together
        raise NotImplementedError(spec.name)
    return config_class(text_config=text, vision_config=vision, tie_word_embeddings=False, **ids)


def build_tiny_model(family: str = "qwen2_5_vl", *, seed: int = 0, processor=None, **config_overrides):
    """Random-init tiny model of ``family`` whose special ids match ``processor``'s tokenizer.

    ``processor`` defaults to :func:`build_offline_processor` of the family; ``config_overrides``
    go to :func:`tiny_config` (hidden_size, num_layers, vision_depth, vocab_size).
    """
    spec = get_family(family)
    if processor is None:
        processor = build_offline_processor(spec.name)
    config = tiny_config(spec.name, token_ids=special_token_ids(processor.tokenizer), **config_overrides)
    model_class = getattr(transformers, spec.model_class)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
    return model.eval()


def create_tiny_checkpoint(out_dir: str | os.PathLike, family: str = "qwen2_5_vl", seed: int = 0,
                           **overrides) -> Path:
    """Write a tiny model + offline processor to ``out_dir`` in the layout of a real HF checkpoint.

    The directory loads with :func:`cotrain.model.loader.load_model_and_processor` (and with
    stock ``AutoProcessor`` where torchvision exists). Returns the directory.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = get_family(family)
    processor = build_offline_processor(spec.name)
    model = build_tiny_model(spec.name, seed=seed, processor=processor, **overrides)
    model.save_pretrained(str(out))
    save_processor(processor, out, spec.name)
    return out
