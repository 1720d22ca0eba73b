"""Reading ultra-high-resolution (UHR) rasters: windows at native resolution, overviews within a
pixel budget, pixel -> map coordinates. Used by the zoom-in chain (crops from the original pixels)
and by ``cotrain.images.open_image`` (large TIFFs reach training and evaluation as overviews), so it
lives in the library, not in ``zoom_chain``.

Owns the decoding of large rasters and nothing else. Three routes serve reads (``RasterInfo.reader``):

* ``tifffile`` (plain TIFF, and GeoTIFF when rasterio is absent): ``read_window`` reads and decodes
  ONLY the tiles (or strips) of the first page that intersect the window; the rest of the file is
  never read. Compressions tifffile cannot decode without imagecodecs (LZW, JPEG, ...) go to
  rasterio when importable, else to the PIL route.
* ``rasterio`` (GeoTIFF when rasterio is importable; the optional ``geo`` extra): GDAL windowed
  reads; transform and CRS come from rasterio.
* ``pil`` (PNG, JPEG and anything else PIL opens): the documented fallback. The whole image is
  decoded once per ``UHRImage`` (cached for later windows) with PIL's decompression-bomb guard
  raised to ``PIL_MAX_PIXELS``; larger files must be converted to a tiled TIFF first.

Pixels handed out are always 8-bit RGB, as training sees them (``cotrain.images.open_image``):
8-bit data is used as is; 16-bit, 32-bit and float bands get training's 2-98 percentile stretch,
computed over the pixels being returned (the window, or the overview), i.e. exactly what
``open_image`` gives for a file holding that crop. One band becomes grey RGB; two bands (grey +
alpha) use the first; more than three bands use the first three (assumed R, G, B: reorder
multispectral files before use). Palette TIFFs are expanded through their colour map.

Overviews use the smallest internal reduced-resolution level (tifffile series levels: SubIFDs or
reduced pages; rasterio: dataset overviews) that is still at least the target size; without levels
the image is read chunk by chunk (tile, or a band of strips) and each chunk is box-averaged into an
integer-decimated buffer, so the full image is never in memory; the result is then resized to the
exact target. Georeferencing is read from the GeoTIFF tags (ModelPixelScale + ModelTiepoint, or
ModelTransformation; EPSG from the GeoKeyDirectory) or from rasterio.

Must not decide which window to read (the controller maps and clips boxes), must not resize for the
model (``cotrain.resolution`` does), and must not import torch.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from cotrain.pixels import HIGH_BIT_MODES, pixel_limit, stretch_to_8bit
from cotrain.errors import CotrainError
from cotrain.resolution import MAX_ASPECT_RATIO, ImageSizeError, smart_resize

PIL_MAX_PIXELS = 1_000_000_000
"""Largest image the PIL fallback decodes whole (~3 GB as RGB); convert larger PNG/JPEG to tiled TIFF."""

STRIP_BAND_BYTES = 32 << 20
"""Raw bytes per chunk when a striped or whole-decoded image is decimated for an overview."""

GEO_TAGS = (33550, 33922, 34264, 34735)
"""ModelPixelScale, ModelTiepoint, ModelTransformation, GeoKeyDirectory: any one makes a GeoTIFF."""


class RasterInputError(CotrainError):
    """A UHR image cannot be opened or read as asked (missing, corrupt, bad window, bad aspect ratio)."""


@dataclass
class RasterInfo:
    """What is known about a UHR raster without decoding its pixels."""

    path: str
    width: int
    height: int
    bands: int
    dtype: str
    """numpy dtype name of the stored samples ("uint8", "uint16", "float32", ...)."""
    format: str
    """"tiff", "geotiff", "png", "jpeg", ... (PIL's format name, lower case, for the fallback)."""
    tiled: bool
    tile: tuple[int, int] | None
    """(tile_h, tile_w) when tiled."""
    overviews: list[tuple[int, int]] = field(default_factory=list)
    """(w, h) of the internal reduced-resolution levels, largest first (level 0 excluded)."""
    transform: tuple[float, float, float, float, float, float] | None = None
    """GDAL order (x0, dx, rx, y0, ry, dy): X = x0 + px*dx + py*rx, Y = y0 + px*ry + py*dy."""
    crs: str | None = None
    """"EPSG:<code>" when known, else rasterio's CRS string, else None."""
    reader: str = "tifffile"
    """Which route serves reads: "rasterio" | "tifffile" | "pil"."""


def _fail(path, problem: str, fix: str) -> RasterInputError:
    return RasterInputError(f"image {str(path)!r}: {problem}; {fix}")


# ---------------------------------------------------------------------------------------------
# sample conversion (shared by every route)


def _band_to_8bit(band: np.ndarray) -> np.ndarray:
    if band.dtype == np.uint8:
        return band
    if band.dtype == np.bool_:
        return band.astype(np.uint8) * 255
    # Training's stretch, through a PIL image of the mode open_image would have decoded
    # (uint16 -> "I;16", int32 -> "I", float32 -> "F"); other types go through "F".
    if band.dtype not in (np.uint16, np.int32, np.float32):
        band = band.astype(np.float32)
    return np.asarray(stretch_to_8bit(Image.fromarray(np.ascontiguousarray(band))))


def to_rgb8(arr: np.ndarray) -> Image.Image:
    """(h, w, bands) samples of any dtype -> 8-bit RGB image, by the rules in the module docstring."""
    bands = arr.shape[2]
    if arr.dtype == np.uint8 and bands >= 3:  # the common case: no per-band copies
        return Image.fromarray(np.ascontiguousarray(arr[:, :, :3]))
    use = [0, 1, 2] if bands >= 3 else [0]
    out = [_band_to_8bit(arr[:, :, b]) for b in use]
    rgb = np.stack(out * 3 if len(out) == 1 else out, axis=2)
    return Image.fromarray(np.ascontiguousarray(rgb))


# ---------------------------------------------------------------------------------------------
# georeferencing from GeoTIFF tags (the route when rasterio is absent)


def _geokeys(page) -> dict[int, int]:
    tag = page.tags.get(34735)
    if tag is None:
        return {}
    v = [int(x) for x in np.asarray(tag.value).ravel()]
    keys = {}
    for i in range(v[3]):
        key, loc, _count, value = v[4 + 4 * i: 8 + 4 * i]
        if loc == 0:  # value stored inline; doubles/ascii keys are not needed here
            keys[key] = value
    return keys


def geotiff_georef(page) -> tuple[tuple[float, ...] | None, str | None]:
    """(GDAL-order transform, "EPSG:n") of a tifffile page from its GeoTIFF tags; (None, None) if absent."""
    tags = page.tags
    transform = None
    if 34264 in tags:
        m = [float(x) for x in np.asarray(tags[34264].value).ravel()]
        # row-major 4x4: X = m0*px + m1*py + m3, Y = m4*px + m5*py + m7
        transform = (m[3], m[0], m[1], m[7], m[4], m[5])
    elif 33550 in tags and 33922 in tags:
        sx, sy = [float(x) for x in np.asarray(tags[33550].value).ravel()[:2]]
        tp = [float(x) for x in np.asarray(tags[33922].value).ravel()[:6]]
        i, j, _k, x, y, _z = tp
        # north-up: Y falls as rows grow, hence dy = -sy
        transform = (x - i * sx, sx, 0.0, y + j * sy, 0.0, -sy)
    keys = _geokeys(page)
    if transform is not None and keys.get(1025) == 2:
        # RasterPixelIsPoint: tie points name pixel centres; GDAL (and so rasterio) shift the
        # origin by half a pixel to the corner convention used everywhere else.
        x0, dx, rx, y0, ry, dy = transform
        transform = (x0 - 0.5 * dx - 0.5 * rx, dx, rx, y0 - 0.5 * ry - 0.5 * dy, ry, dy)
    code = keys.get(3072) or keys.get(2048)
    crs = f"EPSG:{code}" if code and code != 32767 else None  # 32767: user-defined, no EPSG code
    return transform, crs


# ---------------------------------------------------------------------------------------------
# sources: raw (h, w, bands) arrays of a pixel box of level 0 or a reduced level


class _TiffSource:
    """Segment-level reads of tifffile pages: only the intersecting tiles/strips are read and decoded."""

    def __init__(self, path: str, tif: tifffile.TiffFile):
        self.path = path
        self.tif = tif
        self.page = tif.pages.first
        self.pages = [lvl.keyframe for lvl in tif.series[0].levels] if tif.series else [self.page]
        if self.pages[0] is not self.page and self.pages[0].offset != self.page.offset:
            self.pages = [self.page]  # first series is not the first page (odd files): no levels
        self.pages = [p for p in self.pages if p.shaped[1] == 1 and _bands(p) == _bands(self.page)]

    def chunk(self, level: int = 0) -> tuple[int, int]:
        page = self.pages[level]
        if page.is_tiled:
            return page.tilelength, page.tilewidth
        rows = max(1, page.rowsperstrip)
        w = page.shaped[3]
        row_bytes = max(1, w * _bands(page) * page.dtype.itemsize)
        return max(rows, STRIP_BAND_BYTES // row_bytes // rows * rows), w

    def read(self, x0: int, y0: int, x1: int, y1: int, level: int = 0) -> np.ndarray:
        page = self.pages[level]
        sep, _depth, height, width, contig = page.shaped
        out = np.zeros((y1 - y0, x1 - x0, sep * contig), page.dtype)
        if page.is_tiled:
            th, tw = page.tilelength, page.tilewidth
            across = -(-width // tw)
            per_plane = across * -(-height // th)
            plane_idx = [r * across + c for r in range(y0 // th, (y1 - 1) // th + 1)
                         for c in range(x0 // tw, (x1 - 1) // tw + 1)]
        else:
            rps = min(max(1, page.rowsperstrip), height)
            per_plane = -(-height // rps)
            plane_idx = list(range(y0 // rps, (y1 - 1) // rps + 1))
        decode = page.decode
        fh = self.tif.filehandle
        jpeg = {"jpegtables": page.jpegtables} if page.compression in (6, 7, 34892, 33007) else {}
        for s in range(sep):
            for i in plane_idx:
                index = s * per_plane + i
                offset, count = page.dataoffsets[index], page.databytecounts[index]
                if count:
                    with fh.lock:
                        fh.seek(offset)
                        data = fh.read(count)
                else:
                    data = None  # sparse file: an empty segment is fill (zeros)
                seg, (ps, _pd, sy, sx, _pc), _shape = decode(data, index, **jpeg)
                if seg is None:
                    continue
                seg = seg[0]  # drop depth
                # intersection of the segment [sy, sy+h) x [sx, sx+w) with the window
                ay0, ay1 = max(y0, sy), min(y1, sy + seg.shape[0])
                ax0, ax1 = max(x0, sx), min(x1, sx + seg.shape[1])
                if ay0 >= ay1 or ax0 >= ax1:
                    continue
                part = seg[ay0 - sy: ay1 - sy, ax0 - sx: ax1 - sx]
                if sep > 1:
                    out[ay0 - y0: ay1 - y0, ax0 - x0: ax1 - x0, ps] = part[..., 0]
                else:
                    out[ay0 - y0: ay1 - y0, ax0 - x0: ax1 - x0] = part
        if page.photometric == 3 and page.colormap is not None:  # palette: expand to RGB
            cmap = np.asarray(page.colormap)
            cmap = (cmap >> 8).astype(np.uint8) if cmap.max() > 255 else cmap.astype(np.uint8)
            out = np.moveaxis(cmap[:, out[..., 0]], 0, -1)
        return out

    def level_sizes(self) -> list[tuple[int, int]]:
        return [(p.shaped[3], p.shaped[2]) for p in self.pages]

    def close(self) -> None:
        self.tif.close()


def _bands(page) -> int:
    return page.shaped[0] * page.shaped[4]


class _RasterioSource:
    """GDAL windowed reads through rasterio; overview levels opened with ``overview_level``."""

    def __init__(self, path: str):
        import rasterio

        self.rasterio = rasterio
        self.path = path
        self.ds = self._open()
        self.indexes = list(range(1, min(self.ds.count, 3) + 1))  # later bands are never shown
        self.sizes = [(self.ds.width, self.ds.height)]
        for i in range(len(self.ds.overviews(1))):
            with self._open(overview_level=i) as o:
                self.sizes.append((o.width, o.height))

    def _open(self, **kwargs):
        from rasterio.errors import NotGeoreferencedWarning

        with warnings.catch_warnings():
            # a TIFF forced onto this route may lack georeferencing; info.transform says so
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return self.rasterio.open(self.path, **kwargs)

    def chunk(self, level: int = 0) -> tuple[int, int]:
        bh, bw = self.ds.block_shapes[0]
        if bh < bw:  # strips: group them like the tifffile route does
            row_bytes = max(1, self.ds.width * len(self.indexes) * np.dtype(self.ds.dtypes[0]).itemsize)
            bh = max(bh, STRIP_BAND_BYTES // row_bytes // bh * bh)
        return bh, bw

    def read(self, x0: int, y0: int, x1: int, y1: int, level: int = 0) -> np.ndarray:
        from rasterio.windows import Window

        win = Window(x0, y0, x1 - x0, y1 - y0)
        if level == 0:
            a = self.ds.read(self.indexes, window=win)
        else:
            with self._open(overview_level=level - 1) as o:
                a = o.read(self.indexes, window=win)
        return np.moveaxis(a, 0, -1)

    def level_sizes(self) -> list[tuple[int, int]]:
        return self.sizes

    def close(self) -> None:
        self.ds.close()


class _PilSource:
    """Whole decode with PIL (the documented fallback), cached for every later window."""

    def __init__(self, path: str, im: Image.Image):
        self.path = path
        self.im = im
        self._arr: np.ndarray | None = None

    def array(self) -> np.ndarray:
        if self._arr is None:
            try:
                self.im.load()
                if self.im.mode in HIGH_BIT_MODES:
                    a = np.asarray(self.im)
                else:
                    a = np.asarray(self.im if self.im.mode == "RGB" else self.im.convert("RGB"))
            except (OSError, ValueError, SyntaxError) as e:
                raise _fail(self.path, f"cannot be decoded ({e})", "check the file (truncated or corrupt?)") from None
            self._arr = a[:, :, None] if a.ndim == 2 else a
            self.im.close()
        return self._arr

    def chunk(self, level: int = 0) -> tuple[int, int]:
        return self.im.height, self.im.width

    def read(self, x0: int, y0: int, x1: int, y1: int, level: int = 0) -> np.ndarray:
        return self.array()[y0:y1, x0:x1]

    def level_sizes(self) -> list[tuple[int, int]]:
        return [self.im.size]

    def close(self) -> None:
        self.im.close()
        self._arr = None


# ---------------------------------------------------------------------------------------------
# the public object


class UHRImage:
    """An opened UHR image: ``info``, ``read_window``, ``overview``, map coordinates. Context manager."""

    def __init__(self, info: RasterInfo, source):
        self.info = info
        self._src = source

    def __enter__(self) -> UHRImage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._src.close()

    def _check_window(self, x0, y0, x1, y1) -> tuple[int, int, int, int]:
        w, h = self.info.width, self.info.height
        try:
            box = [int(v) for v in (x0, y0, x1, y1)]
            ok_int = all(b == v for b, v in zip(box, (x0, y0, x1, y1)))
        except (TypeError, ValueError, OverflowError):
            ok_int = False
        if not ok_int:
            raise _fail(self.info.path, f"window {[x0, y0, x1, y1]} is not four integers",
                        "pass pixel coordinates (x0, y0, x1, y1) rounded to integers")
        a0, b0, a1, b1 = box
        if not (0 <= a0 < a1 <= w and 0 <= b0 < b1 <= h):
            raise _fail(self.info.path, f"window x[{a0}, {a1}) y[{b0}, {b1}) is empty, reversed or outside "
                        f"the image (x in [0, {w}], y in [0, {h}])",
                        "clip the box to the image and order it x0 < x1, y0 < y1")
        return a0, b0, a1, b1

    def read_window(self, x0: int, y0: int, x1: int, y1: int) -> Image.Image:
        """Native-resolution 8-bit RGB of the pixel box [x0, x1) x [y0, y1) of the ORIGINAL image."""
        box = self._check_window(x0, y0, x1, y1)
        return to_rgb8(self._read_raw(*box, level=0))

    def _read_raw(self, x0, y0, x1, y1, level=0) -> np.ndarray:
        try:
            return self._src.read(x0, y0, x1, y1, level)
        except RasterInputError:
            raise
        except Exception as e:  # codec errors come as many types (zlib.error, ValueError, RasterioIOError...)
            raise _fail(self.info.path, f"reading window x[{x0}, {x1}) y[{y0}, {y1}) failed ({type(e).__name__}: {e})",
                        "the file is corrupt or truncated; re-export it") from None

    def overview_size(self, max_pixels: int) -> tuple[int, int]:
        """(w, h) of the overview for ``max_pixels``: aspect kept, w*h <= max_pixels, never upscaled."""
        w, h = self.info.width, self.info.height
        try:
            smart_resize(h, w)  # the model's aspect-ratio rule
        except ImageSizeError:
            raise _fail(self.info.path, f"size {w}x{h} has aspect ratio {max(w, h) / min(w, h):.0f}, which exceeds "
                        f"the model's limit of {MAX_ASPECT_RATIO}",
                        "tile it into pieces with aspect ratio <= 200 and ask about each piece") from None
        if max_pixels < 1:
            raise _fail(self.info.path, f"overview budget max_pixels={max_pixels}", "give a positive pixel budget")
        if w * h <= max_pixels:
            return w, h
        scale = math.sqrt(max_pixels / (w * h))
        ow, oh = max(1, math.floor(w * scale)), max(1, math.floor(h * scale))
        while ow * oh > max_pixels:  # float rounding at the boundary, or a 1-pixel floor
            if ow >= oh:
                ow -= 1
            else:
                oh -= 1
        return ow, oh

    def overview(self, max_pixels: int) -> tuple[Image.Image, float]:
        """(whole image at <= max_pixels, aspect kept; scale = overview_w / width)."""
        ow, oh = self.overview_size(max_pixels)
        w, h = self.info.width, self.info.height
        if (ow, oh) == (w, h):
            return self.read_window(0, 0, w, h), 1.0
        sizes = self._src.level_sizes()
        fits = [i for i, (lw, lh) in enumerate(sizes) if i > 0 and lw >= ow and lh >= oh]
        if fits:
            level = min(fits, key=lambda i: sizes[i][0] * sizes[i][1])
            lw, lh = sizes[level]
            img = to_rgb8(self._read_raw(0, 0, lw, lh, level=level))
        elif isinstance(self._src, _PilSource):
            img = to_rgb8(self._src.array())  # already decoded whole: nothing to save by streaming
        else:
            mean, k = self._decimate(ow, oh)
            # the last block row/column may be partial: resize from the image's true extent in
            # block units, not from the padded buffer, so the overview is not stretched
            return to_rgb8(mean).resize((ow, oh), Image.BICUBIC, box=(0, 0, w / k, h / k)), ow / w
        if img.size != (ow, oh):
            img = img.resize((ow, oh), Image.BICUBIC)
        return img, ow / w

    def _decimate(self, ow: int, oh: int) -> tuple[np.ndarray, int]:
        """(image box-averaged by an integer factor k, chunk by chunk, to a size >= (ow, oh); k)."""
        w, h = self.info.width, self.info.height
        k = max(1, min(w // ow, h // oh))
        iw, ih = -(-w // k), -(-h // k)
        acc = None
        ch, cw = self._src.chunk()
        for y0 in range(0, h, ch):
            y1 = min(h, y0 + ch)
            for x0 in range(0, w, cw):
                x1 = min(w, x0 + cw)
                a = self._read_raw(x0, y0, x1, y1).astype(np.float64)
                if acc is None:
                    acc = np.zeros((ih, iw, a.shape[2]), np.float64)
                rows = np.arange(y0, y1) // k
                cols = np.arange(x0, x1) // k
                r_starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
                c_starts = np.flatnonzero(np.r_[True, cols[1:] != cols[:-1]])
                s = np.add.reduceat(np.add.reduceat(a, r_starts, axis=0), c_starts, axis=1)
                acc[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1] += s
        rcount = np.minimum(k, h - np.arange(ih) * k).astype(np.float64)
        ccount = np.minimum(k, w - np.arange(iw) * k).astype(np.float64)
        mean = acc / (rcount[:, None, None] * ccount[None, :, None])
        dtype = np.dtype(self.info.dtype)
        if dtype == np.uint8:
            return np.clip(np.rint(mean), 0, 255).astype(np.uint8), k
        return mean.astype(np.float32), k  # stretched by to_rgb8 like any float data

    def pixel_to_map(self, x: float, y: float) -> tuple[float, float] | None:
        """Map coordinates (CRS units) of pixel position (x, y) of the original image; None if not georeferenced."""
        t = self.info.transform
        if t is None:
            return None
        x0, dx, rx, y0, ry, dy = t
        return (x0 + x * dx + y * rx, y0 + x * ry + y * dy)

    def box_to_map(self, box: list[float]) -> list[list[float]] | None:
        """Corners (x1,y1), (x2,y1), (x2,y2), (x1,y2) of an hbb in original pixels, in map coordinates."""
        if self.info.transform is None:
            return None
        x1, y1, x2, y2 = box
        return [list(self.pixel_to_map(px, py)) for px, py in ((x1, y1), (x2, y1), (x2, y2), (x1, y2))]


# ---------------------------------------------------------------------------------------------
# opening


def _rasterio_importable() -> bool:
    try:
        import rasterio  # noqa: F401
    except ImportError:
        return False
    return True


def _tiff_codec_ok(page) -> bool:
    if page.compression == 1:
        return True
    try:
        tifffile.TIFF.DECOMPRESSORS[page.compression]
    except KeyError:
        return False
    return True


def _open_tiff(path: str, reader: str | None) -> UHRImage:
    try:
        tif = tifffile.TiffFile(path)
    except Exception as e:  # TiffFileError, struct.error, ValueError on garbage headers
        raise _fail(path, f"is not a readable TIFF ({type(e).__name__}: {e})", "check the file (corrupt?)") from None
    try:
        page = tif.pages.first
        sep, depth, height, width, contig = page.shaped
        if width == 0 or height == 0:
            raise _fail(path, f"has zero size ({width}x{height})", "re-export the image")
        if depth != 1:
            raise _fail(path, f"is a volume (depth {depth})", "save one 2-D image per file")
        end = max((o + c for o, c in zip(page.dataoffsets, page.databytecounts)), default=0)
        if end > os.path.getsize(path):
            raise _fail(path, f"is truncated (pixel data ends at byte {end}, the file has {os.path.getsize(path)})",
                        "copy or download it again")
        geo = any(t in page.tags for t in GEO_TAGS)
        transform, crs = geotiff_georef(page) if geo else (None, None)
        if page.dtype is None:
            raise _fail(path, f"has an unsupported sample format ({page.bitspersample}-bit)", "convert it to 8/16-bit")
        dtype = page.dtype.name
    except RasterInputError:
        tif.close()
        raise
    except Exception as e:
        tif.close()
        raise _fail(path, f"has an unreadable TIFF structure ({type(e).__name__}: {e})", "check the file") from None
    codec_ok = _tiff_codec_ok(page)
    if reader is None:
        if (geo or not codec_ok) and _rasterio_importable():
            reader = "rasterio"
        else:
            reader = "tifffile" if codec_ok else "pil"
    fmt = "geotiff" if geo else "tiff"
    tile = (page.tilelength, page.tilewidth) if page.is_tiled else None
    if reader == "tifffile":
        if not codec_ok:
            tif.close()
            raise _fail(path, f"uses compression {page.compression!r}, which tifffile decodes only with imagecodecs",
                        "pip install imagecodecs (or rasterio)")
        src = _TiffSource(path, tif)
        info = RasterInfo(path, width, height, sep * contig, dtype, fmt, page.is_tiled, tile,
                          src.level_sizes()[1:], transform, crs, "tifffile")
        return UHRImage(info, src)
    tif.close()
    if reader == "rasterio":
        try:
            src = _RasterioSource(path)
        except Exception as e:
            raise _fail(path, f"rasterio cannot open it ({type(e).__name__}: {e})", "check the file") from None
        ds = src.ds
        if ds.crs is not None or not ds.transform.is_identity:
            transform = tuple(float(v) for v in ds.transform.to_gdal())
            epsg = ds.crs.to_epsg() if ds.crs is not None else None
            crs = f"EPSG:{epsg}" if epsg else (ds.crs.to_string() if ds.crs is not None else None)
        else:
            transform, crs = None, None
        info = RasterInfo(path, ds.width, ds.height, ds.count, ds.dtypes[0], fmt, page.is_tiled, tile,
                          src.level_sizes()[1:], transform, crs, "rasterio")
        return UHRImage(info, src)
    img = _open_pil(path)  # PIL decodes TIFF compressions tifffile lacks (LZW, JPEG) through libtiff
    img.info.format = fmt
    img.info.transform, img.info.crs = transform, crs
    return img


def _open_pil(path: str) -> UHRImage:
    try:
        with pixel_limit(PIL_MAX_PIXELS):
            im = Image.open(path)
    except Image.DecompressionBombError:
        raise _fail(path, f"has more than {PIL_MAX_PIXELS} pixels, the limit for PNG/JPEG (decoded whole)",
                    "convert it to a tiled TIFF (e.g. tifffile.imwrite(..., tile=(512, 512)))") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise _fail(path, f"cannot be opened as an image ({e})",
                    "check the file (corrupt or unsupported format?)") from None
    if im.width == 0 or im.height == 0:
        im.close()
        raise _fail(path, f"has zero size ({im.width}x{im.height})", "re-export the image")
    bands = len(im.getbands())
    dtype = {"I;16": "uint16", "I;16B": "uint16", "I;16L": "uint16", "I;16N": "uint16", "I": "int32",
             "F": "float32", "1": "bool"}.get(im.mode, "uint8")
    info = RasterInfo(path, im.width, im.height, bands, dtype, (im.format or "unknown").lower(), False, None,
                      [], None, None, "pil")
    return UHRImage(info, _PilSource(path, im))


def is_tiff(path) -> bool:
    """Whether the file starts with a TIFF byte-order mark (II or MM); reads 2 bytes."""
    with open(path, "rb") as f:
        return f.read(2) in (b"II", b"MM")


def open_uhr(path, *, reader: str | None = None) -> UHRImage:
    """Open a UHR image; RasterInputError if it is missing, unreadable, corrupt or empty.

    ``reader`` forces a route ("rasterio", "tifffile", "pil"); by default GeoTIFF goes to rasterio
    when importable, other TIFF to tifffile, everything else to PIL.
    """
    p = str(path)
    if reader not in (None, "rasterio", "tifffile", "pil"):
        raise RasterInputError(f"reader {reader!r} for {p!r}: use 'rasterio', 'tifffile', 'pil' or None")
    if not Path(p).is_file():
        raise _fail(p, "does not exist", "check the path")
    if is_tiff(p) and reader != "pil":
        if reader == "rasterio" and not _rasterio_importable():
            raise _fail(p, "reader='rasterio' but rasterio is not installed", "pip install 'cotrain[geo]'")
        return _open_tiff(p, reader)
    if reader in ("rasterio", "tifffile"):
        raise _fail(p, f"is not a TIFF, so reader={reader!r} cannot read it", "leave reader unset")
    return _open_pil(p)
