"""Folder-per-class scene sets (UCM, AID, NWPU-RESISC45, WHU-RS19) -> classification records.

Layout read: ``root/<class folder>/<image files>`` (one level; hidden entries ignored). Each image
becomes ``{"task": "classification", "label", "classes", "images": [...]}`` with the size read from
the header, so corrupt or unreadable files are found here and counted (``image_unreadable``),
not at training time.

Class names (``normalize_class_name``): the folder name with CamelCase split into words, ``_`` and
``-`` turned into spaces, runs of spaces collapsed, lower-cased. So AID's ``DenseResidential``,
NWPU's ``dense_residential`` and a hand-made ``Dense-Residential`` all become ``dense residential``;
UCM's run-together ``denseresidential`` stays as it is (there is no word boundary to recover). Two
folders that normalise to the same name are an error, never a silent merge. ``classes`` is the
sorted list of normalised names.

Splits: these sets ship without official splits; papers draw a fixed fraction per class. With
``ratios=(train, val, test)`` the files of each class (sorted by name) are permuted by a generator
seeded with ``(seed, "scenes", class folder)`` and cut in that order, so the split is stratified,
reproducible on any machine, independent of the other classes, and does not move when a corrupt
file is later skipped (the draw covers every candidate file). Record ids are the image paths
relative to ``root`` (``denseresidential/denseresidential00.tif``), unique by construction.

Must not decode pixels, resize or copy images.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cotrain.converters.base import (
    ConvertError,
    ConvertReport,
    RecordWriter,
    image_size,
    relative_image_path,
)
from cotrain.records import MODALITIES
from cotrain.seeding import stable_seed

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
"""File endings treated as images (case-insensitive); other files are counted in ``report.ignored``."""
SPLITS = ("train", "val", "test")

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def normalize_class_name(folder: str) -> str:
    """``DenseResidential`` / ``dense_residential`` / ``Dense-Residential`` -> ``dense residential``."""
    spaced = _CAMEL.sub(" ", folder.strip())
    return " ".join(re.sub(r"[_\-]+", " ", spaced).split()).lower()


def check_modality(modality: str) -> None:
    """Refuse an unknown modality before any file is read (else every record would be a skip)."""
    if modality not in MODALITIES:
        raise ConvertError(f"modality={modality!r} is not one of {', '.join(MODALITIES)}", reason="bad_option")


def _check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    if len(ratios) != 3 or any(not (0.0 <= r <= 1.0) for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        raise ConvertError(f"ratios={tuple(ratios)!r} must be three fractions (train, val, test) in [0, 1] "
                           "summing to 1, e.g. 0.8,0.1,0.1", reason="bad_option")
    return float(ratios[0]), float(ratios[1]), float(ratios[2])


def split_files(files: Sequence[str], ratios: Sequence[float], seed: int, class_key: str) -> dict[str, list[str]]:
    """Stratum of one class -> {"train": [...], "val": [...], "test": [...]} (file order kept inside each)."""
    r_train, r_val, _ = _check_ratios(ratios)
    names = sorted(files)
    n = len(names)
    order = np.random.default_rng(stable_seed(seed, "scenes", class_key)).permutation(n)
    # Cumulative cut points rounded half-up (not Python's half-to-even), so the parts add up to n.
    c1 = min(n, math.floor(n * r_train + 0.5))
    c2 = min(n, max(c1, math.floor(n * (r_train + r_val) + 0.5)))
    parts = {"train": order[:c1], "val": order[c1:c2], "test": order[c2:]}
    return {k: [names[i] for i in sorted(idx)] for k, idx in parts.items()}


def _class_folders(root: Path) -> dict[str, Path]:
    """Normalised class name -> folder; raises on collisions or fewer than two classes."""
    if not root.is_dir():
        raise ConvertError(f"{root}: scene folder not found. Pass the folder that holds one sub-folder per class",
                           reason="source_missing")
    folders: dict[str, Path] = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        name = normalize_class_name(d.name)
        if not name:
            continue
        if name in folders:
            raise ConvertError(f"{root}: folders {folders[name].name!r} and {d.name!r} both normalise to class "
                               f"{name!r}. Rename or merge one of them", reason="class_collision")
        folders[name] = d
    if len(folders) < 2:
        raise ConvertError(f"{root}: found {len(folders)} class folder(s); a classification set needs at least 2. "
                           "Pass the folder whose sub-folders are the classes", reason="source_missing")
    return folders


def convert_scenes(root: str | Path, out_jsonl: str | Path, *, image_root: str | Path | None = None,
                   split: str | None = None, ratios: Sequence[float] | None = None, seed: int = 0,
                   modality: str = "rgb", on_bad: str = "skip") -> ConvertReport:
    """Write classification records for every image (``split=None``) or one seeded split part.

    ``image_root`` defaults to ``root``; image paths are written relative to it. ``split`` needs
    ``ratios`` (train, val, test fractions); run once per split with the same seed for a partition.
    """
    root = Path(root)
    image_root = Path(image_root) if image_root is not None else root
    check_modality(modality)
    report = ConvertReport(source=f"scenes {root}", on_bad=on_bad)
    if split is not None:
        if split not in SPLITS:
            raise ConvertError(f"split={split!r} is not one of {', '.join(SPLITS)}", reason="bad_option")
        if ratios is None:
            raise ConvertError(f"split={split!r} needs ratios (train, val, test), e.g. 0.8,0.1,0.1; scene "
                               "folders have no official split", reason="bad_option")
    elif ratios is not None:
        _check_ratios(ratios)
    folders = _class_folders(root)
    classes = sorted(folders)
    with RecordWriter(out_jsonl, report) as writer:
        for label in classes:
            folder = folders[label]
            files = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
            if split is not None:
                files = split_files(files, ratios, seed, folder.name)[split]
            for name in files:
                path = folder / name
                where = f"{path}"
                if path.suffix.lower() not in IMAGE_EXTENSIONS:
                    report.ignored["not_an_image"] += 1  # readme, Thumbs.db, ...: not a broken image
                    continue
                try:
                    width, height = image_size(path)
                    rel = relative_image_path(path, image_root)
                except ConvertError as exc:
                    report.skip(exc.reason, str(exc))
                    continue
                record = {
                    "id": path.relative_to(root).as_posix(),
                    "task": "classification",
                    "images": [{"path": rel, "modality": modality, "width": width, "height": height}],
                    "label": label,
                    "classes": classes,
                }
                writer.write(record, where)
    return report


def convert_scene_splits(root: str | Path, out_pattern: str, *, ratios: Sequence[float], seed: int = 0,
                         image_root: str | Path | None = None, modality: str = "rgb",
                         on_bad: str = "skip") -> dict[str, ConvertReport]:
    """All three parts at once: ``out_pattern`` contains ``{split}`` (e.g. ``out/aid_{split}.jsonl``)."""
    if "{split}" not in out_pattern:
        raise ConvertError(f"output {out_pattern!r} must contain '{{split}}' to write one file per split, "
                           "e.g. aid_{split}.jsonl", reason="bad_option")
    return {s: convert_scenes(root, out_pattern.format(split=s), image_root=image_root, split=s, ratios=ratios,
                              seed=seed, modality=modality, on_bad=on_bad) for s in SPLITS}
