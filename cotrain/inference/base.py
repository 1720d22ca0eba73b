"""What every inference backend accepts and returns, and the one place image sizes are decided.

A :class:`GenerationRequest` is plain data: chat messages whose content parts are
``{"type": "text", "text": ...}`` or ``{"type": "image", "index": i}``, the images they refer to
(a file path or an in-memory PIL image, each with its original size and the size it is resized
to), and :class:`SamplingParams`. Backends (``cotrain.inference.hf``, ``cotrain.inference.vllm``)
turn a list of requests into a list of :class:`GenerationResponse` in the same order.

Why the resized size travels inside the request: HF and vLLM outputs disagree in other toolkits
because each resizes images with its own pixel limits. Here the size is fixed once, by
:func:`resized_size` (the training path's ``smart_resize`` with :class:`PixelLimits`), boxes in the
prompt are rendered for it, and both backends hand the model pixels already at that size.

This module must not import torch, transformers or vLLM.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from cotrain.errors import BadRecordError, ConfigError
from cotrain.resolution import PixelLimits, resized_wh_of


@dataclass(frozen=True)
class SamplingParams:
    """How to decode. Greedy (``temperature == 0``) unless asked otherwise."""

    max_new_tokens: int = 64
    """Generation limit per answer (tokens)."""
    temperature: float = 0.0
    """0 = greedy; > 0 samples."""
    top_p: float = 1.0
    """Nucleus sampling mass (only with temperature > 0)."""
    seed: int = 0
    """Sampling seed (only with temperature > 0)."""

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def limits_in_directory(path: str | Path, family) -> PixelLimits | None:
    """Pixel limits recorded in a directory's processor files (a checkpoint or a LoRA adapter dir), if any."""
    p = Path(path)
    for name, key in (("processor_config.json", "image_processor"), ("preprocessor_config.json", None)):
        f = p / name
        if not f.is_file():
            continue
        try:
            cfg = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        cfg = cfg.get(key, {}) if key else cfg
        size = cfg.get("size") or {}
        lo, hi = size.get("shortest_edge", cfg.get("min_pixels")), size.get("longest_edge", cfg.get("max_pixels"))
        if lo and hi:
            return PixelLimits(int(lo), int(hi), family.factor)
    return None


def override_limits(backend, min_pixels: int | None = None, max_pixels: int | None = None) -> None:
    """Replace the pixel budget a backend read from its checkpoint (``--min-pixels`` / ``--max-pixels``)."""
    base = backend.limits
    backend.limits = PixelLimits(min_pixels or base.min_pixels, max_pixels or base.max_pixels, base.factor)


@dataclass
class GenerationRequest:
    """One prompt: messages, the images they show, and how to decode."""

    id: str
    """Caller's key for the request (a record id); responses carry it back."""
    messages: list[dict]
    """``[{"role": "system"|"user"|"assistant", "content": [parts]}]``; the last turn is the user's."""
    images: list[dict]
    """Per image: ``"abs_path"`` (file) or ``"pil"`` (in-memory ``PIL.Image``), ``"width"``,
    ``"height"`` (original pixels) and ``"resized_wh": [w, h]`` (what the model sees)."""
    sampling: SamplingParams = field(default_factory=SamplingParams)
    meta: dict = field(default_factory=dict)
    """Free-form (dataset, task, ...); backends ignore it."""

    @classmethod
    def from_conversation(cls, conv: Any, sampling: SamplingParams | None = None) -> GenerationRequest:
        """The prompt of a task builder's conversation: every turn up to the last user turn."""
        messages = list(conv.messages)
        while messages and messages[-1]["role"] == "assistant":
            messages.pop()
        if not messages:
            raise ValueError(f"conversation {conv.meta.get('id')!r} has no user turn to answer")
        return cls(id=str(conv.meta.get("id")), messages=messages, images=list(conv.images),
                   sampling=sampling or SamplingParams(), meta=dict(conv.meta))

    def plain(self) -> dict:
        """JSON-able description (in-memory images as their sizes only): for logs, tests and caches."""
        images = [{k: v for k, v in img.items() if k != "pil"} | ({"pil": list(img["pil"].size)} if "pil" in img else {})
                  for img in self.images]
        return {"id": self.id, "messages": self.messages, "images": images, "sampling": asdict(self.sampling)}


@dataclass
class GenerationResponse:
    """One answer, or the reason there is none."""

    id: str
    text: str
    """Decoded new text, special tokens removed, stripped. Empty when ``error`` is set."""
    finish_reason: str = "stop"
    """``stop`` (end of turn), ``length`` (hit max_new_tokens) or ``error``."""
    prompt_tokens: int = 0
    generated_tokens: int = 0
    error: str | None = None
    """Why no answer exists (``missing_image``, ``corrupt_image``, ...): a counted skip, not a wrong answer."""


class Backend(Protocol):
    """``generate(requests) -> responses`` in request order. Implementations: HF, vLLM."""

    name: str
    family: Any
    limits: PixelLimits

    def generate(self, requests: list[GenerationRequest], *, progress: bool = False) -> list[GenerationResponse]:
        ...


def load_request_images(request: GenerationRequest) -> list:
    """The request's images as RGB PIL images at their ``resized`` size (raises BadRecordError); an ms / sar
    image of a sensor-branch dataset as a ``cotrain.sensor_pixels.BandImage``.

    Shared by every backend so that they feed identical pixels: a file is decoded straight to the
    target size (``open_image``: same resampling as training); an in-memory image is resized the
    same way when its size differs.
    """
    from cotrain.sensor_pixels import open_pixels

    out = []
    for img in request.images:
        w, h = resized_wh_of(img)
        if "pil" in img:
            im = img["pil"].convert("RGB")
            if im.size != (w, h):
                im = im.resize((w, h), Image.Resampling.BICUBIC)
            out.append(im)
        else:
            out.append(open_pixels(img, request.id, target_wh=(w, h)))
    return out


def request_error(request: GenerationRequest, exc: BadRecordError) -> GenerationResponse:
    """The response for a request whose input cannot be used (counted by the caller)."""
    return GenerationResponse(id=request.id, text="", finish_reason="error", error=exc.reason or "bad_input")
