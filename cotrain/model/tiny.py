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

import math
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
                vision_width: int = 32, vocab_size: int | None = None, token_ids: dict[str, int]):
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
    if vision_width % 4 or vision_width < 8:
        raise ValueError(f"vision_width must be a multiple of 4 and >= 8 (2 heads of even size), got {vision_width}")
    if vocab_size is None:
        vocab_size = -(-(max(token_ids.values()) + 1) // 16) * 16
    head_dim = hidden_size // _NUM_HEADS
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


def fourier_position_grid(side: int, width: int) -> torch.Tensor:
    """(side * side, width) table: row r * side + c holds sin/cos of pi * k * (r + 0.5) / side in the first
    half of the channels and of (c + 0.5) in the second, k = 1 .. width / 4 (a 2-D Fourier basis)."""
    k = torch.arange(1, width // 4 + 1, dtype=torch.float64)
    pos = (torch.arange(side, dtype=torch.float64) + 0.5) / side
    ang = torch.pi * pos[:, None] * k[None, :]
    axis = torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)  # (side, width / 2)
    rows = axis[:, None, :].expand(side, side, -1)
    cols = axis[None, :, :].expand(side, side, -1)
    return torch.cat([rows, cols], dim=2).reshape(side * side, width).float()


def number_token_ids(tokenizer) -> dict[int, int]:
    """{value: token id} of every whole number the tokenizer holds as ONE token (the digits 0-9 always;
    10 .. N-1 with ``number_tokens``)."""
    out = {}
    for text, i in tokenizer.get_vocab().items():
        if text.isascii() and text.isdigit() and (text == "0" or not text.startswith("0")):
            out[int(text)] = i
    return out


def _fourier_code(values: torch.Tensor, n: int, width: int) -> torch.Tensor:
    k = torch.arange(1, width // 2 + 1, dtype=torch.float64)
    ang = torch.pi * ((values.double() + 0.5) / n)[:, None] * k[None, :]
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)


def init_number_embeddings(model, tokenizer, std: float = 0.02) -> int:
    """Give the input and output embedding rows of the number tokens a Fourier code of their value
    (sin / cos of pi k (v + .5) / N, scaled to the init's row norm), so 412 starts next to 413 and far
    from 87: a logit over coordinates is then a smooth function of the value from the first step,
    which a coordinate read as a class needs (a random init makes 1000 unrelated classes). Returns N."""
    ids = number_token_ids(tokenizer)
    n = max(ids) + 1
    values = torch.tensor(sorted(ids))
    rows = torch.tensor([ids[int(v)] for v in values])
    for emb in (model.get_input_embeddings(), model.get_output_embeddings()):
        width = emb.weight.shape[1]
        code = _fourier_code(values, n, width - width % 2)
        with torch.no_grad():
            emb.weight[rows, : code.shape[1]] = (code * std * math.sqrt(2.0)).to(emb.weight.dtype)
    return n


def build_tiny_model(family: str = "qwen2_5_vl", *, seed: int = 0, processor=None, fourier_positions: bool = False,
                     **config_overrides):
    """Random-init tiny model of ``family`` whose special ids match ``processor``'s tokenizer.

    ``processor`` defaults to :func:`build_offline_processor` of the family; ``config_overrides``
    go to :func:`tiny_config` (hidden_size, num_layers, vision_depth, vision_width, vocab_size).
    ``fourier_positions`` (Qwen3-VL only, whose vision tower has a learned absolute position table)
    starts that table from :func:`fourier_position_grid` instead of noise, so each patch's place in
    the image is in its features from the first step (what a trained checkpoint's table provides).
    A tokenizer with whole-number tokens (``number_tokens``) gets :func:`init_number_embeddings`.
    """
    spec = get_family(family)
    if processor is None:
        processor = build_offline_processor(spec.name)
    # a tokenizer with added tokens (number_tokens) needs embedding rows beyond the specials
    config_overrides.setdefault("vocab_size", -(-len(processor.tokenizer) // 16) * 16)
    config = tiny_config(spec.name, token_ids=special_token_ids(processor.tokenizer), **config_overrides)
    model_class = getattr(transformers, spec.model_class)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
    if len(number_token_ids(processor.tokenizer)) > 10:
        init_number_embeddings(model, processor.tokenizer)
    if fourier_positions:
        visual = getattr(model.model, "visual", None)
        if spec.name != "qwen3_vl" or visual is None or not hasattr(visual, "pos_embed"):
            raise ValueError(f"fourier_positions needs a learned vision position table (qwen3_vl); {spec.name} has none")
        table = visual.pos_embed.weight
        with torch.no_grad():
            table.copy_(fourier_position_grid(visual.num_grid_per_side, table.shape[1]))
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
