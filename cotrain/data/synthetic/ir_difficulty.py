"""Synthetic IR records with known difficulty knobs: the honest check of the curriculum's scores.

From the demo's ``syn_triplet`` records (``generate_demo_data``), each record gets two independent
knobs drawn from (seed, record index):

* ``image`` in [0, 1]: how far the IR image is from the visible domain. The image is its visible
  twin moved toward its IR rendering and an IR sensor's look, all by k, in this order: the RGB twin
  blended with the IR twin (weight k on IR), colour pulled toward grey by k, contrast pulled toward
  the mean by a factor (1 - 0.8 k), Gaussian blur of radius 2.5 k px, Gaussian noise of sigma 40 k
  grey levels (clipped to 0..255). k = 0 is the visible twin itself; k = 1 a blurred, noisy,
  low-contrast grey IR image. Lesson 1 (IR-visible transfer) should rank this knob. (Version 1
  degraded the IR twin alone: every image then stayed equally far from the colour visible set, the
  knob moved features across the IR -> visible axis rather than along it, and no encoder ranked it.)
* ``caption`` in [0, 1]: every word of its captions and IR-aware captions is replaced, with
  probability c, by a word drawn from the other records' captions. Lesson 2 (IR-text alignment)
  should rank this knob.

Layout under ``out_dir``: ``images/ir/<id>.png`` (degraded IR), the RGB twins referenced where the
demo data has them (``rgb_root``, recorded in the manifest), ``records/syn_ir_difficulty.jsonl``
(triplet records whose image paths are relative to ``out_dir``), ``records/syn_ir_difficulty_caption.jsonl``
(the same records as IR captioning records for a VLM: the degraded IR image, the corrupted IR-aware
captions, the triplet's id, so one score file serves both) and ``knobs.jsonl`` (``{"id", "image", "caption"}``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from cotrain.data.synthetic.generate import fresh_manifest
from cotrain.files import write_jsonl_atomic
from cotrain.records import read_records

IR_DIFFICULTY_VERSION = "3"
RECORDS = "records/syn_ir_difficulty.jsonl"
CAPTION_RECORDS = "records/syn_ir_difficulty_caption.jsonl"


def _params(demo_root: Path, split: str, n: int | None, seed: int) -> dict:
    """What the set depends on, the source scenes' own generator parameters included."""
    source = json.loads((demo_root / "manifest.json").read_text(encoding="utf-8")).get("params")
    return {"source": str(demo_root), "source_params": source, "split": split, "n": n, "seed": seed}


def degrade(rgb: Image.Image, ir: Image.Image, k: float, rng: np.random.Generator) -> Image.Image:
    """The IR image at knob ``k`` from its visible and IR twins (see the module docstring)."""
    a = np.asarray(Image.blend(rgb.convert("RGB"), ir.convert("RGB"), k), dtype=np.float64)
    a = a + (a.mean(axis=2, keepdims=True) - a) * k
    a = a.mean() + (a - a.mean()) * (1 - 0.8 * k)
    im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    if k > 0:
        im = im.filter(ImageFilter.GaussianBlur(2.5 * k))
    a = np.asarray(im, dtype=np.float64) + rng.normal(0.0, 40.0 * k, size=a.shape[:2])[..., None]
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def corrupt(text: str, c: float, vocab: list[str], rng: np.random.Generator) -> str:
    words = text.split()
    return " ".join(vocab[int(rng.integers(len(vocab)))] if rng.random() < c else w for w in words)


def make_ir_difficulty_set(demo_root: str | Path, out_dir: str | Path, *, split: str = "train", n: int | None = None,
                           seed: int = 0) -> Path:
    """Write the set (see the module docstring) from ``demo_root``'s syn_triplet split; returns its records file."""
    root, out = Path(demo_root), Path(out_dir)
    src = read_records(root / "records" / f"syn_triplet_{split}.jsonl")[:n]
    vocab = sorted({w for r in src for c in r["captions"] + r.get("ir_captions", []) for w in c.split()})
    (out / "images" / "ir").mkdir(parents=True, exist_ok=True)
    rgb_link = out / "images" / "rgb"
    if not rgb_link.exists():  # the RGB twins are not changed: link the demo's folder
        try:
            os.symlink((root / "images" / "rgb").resolve(), rgb_link, target_is_directory=True)
        except OSError:
            shutil.copytree(root / "images" / "rgb", rgb_link)
    records, knobs = [], []
    for i, rec in enumerate(src):
        rng = np.random.default_rng([seed, 17, i])
        k_img, k_cap = float(rng.random()), float(rng.random())
        rgb, ir = rec["images"]
        with Image.open(root / rgb["path"]) as vis, Image.open(root / ir["path"]) as im:
            bad = degrade(vis, im, k_img, rng)
        rel = f"images/ir/{rec['id']}.png"
        bad.save(out / rel)
        rgb = {**rgb, "path": f"images/rgb/{Path(rgb['path']).name}"}
        records.append({**rec, "images": [rgb, {**ir, "path": rel}],
                        "captions": [corrupt(c, k_cap, vocab, rng) for c in rec["captions"]],
                        "ir_captions": [corrupt(c, k_cap, vocab, rng) for c in rec["ir_captions"]]})
        knobs.append({"id": rec["id"], "image": k_img, "caption": k_cap})
    (out / "records").mkdir(exist_ok=True)
    path = out / RECORDS
    write_jsonl_atomic(path, records)
    write_jsonl_atomic(out / CAPTION_RECORDS, [{"id": r["id"], "task": "captioning", "images": [r["images"][1]],
                                               "captions": r["ir_captions"], "caption_style": "ir_aware"}
                                              for r in records])
    write_jsonl_atomic(out / "knobs.jsonl", knobs)
    manifest = {"kind": "ir_difficulty", "version": IR_DIFFICULTY_VERSION, "params": _params(root, split, n, seed),
                "datasets": [{"name": "syn_ir_difficulty", "task": "triplet", "files": {split: RECORDS},
                              "counts": {split: len(records)}},
                             {"name": "syn_ir_difficulty_caption", "task": "captioning",
                              "files": {split: CAPTION_RECORDS}, "counts": {split: len(records)}}]}
    (out / "manifest.json").write_text(json.dumps(manifest) + "\n")
    return path


def ensure_ir_difficulty_data(out_dir: str | Path, *, seed: int = 0, n_scenes: int = 1200) -> Path:
    """The records file under ``out_dir``, generating the demo scenes (``out_dir/demo``) and the set if missing
    or made from other scenes or parameters (``generate.fresh_manifest``)."""
    from cotrain.data.synthetic import ensure_demo_data

    out = Path(out_dir)
    demo = out / "demo"
    ensure_demo_data(demo, seed=seed, n_scenes=n_scenes, n_large=0)
    if fresh_manifest(out, IR_DIFFICULTY_VERSION, _params(demo, "train", None, seed)) is None:
        make_ir_difficulty_set(demo, out, seed=seed)
    return out / RECORDS
