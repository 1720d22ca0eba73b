#!/usr/bin/env python
"""Reading one BigEarthNet-style patch (S2, 12 bands on their native grids, and S1 VV/VH): samples/s.

    cotrain bench bands [--patches 64] [--repeats 3]

Writes ``--patches`` patches under a temporary directory, BigEarthNet v2.0 style: one GeoTIFF per S2
band (120 x 120 at 10 m, 60 x 60 at 20 m, 20 x 20 at 60 m) and one per S1 band (120 x 120, dB), then
reads every patch's 14 bands onto the 120 x 120 grid two ways in one run:

* baseline: plain rasterio per band: open, ``read(out_shape=(120, 120), resampling=bilinear)``;
* ``cotrain.sensors.read_bands`` (the S2 entry with all 12 bands named, then the S1 entry): nodata and
  NaN masks, the SAR range check and bilinear upsampling with pixel-centre alignment.

Prints samples/s of each (best of ``--repeats``) and their ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def write_patches(root: Path, n: int) -> list[tuple[dict, dict]]:
    import rasterio

    from cotrain.sensors import S1_BANDS, S2_RESOLUTION_M

    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        files = {}
        for b, res in [*S2_RESOLUTION_M.items(), *((b, 10) for b in S1_BANDS)]:
            side = 1200 // res
            rel = f"p{i}/{b}.tif"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            data = (rng.normal(-15, 3, (1, side, side)) if b in S1_BANDS else rng.uniform(0, 3000, (1, side, side)))
            with rasterio.open(root / rel, "w", driver="GTiff", width=side, height=side, count=1,
                               dtype="float32") as ds:
                ds.write(data.astype(np.float32))
            files[b] = rel
        s2 = {"path": f"p{i}/S2", "modality": "ms", "width": 120, "height": 120, "bands": list(S2_RESOLUTION_M),
              "band_files": {b: files[b] for b in S2_RESOLUTION_M}}
        s1 = {"path": f"p{i}/S1", "modality": "sar", "width": 120, "height": 120, "bands": list(S1_BANDS),
              "band_files": {b: files[b] for b in S1_BANDS}, "sar_scale": "db"}
        out.append((s2, s1))
    return out


def plain(root: Path, patches) -> None:
    import rasterio
    from rasterio.enums import Resampling

    for s2, s1 in patches:
        for entry in (s2, s1):
            for rel in entry["band_files"].values():
                with rasterio.open(root / rel) as ds:
                    ds.read(1, out_shape=(120, 120), resampling=Resampling.bilinear)


def ours(root: Path, patches) -> None:
    from cotrain.sensors import read_bands

    for s2, s1 in patches:
        read_bands(s2, root, s2["bands"])
        read_bands(s1, root)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--patches", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    from rasterio.errors import NotGeoreferencedWarning

    warnings.simplefilter("ignore", NotGeoreferencedWarning)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        patches = write_patches(root, args.patches)
        best = {}
        for name, fn in (("plain rasterio per band", plain), ("cotrain.sensors.read_bands", ours)):
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                fn(root, patches)
                times.append(time.perf_counter() - t0)
            best[name] = args.patches / min(times)
            print(f"{name}: {best[name]:,.1f} samples/s (S2 12 bands + S1 2 bands, 120 x 120)")
        a, b = best.values()
        print(f"ratio read_bands / plain: {b / a:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
