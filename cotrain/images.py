"""Opening record images: decode to 8-bit RGB at the model's size, as training and evaluation see them.

Every place that decodes or measures an image goes through here:

- ``open_image``: a record's image -> 8-bit RGB, header size checked against the record before any
  pixel is decoded, JPEGs decoded at a reduced scale when a smaller target is known, failures as
  ``BadRecordError`` with a reason (``image_missing``, ``image_size_mismatch``, ``image_too_large``,
  ``image_corrupt``);
- large TIFFs (more than ``OVERVIEW_RATIO`` times the target's pixels) are read through
  ``cotrain.raster``'s overview (only tiles, box-averaged, never the whole image in memory) and kept
  in a small per-process cache, so an 8192 px scene asked about 24 times is decoded once, and
  training and evaluation see the same pixels;
- the pixel guard and the high-bit-depth stretch live in ``cotrain.pixels``. Training keeps PIL's
  default guard: a non-TIFF scene too large to decode whole is a counted skip.

Must not resize for a model (``cotrain.resolution`` decides sizes) nor know records beyond an id.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from cotrain.errors import BadRecordError
from cotrain.pixels import HIGH_BIT_MODES, stretch_to_8bit

OVERVIEW_RATIO = 4
"""A TIFF with more than this many times the target's pixels is read as a ``cotrain.raster`` overview
(tile by tile, box-averaged, then bicubic to the target) instead of being decoded whole."""
OVERVIEW_CACHE = 8
"""Overviews kept per process (keyed by path, mtime, size and target): questions about one scene share it."""
_OVERVIEWS: OrderedDict[tuple, Image.Image] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _tiff_overview(p: Path, record_id: str, expected_wh, target_wh: tuple[int, int]) -> Image.Image | None:
    """The overview of a large TIFF at ``target_wh`` (cached), or None when the TIFF is small enough to decode."""
    from cotrain.raster import RasterInputError, open_uhr

    st = p.stat()
    key = (str(p.resolve()), st.st_mtime_ns, st.st_size, target_wh)
    with _CACHE_LOCK:
        if key in _OVERVIEWS:
            _OVERVIEWS.move_to_end(key)
            return _OVERVIEWS[key].copy()
    try:
        with open_uhr(p) as uhr:
            w, h = uhr.info.width, uhr.info.height
            if expected_wh is not None and (w, h) != tuple(expected_wh):
                raise _size_mismatch(p, record_id, (w, h), expected_wh)
            if w * h <= OVERVIEW_RATIO * target_wh[0] * target_wh[1]:
                return None
            img, _ = uhr.overview(target_wh[0] * target_wh[1])
    except RasterInputError as e:
        raise BadRecordError(f"record {record_id!r}: {e}", reason="image_corrupt", record_id=record_id) from None
    if img.size != target_wh:
        img = img.resize(target_wh, Image.BICUBIC)
    with _CACHE_LOCK:
        _OVERVIEWS[key] = img
        while len(_OVERVIEWS) > OVERVIEW_CACHE:
            _OVERVIEWS.popitem(last=False)
    return img.copy()


def _size_mismatch(p: Path, record_id: str, got, expected_wh) -> BadRecordError:
    return BadRecordError(
        f"record {record_id!r}: image {str(p)!r} is {got[0]}x{got[1]} but the record says "
        f"{expected_wh[0]}x{expected_wh[1]}; re-run the converter", reason="image_size_mismatch",
        record_id=record_id)


def open_image(path: str | Path, record_id: str, *, expected_wh: tuple[int, int] | None = None,
               target_wh: tuple[int, int] | None = None) -> Image.Image:
    """Decode an image as 8-bit RGB, checked against its recorded size; BadRecordError on failure.

    The header size is compared with ``expected_wh`` before any pixel is decoded. With
    ``target_wh``, JPEGs are decoded at a reduced scale (DCT scaling, still >= the target), TIFFs
    of more than ``OVERVIEW_RATIO`` times the target's pixels are read as cached raster overviews,
    and the result is resized to exactly ``target_wh``. Decoding is complete, so truncation is caught.
    """
    p = Path(path)
    if not p.is_file():
        raise BadRecordError(f"record {record_id!r}: image {str(p)!r} does not exist", reason="image_missing",
                             record_id=record_id)
    from cotrain.raster import is_tiff

    try:
        if target_wh is not None and is_tiff(p):
            overview = _tiff_overview(p, record_id, expected_wh, (int(target_wh[0]), int(target_wh[1])))
            if overview is not None:
                return overview
        with Image.open(p) as im:
            if expected_wh is not None and im.size != tuple(expected_wh):
                raise _size_mismatch(p, record_id, im.size, expected_wh)
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
                             "convert it to a tiled TIFF, which is read as an overview", reason="image_too_large",
                             record_id=record_id) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise BadRecordError(f"record {record_id!r}: image {str(p)!r} cannot be decoded ({e})",
                             reason="image_corrupt", record_id=record_id) from None


def open_entry(img: dict, record_id: str, *, target_wh: tuple[int, int] | None = None,
               composite: str | None = None) -> Image.Image:
    """An image entry (with ``abs_path``, and absolute ``band_files`` when it has them) as 8-bit RGB: ``open_image`` for rgb / ir, a band composite for ms / sar.

    ``composite``: the dataset's choice (``cotrain.sensors.COMPOSITES``); else the entry's, else by modality.
    """
    if img.get("modality") not in ("ms", "sar"):
        return open_image(img["abs_path"], record_id, expected_wh=(int(img["width"]), int(img["height"])),
                          target_wh=target_wh)
    from cotrain.sensors import composite_array

    # abs_path (and band_files, when the image has them) are resolved already (cotrain.tasks.build_conversation)
    rgb = Image.fromarray(composite_array({**img, "path": img["abs_path"]}, ".", composite, rid=record_id))
    if target_wh is not None and rgb.size != tuple(target_wh):
        rgb = rgb.resize(tuple(target_wh), Image.BICUBIC)
    return rgb
