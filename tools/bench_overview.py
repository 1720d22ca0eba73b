#!/usr/bin/env python
"""Large-TIFF images for the model: whole decode + resize (the old route) vs cached raster overview.

    cotrain bench overview [--size 8192 6144] [--images 2] [--questions 24] [--target 224 224]

Writes ``--images`` tiled TIFFs of ``--size`` (like the demo's zoom scenes: tile 512, zlib level 1)
under a temporary directory, then loads ``--questions`` record images spread over them at the model's
``--target`` size, as training and ``cotrain eval`` do for zoom_vqa records, two ways in one run:

* baseline: PIL decodes the whole file, then a bicubic resize (what ``open_image`` did before);
* ``open_image``: the ``cotrain.raster`` overview (tile by tile, box-averaged) and the per-process cache.

Prints images/s of each, their ratio, and the mean absolute
difference of the pixels (the two resamplings are not identical; both routes are deterministic).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def write_tiffs(root: Path, n: int, w: int, h: int) -> list[Path]:
    import tifffile
    from PIL import Image

    paths = []
    for i in range(n):
        rng = np.random.default_rng([7, i])
        coarse = rng.integers(0, 256, (h // 256 + 1, w // 256 + 1, 3), dtype=np.uint8)
        arr = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BILINEAR))
        p = root / f"scene{i}.tif"
        tifffile.imwrite(p, arr, tile=(512, 512), compression="zlib", compressionargs={"level": 1},
                         photometric="rgb")
        paths.append(p)
    return paths


def whole_decode(path: Path, target: tuple[int, int]):
    from PIL import Image

    from cotrain.pixels import pixel_limit

    with pixel_limit(None), Image.open(path) as im:
        return im.convert("RGB").resize(target, Image.BICUBIC)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, nargs=2, default=[8192, 6144], metavar=("W", "H"))
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--questions", type=int, default=24)
    ap.add_argument("--target", type=int, nargs=2, default=[224, 224], metavar=("W", "H"))
    args = ap.parse_args(argv)
    from cotrain import images

    target = tuple(args.target)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_tiffs(Path(tmp), args.images, *args.size)
        order = [paths[q % len(paths)] for q in range(args.questions)]
        t0 = time.perf_counter()
        fast = [np.asarray(images.open_image(p, f"q{k}", expected_wh=tuple(args.size), target_wh=target))
                for k, p in enumerate(order)]
        t_fast = time.perf_counter() - t0
        t0 = time.perf_counter()
        slow = [np.asarray(whole_decode(p, target)) for p in order]
        t_slow = time.perf_counter() - t0
    diff = float(np.mean([np.abs(a.astype(np.int16) - b.astype(np.int16)).mean() for a, b in zip(fast, slow)]))
    print(f"{args.questions} questions on {args.images} TIFFs of {args.size[0]}x{args.size[1]} -> {target[0]}x{target[1]}")
    print(f"whole decode + resize : {args.questions / t_slow:8.2f} images/s  ({t_slow:.2f} s)")
    print(f"raster overview, cache: {args.questions / t_fast:8.2f} images/s  ({t_fast:.2f} s)")
    print(f"speed-up: {t_slow / t_fast:.1f}x; mean |pixel difference| {diff:.2f} (0-255)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
