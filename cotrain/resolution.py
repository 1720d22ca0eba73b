"""Resolution: the size an image is resized to before the vision encoder sees it.

Owns ``PixelLimits`` (the per-image pixel budget every backend and the zoom chain size images
by), ``resized_size`` and the Qwen-VL "smart resize" rule (sides rounded to multiples of the patch*merge factor,
pixel count kept inside [min_pixels, max_pixels]) and the random-resize augmentation that draws
a target AREA uniformly in that range. Both work on sizes only: this module must not decode or
touch pixels, and must not know about boxes (the box codec scales boxes from the sizes it returns).

``smart_resize`` must stay equal, input for input, to transformers' own
(``transformers.models.qwen2_vl...smart_resize``): the image processor resizes with that rule, so
any disagreement would render boxes for an image size the model never sees. The test suite checks
the equality on thousands of sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cotrain.errors import ConfigError, CotrainError

MAX_ASPECT_RATIO = 200
"""Longer side / shorter side above which the Qwen-VL processors refuse an image."""


class ImageSizeError(CotrainError, ValueError):
    """An image size cannot be resized for the model (non-positive side, aspect ratio > 200).

    Also a ``ValueError`` so callers written against transformers' ``smart_resize`` keep working.
    """


def _check_size(height: float, width: float) -> None:
    """Raise ImageSizeError for sizes the processor cannot handle."""
    if height <= 0 or width <= 0:
        raise ImageSizeError(
            f"image size {width}x{height} (width x height) has a non-positive side; "
            "fix the record's 'width'/'height' (they must be the decoded image size)")
    ratio = max(height, width) / min(height, width)
    if ratio > MAX_ASPECT_RATIO:
        raise ImageSizeError(
            f"image size {width}x{height} (width x height) has aspect ratio {ratio:.1f} > "
            f"{MAX_ASPECT_RATIO}, which Qwen-VL processors reject; crop or tile the image "
            "(e.g. split it into strips) before conversion")


def _fit_to_factor(height: float, width: float, factor: int, min_pixels: int,
                   max_pixels: int) -> tuple[int, int]:
    """The rounding part of smart resize; accepts real-valued sides (random resize needs that)."""
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        # Shrink both sides by the same ratio; flooring keeps the product under the budget.
        shrink = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / shrink / factor) * factor)
        w_bar = max(factor, math.floor(width / shrink / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        # Grow both sides by the same ratio; ceiling keeps the product over the floor.
        grow = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * grow / factor) * factor
        w_bar = math.ceil(width * grow / factor) * factor
    return h_bar, w_bar


def smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = 4 * 28 * 28,
                 max_pixels: int = 16384 * 28 * 28) -> tuple[int, int]:
    """Target ``(height, width)``: multiples of ``factor`` whose product lies in [min_pixels, max_pixels].

    Each side is first rounded to the nearest multiple of ``factor`` (Python's round, so halves go
    to the even multiple, as in transformers). If the result is too large, both sides shrink by the
    same ratio and are floored to the factor; if too small, they grow and are ceiled.
    """
    _check_size(height, width)
    return _fit_to_factor(height, width, factor, min_pixels, max_pixels)


def random_resize(height: int, width: int, *, factor: int, min_pixels: int, max_pixels: int,
                  rng: np.random.Generator) -> tuple[int, int]:
    """Random target ``(height, width)`` for resolution augmentation.

    The target AREA is drawn uniformly in [min_pixels, max_pixels] (a uniform side scale would
    crowd the draws towards small areas), both sides are scaled by sqrt(area / (height*width)),
    and the result goes through ``smart_resize`` so it is a size the processor produces. The
    aspect ratio is kept up to the rounding of each side to ``factor``. ``rng`` is the caller's
    seeded generator (one ``uniform`` draw is consumed).
    """
    if not 0 < min_pixels <= max_pixels:
        raise ConfigError(
            f"random resize needs 0 < min_pixels <= max_pixels, got min_pixels={min_pixels}, "
            f"max_pixels={max_pixels}; fix the dataset's or the recipe's min_pixels/max_pixels")
    _check_size(height, width)
    area = float(rng.uniform(min_pixels, max_pixels))
    scale = math.sqrt(area / (height * width))
    # The scaled sides stay real-valued: rounding them to integers first would add a second
    # rounding (and, for a 1-pixel side, could break the aspect ratio) before the factor rounding.
    return _fit_to_factor(height * scale, width * scale, factor, min_pixels, max_pixels)


@dataclass(frozen=True)
class PixelLimits:
    """Pixel budget per image: the single source of image sizes for every backend."""

    min_pixels: int
    max_pixels: int
    factor: int
    """Resize factor of the model family (patch * merge: 28 for Qwen2/2.5-VL, 32 for Qwen3-VL)."""

    def __post_init__(self):
        if not 0 < self.min_pixels <= self.max_pixels:
            raise ConfigError(f"pixel limits need 0 < min_pixels <= max_pixels, got {self.min_pixels}, "
                              f"{self.max_pixels}; fix --min-pixels / --max-pixels or the benchmark's options")

    @classmethod
    def of_processor(cls, processor, family) -> PixelLimits:
        """The limits a checkpoint's image processor carries (cotrain saves the training budget there)."""
        ip = processor.image_processor
        size = getattr(ip, "size", None) or {}
        lo = size.get("shortest_edge", getattr(ip, "min_pixels", None))
        hi = size.get("longest_edge", getattr(ip, "max_pixels", None))
        return cls(int(lo or family.default_min_pixels), int(hi or family.default_max_pixels), family.factor)


def resized_size(width: int, height: int, limits: PixelLimits) -> tuple[int, int]:
    """(h, w) an image of ``width`` x ``height`` is given to the model at (``smart_resize``)."""
    return tuple(smart_resize(int(height), int(width), factor=limits.factor, min_pixels=limits.min_pixels,
                              max_pixels=limits.max_pixels))


def resized_wh_of(image: dict) -> tuple[int, int]:
    """(width, height) an image entry is shown to the model at: ``"resized_wh": [w, h]``, or the
    ``"resized": [h, w]`` of files written before the size order became [w, h] everywhere."""
    if "resized_wh" in image:
        w, h = image["resized_wh"]
    elif "resized" in image:
        h, w = image["resized"]
    else:
        raise KeyError("image entry has neither 'resized_wh' ([w, h]) nor the older 'resized' ([h, w])")
    return int(w), int(h)
