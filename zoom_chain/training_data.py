"""Zoom-chain training data: records with evidence regions -> canonical multi-turn ``conversation`` records.

Workflow of :func:`build_chain_records`, per input record:

1. the question: a ``zoom_vqa`` record brings its own (question, answer, evidence regions, optional
   choices); a ``detection`` record gets one by a seeded template (:func:`detection_question`):
   "How many <label>s are there in <part>?" with the objects there as regions, or "Is there any
   <label> in <part>?" with the object(s) seen there as regions;
2. the overview: the whole image read through ``cotrain.raster`` within ``max_pixels`` and
   resized (bicubic, as the inference backends do) to EXACTLY ``resized_size(W, H, limits)``, then
   written as a PNG once per source image. The data engine's own ``smart_resize`` is then the
   identity on it, so the model is trained on the overview it sees at inference;
3. the zooms: ``protocol.group_regions`` splits the regions into at most ``max_steps`` groups and
   ``protocol.zoom_window`` gives each group's window in ORIGINAL pixels; each window is read at
   native resolution from the original file (never cut from the overview) and written as a PNG;
4. the turns, every text from ``zoom_chain.protocol``: user ``<image>`` + first_text(question),
   then per zoom an assistant tool call whose bbox is ``<box>k</box>`` (``boxes[k]`` is the window
   in overview-file pixels on image 0, so the training codec writes it in the model's convention
   for the overview, as the controller's parser expects) and a user turn ``<image>`` + crop_text,
   and finally the assistant's answer.

Output records are ``task: conversation`` with ids ``<input id>-chain``; image paths are relative
to ``out_dir`` (the recipe's ``image_root``). Missing, corrupt or unusable inputs are counted
skips, never exceptions. The dataset that trains on them must use ``box_format: hbb``, no
``random_resize`` and the same pixel limits as the builder (``data_recipes/zoom_demo.yaml``).

This module must not run models, tokenize, or decide the chain's texts (``protocol`` does).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from cotrain.errors import ConfigError
from cotrain.files import atomic_path
from cotrain.geometry.quads import NINTHS, box_to_quad, ninth_box, quad_to_hbb
from cotrain.resolution import PixelLimits, resized_size
from cotrain.model.families import FamilySpec, get_family
from cotrain.records import validate_record
from cotrain.resolution import ImageSizeError
from cotrain.tasks.templates import ninth_phrase
from zoom_chain import protocol as P

IMAGE_DIR = "images/zoom_chain"
"""Where overview and crop PNGs go, under ``out_dir``."""

MAX_COUNT = 9
"""Counting questions are asked only up to this many objects (as in the synthetic zoom split)."""

SKIP_REASONS = ("unsupported_task", "no_question", "image_missing", "image_corrupt", "image_size",
                "size_mismatch")
"""Every reason a record may be skipped for (the keys of the returned Counter)."""


# ---- questions ------------------------------------------------------------------------------

def label_phrase(label: str) -> str:
    """A class label as words: "storage-tank" -> "storage tank"."""
    return re.sub(r"[-_]+", " ", label).strip()


def plural(phrase: str) -> str:
    """English plural of a label phrase (regular rules; enough for object class names)."""
    if re.search(r"(s|x|z|ch|sh)$", phrase):
        return phrase + "es"
    if re.search(r"[^aeiou]y$", phrase):
        return phrase[:-1] + "ies"
    return phrase + "s"


def _inside(b: list[float], cell: list[float]) -> bool:
    return b[0] >= cell[0] and b[1] >= cell[1] and b[2] <= cell[2] and b[3] <= cell[3]


def _touches(b: list[float], cell: list[float]) -> bool:
    return b[0] < cell[2] and b[2] > cell[0] and b[1] < cell[3] and b[3] > cell[1]


def detection_question(record: dict, rng: np.random.Generator) -> dict | None:
    """A question about specific objects of a detection record, or None when none can be asked.

    Candidates per ninth of the image, for labels none of whose objects straddle the ninth's
    border (so the answer does not depend on where the line is drawn): counting (1..9 objects,
    regions = those objects), presence "yes" (regions = those objects) and presence "no" for a
    label absent from the ninth (regions = the objects that are there instead). The kind
    (counting or presence) and then the candidate are drawn from ``rng``; "yes" and "no" are
    equally likely when both exist.
    """
    img = record["images"][0]
    w, h = img["width"], img["height"]
    objects = [(o["label"], quad_to_hbb(box_to_quad(o))) for o in record.get("objects", []) if o.get("image", 0) == 0]
    labels = sorted({lab for lab, _ in objects} | set(record.get("classes") or []))
    count, yes, no = [], [], []
    for name in [n for row in NINTHS for n in row]:
        cell = ninth_box(name, w, h)
        where = ninth_phrase(name)
        touching = [(lab, b) for lab, b in objects if _touches(b, cell)]
        inside = [b for _, b in touching if _inside(b, cell)]
        for label in labels:
            mine = [b for lab, b in touching if lab == label]
            words = label_phrase(label)
            if not mine:
                if inside:
                    no.append({"question": f"Is there any {words} in {where}?", "answer": "no",
                               "regions": inside, "kind": "presence"})
                continue
            if not all(_inside(b, cell) for b in mine):
                continue
            if len(mine) <= MAX_COUNT:
                count.append({"question": f"How many {plural(words)} are there in {where}?",
                              "answer": str(len(mine)), "regions": mine, "kind": "count"})
            yes.append({"question": f"Is there any {words} in {where}?", "answer": "yes", "regions": mine,
                        "kind": "presence"})
    kinds = [k for k, c in (("count", count), ("presence", yes + no)) if c]
    if not kinds:
        return None
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "count":
        pool = count
    else:
        pool = [p for p in (yes, no) if p][int(rng.integers(2))] if yes and no else (yes or no)
    q = pool[int(rng.integers(len(pool)))]
    return {**q, "regions": [{"hbb": [float(v) for v in b]} for b in q["regions"]]}


question_text = P.question_text  # kept as a name of this module: the protocol owns the wording


# ---- files ----------------------------------------------------------------------------------

def _image_key(rel_path: str) -> str:
    """A file-system-safe folder name for one source image, unique per relative path."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(rel_path).with_suffix("").as_posix()).strip("._") or "image"
    return f"{stem[-60:]}-{hashlib.sha1(rel_path.encode()).hexdigest()[:8]}"


def _save_png(im: Image.Image, path: Path) -> None:
    """Write atomically: a half-written PNG from an interrupted run must never look valid."""
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")


def overview_image(im, limits: PixelLimits) -> Image.Image:
    """The overview the model sees: the reader's overview within ``max_pixels``, resized to exactly
    ``resized_size`` with the inference backends' filter (bicubic)."""
    w, h = im.info.width, im.info.height
    rh, rw = resized_size(w, h, limits)
    ov, _ = im.overview(limits.max_pixels)
    ov = ov.convert("RGB")
    if ov.size != (rw, rh):
        ov = ov.resize((rw, rh), Image.Resampling.BICUBIC)
    return ov


# ---- chains ---------------------------------------------------------------------------------

def _source_question(record: dict, index: int, seed: int) -> tuple[dict | None, str | None]:
    """(question dict, None) or (None, skip reason)."""
    task = record.get("task")
    if task == "zoom_vqa":
        if not record.get("regions"):
            return None, "no_question"
        return {"question": record["question"], "answer": record["answer"], "regions": record["regions"],
                "choices": record.get("choices"), "kind": "zoom_vqa"}, None
    if task == "detection":
        q = detection_question(record, np.random.default_rng([int(seed), 31, int(index)]))
        return (q, None) if q is not None else (None, "no_question")
    return None, "unsupported_task"


class _Files:
    """Writes each overview and crop once per run and remembers where it went."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.done: dict[str, tuple[int, int]] = {}

    def write(self, rel: str, make) -> tuple[int, int]:
        if rel not in self.done:
            img = make()
            _save_png(img, self.out_dir / rel)
            self.done[rel] = img.size
        return self.done[rel]


def _chain(record: dict, q: dict, im, rel_src: str, files: _Files, limits: PixelLimits, max_steps: int) -> dict:
    w, h = im.info.width, im.info.height
    rh, rw = resized_size(w, h, limits)
    key = _image_key(rel_src)
    ov_rel = f"{IMAGE_DIR}/{key}/overview_{rw}x{rh}.png"
    files.write(ov_rel, lambda: overview_image(im, limits))
    modality = record["images"][0].get("modality", "rgb")
    images = [{"path": ov_rel, "modality": modality, "width": rw, "height": rh}]
    sx, sy = rw / w, rh / h
    regions = [list(map(float, r["hbb"])) for r in q["regions"]]
    # the same windows the oracle evaluation shows (one function: training and evaluation cannot diverge)
    zooms = P.evidence_windows(regions, (w, h), factor=limits.factor, max_pixels=limits.max_pixels,
                               max_steps=max_steps)
    boxes, windows, natives = [], [], []
    turns = [{"role": "user", "text": "<image>" + P.first_text(P.question_text(q["question"], q.get("choices")))}]
    for k, (x0, y0, x1, y1) in enumerate(zooms):
        crop_rel = f"{IMAGE_DIR}/{key}/crop_{x0}_{y0}_{x1}_{y1}.png"

        def read(x0=x0, y0=y0, x1=x1, y1=y1):
            crop = im.read_window(x0, y0, x1, y1).convert("RGB")
            if crop.size != (x1 - x0, y1 - y0):
                raise ValueError(f"the reader returned {crop.size} for window {[x0, y0, x1, y1]}")
            return crop

        cw, ch = files.write(crop_rel, read)
        native = tuple(resized_size(cw, ch, limits)) == (ch, cw)
        images.append({"path": crop_rel, "modality": modality, "width": cw, "height": ch})
        # the window in overview-file pixels: the codec renders it for image 0 (whose original size
        # is the overview's), which is the model's convention for the overview at inference
        boxes.append({"hbb": [round(x0 * sx, 4), round(y0 * sy, 4), round(x1 * sx, 4), round(y1 * sy, 4)],
                      "image": 0})
        turns.append({"role": "assistant", "text": P.tool_call_text(f"<box>{k}</box>")})
        turns.append({"role": "user", "text": "<image>" + P.crop_text([x0, y0, x1, y1], native)})
        windows.append([x0, y0, x1, y1])
        natives.append(native)
    turns.append({"role": "assistant", "text": str(q["answer"])})
    out = {"id": f"{record['id']}-chain", "task": "conversation", "images": images, "boxes": boxes, "turns": turns,
           "zoom_chain": {"source_id": record["id"], "source_task": record["task"], "image": rel_src,
                          "image_size": [w, h], "question": q["question"], "answer": str(q["answer"]),
                          "kind": q["kind"], "windows": windows, "native": natives,
                          "regions": [{"hbb": r} for r in regions]}}
    if q.get("choices"):
        out["zoom_chain"]["choices"] = list(q["choices"])
    return out


def build_chain_records(records: Iterable[dict], image_root: str | Path, out_dir: str | Path, *,
                        family: FamilySpec | str, min_pixels: int, max_pixels: int, max_steps: int = 3,
                        seed: int = 0, source: str = "",
                        progress: bool = False) -> tuple[list[dict], Counter]:
    """Turn records with evidence regions into zoom-chain ``conversation`` records (see the module doc).

    ``records``: validated canonical records (``zoom_vqa``, ``detection``; others are skipped);
    ``image_root``: what their image paths are relative to; ``out_dir``: where the overview and crop
    PNGs are written (the output records' image root). ``family`` and the pixel limits must be those
    of the training run. ``seed`` picks the detection questions (with the record's index).
    ``source`` is stored in each output record as ``source`` when given.
    Returns (output records in input order, skip reason -> count).
    """
    fam = get_family(family) if isinstance(family, str) else family
    if max_steps < 1:
        raise ConfigError(f"max_steps={max_steps}: a zoom chain needs at least one zoom; use >= 1 (default 3)")
    from cotrain.raster import RasterInputError, open_uhr

    limits = PixelLimits(int(min_pixels), int(max_pixels), fam.factor)
    root, out_root = Path(image_root), Path(out_dir)
    files = _Files(out_root)
    out: list[dict] = []
    skips: Counter = Counter()
    records = list(records)
    it = records
    if progress:
        from tqdm import tqdm

        it = tqdm(records, desc="zoom chains", unit="record")
    for index, record in enumerate(it):
        q, why = _source_question(record, index, seed)
        if q is None:
            skips[why] += 1
            continue
        img = record["images"][0]
        path = root / img["path"]
        if not path.is_file():
            skips["image_missing"] += 1
            continue
        try:
            with open_uhr(path) as im:
                if (im.info.width, im.info.height) != (img["width"], img["height"]):
                    skips["size_mismatch"] += 1
                    continue
                rec = _chain(record, q, im, img["path"], files, limits, max_steps)
        except ImageSizeError:
            skips["image_size"] += 1
            continue
        except (RasterInputError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            # RasterInputError covers what the reader recognises; the rest are decoder failures on
            # truncated or damaged files that surface only when the tiles are read
            skips["image_corrupt"] += 1
            continue
        if source:
            rec["source"] = source
        out.append(validate_record(rec))
    return out, skips


__all__ = ["IMAGE_DIR", "SKIP_REASONS", "build_chain_records", "detection_question", "label_phrase",
           "overview_image", "plural", "question_text"]
