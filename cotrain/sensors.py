"""Sentinel-1 SAR and Sentinel-2 multispectral bands: names, grids, reading, resampling, nodata, normalisation.

An image entry of a record with ``modality: ms`` or ``modality: sar`` names its bands; ``width`` and
``height`` are the 10 m grid (so token lengths stay computable without decoding). Two layouts:

* one stacked file: ``{"path": "S2/p.tif", "modality": "ms", "width": 120, "height": 120,
  "bands": ["B02", "B03", ...]}`` (``bands`` = the file's band order, all on one grid);
* one file per band: the same plus ``"band_files": {"B02": "S2/p_B02.tif", ...}`` (``path`` is then a
  label only); each band on its native grid.

S2 bands and their native resolution (m): B01 60, B02 10, B03 10, B04 10, B05 20, B06 20, B07 20, B08 10,
B8A 20, B09 60, B11 20, B12 20 (BigEarthNet v2.0 keeps these 12; B10 is not in L2A). S1: VV, VH.

``read_bands(entry, root, bands)`` returns float32 ``(C, H, W)`` on the 10 m grid and a validity mask:

* **selection** by name; 60 m bands are dropped unless asked for by name (``DEFAULT_S2_BANDS``); an
  unknown name is an error listing the bands the entry has;
* **resampling**: a band on a grid k times coarser (k = native resolution / 10; 2 for 20 m, 6 for
  60 m) is upsampled to the 10 m grid by bilinear interpolation with pixel-centre alignment (PIL's
  ``BILINEAR`` on float32). A band whose size is neither the 10 m grid nor an exact 1/k of it has
  no resampling rule: an error naming the band, its size and the expected ones;
* **nodata**: NaN, +-inf and the file's nodata value (or the entry's ``nodata``) are masked (the
  mask is False there, the value 0) and counted in ``BandRead.invalid``;
* **SAR scale**: ``sar_scale: "db"`` (default) or ``"linear"`` (converted to dB, 10 log10 of
  max(x, 1e-6)). Linear backscatter is >= 0: a file declared linear with more than 1% negative values
  is almost certainly dB already, which is warned about (``BandRead.warnings``).

``band_statistics`` (mean and std per band over the valid pixels of a records file, streamed) writes
what ``normalise`` applies: (x - mean) / std per band. Must not map bands to RGB or know models.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from cotrain.errors import BadRecordError, ConfigError

log = logging.getLogger("cotrain")

S2_RESOLUTION_M = {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20, "B08": 10,
                   "B8A": 20, "B09": 60, "B11": 20, "B12": 20}
S1_BANDS = ("VV", "VH")
DEFAULT_S2_BANDS = tuple(b for b, r in S2_RESOLUTION_M.items() if r <= 20)
"""The 10 and 20 m bands; 60 m bands (atmospheric) only when named."""
SAR_SCALES = ("db", "linear")


def native_resolution(band: str) -> int:
    if band in S2_RESOLUTION_M:
        return S2_RESOLUTION_M[band]
    if band in S1_BANDS:
        return 10
    raise ConfigError(f"unknown band {band!r}; Sentinel-2 bands are {', '.join(S2_RESOLUTION_M)}, Sentinel-1 "
                      f"bands {', '.join(S1_BANDS)}")


@dataclass
class BandRead:
    """Bands on the 10 m grid, the pixels that are valid in every band, and what was found on the way."""

    data: np.ndarray
    """(C, H, W) float32, 0 where invalid."""
    valid: np.ndarray
    """(H, W) bool: True where every band has a real value."""
    bands: list[str]
    invalid: int = 0
    """Band pixels masked (NaN, inf or nodata), summed over bands."""
    warnings: list[str] = field(default_factory=list)


def _read_file(path: Path, rid: str) -> tuple[np.ndarray, float | None]:
    """(bands x H x W array, nodata value) of a raster file; a missing or unreadable file is a BadRecordError."""
    if not path.is_file():
        raise BadRecordError(f"record {rid!r}: band file {str(path)!r} does not exist", reason="image_missing",
                             record_id=rid)
    try:
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                return ds.read(), ds.nodata
    except ImportError:
        import tifffile

        a = tifffile.imread(path)
        return (a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0) if a.shape[-1] < a.shape[0] else a), None
    except Exception as e:  # noqa: BLE001 - any decoder failure is this record's problem
        raise BadRecordError(f"record {rid!r}: cannot read band file {str(path)!r} ({e})", reason="image_corrupt",
                             record_id=rid) from None


def _to_grid(band: np.ndarray, name: str, w: int, h: int, rid: str) -> np.ndarray:
    bh, bw = band.shape
    if (bw, bh) == (w, h):
        return band
    k = native_resolution(name) // 10
    if k > 1 and (bw * k, bh * k) == (w, h):
        return np.asarray(Image.fromarray(band.astype(np.float32), mode="F").resize((w, h), Image.BILINEAR))
    raise ConfigError(f"record {rid!r}: band {name} is {bw}x{bh} but the 10 m grid is {w}x{h}; a {name} band must be "
                      f"{w}x{h} or {w // k}x{h // k} ({native_resolution(name)} m). No resampling rule fits this "
                      "size: co-register the bands first")


def read_bands(entry: dict, root: str | Path, bands: list[str] | None = None, *, rid: str = "?") -> BandRead:
    """The named bands of an ``ms`` / ``sar`` image entry on its 10 m grid (see the module docstring)."""
    have = list(entry.get("bands") or [])
    if not have:
        raise ConfigError(f"record {rid!r}: image entry {entry.get('path')!r} names no 'bands'; list the file's band "
                          "order (e.g. [\"B02\", \"B03\", ...] or [\"VV\", \"VH\"])")
    if bands is None:
        bands = [b for b in have if b not in S2_RESOLUTION_M or S2_RESOLUTION_M[b] <= 20]
    for b in bands:
        native_resolution(b)  # an unknown name is an error listing the S1 / S2 bands
    missing = [b for b in bands if b not in have]
    if missing:
        raise ConfigError(f"record {rid!r}: band(s) {missing} not in this image; it has {', '.join(have)}")
    w, h, root = int(entry["width"]), int(entry["height"]), Path(root)
    files = entry.get("band_files")
    stacked = None
    out = np.zeros((len(bands), h, w), np.float32)
    valid = np.ones((h, w), bool)
    read = BandRead(out, valid, list(bands))
    for c, name in enumerate(bands):
        if files:
            if name not in files:
                raise ConfigError(f"record {rid!r}: 'band_files' has no file for {name}; it has {sorted(files)}")
            arr, nodata = _read_file(root / files[name], rid)
            band = arr[0]
        else:
            if stacked is None:
                stacked = _read_file(root / entry["path"], rid)
                if stacked[0].shape[0] != len(have):
                    raise ConfigError(f"record {rid!r}: {entry['path']} holds {stacked[0].shape[0]} bands but 'bands' "
                                      f"names {len(have)}; list the file's band order")
            arr, nodata = stacked
            band = arr[have.index(name)]
        nodata = entry.get("nodata", nodata)
        band = band.astype(np.float32, copy=False)
        bad = ~np.isfinite(band)
        if nodata is not None and np.isfinite(nodata):
            bad |= band == nodata
        if bad.any():  # masked pixels are 0 before resampling and every 10 m pixel they touch is masked
            band = np.where(bad, 0.0, band).astype(np.float32)
            bad = _to_grid(bad.astype(np.float32), name, w, h, rid) > 0
        else:
            bad = None
        band = _to_grid(band, name, w, h, rid)
        if name in S1_BANDS:
            band = _sar_db(band, bad, entry.get("sar_scale", "db"), name, rid, read.warnings)
        out[c] = band
        if bad is not None:
            out[c][bad] = 0.0
            valid &= ~bad
            read.invalid += int(bad.sum())
    return read


def _sar_db(band: np.ndarray, bad: np.ndarray | None, scale: str, name: str, rid: str, warnings: list[str]) -> np.ndarray:
    if scale not in SAR_SCALES:
        raise ConfigError(f"record {rid!r}: sar_scale={scale!r}; use db or linear")
    if scale == "db":
        return band
    vals = band if bad is None else band[~bad]
    if vals.size and (vals < 0).mean() > 0.01:
        msg = (f"record {rid!r}: {name} is declared linear but {100 * (vals < 0).mean():.0f}% of its values are "
               "negative, which linear backscatter never is; the file is probably in dB (set sar_scale: db)")
        log.warning(msg)
        warnings.append(msg)
    return 10.0 * np.log10(np.maximum(band, 1e-6))


def band_statistics(records: list[dict], root: str | Path, modality: str, bands: list[str]) -> dict[str, dict]:
    """{band: {"mean", "std", "pixels"}} over the valid pixels of every image of ``modality`` (streamed sums)."""
    s = np.zeros(len(bands))
    s2 = np.zeros(len(bands))
    n = 0
    for rec in records:
        for img in rec["images"]:
            if img["modality"] != modality:
                continue
            r = read_bands(img, root, bands, rid=str(rec["id"]))
            v = r.data[:, r.valid].astype(np.float64)
            s += v.sum(1)
            s2 += (v * v).sum(1)
            n += v.shape[1]
    if n == 0:
        raise ConfigError(f"no valid {modality} pixels in these records; nothing to compute statistics from")
    mean = s / n
    std = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))
    return {b: {"mean": float(m), "std": float(d), "pixels": n} for b, m, d in zip(bands, mean, std)}


def write_statistics(stats: dict, path: str | Path) -> None:
    from cotrain.files import write_json_atomic

    write_json_atomic(path, {"bands": stats})


def normalise(read: BandRead, stats: dict[str, dict]) -> np.ndarray:
    """(x - mean) / std per band (invalid pixels stay 0); a band without statistics is an error naming it."""
    missing = [b for b in read.bands if b not in stats]
    if missing:
        raise ConfigError(f"no statistics for band(s) {missing}; recompute them with cotrain.sensors.band_statistics")
    out = np.empty_like(read.data)
    for c, b in enumerate(read.bands):
        std = stats[b]["std"]
        if not std > 0 or not math.isfinite(std):
            raise ConfigError(f"band {b}: std {std} cannot normalise (a constant band); check the statistics")
        out[c] = np.where(read.valid, (read.data[c] - stats[b]["mean"]) / std, 0.0)
    return out


def read_statistics(path: str | Path) -> dict[str, dict]:
    try:
        return json.loads(Path(path).read_text())["bands"]
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"cannot read band statistics {path} ({e}); write them with band_statistics") from None


# --- composites: bands -> 3 channels for an ordinary RGB vision tower --------------------------------

COMPOSITES: dict[str, tuple[tuple[str, float, float], ...]] = {
    # (band, value mapped to 0, value mapped to 255) per output channel; linear in between, clipped.
    # S2 L2A digital numbers are reflectance x 10,000: 0 .. 3,000 is 0 .. 30% reflectance.
    "true_colour": (("B04", 0.0, 3000.0), ("B03", 0.0, 3000.0), ("B02", 0.0, 3000.0)),
    # colour infrared: vegetation (high NIR) turns red; NIR spans a wider range
    "false_colour": (("B08", 0.0, 5000.0), ("B04", 0.0, 3000.0), ("B03", 0.0, 3000.0)),
    # SAR in dB: VV, VH and their difference (VV - VH: high over bare soil and water, low over forest)
    "sar": (("VV", -25.0, 0.0), ("VH", -30.0, -5.0), ("VV-VH", 0.0, 15.0)),
}
"""Documented fixed stretches (the same for every image, so brightness keeps its meaning across a dataset)."""
DEFAULT_COMPOSITE = {"ms": "true_colour", "sar": "sar"}
COMPOSITE_MODALITY = {"true_colour": "ms", "false_colour": "ms", "sar": "sar"}
"""The modality each composite reads: a dataset's ``composite`` applies to its images of that modality only
(an S2 + S1 record with ``composite: false_colour`` shows its S1 image through the default ``sar``)."""


def composite_array(entry: dict, root: str | Path, name: str | None = None, *, rid: str = "?") -> np.ndarray:
    """(H, W, 3) uint8 of an ``ms`` / ``sar`` entry through composite ``name`` (default by modality)."""
    name = name or entry.get("composite") or DEFAULT_COMPOSITE.get(entry.get("modality"), "")
    if name not in COMPOSITES:
        raise ConfigError(f"record {rid!r}: composite {name!r}; use one of {', '.join(COMPOSITES)}")
    chans = COMPOSITES[name]
    needed = sorted({b for c, _, _ in chans for b in c.split("-")})
    read = read_bands(entry, root, needed, rid=rid)
    by = {b: read.data[i] for i, b in enumerate(read.bands)}
    out = np.empty((*read.valid.shape, 3), np.uint8)
    for k, (band, lo, hi) in enumerate(chans):
        v = by[band] if "-" not in band else by[band.split("-")[0]] - by[band.split("-")[1]]
        scaled = np.clip((v - lo) / (hi - lo), 0.0, 1.0) * 255.0
        out[..., k] = np.where(read.valid, np.rint(scaled), 0).astype(np.uint8)
    return out
