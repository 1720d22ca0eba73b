"""Pixel conversions shared by every decoder: PIL's bomb guard and the high-bit-depth stretch.

- ``pixel_limit``: PIL's decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``) is process-wide, so
  code that must open a very large image on purpose (a header read, a DOTA scene to split, the
  raster reader's PIL fallback) changes it only inside this context manager, under one lock, and it
  is restored afterwards whatever happens. Training keeps PIL's default guard.
- ``stretch_to_8bit``: the 2-98 percentile stretch of 16-bit / 32-bit / float single-band images
  (IR, SAR); ``cotrain.raster`` applies the same rule to windows of large rasters.

Imported by ``cotrain.images`` (record images) and ``cotrain.raster`` (large rasters); imports neither.
"""

from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager
from typing import Iterator

import numpy as np
from PIL import Image

_GUARD_LOCK = threading.Lock()


@contextmanager
def pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Within the block, PIL opens images up to ``max_pixels`` (None: no limit) without a bomb warning."""
    with _GUARD_LOCK:
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                yield
        finally:
            Image.MAX_IMAGE_PIXELS = old


HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
"""PIL modes of 16-bit / 32-bit / float images (common for IR and SAR) that need a stretch, not a clip."""


def stretch_to_8bit(im: Image.Image) -> Image.Image:
    """2-98 percentile stretch of a high-bit-depth single-band image to 8 bits (a plain clip
    turns most 16-bit IR images white and float images black)."""
    a = np.asarray(im, dtype=np.float64)
    finite = a[np.isfinite(a)]
    lo, hi = (np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0))
    if hi <= lo:
        hi = lo + 1.0
    out = np.clip((np.nan_to_num(a, nan=lo) - lo) / (hi - lo), 0.0, 1.0) * 255.0
    return Image.fromarray(out.round().astype(np.uint8), mode="L")
