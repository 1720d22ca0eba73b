#!/usr/bin/env python
"""Benchmarks of the zoom-in chain (figures go to docs/benchmarks.md).

Subcommands:

* ``read``: a 1024 x 1024 window of a 20000 x 20000 RGB tiled TIFF (tile 512, zlib level 1),
  read with ``cotrain.raster`` (only the intersecting tiles are decoded) against the naive
  route (``tifffile.imread`` of the whole image, then crop), at a few positions. The file is
  written once, tile by tile, and cached under ``outputs/bench_zoom/``. Every measurement runs in
  a fresh subprocess so that its peak RSS is its own: "peak MB" is the peak RSS during open + read
  minus the RSS after the imports (Linux: the peak mark is reset with /proc/self/clear_refs; elsewhere
  ``ru_maxrss`` deltas, which hide reads smaller than the imports' transient peak). Time is the wall time of
  open + read (+ crop), best of ``--repeats`` in that process. Both crops are checked identical.
  The file stays in the OS page cache, so this measures decoding, not the disk.

* ``tokens``: visual tokens per question on the synthetic zoom split (8192 px images) when the chain
  shows the overview plus the evidence windows (the oracle chain, the zoom the training data teaches),
  against the whole image at native resolution; checks that every crop is given at native resolution.

``cotrain bench zoom read [--size 20000] [--window 1024]``
``cotrain bench zoom tokens [--max-pixels 1003520] [--token-budget 4096]``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _tiles(size: int, tile: int, seed: int = 0):
    """Tiles in row-major order: smooth colour fields plus noise from a small pool (compressible, not flat)."""
    rng = np.random.default_rng(seed)
    pool = [rng.integers(0, 24, (tile, tile, 3), dtype=np.uint8) for _ in range(7)]
    yy, xx = np.mgrid[0:tile, 0:tile].astype(np.float32)
    n = -(-size // tile)
    for r in range(n):
        for c in range(n):
            gy, gx = yy + r * tile, xx + c * tile
            base = np.stack([96 + 60 * np.sin(gx / 211.0 + b) * np.cos(gy / 173.0 - b) for b in range(3)], axis=2)
            yield (base + pool[(r * 3 + c) % len(pool)]).astype(np.uint8)


def make_file(size: int, tile: int, out_dir: Path) -> Path:
    import tifffile

    path = out_dir / f"uhr_{size}_tile{tile}_zlib1.tif"
    if path.is_file():
        return path
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    t0 = time.perf_counter()
    tifffile.imwrite(tmp, _tiles(size, tile), shape=(size, size, 3), dtype=np.uint8, tile=(tile, tile),
                     compression="zlib", compressionargs={"level": 1}, photometric="rgb", bigtiff=True)
    tmp.rename(path)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.0f} MB) in {time.perf_counter() - t0:.1f} s", flush=True)
    return path


def _measure(args) -> None:
    """Child process: one route, one position; prints one JSON line."""
    import tifffile

    from cotrain.raster import open_uhr

    x0, y0, n = args.x0, args.y0, args.window
    base = _rss_reset()
    best = float("inf")
    crop = None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        if args.route == "window":
            with open_uhr(args.path) as im:
                crop = np.asarray(im.read_window(x0, y0, x0 + n, y0 + n))
        else:
            full = tifffile.imread(args.path)
            crop = full[y0:y0 + n, x0:x0 + n].copy()
            del full
        best = min(best, time.perf_counter() - t0)
    peak = _rss_peak()
    np.save(args.save, crop)
    print("MEASURE " + json.dumps({"time_s": best, "peak_mb": (peak - base) / 1024.0}), flush=True)


def _status_kb(key: str) -> int | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _rss_reset() -> int:
    """Current RSS in kB, with the peak-RSS mark reset to it where Linux allows (clear_refs 5).

    Without the reset, the transient peak of the imports would hide a read that needs less than it.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_kb("VmRSS")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _rss_peak() -> int:
    """Peak RSS in kB since ``_rss_reset``."""
    hwm = _status_kb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _child(route: str, path: Path, x0: int, y0: int, window: int, repeats: int, save: Path) -> dict:
    cmd = [sys.executable, __file__, "_measure", "--route", route, "--path", str(path), "--x0", str(x0),
           "--y0", str(y0), "--window", str(window), "--repeats", str(repeats), "--save", str(save)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("MEASURE ")]
    if res.returncode != 0 or not line:
        raise SystemExit(f"{route} measurement failed:\n{res.stdout}\n{res.stderr}")
    return json.loads(line[-1][len("MEASURE "):])


def cmd_read(args) -> None:
    path = make_file(args.size, args.tile, Path(args.out))
    n = args.window
    positions = [(0, 0), ((args.size - n) // 2, (args.size - n) // 2), (args.size - n, args.size - n),
                 (min(args.size - n, args.tile * 7 + 123), min(args.size - n, args.tile * 23 + 301))]
    print(f"file: {path.name}, {args.size}x{args.size} RGB uint8, tile {args.tile}, zlib level 1, "
          f"{path.stat().st_size / 2**20:.0f} MB; window {n}x{n}")
    print(f"{'position (x0, y0)':>20} | {'window s':>9} {'MB':>7} | {'full s':>8} {'MB':>8} | "
          f"{'time x':>7} {'mem x':>7} | same")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for x0, y0 in positions:
            a = _child("window", path, x0, y0, n, args.repeats, Path(tmp) / "w.npy")
            b = _child("full", path, x0, y0, n, 1, Path(tmp) / "f.npy")
            same = bool(np.array_equal(np.load(Path(tmp) / "w.npy"), np.load(Path(tmp) / "f.npy")))
            rows.append((a, b, same))
            print(f"{str((x0, y0)):>20} | {a['time_s']:9.3f} {a['peak_mb']:7.1f} | {b['time_s']:8.2f} "
                  f"{b['peak_mb']:8.0f} | {b['time_s'] / a['time_s']:7.0f} "
                  f"{b['peak_mb'] / max(a['peak_mb'], 0.1):7.0f} | "
                  f"{same}", flush=True)
    tw = np.median([a["time_s"] for a, _, _ in rows])
    tf = np.median([b["time_s"] for _, b, _ in rows])
    mw = np.median([a["peak_mb"] for a, _, _ in rows])
    mf = np.median([b["peak_mb"] for _, b, _ in rows])
    print(f"median: window {tw:.3f} s / {mw:.1f} MB, full decode + crop {tf:.2f} s / {mf:.0f} MB -> "
          f"{tf / tw:.0f}x faster, {mf / max(mw, 0.1):.0f}x less peak memory; crops identical: "
          f"{all(s for _, _, s in rows)}")
    if not all(s for _, _, s in rows):
        raise SystemExit("the windowed crop differs from the full-decode crop")


def cmd_tokens(args) -> None:
    """Visual tokens per question: zoom chain (overview + the evidence windows at native resolution) vs full resolution."""
    from cotrain.data.synthetic import ensure_demo_data
    from cotrain.inference.base import GenerationResponse
    from cotrain.resolution import PixelLimits
    from cotrain.model.families import get_family
    from zoom_chain.controller import ChainConfig, Question, ZoomChain, image_tokens
    from zoom_chain.evaluate import load_items, oracle_windows

    ensure_demo_data(args.data_root)
    family = get_family(args.family)

    class AnswerAtOnce:  # the token count does not depend on the answer: no model needed
        name = "scripted"

        def __init__(self):
            self.family = family
            self.limits = PixelLimits(family.default_min_pixels, args.max_pixels, family.factor)

        def generate(self, requests, *, progress=False):
            return [GenerationResponse(r.id, "answer", "stop", 0, 0) for r in requests]

    items = load_items(Path(args.data_root) / "records" / f"syn_zoom_{args.split}.jsonl", args.data_root)
    cfg = ChainConfig(max_steps=args.max_steps, token_budget=args.token_budget)
    questions = [Question(it.question.id, it.question.image, it.question.question,
                          oracle_windows=oracle_windows(it, cfg.max_steps, factor=family.factor,
                                                        max_pixels=args.max_pixels)) for it in items]
    backend = AnswerAtOnce()
    results = ZoomChain(backend, cfg).run(questions)
    f = family.factor
    shares, native, crops, ev_seen = [], 0, 0, 0
    for it, q, r in zip(items, questions, results):
        shares.append(r.visual_tokens / r.full_resolution_tokens)
        for crop in r.crops:
            crops += 1
            native += image_tokens(crop.height, crop.width, f) * f * f == crop.width * crop.height
        # every evidence region lies inside a window shown at native resolution
        ev_seen += all(any(w[0] <= reg[0] and w[1] <= reg[1] and reg[2] <= w[2] and reg[3] <= w[3]
                           for w in q.oracle_windows) for reg in it.regions)
    n = len(results)
    mean_tokens = sum(r.visual_tokens for r in results) / n
    full = sum(r.full_resolution_tokens for r in results) / n
    print(f"{family.name}: {n} questions (synthetic zoom split '{args.split}', images "
          f"{results[0].image_size[0]}x{results[0].image_size[1]}), overview <= {results[0].overview_resized} px, "
          f"token budget {args.token_budget}, max_pixels {args.max_pixels}")
    print(f"  chain (overview + evidence windows): {mean_tokens:.0f} visual tokens / question; full resolution: "
          f"{full:.0f}; share {mean_tokens / full:.2%} (max {max(shares):.2%}); goal <= 5%: "
          f"{'met' if max(shares) <= 0.05 else 'MISSED'}")
    print(f"  crops at native resolution: {native}/{crops}; questions whose every evidence region was seen "
          f"at native resolution: {ev_seen}/{n}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("read", help="windowed read vs full decode + crop of a large tiled TIFF")
    r.add_argument("--size", type=int, default=20000, help="side of the square test image (pixels)")
    r.add_argument("--window", type=int, default=1024, help="side of the window read (pixels)")
    r.add_argument("--tile", type=int, default=512, help="TIFF tile side")
    r.add_argument("--repeats", type=int, default=3, help="windowed reads per process (best time kept)")
    r.add_argument("--out", default=str(ROOT / "outputs" / "bench_zoom"), help="where the test image is cached")
    r.set_defaults(func=cmd_read)
    t = sub.add_parser("tokens", help="visual tokens per question: zoom chain vs full resolution")
    t.add_argument("--data-root", default=str(ROOT / "outputs" / "demo_data"))
    t.add_argument("--split", default="test")
    t.add_argument("--family", default="qwen2_5_vl")
    t.add_argument("--max-pixels", type=int, default=1003520, help="per-image pixel budget (default 1280 tokens)")
    t.add_argument("--token-budget", type=int, default=4096)
    t.add_argument("--max-steps", type=int, default=3)
    t.set_defaults(func=cmd_tokens)
    m = sub.add_parser("_measure", help=argparse.SUPPRESS)  # internal: one measurement in a fresh process
    m.add_argument("--route", choices=["window", "full"], required=True)
    m.add_argument("--path", required=True)
    m.add_argument("--x0", type=int, required=True)
    m.add_argument("--y0", type=int, required=True)
    m.add_argument("--window", type=int, required=True)
    m.add_argument("--repeats", type=int, default=1)
    m.add_argument("--save", required=True)
    m.set_defaults(func=_measure)
    args = ap.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
