"""The localisation set: large, salient objects on plain backgrounds, for grounding and detection.

The land-cover scenes put objects of a few metres on textured ground, which a CPU-sized model
cannot learn to find in minutes. This set is the opposite end: each image holds one to three
objects of different kinds (ship, plane, storage tank, tennis court), each spanning 28-55% of the
shorter side, on a flat ground colour with faint low-frequency shading. Every object is therefore
named by its kind alone ("the plane"), and a model that localises at all gets high IoU.

Records (boxes in ORIGINAL pixels, axis-aligned ``hbb`` = the enclosing box of the painted object):

    records/loc_grounding_<split>.jsonl   one grounding record per object ("the <kind>")
    records/loc_det_<split>.jsonl         one detection record per image (every object)
    images/loc/<id>.png                   the RGB image (PNG: no JPEG ringing on the edges)

Determinism: image i is drawn from ``default_rng([seed, 30, i])``; splits by index (every 10th image
is val, the next one test). ``manifest.json`` is written last, so an interrupted run regenerates.
This module must not know models, prompts or box rendering.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from cotrain.data.synthetic.generate import fresh_manifest
from cotrain.data.synthetic.objects import KINDS, PlacedObject, _corners, paint_objects
from cotrain.data.synthetic.scenes import smooth_noise
from cotrain.errors import ConfigError
from cotrain.files import write_json_atomic, write_jsonl_atomic
from cotrain.geometry.quads import order_quad

LOCALIZE_VERSION = "3"
"""Bumped whenever the same parameters would produce different files."""
LOC_KINDS = ("plane", "ship", "storage-tank", "tennis-court")
"""Object kinds of the set (distinct silhouettes); also its detection class list."""
GROUNDS = {"water": (46, 84, 112), "soil": (112, 92, 70), "tarmac": (92, 94, 98)}
"""Flat ground colours, each far from every object colour."""
KIND_COLOURS = {"plane": "white", "ship": "red", "storage-tank": "yellow", "tennis-court": "green"}
"""One colour per kind: which object an expression names is visible in any single patch, so what the
set tests is WHERE the model puts the box, not fine shape recognition."""
SIZE_RANGE = (160, 320)
"""Image sides are drawn uniformly from this range (so the resize path and its box scaling are exercised)."""
SPAN = (0.28, 0.55)
"""An object's long side as a fraction of the image's shorter side."""
LOC_DATASETS = {"loc_grounding": "grounding", "loc_det": "detection"}


def _split_of(i: int) -> str:
    return {0: "val", 1: "test"}.get(i % 10, "train")


def _place(rng: np.random.Generator, kinds: list[str], w: int, h: int) -> list[PlacedObject]:
    """Rejection-sample non-overlapping objects (enclosing boxes at least 4 px apart) inside the image."""
    placed: list[PlacedObject] = []
    for kind in kinds:
        for _ in range(60):
            length = rng.uniform(*SPAN) * min(w, h)
            aspect = 1.0 if kind == "storage-tank" else rng.uniform(*KINDS[kind].aspect)
            if kind == "ship":
                aspect = rng.uniform(0.25, 0.35)  # a fatter hull than at real scale: visible at 28 px tokens
            angle = 0.0 if kind == "storage-tank" else float(rng.uniform(0.0, 360.0))
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            corners = _corners(cx, cy, length, length * aspect, angle)
            xs, ys = [p[0] for p in corners], [p[1] for p in corners]
            if min(xs) < 2 or min(ys) < 2 or max(xs) > w - 2 or max(ys) > h - 2:
                continue
            box = (min(xs), min(ys), max(xs), max(ys))
            if any(box[0] < o.hbb[2] + 4 and o.hbb[0] < box[2] + 4 and box[1] < o.hbb[3] + 4
                   and o.hbb[1] < box[3] + 4 for o in placed):
                continue
            quad = order_quad([round(float(c), 1) for p in corners for c in p])
            placed.append(PlacedObject(kind, quad, round(cx, 1), round(cy, 1), round(length, 1),
                                       round(length * aspect, 1), round(angle % 360.0, 1), KIND_COLOURS[kind]))
            break
    return placed


def render_localize_image(seed: int, i: int) -> tuple[np.ndarray, list[PlacedObject]]:
    """The RGB pixels and objects of image ``i`` (a pure function of ``seed`` and ``i``)."""
    rng = np.random.default_rng([seed, 30, i])
    w, h = (int(v) for v in rng.integers(SIZE_RANGE[0], SIZE_RANGE[1] + 1, size=2))
    ground = list(GROUNDS.values())[int(rng.integers(len(GROUNDS)))]
    n = int(rng.integers(1, 4))
    kinds = [LOC_KINDS[int(k)] for k in rng.permutation(len(LOC_KINDS))[:n]]
    objects = _place(rng, kinds, w, h)
    shade = smooth_noise(rng, h, w, cell=max(w, h) / 3.0)[..., None] * 14.0
    arr = np.clip(np.asarray(ground, np.float32) + shade, 0, 255).astype(np.uint8)
    rgb = Image.fromarray(arr)
    ir = Image.new("L", (w, h))  # painted alongside and discarded: the painters draw both bands
    paint_objects(rgb, ir, objects)
    out = np.asarray(rgb).astype(np.float32) + rng.normal(0.0, 3.0, (h, w, 3))
    return np.clip(out, 0, 255).astype(np.uint8), objects


def _records(image_id: str, path: str, w: int, h: int, objects: list[PlacedObject]) -> dict[str, list[dict]]:
    image = {"path": path, "modality": "rgb", "width": w, "height": h}
    boxes = [[round(v, 1) for v in o.hbb] for o in objects]
    grounding = [{"id": f"{image_id}-g{k}", "task": "grounding", "images": [image],
                  "expression": f"the {KINDS[o.label].phrase}", "target": {"hbb": b}}
                 for k, (o, b) in enumerate(zip(objects, boxes))]
    det = [{"id": f"{image_id}-det", "task": "detection", "images": [image], "classes": list(LOC_KINDS),
            "objects": [{"label": o.label, "hbb": b, "difficult": 0} for o, b in zip(objects, boxes)]}]
    return {"loc_grounding": grounding, "loc_det": det}


def generate_localize_data(out_dir: str | Path, *, seed: int = 0, n_images: int = 3000,
                           progress: bool = True) -> dict:
    """Write the localisation set under ``out_dir`` and return its manifest."""
    if n_images < 20:
        raise ConfigError(f"synthetic n_scenes={n_images} is too small for the localisation set's "
                          "val/test splits (every 10th image); use >= 20")
    out = Path(out_dir)
    manifest_path = out / "manifest.json"
    manifest_path.unlink(missing_ok=True)
    (out / "images" / "loc").mkdir(parents=True, exist_ok=True)
    rows: dict[tuple[str, str], list[dict]] = {}
    for i in tqdm(range(n_images), desc="localisation images", disable=not progress, unit="img"):
        arr, objects = render_localize_image(seed, i)
        image_id = f"loc{i:05d}"
        rel = f"images/loc/{image_id}.png"
        Image.fromarray(arr).save(out / rel, compress_level=1)
        for name, recs in _records(image_id, rel, arr.shape[1], arr.shape[0], objects).items():
            rows.setdefault((name, _split_of(i)), []).extend(recs)
    (out / "records").mkdir(exist_ok=True)
    datasets = []
    for name, task in LOC_DATASETS.items():
        files, counts = {}, {}
        for split in ("train", "val", "test"):
            recs = rows.get((name, split), [])
            files[split] = f"records/{name}_{split}.jsonl"
            write_jsonl_atomic(out / files[split], recs)
            counts[split] = len(recs)
        datasets.append({"name": name, "task": task, "files": files, "counts": counts})
    manifest = {"kind": "localize", "version": LOCALIZE_VERSION, "params": _params(seed, n_images),
                "datasets": datasets}
    write_json_atomic(manifest_path, manifest)
    return manifest


def _params(seed: int, n_images: int) -> dict:
    return {"seed": int(seed), "n_images": int(n_images)}


def ensure_localize_data(out_dir: str | Path, *, seed: int = 0, n_images: int = 3000, progress: bool = True) -> dict:
    """Generate the localisation set unless ``out_dir`` already holds it with these parameters."""
    manifest = fresh_manifest(Path(out_dir), LOCALIZE_VERSION, _params(seed, n_images))
    if manifest is not None and manifest.get("kind") == "localize":
        return manifest
    return generate_localize_data(out_dir, seed=seed, n_images=n_images, progress=progress)
