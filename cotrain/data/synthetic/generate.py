"""Generation of the synthetic demo data: scene plan, splits, image files, JSONL records, manifest.

This module owns the on-disk layout and the orchestration: which scenes exist (class, size,
split), rendering each one (``scenes`` + ``objects``) into image files, turning it into records
(``tasks``) and writing ``manifest.json`` last, so a run that died half-way has no manifest and
``ensure_demo_data`` regenerates. It must not contain texture, object or text logic.

Layout under ``out_dir`` (every record path is relative to ``out_dir``, the datasets' image root):

    images/rgb/<scene>.jpg    RGB scene (JPEG q92)     images/ir/<scene>.png    its IR twin (8-bit gray PNG)
    images/large/<id>_rgb.tif large RGB, tiled TIFF     images/large/<id>_ir.tif large IR twin
    records/<dataset>_<split>.jsonl                    manifest.json

Determinism: scene i is rendered from ``default_rng([seed, 10, i])`` (large image j from
``[seed, 11, j]``) and its text from ``[seed, 20, i, builder]``; the plan from ``[seed, 1, i]``
and ``[seed, 2]``. Nothing reads global random state, and worker processes only change speed:
the same parameters give byte-identical files.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from tqdm import tqdm

from cotrain.data.synthetic.objects import KINDS, LABELS, PlacedObject, paint_objects, place_objects
from cotrain.data.synthetic.scenes import (
    CLASS_NAMES, GSD_M, SCENE_CLASSES, canvas_scale, cover_fractions, harbor_layout, mixture_layout,
    patch_layout, render_surfaces, upsample)
from cotrain.data.synthetic.tasks import DATASETS, SCENE_BUILDERS, SceneInfo, zoom_records
from cotrain.errors import ConfigError

GENERATOR_VERSION = "2"  # 2: syn_triplet (RGB + IR twin + scene and IR-aware captions)
"""Bumped whenever the same parameters would produce different files; forces regeneration."""
SPLITS = ("train", "val", "test")
SMALL_SIDE_MAX = 512
"""Most scenes (classification's bulk) have sides up to this; the rest span the full size range."""
FULL_RANGE_SHARE = 0.12
"""Share of ordinary scenes whose sides are drawn (log-uniformly) from the whole ``size_range``."""
JPEG_QUALITY = 92
"""RGB scenes are JPEG (4:4:4): an eighth of a PNG's size with sensor grain, and 15x faster to write."""
NOISE = {"ordinary": (2.0, 0.0, 1.2), "large": (0.0, 0.0, 1.2)}
"""(RGB grain sigma, IR per-pixel noise sigma, IR column-offset sigma) per image kind. Per-pixel
noise is off in the lossless images (IR PNGs, large TIFFs): it would make them 2-4x bigger."""
CONVERSATION_EVERY = 4
"""Every 4th scene of a split (by index, starting with the first) also yields a conversation."""
LARGE_OBJECTS_PER_8K = {"ship": 25, "plane": 14, "storage-tank": 20, "tennis-court": 10,
                        "large-vehicle": 30, "small-vehicle": 90}
"""Objects placed on an 8192 x 8192 large image; scaled with the area for other sizes."""
TIFF_TILE = 512


@dataclass(frozen=True)
class SceneSpec:
    """Everything needed to render one scene, decided up front by ``plan_scenes``."""

    index: int
    """Position in the plan (ordinary scenes first, then large ones)."""
    scene_id: str
    """Unique scene id, also the image file stem."""
    scene_class: str
    """Class from ``scenes.SCENE_CLASSES``, or "mixture" for a large image."""
    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""
    split: str
    """train | val | test."""
    seed: int
    """Generator seed (the scene's rng is derived from it and its index)."""
    large: bool = False
    """A large zoom image written as tiled TIFF."""
    conversation: bool = False
    """Whether the scene also yields a conversation record."""


def _check_params(n_scenes, n_large, large_size, size_range, splits) -> None:
    lo, hi = size_range
    if not 64 <= lo <= hi:
        raise ConfigError(f"synthetic size_range={size_range!r} must satisfy 64 <= min <= max; "
                          "pass e.g. (256, 2048)")
    if n_scenes < 3:
        raise ConfigError(f"synthetic n_scenes={n_scenes} is too small for train/val/test splits; use >= 3")
    if n_large < 0 or (n_large and large_size < 256):
        raise ConfigError(f"synthetic n_large={n_large}, large_size={large_size}: need n_large >= 0 and "
                          "large_size >= 256 (>= 8000 for real zoom questions)")
    if len(splits) != 3 or any(f < 0 for f in splits) or not math.isclose(sum(splits), 1.0, abs_tol=1e-6):
        raise ConfigError(f"synthetic splits={splits!r} must be three non-negative fractions "
                          "(train, val, test) summing to 1, e.g. (0.8, 0.1, 0.1)")


def plan_scenes(seed: int, n_scenes: int, n_large: int, large_size: int, size_range: tuple[int, int],
                splits: tuple[float, float, float]) -> list[SceneSpec]:
    """The scenes to render: balanced classes, sizes, and splits by scene (stratified by class)."""
    lo, hi = size_range
    classes = [CLASS_NAMES[i % len(CLASS_NAMES)] for i in range(n_scenes)]
    sizes = []
    for i in range(n_scenes):
        rng = np.random.default_rng([seed, 1, i])
        if rng.random() < FULL_RANGE_SHARE:
            w, h = (int(round(math.exp(rng.uniform(math.log(lo), math.log(hi))))) for _ in range(2))
            h = min(max(h, w // 2), 2 * w)  # aspect ratio at most 2
        else:
            top = min(hi, max(lo, SMALL_SIDE_MAX))
            w = int(rng.integers(lo, top + 1))
            h = int(rng.integers(max(lo, w // 2), min(top, 2 * w) + 1))
        sizes.append((w, h))
    # Held-out scenes are taken round-robin over classes, so val and test are class-balanced.
    rng = np.random.default_rng([seed, 2])
    per_class = [rng.permutation([i for i in range(n_scenes) if classes[i] == c]).tolist() for c in CLASS_NAMES]
    order = [lst[r] for r in range(max(map(len, per_class))) for lst in per_class if r < len(lst)]
    n_test = max(1, round(n_scenes * splits[2])) if splits[2] > 0 else 0
    n_val = max(1, round(n_scenes * splits[1])) if splits[1] > 0 else 0
    split_of = {i: "test" for i in order[:n_test]}
    split_of.update({i: "val" for i in order[n_test:n_test + n_val]})
    rank = {s: 0 for s in SPLITS}
    specs = []
    for i in range(n_scenes):
        split = split_of.get(i, "train")
        specs.append(SceneSpec(i, f"s{i:05d}", classes[i], *sizes[i], split, seed,
                               conversation=rank[split] % CONVERSATION_EVERY == 0))
        rank[split] += 1
    # Large images: one per split in the order train, test, val, the rest to train.
    large_splits = [s for s in ("train", "test", "val") if s == "train" or splits[SPLITS.index(s)] > 0]
    for j in range(n_large):
        h = large_size if j % 2 == 0 else large_size * 3 // 4
        specs.append(SceneSpec(j, f"L{j:03d}", "mixture", large_size, h,
                               large_splits[j] if j < len(large_splits) else "train", seed, large=True))
    return specs


@dataclass
class RenderedScene:
    """Pixels and annotations of one scene, before anything is written."""

    rgb: np.ndarray
    """(H, W, 3) uint8 RGB image."""
    ir: np.ndarray
    """(H, W) uint8 IR twin."""
    cover_map: np.ndarray
    """Canvas cover map (indices into ``scenes.COVER_NAMES``)."""
    scale: int
    """Image pixels per canvas pixel."""
    objects: list[PlacedObject]
    """Placed objects."""


def _add_noise(arr: np.ndarray, rng: np.random.Generator, sigma: float, column_sigma: float = 0.0) -> None:
    """Add Gaussian grain (and per-column detector offsets) in place, row band by row band.

    The grain comes from a 251 x 257 tile repeated over the image: drawing 67 M fresh normals for
    an 8k image would dominate its cost, and a tile with coprime sides shows no visible period.
    """
    h, w = arr.shape[:2]
    tile = rng.normal(0.0, sigma, (251, 257)).astype(np.float32) if sigma else np.zeros((1, 1), np.float32)
    wide = tile[:, np.arange(w) % tile.shape[1]]
    if column_sigma:
        wide = wide + rng.normal(0.0, column_sigma, w).astype(np.float32)[None, :]
    wide = np.round(wide).astype(np.int16)
    for r0 in range(0, h, 512):
        r1 = min(h, r0 + 512)
        band = arr[r0:r1].astype(np.int16)
        add = wide[np.arange(r0, r1) % tile.shape[0]]
        band += add[..., None] if arr.ndim == 3 else add
        arr[r0:r1] = np.clip(band, 0, 255).astype(np.uint8)


def render_scene(spec: SceneSpec) -> RenderedScene:
    """Render one scene's RGB image, IR twin and objects (pure function of ``spec``)."""
    rng = np.random.default_rng([spec.seed, 11 if spec.large else 10, spec.index])
    scale = canvas_scale(spec.width, spec.height)
    ch, cw = -(-spec.height // scale), -(-spec.width // scale)
    options = {"runway": (bool(rng.random() < 0.5), float(rng.uniform(0.2, 0.8))),
               "parking_rows_along_x": bool(rng.random() < 0.5)}
    angle_hint = {}
    if spec.large:
        cover = mixture_layout(rng, ch, cw)
        factor = spec.width * spec.height / 8192 ** 2
        counts = {lab: max(1, round(n * factor)) for lab, n in LARGE_OBJECTS_PER_8K.items()}
    else:
        sc = SCENE_CLASSES[spec.scene_class]
        if sc.layout == "harbor":
            cover = harbor_layout(rng, ch, cw, scale)
        else:
            cover = patch_layout(rng, ch, cw, sc.dominant, sc.secondary, float(rng.uniform(0.65, 0.85)))
        if spec.scene_class != "airport":
            options["runway"] = None
        if spec.scene_class == "parking_lot":
            # Cars stand in the stalls, i.e. across the rows.
            across = 90.0 if options["parking_rows_along_x"] else 0.0
            angle_hint = {"small-vehicle": across, "large-vehicle": across}
        factor = float(np.clip(spec.width * spec.height / 512 ** 2, 0.4, 6.0))
        counts = {}
        for lab, (lo, hi) in sc.objects.items():
            n = int(rng.integers(lo, hi + 1))
            counts[lab] = max(min(lo, 1), round(n * factor))
    rgb_c, ir_c = render_surfaces(cover, scale, rng, options)
    objects = place_objects(rng, counts, cover, scale, spec.width, spec.height, angle_hint=angle_hint)
    rgb_img, ir_img = upsample(rgb_c, spec.width, spec.height), upsample(ir_c, spec.width, spec.height)
    paint_objects(rgb_img, ir_img, objects)
    rgb, ir = np.array(rgb_img), np.array(ir_img)
    rgb_sigma, ir_sigma, column_sigma = NOISE["large" if spec.large else "ordinary"]
    if rgb_sigma:
        _add_noise(rgb, rng, rgb_sigma)
    _add_noise(ir, rng, ir_sigma, column_sigma)  # sensor noise of the IR rule (scenes docstring)
    return RenderedScene(rgb, ir, cover, scale, objects)


def image_paths(spec: SceneSpec) -> tuple[str, str]:
    """(rgb, ir) paths of a scene relative to the image root (the output directory)."""
    if spec.large:
        return f"images/large/{spec.scene_id}_rgb.tif", f"images/large/{spec.scene_id}_ir.tif"
    return f"images/rgb/{spec.scene_id}.jpg", f"images/ir/{spec.scene_id}.png"


def _write_tiled_tiff(path: Path, arr: np.ndarray) -> None:
    # zlib (deflate) is built into tifffile; no imagecodecs needed. Level 1: speed over size.
    tifffile.imwrite(path, arr, tile=(TIFF_TILE, TIFF_TILE), compression="zlib",
                     compressionargs={"level": 1}, photometric="rgb" if arr.ndim == 3 else "minisblack")


def write_scene(spec: SceneSpec, root: str | Path) -> SceneInfo:
    """Render ``spec``, write its RGB and IR images under ``root`` and return what records need."""
    root = Path(root)
    scene = render_scene(spec)
    rgb_path, ir_path = image_paths(spec)
    for rel, arr in ((rgb_path, scene.rgb), (ir_path, scene.ir)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        if spec.large:
            _write_tiled_tiff(root / rel, arr)
        elif arr.ndim == 3:
            Image.fromarray(arr).save(root / rel, quality=JPEG_QUALITY, subsampling=0)
        else:
            Image.fromarray(arr).save(root / rel, compress_level=1)
    return SceneInfo(spec.scene_id, spec.index, spec.scene_class, spec.width, spec.height, rgb_path, ir_path,
                     cover_fractions(scene.cover_map), scene.objects, spec.split, spec.large, spec.conversation)


def _write_scene_star(args) -> SceneInfo:
    return write_scene(*args)


def _params(seed, n_scenes, n_large, large_size, size_range, splits) -> dict:
    return {"seed": int(seed), "n_scenes": int(n_scenes), "n_large": int(n_large), "large_size": int(large_size),
            "size_range": [int(v) for v in size_range], "splits": [float(v) for v in splits]}


def generate_demo_data(out_dir: str | Path, *, seed: int = 0, n_scenes: int = 1200, n_large: int = 2,
                       large_size: int = 8192, size_range: tuple[int, int] = (256, 2048),
                       splits: tuple[float, float, float] = (0.8, 0.1, 0.1), progress: bool = True,
                       workers: int | None = None) -> dict:
    """Write the synthetic datasets under ``out_dir`` and return the manifest.

    ``workers`` processes render scenes in parallel (default: up to 2, the CPU count allowing);
    the output does not depend on it.
    """
    _check_params(n_scenes, n_large, large_size, size_range, splits)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    manifest_path.unlink(missing_ok=True)  # no manifest until everything below is written
    specs = plan_scenes(seed, n_scenes, n_large, large_size, tuple(size_range), tuple(splits))
    # Large images first: they are the slowest jobs, so a pool does not end waiting on one.
    specs_by_cost = sorted(specs, key=lambda s: -s.width * s.height)
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    bar = tqdm(total=len(specs), desc="synthetic scenes", unit="scene", disable=not progress)
    infos: dict[str, SceneInfo] = {}
    if workers > 1:
        # spawn, not fork: the caller may hold threads (torch, tokenizers) that fork would copy mid-state.
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for info in pool.map(_write_scene_star, [(s, out) for s in specs_by_cost], chunksize=4):
                infos[info.scene_id] = info
                bar.update()
    else:
        for s in specs_by_cost:
            info = write_scene(s, out)
            infos[info.scene_id] = info
            bar.update()
    bar.close()

    records: dict[str, dict[str, list[dict]]] = {name: {s: [] for s in SPLITS} for name in DATASETS}
    for spec in specs:
        info = infos[spec.scene_id]
        if spec.large:
            rng = np.random.default_rng([seed, 20, n_scenes + spec.index, 0])
            records["syn_zoom"][spec.split] += zoom_records(info, rng)
            continue
        for b, (name, build) in enumerate(SCENE_BUILDERS.items()):
            rng = np.random.default_rng([seed, 20, spec.index, b])
            records[name][spec.split] += build(info, rng)

    (out / "records").mkdir(exist_ok=True)
    datasets = []
    for name, task in DATASETS.items():
        files, counts = {}, {}
        for split in SPLITS:
            rel = f"records/{name}_{split}.jsonl"
            with open(out / rel, "w", encoding="utf-8") as fh:
                for rec in records[name][split]:
                    fh.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
            files[split], counts[split] = rel, len(records[name][split])
        classes = list(CLASS_NAMES) if task == "classification" else (
            list(LABELS) if task in ("detection", "grounding") else None)
        datasets.append({"name": name, "task": task, "classes": classes, "image_root": ".", "files": files,
                         "counts": counts, "source": "synthetic (cotrain.data.synthetic)",
                         "licence": "generated data, no restrictions"})
    manifest = {
        "generator": "cotrain.data.synthetic", "version": GENERATOR_VERSION,
        "params": _params(seed, n_scenes, n_large, large_size, size_range, splits),
        "gsd_m": GSD_M, "image_root": ".",
        "scenes": {s: sum(1 for sp in specs if sp.split == s and not sp.large) for s in SPLITS},
        "large_images": {s: sum(1 for sp in specs if sp.split == s and sp.large) for s in SPLITS},
        "object_labels": {lab: KINDS[lab].phrase for lab in LABELS},
        "datasets": datasets,
    }
    tmp = manifest_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    tmp.replace(manifest_path)
    return manifest


def fresh_manifest(out: Path, version: str, params: dict) -> dict | None:
    """``out``'s manifest when a generator of ``version`` wrote it with ``params`` and every records file it
    lists exists; None otherwise (missing, unreadable, stale or incomplete: generate again)."""
    try:
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        fresh = (manifest.get("version") == version and manifest.get("params") == params
                 and all((out / f).is_file() for ds in manifest["datasets"] for f in ds["files"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        fresh = False
    return manifest if fresh else None


def ensure_demo_data(out_dir: str | Path, *, seed: int = 0, n_scenes: int = 1200, n_large: int = 2,
                     large_size: int = 8192, size_range: tuple[int, int] = (256, 2048),
                     splits: tuple[float, float, float] = (0.8, 0.1, 0.1), progress: bool = True,
                     workers: int | None = None) -> dict:
    """The manifest of ``out_dir``, generating the data first unless it exists with these parameters."""
    out = Path(out_dir)
    manifest = fresh_manifest(out, GENERATOR_VERSION, _params(seed, n_scenes, n_large, large_size, size_range, splits))
    if manifest is not None:
        return manifest
    return generate_demo_data(out, seed=seed, n_scenes=n_scenes, n_large=n_large, large_size=large_size,
                              size_range=size_range, splits=splits, progress=progress, workers=workers)
