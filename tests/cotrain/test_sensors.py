"""Multi-band S1 / S2 reading: selection, resampling onto the 10 m grid, nodata, SAR scale, statistics."""

import numpy as np
import pytest
import rasterio

from cotrain.errors import BadRecordError, ConfigError
from cotrain.records import validate_record
from cotrain.sensors import DEFAULT_S2_BANDS, S2_RESOLUTION_M, band_statistics, normalise, read_bands

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


def _tif(path, arr, nodata=None):
    arr = np.asarray(arr, np.float32)
    arr = arr[None] if arr.ndim == 2 else arr
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                       dtype="float32", nodata=nodata) as ds:
        ds.write(arr)


def _s2(tmp_path, side=12, seed=0):
    rng = np.random.default_rng(seed)
    files, truth = {}, {}
    for b, res in S2_RESOLUTION_M.items():
        n = side * 10 // res
        truth[b] = rng.uniform(0, 1000, (n, n)).astype(np.float32)
        files[b] = f"S2/p_{b}.tif"
        _tif(tmp_path / files[b], truth[b])
    entry = {"path": "S2/p", "modality": "ms", "width": side, "height": side, "bands": list(S2_RESOLUTION_M),
             "band_files": files}
    return entry, truth


def _bilinear(a, k):
    """Independent route: pixel-centre aligned bilinear upsampling by k, edges clamped."""
    n = a.shape[0]
    c = np.clip((np.arange(n * k) + 0.5) / k - 0.5, 0, n - 1)
    i0 = np.floor(c).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    t = c - i0
    rows = a[i0] * (1 - t)[:, None] + a[i1] * t[:, None]
    return rows[:, i0] * (1 - t)[None, :] + rows[:, i1] * t[None, :]


def test_default_bands_resampled_onto_the_10m_grid(tmp_path):
    entry, truth = _s2(tmp_path)
    r = read_bands(entry, tmp_path)
    assert r.bands == list(DEFAULT_S2_BANDS) and "B01" not in r.bands and len(r.bands) == 10
    assert r.data.shape == (10, 12, 12) and r.valid.all() and r.invalid == 0
    np.testing.assert_allclose(r.data[r.bands.index("B04")], truth["B04"], rtol=1e-6)
    np.testing.assert_allclose(r.data[r.bands.index("B11")], _bilinear(truth["B11"].astype(np.float64), 2),
                               rtol=1e-4, atol=1e-2)
    b01 = read_bands(entry, tmp_path, ["B01"])  # a 60 m band when named: 2 x 2 -> 12 x 12
    np.testing.assert_allclose(b01.data[0], _bilinear(truth["B01"].astype(np.float64), 6), rtol=1e-4, atol=1e-2)


def test_stacked_file_and_bad_inputs(tmp_path):
    _tif(tmp_path / "s.tif", np.stack([np.full((4, 4), v) for v in (1, 2, 3)]))
    entry = {"path": "s.tif", "modality": "ms", "width": 4, "height": 4, "bands": ["B02", "B03", "B04"]}
    assert read_bands(entry, tmp_path, ["B04", "B02"]).data[:, 0, 0].tolist() == [3, 1]
    with pytest.raises(ConfigError, match="it has B02, B03, B04"):
        read_bands(entry, tmp_path, ["B08"])
    with pytest.raises(ConfigError, match="holds 3 bands but 'bands' names 2"):
        read_bands({**entry, "bands": ["B02", "B03"]}, tmp_path)
    _tif(tmp_path / "odd.tif", np.ones((5, 5)))
    odd = {"path": "x", "modality": "ms", "width": 12, "height": 12, "bands": ["B05"], "band_files": {"B05": "odd.tif"}}
    with pytest.raises(ConfigError, match="No resampling rule"):
        read_bands(odd, tmp_path)
    with pytest.raises(BadRecordError, match="does not exist"):
        read_bands({**odd, "band_files": {"B05": "none.tif"}}, tmp_path)
    with pytest.raises(ConfigError, match="unknown band"):
        read_bands({**entry, "bands": ["B02", "B03", "B99"]}, tmp_path, ["B99"])


def test_nodata_and_nan_are_masked_and_counted(tmp_path):
    a = np.arange(16, dtype=np.float32).reshape(4, 4)
    a[0, 0] = -9999
    b = np.ones((4, 4), np.float32)
    b[3, 3] = np.nan
    _tif(tmp_path / "a.tif", a, nodata=-9999)
    _tif(tmp_path / "b.tif", b)
    entry = {"path": "p", "modality": "ms", "width": 4, "height": 4, "bands": ["B02", "B03"],
             "band_files": {"B02": "a.tif", "B03": "b.tif"}}
    r = read_bands(entry, tmp_path)
    assert r.invalid == 2 and not r.valid[0, 0] and not r.valid[3, 3] and r.valid.sum() == 14
    assert r.data[0, 0, 0] == 0 and r.data[1, 3, 3] == 0


def test_sar_scale(tmp_path):
    _tif(tmp_path / "s1.tif", np.stack([np.full((4, 4), 0.1), np.full((4, 4), 0.01)]))
    entry = {"path": "s1.tif", "modality": "sar", "width": 4, "height": 4, "bands": ["VV", "VH"], "sar_scale": "linear"}
    r = read_bands(entry, tmp_path)
    np.testing.assert_allclose(r.data[:, 0, 0], [-10.0, -20.0], rtol=1e-5)
    assert not r.warnings
    _tif(tmp_path / "db.tif", np.stack([np.full((4, 4), -12.0), np.full((4, 4), -18.0)]))
    r = read_bands({**entry, "path": "db.tif"}, tmp_path)  # dB data declared linear
    assert r.warnings and "probably in dB" in r.warnings[0]
    assert read_bands({**entry, "path": "db.tif", "sar_scale": "db"}, tmp_path).data[0, 0, 0] == -12.0


def test_statistics_and_normalisation(tmp_path):
    _tif(tmp_path / "1.tif", np.stack([np.full((2, 2), 1.0), np.full((2, 2), 10.0)]))
    _tif(tmp_path / "2.tif", np.stack([np.full((2, 2), 3.0), np.full((2, 2), 10.0)]))
    recs = [{"id": str(i), "task": "captioning", "captions": ["x"],
             "images": [{"path": f"{i}.tif", "modality": "ms", "width": 2, "height": 2, "bands": ["B04", "B08"]}]}
            for i in (1, 2)]
    for r in recs:
        validate_record(r)  # band lists ride on ordinary image entries
    stats = band_statistics(recs, tmp_path, "ms", ["B04", "B08"])
    assert stats["B04"] == {"mean": 2.0, "std": 1.0, "pixels": 8}
    assert stats["B08"]["std"] == 0.0
    r = read_bands(recs[1]["images"][0], tmp_path, ["B04"])
    assert normalise(r, stats)[0, 0, 0] == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="constant band"):
        normalise(read_bands(recs[1]["images"][0], tmp_path, ["B08"]), stats)
    with pytest.raises(ConfigError, match="no statistics"):
        normalise(read_bands(recs[1]["images"][0], tmp_path, ["B04"]), {})


def test_composites_and_open_entry(tmp_path):
    from PIL import Image

    from cotrain.images import open_entry
    from cotrain.sensors import composite_array

    s2 = np.stack([np.full((4, 4), v, np.float32) for v in (300, 1500, 3000, 6000)])  # B02, B03, B04, B08
    _tif(tmp_path / "ms.tif", s2)
    entry = {"path": "ms.tif", "modality": "ms", "width": 4, "height": 4, "bands": ["B02", "B03", "B04", "B08"]}
    # true colour R=B04 3000 -> 255, G=B03 1500 -> 127.5 -> 128, B=B02 300 -> 25.5 -> 26 (round half to even: 26)
    assert composite_array(entry, tmp_path)[0, 0].tolist() == [255, 128, 26]
    # colour infrared: R=B08 6000 (clipped at 5000) -> 255, G=B04 -> 255, B=B03 -> 128
    assert composite_array(entry, tmp_path, "false_colour")[0, 0].tolist() == [255, 255, 128]
    _tif(tmp_path / "s1.tif", np.stack([np.full((4, 4), -10.0), np.full((4, 4), -20.0)]))
    sar = {"path": "s1.tif", "modality": "sar", "width": 4, "height": 4, "bands": ["VV", "VH"]}
    # VV -10 in [-25, 0] -> 153; VH -20 in [-30, -5] -> 102; VV-VH 10 in [0, 15] -> 170
    assert composite_array(sar, tmp_path)[0, 0].tolist() == [153, 102, 170]
    im = open_entry({**entry, "abs_path": str(tmp_path / "ms.tif")}, "r1", target_wh=(8, 8))
    assert isinstance(im, Image.Image) and im.size == (8, 8) and im.mode == "RGB"
    with pytest.raises(ConfigError, match="composite 'ndvi'"):
        composite_array(entry, tmp_path, "ndvi")
