"""The model a recipe's ``model`` section names: its family, the model itself, and what of it trains.

``resolve_family`` knows the family before any weight is read (the tiny config, the named
architecture, or the checkpoint's ``config.json``), so data checks that depend on the family
(pixel budgets, token counts) run first. ``build_model`` loads the local checkpoint or builds a
random-weight model (tiny, or a full-size architecture shape); ``configure_training_model``
applies Liger kernels, per-part freezing and LoRA, in that order, before any wrapping.

Must not read data or know about the Trainer.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from cotrain.config import RunConfig
from cotrain.errors import ConfigError
from cotrain.model.families import get_family

log = logging.getLogger("cotrain")


def resolve_family(cfg: RunConfig):
    """The model family, known before any model is loaded (tiny config or the checkpoint's config.json)."""
    if not cfg.model.path:
        if cfg.model.arch:
            from cotrain.model.archs import get_arch

            return get_family(get_arch(cfg.model.arch).family)
        return get_family(cfg.model.tiny.family)
    cfg_file = Path(cfg.model.path) / "config.json"
    if not cfg_file.is_file():
        raise ConfigError(f"model.path={cfg.model.path!r} has no config.json; point it at a local HF checkpoint "
                          "directory")
    try:
        model_type = json.loads(cfg_file.read_text()).get("model_type")
    except json.JSONDecodeError as e:
        raise ConfigError(f"{cfg_file}: not valid JSON ({e})") from None
    return get_family(str(model_type))


def build_model(cfg: RunConfig):
    """(model, processor, family) from model.path, or the tiny random model when path is None."""
    if cfg.model.path:
        from cotrain.model.loader import load_model_and_processor

        return load_model_and_processor(cfg.model.path, attn_implementation=cfg.model.attn_implementation,
                                        dtype=cfg.model.dtype)
    from cotrain.model.processor import build_offline_processor
    from cotrain.model.tiny import build_tiny_model

    t = cfg.model.tiny
    family = resolve_family(cfg)
    processor = build_offline_processor(family.name, min_pixels=cfg.data.min_pixels, max_pixels=cfg.data.max_pixels,
                                        number_tokens=t.number_tokens)
    if cfg.model.arch:
        import torch

        from cotrain.model.archs import build_arch_model
        from cotrain.model.loader import DTYPES
        from cotrain.model.processor import special_token_ids

        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = DTYPES[cfg.model.dtype] if cfg.model.dtype != "auto" else torch.bfloat16
        model = build_arch_model(cfg.model.arch, special_token_ids(processor.tokenizer), device=device, dtype=dtype,
                                 seed=t.seed)
        log.info("random-init %s (%s, %s) on %s", cfg.model.arch, family.name, dtype, device)
    else:
        model = build_tiny_model(t.family, seed=t.seed, processor=processor, hidden_size=t.hidden_size,
                                 num_layers=t.num_layers, vision_depth=t.vision_depth, vision_width=t.vision_width,
                                 fourier_positions=t.fourier_positions)
    from cotrain.model.loader import resolve_attn_implementation

    model.set_attn_implementation(resolve_attn_implementation(cfg.model.attn_implementation))
    return model, processor, family


def configure_training_model(model, family, cfg: RunConfig):
    """Liger kernels, what trains (freeze per part), LoRA adapters; in that order, before any wrapping."""
    from cotrain.model.trainable import apply_freeze, apply_lora

    if cfg.model.liger:
        from cotrain.model.kernels import apply_liger

        log.info(apply_liger(model, family.name))
    apply_freeze(model, cfg.model)
    if cfg.model.lora.enabled:
        model = apply_lora(model, cfg.model)
    return model
