"""The sensor branch in the model: the Qwen vision tower's patch embedding widened to N input channels.

Channel layout: ``("R", "G", "B", *bands)``. It is stored in the model config as ``sensor_channels``
(top level), and ``vision_config.in_channels`` is its length, so ``save_pretrained`` /
``from_pretrained`` rebuild the widened embedding and load its weights with no extra file.

What fills the channels (``cotrain.sensor_pixels``):
- an RGB / IR image fills R, G, B; every band channel is 0;
- an ``ms`` / ``sar`` image of a ``sensor_branch`` dataset fills R, G, B with its composite (an 8-bit
  view, normalised like any RGB image, so a pretrained tower sees what it knows), and each of its
  bands (z-scored by the dataset's statistics) fills that band's channel; other bands' channels stay 0.

Every image keeps its own vision span and its patch grid. So token counts, 3-D M-RoPE positions,
packing and the merger are the same as for the composite alone.

Initialisation of a widened embedding (``init``):
- ``zeros`` (the default): the new channels' kernels are 0. At step 0 the model is exactly the RGB
  model (tested), and the bands' kernels learn from there (their gradient is input x upstream, not 0).
- ``rgb_mean``: each new band's kernel is the mean of the R, G and B kernels.

The embedding's weights belong to the ``vision`` part. ``model.train_sensor_branch`` (on by default)
trains them even when the rest of the tower is frozen, or adapted by LoRA. Under LoRA they are saved
with the adapter's fully trained parts.
"""

from __future__ import annotations

import logging

import torch

from cotrain.errors import ConfigError, ModelLoadError

log = logging.getLogger("cotrain")

RGB_CHANNELS = ("R", "G", "B")
CONFIG_KEY = "sensor_channels"
INITS = ("zeros", "rgb_mean")


def _base(model):
    get = getattr(model, "get_base_model", None)
    model = get() if callable(get) else model
    return getattr(model, "module", model)


def patch_embed(model):
    """The vision tower's patch embedding module (``.proj`` is its Conv3d)."""
    m = _base(model)
    visual = getattr(m, "visual", None) or getattr(getattr(m, "model", None), "visual", None)
    pe = getattr(visual, "patch_embed", None)
    if pe is None or not isinstance(getattr(pe, "proj", None), torch.nn.Conv3d):
        raise ModelLoadError(f"{type(m).__name__} has no visual.patch_embed.proj Conv3d; the sensor branch needs a "
                             "Qwen2-VL / Qwen2.5-VL / Qwen3-VL model")
    return pe


def channel_layout(model_or_config) -> tuple[str, ...]:
    """The model's input channels: ``("R", "G", "B")`` for a plain RGB model."""
    cfg = getattr(model_or_config, "config", model_or_config)
    layout = getattr(cfg, CONFIG_KEY, None)
    return tuple(layout) if layout else RGB_CHANNELS


def has_branch(layout) -> bool:
    """Whether a channel layout (a tuple, a list, or None) holds band channels beyond R, G, B."""
    return bool(layout) and len(layout) > len(RGB_CHANNELS)


def widen_patch_embed(model, bands: list[str], init: str = "zeros") -> tuple[str, ...]:
    """Add a channel for every band of ``bands`` the model lacks; returns the new layout (unchanged if none)."""
    if init not in INITS:
        raise ConfigError(f"model.sensor_init={init!r}; use one of {', '.join(INITS)}")
    old = channel_layout(model)
    new = old + tuple(dict.fromkeys(b for b in bands if b not in old))
    if new == old:
        return old
    pe = patch_embed(model)
    conv = pe.proj
    weight = conv.weight
    if hasattr(weight, "ds_id"):  # pragma: no cover - ZeRO-3 partitions at load; widen before the engine
        raise ConfigError("the patch embedding is already partitioned by ZeRO-3; the sensor branch widens it right "
                          "after loading, before DeepSpeed wraps the model (do not load under zero.Init)")
    wider = torch.nn.Conv3d(len(new), conv.out_channels, kernel_size=conv.kernel_size, stride=conv.stride,
                            bias=conv.bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        wider.weight.zero_()
        wider.weight[:, :len(old)] = weight
        if init == "rgb_mean":
            wider.weight[:, len(old):] = weight[:, :3].mean(dim=1, keepdim=True)
        if conv.bias is not None:
            wider.bias.copy_(conv.bias)
    wider.weight.requires_grad_(weight.requires_grad)
    pe.proj = wider
    pe.in_channels = len(new)
    cfg = _base(model).config
    cfg.vision_config.in_channels = len(new)
    setattr(cfg, CONFIG_KEY, list(new))
    log.info("sensor branch: patch embedding widened %d -> %d channels (%s; new %s)", len(old), len(new), init,
             ", ".join(new[len(old):]))
    return new


def require_bands(model, bands: list[str], where: str) -> None:
    """A model that lacks a channel for some band of ``bands`` is an error naming them and the fix."""
    layout = channel_layout(model)
    missing = [b for b in bands if b not in layout]
    if missing:
        raise ModelLoadError(
            f"{where} feeds band(s) {', '.join(missing)} through the sensor branch, but the model has no channel for "
            f"them (its input channels: {', '.join(layout)}). Train a sensor branch for them first (a training run "
            "widens the patch embedding), or show those images as a composite (composite: ...) instead.")
