"""Opening images: decode to 8-bit RGB as training sees them, the high-bit-depth stretch, the pixel guard.

Every place that decodes or measures an image goes through here:

- ``open_image``: a record's image -> 8-bit RGB, header size checked against the record before any
  pixel is decoded, JPEGs decoded at a reduced scale when a smaller target is known, failures as
  ``BadRecordError`` with a reason (``image_missing``, ``image_size_mismatch``, ``image_too_large``,
  ``image_corrupt``);
- ``stretch_to_8bit``: the 2-98 percentile stretch of 16-bit / 32-bit / float single-band images
  (IR, SAR); the zoom reader applies the same rule to windows of large rasters;
- ``pixel_limit``: PIL's decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``) is process-wide, so
  code that must open a very large image on purpose (a header read, a DOTA scene to split, the
  zoom reader's PIL fallback) changes it only inside this context manager, under one lock, and it
  is restored afterwards whatever happens. Training keeps PIL's default guard: a scene too large
  to decode whole is a counted skip that names the zoom reader.

Must not resize for a model (``cotrain.resolution`` decides sizes) nor know records beyond an id.
"""

from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from cotrain.errors import BadRecordError

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


def open_image(path: str | Path, record_id: str, *, expected_wh: tuple[int, int] | None = None,
               target_wh: tuple[int, int] | None = None) -> Image.Image:
    """Decode an image as 8-bit RGB, checked against its recorded size; BadRecordError on failure.

    The header size is compared with ``expected_wh`` before any pixel is decoded. With
    ``target_wh``, JPEGs are decoded at a reduced scale (DCT scaling, still >= the target) and
    the result is resized to exactly ``target_wh``. Decoding is complete, so truncation is caught.
    """
    p = Path(path)
    if not p.is_file():
        raise BadRecordError(f"record {record_id!r}: image {str(p)!r} does not exist", reason="image_missing",
                             record_id=record_id)
    try:
        with Image.open(p) as im:
            if expected_wh is not None and im.size != tuple(expected_wh):
                raise BadRecordError(
                    f"record {record_id!r}: image {str(p)!r} is {im.width}x{im.height} but the record says "
                    f"{expected_wh[0]}x{expected_wh[1]}; re-run the converter", reason="image_size_mismatch",
                    record_id=record_id)
            if target_wh is not None and im.format == "JPEG":
                im.draft("RGB", tuple(target_wh))
            im.load()
            if im.mode in HIGH_BIT_MODES:
                rgb = stretch_to_8bit(im).convert("RGB")
            else:
                rgb = im if im.mode == "RGB" else im.convert("RGB")
            if target_wh is not None and rgb.size != tuple(target_wh):
                rgb = rgb.resize(tuple(target_wh), Image.BICUBIC)
            return rgb if rgb is not im else im.copy()
    except Image.DecompressionBombError as e:
        raise BadRecordError(f"record {record_id!r}: image {str(p)!r} is too large to decode whole ({e}); "
                             "tile it (zoom_chain reads windows of large images)", reason="image_too_large",
                             record_id=record_id) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise BadRecordError(f"record {record_id!r}: image {str(p)!r} cannot be decoded ({e})",
                             reason="image_corrupt", record_id=record_id) from None
