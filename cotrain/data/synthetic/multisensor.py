"""Synthetic co-registered Sentinel-1 / Sentinel-2 patches with per-class spectral signatures.

Each patch is 120 x 120 px on the 10 m grid (BigEarthNet's size). Its land cover is a dominant class
over a random square of 60-85% of the patch, a second class elsewhere and a third class over a random
16-40 px rectangle drawn on top (so the dominant class keeps at least 49%), drawn from ``CLASSES``:

* S2: one GeoTIFF per band on the band's native grid (10 m: 120 px; 20 m: 60; 60 m: 20), values from
  the class signature (``SIGNATURES``, reflectance x 10,000) with 3% multiplicative Gaussian noise,
  block-averaged onto the coarser grids;
* S1: one GeoTIFF with VV and VH in dB, the class backscatter (``BACKSCATTER``) under multiplicative
  speckle (linear intensity x Gamma(4 looks)).

``meadow`` and ``artificial_turf`` have the SAME visible bands (B01-B04) and the same backscatter:
they differ only in the red-edge, near-infrared and short-wave-infrared bands (turf reflects little
NIR). A model that sees only a true-colour composite cannot tell them apart; one that sees B08 can.

Records (``records/<dataset>_<split>.jsonl``, split by patch: every 10th val, the next test):
``ms_cls`` (classification of the dominant class), ``ms_vqa`` (binary, subtask ``Pr`` "Is there
water?" or ``A`` "Does <class> cover more than half of the patch?", drawn per patch), ``ms_mcq``
(which class dominates, 4 choices, subtask ``A``), ``ms_cap`` (captioning), ``ms_ref`` (referring
expression detection: "the patch of <third class>" -> the hbb of its 16-40 px rectangle) and
``ms_point`` (the same expression with ``point``, the rectangle's centre, for ``box_format: point``);
every record holds the S2 image (``modality: ms``, 12 bands with ``band_files``); ``ms_cls`` records
also hold the co-registered S1 image (``modality: sar``). ``ms_pair``:
the patches dominated by meadow or artificial turf, classified between those two (chance 0.5), S2 only.
Band statistics of the training patches: ``stats/s2.json`` (the 10 / 20 m bands) and ``stats/s1.json``.
The test patches are also written as a BigEarthNet.txt release (``BigEarthNet.txt/``,
``cotrain.data.synthetic.bigearthnet_export``) for the ``bigearthnet_txt_*`` benchmarks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cotrain.data.synthetic.bigearthnet_export import write_bigearthnet_txt_export
from cotrain.data.synthetic.generate import fresh_manifest
from cotrain.files import write_jsonl_atomic
from cotrain.sensors import S1_BANDS, S2_RESOLUTION_M

CLASSES = ("water", "forest", "meadow", "artificial_turf", "bare_soil", "urban")
_ORDER = list(S2_RESOLUTION_M)  # B01 .. B12
SIGNATURES = {  # B01, B02, B03, B04, B05, B06, B07, B08, B8A, B09, B11, B12
    "water":           (700, 600, 500, 300, 250, 200, 180, 150, 130, 50, 80, 60),
    "forest":          (350, 300, 500, 300, 900, 2200, 2800, 3000, 3100, 900, 1400, 600),
    "meadow":          (450, 400, 800, 600, 1300, 2600, 3200, 3400, 3500, 1000, 2000, 1000),
    "artificial_turf": (450, 400, 800, 600, 700, 800, 800, 700, 650, 300, 1800, 1500),
    "bare_soil":       (900, 1000, 1300, 1600, 1800, 2000, 2200, 2300, 2400, 700, 3000, 2500),
    "urban":           (1100, 1200, 1300, 1400, 1500, 1600, 1700, 1800, 1850, 800, 2200, 2000),
}
BACKSCATTER = {"water": (-22.0, -28.0), "forest": (-8.0, -14.0), "meadow": (-11.0, -18.0),
               "artificial_turf": (-11.0, -18.0), "bare_soil": (-13.0, -21.0), "urban": (-5.0, -12.0)}
"""(VV, VH) in dB per class."""
SIDE = 120
MULTISENSOR_VERSION = "5"
DATASETS = {"ms_cls": "classification", "ms_vqa": "vqa", "ms_mcq": "mcq", "ms_cap": "captioning",
            "ms_ref": "grounding", "ms_point": "grounding", "ms_pair": "classification"}
PAIR = ("meadow", "artificial_turf")
"""Identical in RGB, apart in NIR: ``ms_pair`` is the binary classification of patches dominated by one of them."""


def _cover(rng: np.random.Generator) -> dict:
    """The land cover: ``map`` (class index per pixel), ``main`` (the dominant class, a square of 60-85% of
    the patch), ``other`` (everywhere else), ``third`` (a rectangle of 16-40 px per side anywhere, drawn
    last), ``box`` (that rectangle's hbb) and ``shares`` (class -> share of the pixels)."""
    main, other, third = rng.choice(len(CLASSES), 3, replace=False)
    w = int(round(SIDE * np.sqrt(rng.uniform(0.6, 0.85))))
    x0, y0 = (int(v) for v in rng.integers(0, SIDE - w + 1, size=2))
    m = np.full((SIDE, SIDE), other)
    m[y0:y0 + w, x0:x0 + w] = main
    bw, bh = (int(v) for v in rng.integers(16, 41, size=2))
    bx, by = int(rng.integers(0, SIDE - bw + 1)), int(rng.integers(0, SIDE - bh + 1))
    m[by:by + bh, bx:bx + bw] = third
    shares = {CLASSES[k]: float((m == k).mean()) for k in (main, other, third)}
    return {"map": m, "main": CLASSES[main], "other": CLASSES[other], "third": CLASSES[third],
            "box": [bx, by, bx + bw, by + bh], "shares": shares}


def _write_tif(path: Path, arr: np.ndarray) -> None:
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    if arr.ndim == 3:  # bands as the samples of one page (what GDAL reads as bands)
        tifffile.imwrite(path, arr.astype(np.float32), photometric="minisblack", planarconfig="separate")
    else:
        tifffile.imwrite(path, arr.astype(np.float32), photometric="minisblack")


def render_patch(root: Path, pid: str, rng: np.random.Generator) -> dict:
    """Write one patch's S2 band files and S1 file; return its entries and facts."""
    cover = _cover(rng)
    m = cover.pop("map")
    sig = np.array([SIGNATURES[c] for c in CLASSES], np.float64)[m]  # (H, W, 12)
    files = {}
    for k, band in enumerate(_ORDER):
        v = sig[..., k] * (1 + rng.normal(0, 0.03, m.shape))
        f = S2_RESOLUTION_M[band] // 10
        v = v.reshape(SIDE // f, f, SIDE // f, f).mean(axis=(1, 3))
        files[band] = f"patches/{pid}/S2_{band}.tif"
        _write_tif(root / files[band], v)
    s1 = []
    for k in range(2):
        lin = 10 ** (np.array([BACKSCATTER[c][k] for c in CLASSES])[m] / 10)
        s1.append(10 * np.log10(lin * rng.gamma(4.0, 0.25, m.shape)))
    s1_path = f"patches/{pid}/S1.tif"
    _write_tif(root / s1_path, np.stack(s1))
    s2 = {"path": f"patches/{pid}/S2", "modality": "ms", "width": SIDE, "height": SIDE, "bands": list(_ORDER),
          "band_files": files}
    sar = {"path": s1_path, "modality": "sar", "width": SIDE, "height": SIDE, "bands": list(S1_BANDS),
           "sar_scale": "db"}
    return {"images": [s2, sar], **cover}


def _phrase(c: str) -> str:
    return c.replace("_", " ")


def patch_records(pid: str, p: dict, rng: np.random.Generator) -> dict[str, dict]:
    classes = [_phrase(c) for c in CLASSES]
    main, other, third = _phrase(p["main"]), _phrase(p["other"]), _phrase(p["third"])
    shares = {_phrase(c): v for c, v in p["shares"].items()}
    has_water = shares.get("water", 0.0) > 0
    wrong = [c for c in classes if c != main]
    choices = [main, *rng.choice(wrong, 3, replace=False).tolist()]
    order = rng.permutation(4)
    choices = [choices[i] for i in order]
    base = {"images": p["images"][:1]}  # the S2 image: what BigEarthNet.txt's renderings show (ms_cls adds S1)
    pair = {}
    if p["main"] in PAIR:
        pair = {"ms_pair": {"images": p["images"][:1], "id": f"{pid}-pair", "task": "classification", "label": main,
                            "classes": [_phrase(c) for c in PAIR]}}
    asked = classes[int(rng.integers(len(classes)))]
    if rng.random() < 0.5:
        vqa = {"question": "Is there water in the image?", "answer": "yes" if has_water else "no", "subtask": "Pr"}
    else:
        vqa = {"question": f"Does {asked} cover more than half of the patch?",
               "answer": "yes" if shares.get(asked, 0.0) > 0.5 else "no", "subtask": "A"}
    region = {"expression": f"the patch of {third}", "target": {"hbb": list(p["box"])}}
    x1, y1, x2, y2 = p["box"]
    return {**pair,
        "ms_cls": {"images": p["images"], "id": f"{pid}-cls", "task": "classification", "label": main, "classes": classes},
        "ms_vqa": {**base, "id": f"{pid}-vqa", "task": "vqa", **vqa, "answer_type": "yes_no"},
        "ms_mcq": {**base, "id": f"{pid}-mcq", "task": "mcq", "question": "Which land cover dominates the patch?",
                   "choices": choices, "answer": int(np.flatnonzero(order == 0)[0]), "subtask": "A"},
        "ms_cap": {**base, "id": f"{pid}-cap", "task": "captioning", "caption_style": "scene",
                   "captions": [f"A Sentinel patch mostly covered by {main} ({round(100 * shares[main])}%), with "
                                f"{other} around it and a patch of {third}."]},
        "ms_ref": {**base, "id": f"{pid}-ref", "task": "grounding", **region, "subtask": "RED"},
        "ms_point": {**base, "id": f"{pid}-point", "task": "grounding", **region,
                     "point": [(x1 + x2) / 2, (y1 + y2) / 2], "subtask": "point"},
    }


def generate_multisensor_data(out_dir: str | Path, *, n_patches: int = 400, seed: int = 0) -> dict:
    """Write the patches and the records of ``DATASETS`` under ``out_dir``; returns the manifest."""
    out = Path(out_dir)
    rows: dict[str, dict[str, list]] = {d: {"train": [], "val": [], "test": []} for d in DATASETS}
    for i in range(n_patches):
        rng = np.random.default_rng([seed, 31, i])
        pid = f"m{i:05d}"
        split = "val" if i % 10 == 0 else "test" if i % 10 == 1 else "train"
        for name, rec in patch_records(pid, render_patch(out, pid, rng), rng).items():
            rows[name][split].append(rec)
    (out / "records").mkdir(parents=True, exist_ok=True)
    datasets = []
    for name, by_split in rows.items():
        files = {split: f"records/{name}_{split}.jsonl" for split in by_split}
        for split, recs in by_split.items():
            write_jsonl_atomic(out / files[split], recs)
        datasets.append({"name": name, "task": DATASETS[name], "files": files,
                         "counts": {k: len(v) for k, v in by_split.items()}})
    write_statistics_files(out, rows["ms_cls"]["train"])
    export = write_bigearthnet_txt_export(out, [r for name in ("ms_vqa", "ms_mcq", "ms_cap", "ms_ref")
                                                for r in rows[name]["test"]])
    manifest = {"kind": "multisensor", "version": MULTISENSOR_VERSION, "params": _params(seed, n_patches),
                "classes": list(CLASSES), "datasets": datasets, "bigearthnet_txt_export": export}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


STATS_FILES = {"ms": "stats/s2.json", "sar": "stats/s1.json"}
"""Per-band statistics of the training split (every patch once), for sensor_branch datasets."""


def write_statistics_files(out: Path, train_records: list[dict]) -> None:
    from cotrain.sensors import DEFAULT_S2_BANDS, band_statistics, write_statistics

    for modality, bands in (("ms", list(DEFAULT_S2_BANDS)), ("sar", list(S1_BANDS))):
        write_statistics(band_statistics(train_records, out, modality, bands), out / STATS_FILES[modality])


def _params(seed: int, n_patches: int) -> dict:
    return {"seed": seed, "n_patches": n_patches}


def ensure_multisensor_data(out_dir: str | Path, *, n_patches: int = 400, seed: int = 0) -> dict:
    """The manifest under ``out_dir``, generating the patches first unless they exist with these parameters."""
    manifest = fresh_manifest(Path(out_dir), MULTISENSOR_VERSION, _params(seed, n_patches))
    return manifest if manifest is not None else generate_multisensor_data(out_dir, n_patches=n_patches, seed=seed)
