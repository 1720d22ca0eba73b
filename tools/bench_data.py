#!/usr/bin/env python
"""Benchmarks of the data engine (figures go to docs/benchmarks.md).

Subcommands:

* ``coldstart``: start-up time and resident memory of a large dataset through the memory-mapped
  ``cotrain.data.index.RecordIndex`` against the naive route (``json.loads`` of every line into a
  Python list) in the same run. A synthetic JSONL of canonical classification and detection records
  (~300 bytes a line) is written to a temp dir; each measurement runs in a fresh subprocess so that
  its peak RSS (``ru_maxrss``) is its own: index build (no cache), cold load (cache present), and
  the naive load. Both routes then do the same random reads with ``validate_record``. RSS
  "(imports)" is the interpreter with numpy and cotrain imported, before any record is touched.
  Issue 3's goals for 1,000,000 records: <= 10 s start, <= 1 GB RSS.
  The file stays in the OS page cache between runs, so "cold" means a new process, not a cold disk.

* ``loader``: samples per second of one loader process (= per dataloader worker) building
  classification samples from 1024 x 1024 JPEGs resized to <= 256 visual tokens and tokenised
  (``SampleBuilder.build``: header size check, JPEG draft decoding, resize, chat encoder) against a
  naive route in the same run (open + full decode + the stock HF processor, which resizes itself),
  and the token-length estimate from recorded sizes against building the sample (time and exactness).
  Issue 3's goal: >= 2x.

``cotrain bench data coldstart --records 1000000``
``cotrain bench data loader``
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

CLASSES = ("airport", "bare land", "baseball field", "beach", "bridge", "center", "church", "commercial",
           "dense residential", "desert", "farmland", "forest", "industrial", "meadow", "park", "parking")
OBJECTS = ("plane", "ship", "storage-tank", "small-vehicle", "large-vehicle", "harbor", "bridge", "roundabout")


def write_synthetic_records(path: Path, n: int, seed: int) -> int:
    """Write ``n`` canonical records (3 classification : 1 detection with 1-3 quads, ~300 bytes a
    line on average) to ``path``; return the file size. Deterministic in (seed, n)."""
    rng = np.random.default_rng([seed, n])
    kinds = rng.random(n) < 0.25
    sizes = rng.integers(256, 4096, size=(n, 2))
    labels = rng.integers(0, len(CLASSES), size=n)
    boxes = rng.random((n, 3, 4))
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for i in range(n):
            w, h = int(sizes[i, 0]), int(sizes[i, 1])
            image = {"path": f"scenes/{i // 1000:04d}/img_{i:07d}.tif", "modality": "rgb", "width": w, "height": h}
            if kinds[i]:
                objects = []
                for b in boxes[i, : 1 + i % 3]:
                    x, y = round(float(b[0]) * (w - 40), 1), round(float(b[1]) * (h - 40), 1)
                    dx, dy = round(4 + float(b[2]) * 30, 1), round(4 + float(b[3]) * 30, 1)
                    objects.append({"label": OBJECTS[(i + len(objects)) % len(OBJECTS)],
                                    "quad": [x, y, x + dx, y, x + dx, y + dy, x, y + dy], "difficult": 0})
                rec = {"id": f"dota_{i:07d}", "task": "detection", "images": [image], "objects": objects}
            else:
                rec = {"id": f"aid_{i:07d}", "task": "classification", "images": [image],
                       "label": CLASSES[labels[i]], "split": "train",
                       "source": "synthetic scene classification benchmark set"}
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path.stat().st_size


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _probe(route: str, records: str, reads: int, seed: int) -> dict:
    """One measurement, run in its own process: load ``records`` by ``route``, then time ``reads``
    random validated record reads. Returns seconds, rates and peak RSS."""
    from cotrain.data.index import RecordIndex
    from cotrain.records import validate_record

    rss_imports = _peak_rss_mb()
    start = time.perf_counter()
    if route == "index":
        idx = RecordIndex.build_or_load(records)
        n, get, built = len(idx), idx.record, idx.built
    else:
        with open(records, encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        n, built = len(rows), None

        def get(i):
            return validate_record(rows[i], path=records, line=i + 1)
    load_s = time.perf_counter() - start
    positions = random.Random(seed).choices(range(n), k=reads)  # same positions for both routes
    start = time.perf_counter()
    for i in positions:
        get(i)
    read_s = time.perf_counter() - start
    return {"route": route, "records": n, "built": built, "load_s": load_s, "reads_per_s": reads / read_s,
            "rss_imports_mb": rss_imports, "rss_peak_mb": _peak_rss_mb()}


def _run_probe(route: str, records: Path, reads: int, seed: int) -> dict:
    """``_probe`` in a fresh interpreter; adds the process wall time (interpreter start + imports + load)."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "_probe", route, str(records),
                          "--reads", str(reads), "--seed", str(seed)], check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - start
    return result


def coldstart(n_records: int, reads: int, seed: int, workdir: str | None) -> list[dict]:
    """The ``coldstart`` benchmark; prints a table and returns the three measurements."""
    with tempfile.TemporaryDirectory(dir=workdir, prefix="cotrain-bench-") as tmp:
        records = Path(tmp) / "records.jsonl"
        start = time.perf_counter()
        # in a child: ru_maxrss of a process started by fork+exec keeps its parent's high-water mark,
        # so the parent must stay small for the probes' RSS to be their own
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "_generate", str(records),
                        str(n_records), str(seed)], check=True)
        size = records.stat().st_size
        print(f"wrote {n_records:,} records, {size / 2**20:.0f} MiB ({size / n_records:.0f} B/line) "
              f"in {time.perf_counter() - start:.1f} s")
        build = _run_probe("index", records, reads, seed)
        assert build["built"], "a fresh temp dir must not hold an index"
        cold = _run_probe("index", records, reads, seed)
        assert not cold["built"], "the second load must reuse the cached index"
        naive = _run_probe("naive", records, reads, seed)
        index_mib = (Path(str(records) + ".cotrain-index.npy").stat().st_size) / 2**20
    rows = [("index: build (no cache)", build), ("index: cold load (cached)", cold), ("naive: json.loads all", naive)]
    print(f"{'route':28s}{'load s':>9s}{'process s':>11s}{'reads/s':>11s}{'RSS MiB':>9s}{'(imports)':>11s}")
    for name, r in rows:
        print(f"{name:28s}{r['load_s']:9.2f}{r['process_s']:11.2f}{r['reads_per_s']:11.0f}"
              f"{r['rss_peak_mb']:9.0f}{r['rss_imports_mb']:11.0f}")
    print(f"index file: {index_mib:.1f} MiB; random reads: {reads:,} validated records each (index reads also "
          "parse the JSON line; naive reads validate dicts parsed at load)")
    print(f"naive / index cold load: {naive['load_s'] / cold['load_s']:.0f}x time, "
          f"{naive['rss_peak_mb'] / cold['rss_peak_mb']:.1f}x peak RSS; "
          f"naive / index build: {naive['load_s'] / build['load_s']:.1f}x time, "
          f"{naive['rss_peak_mb'] / build['rss_peak_mb']:.1f}x peak RSS")
    worst_start = max(build["process_s"], cold["process_s"])
    worst_rss = max(build["rss_peak_mb"], cold["rss_peak_mb"])
    print(f"goals (<= 10 s start, <= 1 GB RSS): start {worst_start:.1f} s "
          f"{'met' if worst_start <= 10 else 'MISSED'}, RSS {worst_rss:.0f} MiB "
          f"{'met' if worst_rss <= 1024 else 'MISSED'}")
    return [r for _, r in rows]


def _make_images(root, n, side, seed):
    """n JPEGs of side x side with some structure, and classification records pointing at them."""
    import json

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        base = rng.integers(0, 255, size=(side // 16, side // 16, 3), dtype=np.uint8)
        im = Image.fromarray(base).resize((side, side), Image.BILINEAR)
        im.save(root / "img" / f"{i}.jpg", quality=90)
        lines.append(json.dumps({"id": f"r{i}", "task": "classification", "label": ["water", "forest"][i % 2],
                                 "classes": ["water", "forest"],
                                 "images": [{"path": f"img/{i}.jpg", "modality": "rgb", "width": side,
                                             "height": side}]}))
    (root / "recs.jsonl").write_text("\n".join(lines) + "\n")
    return root / "recs.jsonl"


def bench_loader(n_images: int = 64, side: int = 1024, seed: int = 0, max_tokens: int = 256) -> dict:
    """Samples/s of the cotrain sample path vs open + full decode + stock processor, one process."""
    import tempfile
    import time

    from PIL import Image

    from cotrain.config import DataConfig, DatasetConfig
    from cotrain.data.dataset import SampleBuilder, load_dataset
    from cotrain.data.encoder import ChatEncoder
    from cotrain.model.families import get_family
    from cotrain.model.processor import build_offline_processor

    family = get_family("qwen2_5_vl")
    max_pixels = max_tokens * family.factor ** 2
    with tempfile.TemporaryDirectory() as tmp:
        from pathlib import Path

        recs = _make_images(Path(tmp), n_images, side, seed)
        data_cfg = DataConfig(max_pixels=max_pixels, max_length=4096)
        ld = load_dataset(DatasetConfig(name="b", records=str(recs), image_root=tmp))
        processor = build_offline_processor("qwen2_5_vl", min_pixels=4 * 28 * 28, max_pixels=max_pixels)
        encoder = ChatEncoder(processor, family)
        builder = SampleBuilder(encoder, family, data_cfg)

        def ours():
            return [builder.build(r, ld, 0, i) for i, r in enumerate(ld.records)]

        def naive():
            out = []
            for i, r in enumerate(ld.records):
                conv = builder.conversation(r, ld, 0, i)
                with Image.open(Path(tmp) / r["images"][0]["path"]) as im:
                    img = im.convert("RGB")  # full decode at 1024 x 1024
                text = processor.apply_chat_template(
                    [{"role": m["role"], "content": [{"type": "image"} if p["type"] == "image" else p
                                                     for p in m["content"]]} for m in conv.messages],
                    tokenize=False)
                out.append(processor(text=[text], images=[img], return_tensors="pt"))
            return out

        ours()  # warm caches (file system, tokenizer)
        t0 = time.perf_counter(); a = ours(); t_ours = time.perf_counter() - t0
        t0 = time.perf_counter(); b = naive(); t_naive = time.perf_counter() - t0
        same_tokens = all(int(x["input_ids"].numel()) == int(y["input_ids"].numel()) for x, y in zip(a, b))

        def estimate():
            return [encoder.length_estimate(c, [(img["resized_wh"][1], img["resized_wh"][0]) for img in c.images])
                    for c in (builder.conversation(r, ld, 0, i) for i, r in enumerate(ld.records))]

        t0 = time.perf_counter(); est = estimate(); t_est = time.perf_counter() - t0
        exact = all(e == int(x["input_ids"].numel()) for e, x in zip(est, a))
    return {"images": n_images, "side": side, "ours_per_s": n_images / t_ours, "naive_per_s": n_images / t_naive,
            "speedup": t_naive / t_ours, "same_token_counts": same_tokens, "estimate_per_s": n_images / t_est,
            "estimate_vs_decode": t_ours / t_est, "estimate_exact": exact}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # the metavar lists the public subcommands only (add new ones there too)
    sub = p.add_subparsers(dest="command", required=True, metavar="{coldstart,loader}")
    c = sub.add_parser("coldstart", help="index build / cold load / RSS against json.loads of every line")
    c.add_argument("--records", type=int, default=1_000_000, help="records in the synthetic JSONL")
    c.add_argument("--reads", type=int, default=10_000, help="random validated reads per route")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--workdir", default=None, help="where the temp dir goes (default: the system temp dir)")
    ld = sub.add_parser("loader", help="samples/s of the sample path and token estimation vs naive decode")
    ld.add_argument("--images", type=int, default=64, help="synthetic JPEGs (default 64)")
    ld.add_argument("--side", type=int, default=1024, help="image side in pixels (default 1024)")
    ld.add_argument("--max-tokens", type=int, default=256, help="visual tokens per image after resizing")
    ld.add_argument("--seed", type=int, default=0)
    probe = sub.add_parser("_probe", help=argparse.SUPPRESS)  # internal: one measurement per process
    probe.add_argument("route", choices=("index", "naive"))
    probe.add_argument("records")
    probe.add_argument("--reads", type=int, required=True)
    probe.add_argument("--seed", type=int, required=True)
    gen = sub.add_parser("_generate", help=argparse.SUPPRESS)  # internal: the synthetic JSONL
    gen.add_argument("records")
    gen.add_argument("n", type=int)
    gen.add_argument("seed", type=int)
    args = p.parse_args(argv)
    if args.command == "coldstart":
        coldstart(args.records, args.reads, args.seed, args.workdir)
    elif args.command == "loader":
        r = bench_loader(args.images, args.side, args.seed, args.max_tokens)
        print(f"{r['images']} images of {r['side']}x{r['side']} px -> <= {args.max_tokens} visual tokens, one process:")
        print(f"  cotrain sample path (header check, JPEG draft decode, resize, encode): {r['ours_per_s']:8.1f} samples/s")
        print(f"  naive (open + full decode + stock processor)                         : {r['naive_per_s']:8.1f} samples/s")
        print(f"  speedup {r['speedup']:.2f}x; same token counts: {r['same_token_counts']}")
        print(f"  token-length estimate from headers: {r['estimate_per_s']:,.0f} samples/s = "
              f"{r['estimate_vs_decode']:.0f}x faster than building the sample; exact: {r['estimate_exact']}")
    elif args.command == "_probe":
        print(json.dumps(_probe(args.route, args.records, args.reads, args.seed)))
    elif args.command == "_generate":
        write_synthetic_records(Path(args.records), args.n, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
