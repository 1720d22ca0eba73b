"""cotrain.images: decoding as training sees it, the high-bit-depth stretch, and the scoped pixel guard."""

import threading

import numpy as np
import pytest
from PIL import Image

from cotrain.errors import BadRecordError
from cotrain.images import open_image
from cotrain.pixels import pixel_limit


def test_high_bit_depth_images_are_stretched_not_clipped(tmp_path):
    ramp = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 7) + 1000  # 1000 .. ~29600
    Image.fromarray(ramp).save(tmp_path / "ir16.png")
    im = open_image(tmp_path / "ir16.png", "r", expected_wh=(64, 64))
    a = np.asarray(im)
    assert im.mode == "RGB" and a.shape == (64, 64, 3)
    # a clip to 8 bits would make ~100% of pixels 255; the stretch keeps the ramp's order and range
    assert (a[..., 0] == 255).mean() < 0.05 and (a[..., 0] == 0).mean() < 0.05
    assert a[0, 10, 0] < a[32, 10, 0] < a[63, 10, 0]
    f = Image.fromarray(np.linspace(0.0, 0.01, 64 * 64, dtype=np.float32).reshape(64, 64), mode="F")
    f.save(tmp_path / "f.tif")
    b = np.asarray(open_image(tmp_path / "f.tif", "r"))
    assert b.std() > 50  # not all black


def test_decompression_bomb_is_a_counted_reason(tmp_path, monkeypatch):
    Image.new("RGB", (300, 300)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100 // 2)  # 300x300 > 2x the limit
    with pytest.raises(BadRecordError) as e:
        open_image(tmp_path / "big.png", "r9")
    assert e.value.reason == "image_too_large" and "r9" in str(e.value)


def test_jpeg_is_decoded_to_the_target_size(tmp_path):
    Image.effect_noise((1600, 1200), 30).convert("RGB").save(tmp_path / "a.jpg")
    im = open_image(tmp_path / "a.jpg", "r", expected_wh=(1600, 1200), target_wh=(224, 168))
    assert im.size == (224, 168) and im.mode == "RGB"
    with pytest.raises(BadRecordError, match="1600x1200 but the record says 1600x1000"):
        open_image(tmp_path / "a.jpg", "r", expected_wh=(1600, 1000))


def test_pixel_limit_is_scoped_and_restored_on_error(tmp_path):
    Image.new("L", (300, 300)).save(tmp_path / "big.png")
    before = Image.MAX_IMAGE_PIXELS
    with pixel_limit(None), Image.open(tmp_path / "big.png") as im:
        assert Image.MAX_IMAGE_PIXELS is None and im.size == (300, 300)
    assert Image.MAX_IMAGE_PIXELS == before
    with pytest.raises(RuntimeError), pixel_limit(10):
        assert Image.MAX_IMAGE_PIXELS == 10
        raise RuntimeError("boom")
    assert Image.MAX_IMAGE_PIXELS == before


def test_pixel_limit_serialises_threads():
    """Two threads never see each other's limit: the guard is one process-wide value, changed under a lock."""
    seen, errors = [], []

    def work(limit):
        for _ in range(50):
            with pixel_limit(limit):
                if Image.MAX_IMAGE_PIXELS != limit:
                    errors.append((limit, Image.MAX_IMAGE_PIXELS))
                seen.append(limit)

    threads = [threading.Thread(target=work, args=(n,)) for n in (None, 123, 456)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(seen) == 150


def _tiled_tiff(path, w, h, seed=0):
    import tifffile

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (h // 32 + 1, w // 32 + 1, 3), dtype=np.uint8)
    arr = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BILINEAR))
    tifffile.imwrite(path, arr, tile=(256, 256), compression="zlib", photometric="rgb")
    return arr


def test_large_tiff_is_read_as_a_cached_overview(tmp_path, monkeypatch):
    from cotrain import images, raster

    arr = _tiled_tiff(tmp_path / "big.tif", 1024, 768)
    images._OVERVIEWS.clear()
    calls = []
    real = raster.UHRImage.overview
    monkeypatch.setattr(raster.UHRImage, "overview", lambda self, n: calls.append(n) or real(self, n))
    a = open_image(tmp_path / "big.tif", "q0", expected_wh=(1024, 768), target_wh=(224, 168))
    b = open_image(tmp_path / "big.tif", "q1", expected_wh=(1024, 768), target_wh=(224, 168))
    assert a.size == b.size == (224, 168) and np.array_equal(np.asarray(a), np.asarray(b))
    assert calls == [224 * 168]  # the second question about the scene reuses the first's overview
    # the overview is the image box-averaged: close to a whole decode + resize, not something else
    whole = np.asarray(Image.fromarray(arr).resize((224, 168), Image.BICUBIC)).astype(float)
    assert np.abs(np.asarray(a).astype(float) - whole).mean() < 4.0
    # a cached image handed out is a copy: drawing on it does not change what the next caller gets
    a.paste((0, 0, 0), (0, 0, 50, 50))
    assert np.array_equal(np.asarray(open_image(tmp_path / "big.tif", "q2", target_wh=(224, 168))), np.asarray(b))
    # small TIFFs (within OVERVIEW_RATIO of the target) are decoded whole as before
    _tiled_tiff(tmp_path / "small.tif", 300, 200)
    open_image(tmp_path / "small.tif", "q3", target_wh=(224, 168))
    assert calls == [224 * 168]


def test_large_tiff_bad_inputs_are_counted_reasons(tmp_path):
    from cotrain import images

    images._OVERVIEWS.clear()
    _tiled_tiff(tmp_path / "big.tif", 1024, 768)
    with pytest.raises(BadRecordError, match="is 1024x768 but the record says 1000x768") as e:
        open_image(tmp_path / "big.tif", "q0", expected_wh=(1000, 768), target_wh=(224, 168))
    assert e.value.reason == "image_size_mismatch"
    raw = (tmp_path / "big.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(BadRecordError, match="q1.*truncated") as e:
        open_image(tmp_path / "cut.tif", "q1", expected_wh=(1024, 768), target_wh=(224, 168))
    assert e.value.reason == "image_corrupt"
