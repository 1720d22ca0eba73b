"""cotrain.raster: windows equal the written pixels, only intersecting tiles are read, overviews
use internal levels, georeferencing matches hand-computed values and rasterio, bad input is named.

Golden values come from the arrays the tests write, PIL's own decode/resize, hand arithmetic, and
rasterio (GDAL); never from the reader itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from cotrain.images import open_image
from cotrain.raster import RasterInputError, open_uhr


def _texture(h, w, bands=3, seed=0):
    """Smooth gradients plus bounded noise: compressible, but every pixel differs from its neighbours."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for b in range(bands):
        base = 100 + 80 * np.sin(xx / (37.0 + 11 * b)) * np.cos(yy / (53.0 + 7 * b))
        out.append(base + rng.integers(-20, 21, (h, w)))
    return np.clip(np.stack(out, axis=2), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def rgb():
    return _texture(700, 900)


class ReadLog:
    """Records (file position, size) of every FileHandle.read: which byte ranges tifffile touched."""

    def __init__(self, monkeypatch):
        self.reads = []
        real = tifffile.FileHandle.read

        def read(fh, size=-1):
            self.reads.append((fh.tell(), size))
            return real(fh, size)

        monkeypatch.setattr(tifffile.FileHandle, "read", read)

    def offsets_in(self, offsets) -> set[int]:
        wanted = set(int(o) for o in offsets)
        return {pos for pos, _ in self.reads if pos in wanted}


WINDOWS = [(0, 0, 1, 1), (899, 699, 900, 700), (0, 0, 256, 256), (250, 250, 262, 263),  # corners, 1 px, tile seams
           (100, 200, 800, 650), (0, 0, 900, 700), (640, 10, 900, 30), (511, 0, 513, 700)]


def test_tiled_tiff_windows_equal_written_pixels(tmp_path, rgb):
    path = tmp_path / "tiled.tif"
    tifffile.imwrite(path, rgb, tile=(256, 256), compression="zlib", photometric="rgb")
    with open_uhr(path) as im:
        assert (im.info.width, im.info.height, im.info.bands, im.info.tiled, im.info.tile) == (900, 700, 3, True,
                                                                                                (256, 256))
        assert im.info.reader == "tifffile" and im.info.format == "tiff" and im.info.transform is None
        for x0, y0, x1, y1 in WINDOWS:
            crop = im.read_window(x0, y0, x1, y1)
            assert crop.mode == "RGB" and crop.size == (x1 - x0, y1 - y0)
            np.testing.assert_array_equal(np.asarray(crop), rgb[y0:y1, x0:x1])


@pytest.mark.parametrize("planar", ["contig", "separate"])
def test_striped_tiff_windows_equal_written_pixels(tmp_path, rgb, planar):
    path = tmp_path / "striped.tif"
    tifffile.imwrite(path, rgb if planar == "contig" else np.moveaxis(rgb, 2, 0), rowsperstrip=64,
                     compression="zlib", photometric="rgb", planarconfig=planar)
    with open_uhr(path) as im:
        assert not im.info.tiled and im.info.tile is None and im.info.bands == 3
        for x0, y0, x1, y1 in WINDOWS:
            np.testing.assert_array_equal(np.asarray(im.read_window(x0, y0, x1, y1)), rgb[y0:y1, x0:x1])


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_png_jpeg_fallback_windows_equal_pil_crop(tmp_path, rgb, fmt, monkeypatch):
    path = tmp_path / f"img.{fmt}"
    Image.fromarray(rgb).save(path, quality=90) if fmt == "jpeg" else Image.fromarray(rgb).save(path)
    with Image.open(path) as ref_im:
        ref = np.asarray(ref_im.convert("RGB"))
    loads = []
    real_load = Image.Image.load
    monkeypatch.setattr(Image.Image, "load", lambda self: (loads.append(1), real_load(self))[1])
    with open_uhr(path) as im:
        assert im.info.reader == "pil" and im.info.format == fmt
        for x0, y0, x1, y1 in WINDOWS:
            np.testing.assert_array_equal(np.asarray(im.read_window(x0, y0, x1, y1)), ref[y0:y1, x0:x1])
        n_after_windows = len(loads)
        im.read_window(3, 3, 50, 50)
        assert len(loads) == n_after_windows  # cached: a further window decodes nothing


def test_only_intersecting_tiles_are_read(tmp_path, monkeypatch):
    n, tile = 8192, 256
    yy, xx = np.mgrid[0:n:8, 0:n:8]  # cheap to write: a grey pattern, upsampled by repetition
    small = ((xx // 8 + 3 * (yy // 8)) % 251).astype(np.uint8)
    arr = np.repeat(np.repeat(small, 8, axis=0), 8, axis=1)
    arr[::7, ::5] = 255  # break the 8x8 blocks so a misplaced tile shows
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, arr, tile=(tile, tile), compression="zlib", compressionargs={"level": 1})
    with tifffile.TiffFile(path) as tif:
        offsets = list(tif.pages.first.dataoffsets)
        counts = dict(zip(offsets, tif.pages.first.databytecounts))
    across = n // tile
    x0, y0 = 3000, 5000  # not tile aligned: 1024 px span 5 tiles each way
    expected = {offsets[r * across + c] for r in range(y0 // tile, (y0 + 1023) // tile + 1)
                for c in range(x0 // tile, (x0 + 1023) // tile + 1)}
    assert len(expected) == 25
    with open_uhr(path) as im:
        log = ReadLog(monkeypatch)
        crop = im.read_window(x0, y0, x0 + 1024, y0 + 1024)
        assert log.offsets_in(offsets) == expected
        assert len([r for r in log.reads if r[0] in set(offsets)]) == 25  # each tile read once
        # nothing else of the file is read (a few bytes of slack for any header access)
        assert sum(size for _, size in log.reads) <= sum(counts[o] for o in expected) + 1024
    grey = arr[y0:y0 + 1024, x0:x0 + 1024]
    np.testing.assert_array_equal(np.asarray(crop), np.stack([grey] * 3, axis=2))


def _pyramid(path, arr, levels=(2, 4)):
    with tifffile.TiffWriter(path) as w:
        w.write(arr, tile=(128, 128), subifds=len(levels), compression="zlib", photometric="rgb")
        for f in levels:
            w.write(np.ascontiguousarray(arr[::f, ::f]), tile=(128, 128), subfiletype=1, compression="zlib",
                    photometric="rgb")


def test_overview_uses_smallest_sufficient_internal_level(tmp_path, rgb, monkeypatch):
    path = tmp_path / "pyr.tif"
    _pyramid(path, rgb)
    with tifffile.TiffFile(path) as tif:
        levels = tif.series[0].levels
        level_offsets = [set(int(o) for o in lvl.keyframe.dataoffsets) for lvl in levels]
        level_shapes = [lvl.shape for lvl in levels]
    assert level_shapes == [(700, 900, 3), (350, 450, 3), (175, 225, 3)]
    with open_uhr(path) as im:
        assert im.info.overviews == [(450, 350), (225, 175)]
        # 300 x 233 fits in 70,000 px: level 1 (450 x 350) is the smallest level >= that
        log = ReadLog(monkeypatch)
        ov, scale = im.overview(70_000)
        read = {pos for pos, _ in log.reads}
        assert read & level_offsets[1] == level_offsets[1]
        assert not read & level_offsets[0] and not read & level_offsets[2]
        w, h = ov.size
        assert w * h <= 70_000 and abs(w / h - 900 / 700) < 0.01 and scale == w / 900
        ref = Image.fromarray(np.ascontiguousarray(rgb[::2, ::2])).resize((w, h), Image.BICUBIC)
        np.testing.assert_array_equal(np.asarray(ov), np.asarray(ref))
        # a tiny budget goes to the smallest level
        log.reads.clear()
        im.overview(5_000)
        assert {pos for pos, _ in log.reads} & level_offsets[2] and not {pos for pos, _ in log.reads} & level_offsets[0]


@pytest.mark.parametrize("layout", ["tiled", "striped"])
def test_overview_without_levels_is_close_to_pil_resize(tmp_path, layout):
    arr = _texture(1500, 2000, seed=3)
    path = tmp_path / "flat.tif"
    kw = {"tile": (256, 256)} if layout == "tiled" else {"rowsperstrip": 16}
    tifffile.imwrite(path, arr, compression="zlib", photometric="rgb", **kw)
    with open_uhr(path) as im:
        for budget in (200_000, 40_000, 12_345):
            ov, scale = im.overview(budget)
            w, h = ov.size
            assert w * h <= budget and abs(w / h - 2000 / 1500) < 0.02 and scale == w / 2000
            ref = np.asarray(Image.fromarray(arr).resize((w, h), Image.BICUBIC), dtype=np.float64)
            diff = np.abs(np.asarray(ov, dtype=np.float64) - ref)
            assert diff.mean() < 1.5, (budget, diff.mean())
        ov, scale = im.overview(10**9)  # budget above the image: the image itself
        assert scale == 1.0 and ov.size == (2000, 1500)


def _geotiff(path, arr, *, transform_tag=False, pixel_is_point=False, epsg=32633):
    geokeys = [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 2 if pixel_is_point else 1, 3072, 0, 1, epsg]
    extratags = [(34735, "H", len(geokeys), geokeys, True)]
    if transform_tag:
        # rotated grid: X = 2*px + 0.5*py + 1000, Y = -0.25*px - 3*py + 9000
        m = [2.0, 0.5, 0.0, 1000.0, -0.25, -3.0, 0.0, 9000.0, 0, 0, 0, 0, 0, 0, 0, 1.0]
        extratags.append((34264, "d", 16, m, True))
    else:
        extratags += [(33550, "d", 3, [10.0, 10.0, 0.0], True),
                      (33922, "d", 6, [0.0, 0.0, 0.0, 500000.0, 4600000.0, 0.0], True)]
    tifffile.imwrite(path, arr, tile=(128, 128), compression="zlib", photometric="rgb", extratags=extratags)


@pytest.mark.parametrize("reader", ["tifffile", "rasterio"])
def test_geotiff_pixel_scale_tiepoint(tmp_path, rgb, reader):
    if reader == "rasterio":
        pytest.importorskip("rasterio")
    path = tmp_path / "geo.tif"
    _geotiff(path, rgb)
    with open_uhr(path, reader=reader) as im:
        assert im.info.reader == reader and im.info.format == "geotiff"
        assert im.info.crs == "EPSG:32633"
        np.testing.assert_allclose(im.info.transform, (500000.0, 10.0, 0.0, 4600000.0, 0.0, -10.0))
        # 10 m pixels from the tie point (500000, 4600000) at pixel (0, 0); rows go south
        assert im.pixel_to_map(100, 50) == pytest.approx((501000.0, 4599500.0))
        np.testing.assert_allclose(im.box_to_map([10, 20, 30, 60]), [[500100.0, 4599800.0], [500300.0, 4599800.0],
                                                                     [500300.0, 4599400.0], [500100.0, 4599400.0]])
        np.testing.assert_array_equal(np.asarray(im.read_window(100, 90, 400, 333)), rgb[90:333, 100:400])


def test_geotiff_default_route_and_rasterio_agree(tmp_path, rgb):
    rasterio = pytest.importorskip("rasterio")
    for name, kw in {"t.tif": {"transform_tag": True, "epsg": 3857}, "p.tif": {"pixel_is_point": True}}.items():
        path = tmp_path / name
        _geotiff(path, rgb, **kw)
        with open_uhr(path) as a, open_uhr(path, reader="tifffile") as b:
            assert a.info.reader == "rasterio"  # GeoTIFF goes to rasterio when importable
            np.testing.assert_allclose(b.info.transform, a.info.transform)
            assert a.info.crs == b.info.crs == f"EPSG:{kw.get('epsg', 32633)}"
            with rasterio.open(path) as ds:
                for px, py in [(0, 0), (13.5, 400.25), (899, 699)]:
                    ref = rasterio.transform.xy(ds.transform, py, px, offset="ul")  # (rows, cols): corner of the pixel
                    np.testing.assert_allclose(b.pixel_to_map(px, py), ref)
    with open_uhr(tmp_path / "t.tif", reader="tifffile") as b:
        assert b.pixel_to_map(10, 20) == pytest.approx((1000 + 20 + 10, 9000 - 2.5 - 60))


def test_bad_inputs_name_the_file(tmp_path, rgb):
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, rgb, tile=(256, 256), compression="zlib", photometric="rgb")
    missing = tmp_path / "nope.tif"
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    bad_header = tmp_path / "bad_header.tif"
    bad_header.write_bytes(b"II*\x00" + b"\xff" * 100)
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for p in (missing, garbage, bad_header, truncated):
        with pytest.raises(RasterInputError, match=p.name):
            open_uhr(p)
    with open_uhr(good) as im:
        for box in [(-1, 0, 10, 10), (0, 0, 901, 10), (0, 0, 10, 701), (50, 10, 40, 20), (10, 50, 20, 40),
                    (10, 10, 10, 20), (0, 0, 0, 0), (0.5, 0, 10, 10)]:
            with pytest.raises(RasterInputError, match="good.tif"):
                im.read_window(*box)


def test_corrupt_tile_data_raises_on_read(tmp_path, rgb):
    path = tmp_path / "corrupt.tif"
    tifffile.imwrite(path, rgb, tile=(256, 256), compression="zlib", photometric="rgb")
    with tifffile.TiffFile(path) as tif:
        off, cnt = int(tif.pages.first.dataoffsets[4]), int(tif.pages.first.databytecounts[4])
    raw = bytearray(path.read_bytes())
    raw[off: off + cnt] = b"\x00" * cnt
    path.write_bytes(bytes(raw))
    with open_uhr(path) as im:
        np.testing.assert_array_equal(np.asarray(im.read_window(0, 0, 100, 100)), rgb[:100, :100])  # tile 0 fine
        with pytest.raises(RasterInputError, match="corrupt.tif"):
            im.read_window(10, 260, 50, 300)  # tile 4 = row 1, column 0 (4 tiles across)


def test_extreme_strip_opens_but_overview_is_refused(tmp_path):
    path = tmp_path / "strip.tif"
    arr = (np.arange(50000) % 256).astype(np.uint8)[None, :]
    tifffile.imwrite(path, arr, compression="zlib")
    with open_uhr(path) as im:
        assert (im.info.width, im.info.height) == (50000, 1)
        np.testing.assert_array_equal(np.asarray(im.read_window(100, 0, 400, 1))[..., 0], arr[:, 100:400])
        with pytest.raises(RasterInputError, match=r"strip.tif.*aspect ratio 50000.*limit of 200.*tile"):
            im.overview(1_000_000)


def test_high_bit_depth_windows_match_training_stretch(tmp_path):
    rng = np.random.default_rng(5)
    u16 = (rng.gamma(2.0, 900.0, (600, 700))).clip(0, 65535).astype(np.uint16)
    f32 = rng.normal(-12.0, 4.0, (600, 700)).astype(np.float32)
    for name, arr in {"u16": u16, "f32": f32}.items():
        path = tmp_path / f"{name}.tif"
        tifffile.imwrite(path, arr, tile=(256, 256), compression="zlib")
        box = (123, 77, 611, 500)
        crop = arr[box[1]:box[3], box[0]:box[2]]
        crop_file = tmp_path / f"{name}_crop.tif"
        Image.fromarray(crop).save(crop_file)  # PIL writes it; open_image decodes and stretches it
        ref = np.asarray(open_image(crop_file, "r"))
        with open_uhr(path) as im:
            assert im.info.dtype == arr.dtype.name
            got = np.asarray(im.read_window(*box))
        assert got.shape == ref.shape == (box[3] - box[1], box[2] - box[0], 3)
        np.testing.assert_array_equal(got, ref)
        assert ref.std() > 30  # a real stretch, not a constant image


def test_lzw_tiff_falls_back_to_a_reader_that_decodes_it(tmp_path, rgb):
    path = tmp_path / "lzw.tif"
    Image.fromarray(rgb).save(path, compression="tiff_lzw")
    with open_uhr(path) as im:
        assert im.info.reader in ("rasterio", "pil")
        np.testing.assert_array_equal(np.asarray(im.read_window(5, 6, 600, 650)), rgb[6:650, 5:600])


def test_forced_rasterio_plain_tiff_window_and_overviews(tmp_path, rgb):
    pytest.importorskip("rasterio")
    path = tmp_path / "pyr.tif"
    _pyramid(path, rgb)
    with open_uhr(path, reader="rasterio") as im:
        assert im.info.transform is None and im.info.overviews == [(450, 350), (225, 175)]
        np.testing.assert_array_equal(np.asarray(im.read_window(250, 250, 262, 263)), rgb[250:263, 250:262])
        ov, scale = im.overview(70_000)
        ref = Image.fromarray(np.ascontiguousarray(rgb[::2, ::2])).resize(ov.size, Image.BICUBIC)
        np.testing.assert_array_equal(np.asarray(ov), np.asarray(ref))
