"""Canonical records: the schema every converter writes and every task builder reads.

One JSON object per JSONL line; all coordinates in ORIGINAL image pixels (x right, y down).
This module owns the schema check (``validate_record``) and the JSONL readers. Every problem is a
``RecordError`` whose message names ``file:line``, the record id, the field and the fix, so a bad
converter output is found before training. It must not open images or build prompts.

Schema notes beyond shared/DESIGN.md section 4 (deliberate choices):

* Box coordinates may lie up to ``BOX_TOLERANCE_PX`` (1 px) outside the image: converters of
  datasets annotated on pixel centres or with float rounding produce such boxes, and the codec
  clips them when rendering. Anything further out is an annotation or size error.
* A box may carry ``"image": i`` (default 0) naming the image it lies on; only matters for
  multi-image records (e.g. conversation boxes on the second image).
* ``classes`` is optional for detection as for classification (the dataset's class list is the
  fallback); when present, every label must be in it.
* ``difficult`` is optional (default 0). mcq allows 2..26 choices (answers are letters A..Z).
* conversation: turns alternate user/assistant starting with user and ending with assistant;
  ``<image>`` appears only in user turns, either nowhere (images go before the first user text)
  or exactly once per image.
* quad vertex order is free: any order of a CONVEX quad is accepted, including a self-intersecting
  "bow-tie" order, because ``order_quad`` (the project's one vertex rule) turns it into the convex
  outline and every consumer (codec, metrics) uses that outline. A NON-CONVEX quad (one vertex
  strictly inside the triangle of the other three) is rejected: three different simple polygons
  share those vertices, and the metrics would silently score it as the hull triangle. Real
  annotations of the 4 corners of an object are convex; an arrowhead is a clicking error.
* triplet (contrastive training, ``cotrain.contrastive``): ``images`` is exactly ``[rgb, ir]`` of the
  same size (co-registered twins), ``captions`` the original (scene) captions and the optional
  ``ir_captions`` the IR-aware ones (thermal cues). VLM recipes do not train on triplets.
* The file must be UTF-8 (a leading byte-order mark is tolerated); other bytes are a
  ``RecordError`` naming ``file:line`` and the byte, never a decode traceback.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cotrain.errors import RecordError
from cotrain.geometry.quads import is_convex_quad, quad_area

TASKS = ("classification", "vqa", "mcq", "grounding", "detection", "captioning", "zoom_vqa", "conversation", "triplet")
CONVERSATION_TASKS = tuple(t for t in TASKS if t != "triplet")
"""Tasks a vision-language model trains on (``cotrain.tasks`` phrases each); triplets train CLIP models."""
MODALITIES = ("rgb", "ir", "sar", "ms")
ANSWER_TYPES = ("yes_no", "number", "word", "free")
CAPTION_STYLES = ("scene", "ir_aware")
DIFFICULTY = (0, 1, 2)
MAX_CHOICES = 26
BOX_TOLERANCE_PX = 1.0
"""How far (pixels) a box coordinate may lie outside the image before it is an error."""
IMAGE_PLACEHOLDER = "<image>"
BOX_REF = re.compile(r"<box>(.*?)</box>")
"""A reference ``<box>i</box>`` from a conversation turn into the record's ``boxes`` list."""

MAX_ASPECT_RATIO = 200
"""Longest/shortest side above which Qwen-VL smart resize refuses an image."""


class _Where:
    """Where a record came from, for error messages."""

    def __init__(self, path, line, record_id):
        self.path, self.line, self.record_id = path, line, record_id

    def error(self, field: str, problem: str, fix: str) -> RecordError:
        return RecordError(f"{problem}. {fix[:1].upper()}{fix[1:]}", path=None if self.path is None else str(self.path),
                           line=self.line, record_id=self.record_id, field=field)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _text(obj: dict, key: str, w: _Where, field: str | None = None) -> str:
    field = field or key
    v = obj.get(key)
    if not isinstance(v, str) or not v.strip():
        got = "missing" if key not in obj else f"{type(v).__name__} {v!r}"
        raise w.error(field, f"must be a non-empty string, got {got}", f"write '{key}' as a JSON string")
    return v


def _str_list(obj: dict, key: str, w: _Where, *, min_len: int = 1, field: str | None = None) -> list[str]:
    field = field or key
    v = obj.get(key)
    if not isinstance(v, list) or len(v) < min_len:
        raise w.error(field, f"must be a list of at least {min_len} strings, got {v!r}",
                      f"write '{key}' as a JSON list of strings")
    for i, s in enumerate(v):
        if not isinstance(s, str) or not s.strip():
            raise w.error(f"{field}[{i}]", f"must be a non-empty string, got {s!r}", "remove or fix the entry")
    return v


def _choice(obj: dict, key: str, allowed: tuple, w: _Where) -> None:
    if key in obj and obj[key] not in allowed:
        raise w.error(key, f"is {obj[key]!r}, not one of {', '.join(map(str, allowed))}",
                      f"use one of the allowed values or drop '{key}'")


def _check_images(obj: dict, w: _Where) -> list[dict]:
    images = obj.get("images")
    if not isinstance(images, list) or not images:
        raise w.error("images", f"must be a non-empty list of image entries, got {images!r}",
                      'write [{"path": ..., "modality": "rgb", "width": W, "height": H}]')
    for i, img in enumerate(images):
        f = f"images[{i}]"
        if not isinstance(img, dict):
            raise w.error(f, f"must be an object, got {img!r}", 'write {"path", "modality", "width", "height"}')
        _text(img, "path", w, f"{f}.path")
        if img.get("modality") not in MODALITIES:
            raise w.error(f"{f}.modality", f"is {img.get('modality')!r}, not one of {', '.join(MODALITIES)}",
                          "set the modality of the image")
        for side in ("width", "height"):
            v = img.get(side)
            if not _is_int(v) or v <= 0:
                raise w.error(f"{f}.{side}", f"must be a positive integer, got {v!r}",
                              "record the decoded image size in pixels")
        ratio = max(img["width"], img["height"]) / min(img["width"], img["height"])
        if ratio > MAX_ASPECT_RATIO:
            raise w.error(f, f"is {img['width']}x{img['height']}, aspect ratio {ratio:.0f} > {MAX_ASPECT_RATIO}, "
                          "which Qwen-VL resizing rejects", "crop or tile the image, or drop the record")
    return images


def _check_box(box: Any, field: str, images: list[dict], w: _Where, *, kinds=("hbb", "quad")) -> None:
    """A box dict: one of hbb/quad, finite numbers, non-degenerate, inside its image (+tolerance)."""
    allowed = " or ".join(f"'{k}'" for k in kinds)
    if not isinstance(box, dict) or sum(k in box for k in ("hbb", "quad")) != 1:
        raise w.error(field, f"must be an object with exactly one of {allowed}, got {box!r}",
                      'write {"hbb": [x1, y1, x2, y2]} or {"quad": [x1, y1, ..., x4, y4]}')
    kind = "hbb" if "hbb" in box else "quad"
    if kind not in kinds:
        raise w.error(field, f"has '{kind}', but only {allowed} is allowed here", f"convert the box to {allowed}")
    img_idx = box.get("image", 0)
    if not _is_int(img_idx) or not 0 <= img_idx < len(images):
        raise w.error(f"{field}.image", f"is {img_idx!r}, not an index into the {len(images)} image(s)",
                      "point 'image' at the image the box lies on (0-based) or drop it")
    v = box[kind]
    n = 4 if kind == "hbb" else 8
    f = f"{field}.{kind}"
    if not isinstance(v, list) or len(v) != n or not all(_is_number(x) for x in v):
        raise w.error(f, f"must be a list of {n} numbers, got {v!r}", f"write {n} pixel coordinates")
    if not all(math.isfinite(x) for x in v):
        raise w.error(f, f"has a NaN or infinite coordinate: {v!r}", "fix or drop the annotation")
    if kind == "hbb" and not (v[0] < v[2] and v[1] < v[3]):
        raise w.error(f, f"needs x1 < x2 and y1 < y2, got {v!r}",
                      "write [x1, y1, x2, y2] with the top-left corner first; drop zero-size boxes")
    if kind == "quad":
        # Area of the reordered outline, so a bow-tie vertex order is not mistaken for zero area.
        if quad_area(v) <= 0.0:
            raise w.error(f, f"has zero area (collinear or repeated vertices): {v!r}", "fix or drop the annotation")
        if not is_convex_quad(v):
            raise w.error(f, f"is not convex (one vertex lies inside the triangle of the other three): {v!r}",
                          "re-annotate the 4 corners of the object, or write the object's hbb instead")
    width, height = images[img_idx]["width"], images[img_idx]["height"]
    t = BOX_TOLERANCE_PX
    xs, ys = v[0::2], v[1::2]
    if min(xs) < -t or max(xs) > width + t or min(ys) < -t or max(ys) > height + t:
        raise w.error(f, f"lies outside image {img_idx} ({width}x{height}) by more than {t:g} px: {v!r}",
                      "check that coordinates are ORIGINAL pixels (not normalised or resized) and that "
                      "the image's width/height are right")


def _check_classification(obj, images, w):
    label = _text(obj, "label", w)
    if "classes" in obj:
        classes = _str_list(obj, "classes", w, min_len=2)
        if label not in classes:
            raise w.error("label", f"{label!r} is not in classes {classes}",
                          "add the label to 'classes' or fix its spelling")


def _check_vqa(obj, images, w):
    _text(obj, "question", w)
    _text(obj, "answer", w)
    _choice(obj, "answer_type", ANSWER_TYPES, w)


def _check_mcq(obj, images, w):
    _text(obj, "question", w)
    choices = _str_list(obj, "choices", w, min_len=2)
    if len(choices) > MAX_CHOICES:
        raise w.error("choices", f"has {len(choices)} choices, more than the {MAX_CHOICES} letters A..Z",
                      "keep at most 26 choices")
    ans = obj.get("answer")
    if not _is_int(ans) or not 0 <= ans < len(choices):
        raise w.error("answer", f"must be an integer index in [0, {len(choices)}), got {ans!r}",
                      "write the 0-based index of the correct choice")


def _check_grounding(obj, images, w):
    _text(obj, "expression", w)
    _check_box(obj.get("target"), "target", images, w)
    if "point" in obj:
        p = obj["point"]
        if not (isinstance(p, list) and len(p) == 2 and all(_is_number(x) and math.isfinite(x) for x in p)):
            raise w.error("point", f"must be [x, y] with finite numbers, got {p!r}", "fix or drop 'point'")
        t = BOX_TOLERANCE_PX
        if not (-t <= p[0] <= images[0]["width"] + t and -t <= p[1] <= images[0]["height"] + t):
            raise w.error("point", f"{p!r} lies outside the image", "use ORIGINAL pixel coordinates")


def _check_detection(obj, images, w):
    objects = obj.get("objects")
    if not isinstance(objects, list):
        raise w.error("objects", f"must be a list (possibly empty), got {objects!r}",
                      'write [{"label": ..., "quad": [...]}, ...]')
    classes = _str_list(obj, "classes", w) if "classes" in obj else None
    for i, o in enumerate(objects):
        f = f"objects[{i}]"
        if not isinstance(o, dict):
            raise w.error(f, f"must be an object, got {o!r}", 'write {"label": ..., "quad"|"hbb": [...]}')
        label = _text(o, "label", w, f"{f}.label")
        if classes is not None and label not in classes:
            raise w.error(f"{f}.label", f"{label!r} is not in classes {classes}",
                          "add the class to 'classes' or fix the label")
        _check_box({k: o[k] for k in ("hbb", "quad", "image") if k in o}, f, images, w)
        if "difficult" in o and o["difficult"] not in DIFFICULTY:
            raise w.error(f"{f}.difficult", f"is {o['difficult']!r}, not 0, 1 or 2", "use 0 (easy) .. 2")


def _check_captioning(obj, images, w):
    _str_list(obj, "captions", w)
    _choice(obj, "caption_style", CAPTION_STYLES, w)


def _check_triplet(obj, images, w):
    """An RGB image, its IR twin (same size) and their captions: what contrastive training reads."""
    mods = [img["modality"] for img in images]
    if mods != ["rgb", "ir"]:
        raise w.error("images", f"a triplet needs exactly [rgb, ir] images (the RGB image and its IR twin), got {mods}",
                      "list the RGB image first and its IR twin second, or drop the record")
    rgb, ir = images
    if (rgb["width"], rgb["height"]) != (ir["width"], ir["height"]):
        raise w.error("images[1]", f"the IR twin is {ir['width']}x{ir['height']} but the RGB image is "
                      f"{rgb['width']}x{rgb['height']}", "co-register the twins (same grid) before converting")
    _str_list(obj, "captions", w)
    if "ir_captions" in obj:
        _str_list(obj, "ir_captions", w)


def _check_zoom_vqa(obj, images, w):
    _text(obj, "question", w)
    _text(obj, "answer", w)
    regions = obj.get("regions")
    if not isinstance(regions, list) or not regions:
        raise w.error("regions", f"must be a non-empty list of evidence boxes, got {regions!r}",
                      'write [{"hbb": [x1, y1, x2, y2]}, ...]')
    for i, r in enumerate(regions):
        _check_box(r, f"regions[{i}]", images, w, kinds=("hbb",))
    if "choices" in obj:
        _str_list(obj, "choices", w, min_len=2)


def _check_conversation(obj, images, w):
    boxes = obj.get("boxes", [])
    if not isinstance(boxes, list):
        raise w.error("boxes", f"must be a list of boxes, got {boxes!r}", "write a JSON list or drop 'boxes'")
    for i, b in enumerate(boxes):
        _check_box(b, f"boxes[{i}]", images, w)
    turns = obj.get("turns")
    if not isinstance(turns, list) or not turns:
        raise w.error("turns", f"must be a non-empty list of turns, got {turns!r}",
                      'write [{"role": "user", "text": ...}, {"role": "assistant", "text": ...}]')
    placeholders = 0
    for i, t in enumerate(turns):
        f = f"turns[{i}]"
        expected = "user" if i % 2 == 0 else "assistant"
        if not isinstance(t, dict) or t.get("role") != expected:
            got = t.get("role") if isinstance(t, dict) else t
            raise w.error(f"{f}.role", f"is {got!r} but turns must alternate user/assistant starting with user",
                          f"give turn {i} the role {expected!r} (merge or split turns)")
        text = _text(t, "text", w, f"{f}.text")
        n = text.count(IMAGE_PLACEHOLDER)
        if n and expected == "assistant":
            raise w.error(f"{f}.text", "an assistant turn contains <image>", "move the image to a user turn")
        placeholders += n
        for m in BOX_REF.finditer(text):
            ref = m.group(1).strip()
            if not ref.isdigit() or int(ref) >= len(boxes):
                raise w.error(f"{f}.text", f"box reference {m.group(0)!r} does not index the {len(boxes)} "
                              "entries of 'boxes'", "write <box>i</box> with a 0-based index into 'boxes'")
    if len(turns) % 2:
        raise w.error("turns", "the last turn is a user turn", "end the conversation with an assistant turn")
    if placeholders not in (0, len(images)):
        raise w.error("turns", f"has {placeholders} <image> placeholders for {len(images)} image(s)",
                      "use one <image> per image, or none (images then precede the first user text)")


_CHECKS = {
    "classification": _check_classification, "vqa": _check_vqa, "mcq": _check_mcq,
    "grounding": _check_grounding, "detection": _check_detection, "captioning": _check_captioning,
    "zoom_vqa": _check_zoom_vqa, "conversation": _check_conversation, "triplet": _check_triplet,
}
assert set(_CHECKS) == set(TASKS)


def validate_record(obj: Any, *, path: str | Path | None = None, line: int | None = None) -> dict:
    """Check one record against the canonical schema; return it unchanged or raise RecordError."""
    w = _Where(path, line, None)
    if not isinstance(obj, dict):
        raise w.error("<record>", f"a record must be a JSON object, got {type(obj).__name__}",
                      "write one JSON object per line")
    rid = obj.get("id")
    if not isinstance(rid, str) or not rid:
        raise w.error("id", f"must be a non-empty string, got {rid!r}", "give every record a unique string id")
    w.record_id = rid
    task = obj.get("task")
    if task not in _CHECKS:
        raise w.error("task", f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}", "set 'task' to one of them")
    images = _check_images(obj, w)
    _CHECKS[task](obj, images, w)
    if "subtask" in obj and not (isinstance(obj["subtask"], str) and obj["subtask"].strip()):
        raise w.error("subtask", f"must be a non-empty string, got {obj['subtask']!r}",
                      "name the task within the benchmark (e.g. 'presence') or drop 'subtask'")
    return obj


def iter_records(path: str | Path) -> Iterator[dict]:
    """Validated records of a JSONL file, in file order; blank lines are skipped, ids must be unique."""
    seen: dict[str, int] = {}
    # Binary read and per-line decode: a stray Latin-1 byte must name its line, not end in a
    # UnicodeDecodeError from deep inside the file iterator.
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            text = _decode_line(raw, path, lineno)
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise RecordError(f"invalid JSON ({e.msg} at column {e.colno}). Write one JSON object per line",
                                  path=str(path), line=lineno) from None
            rec = validate_record(obj, path=path, line=lineno)
            if rec["id"] in seen:
                raise RecordError(f"duplicate id, first used on line {seen[rec['id']]}. Make ids unique within "
                                  "the file (e.g. prefix the source split)", path=str(path), line=lineno,
                                  record_id=rec["id"], field="id")
            seen[rec["id"]] = lineno
            yield rec


def _decode_line(raw: bytes, path, lineno: int) -> str:
    """One JSONL line as text; RecordError naming file:line and the first bad byte if not UTF-8."""
    if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]  # byte-order mark written by some Windows editors
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        bad = raw[e.start:e.end]
        raise RecordError(f"not UTF-8 at byte {e.start} of the line (bytes {bad!r}, near "
                          f"{raw[max(0, e.start - 20):e.start].decode('utf-8', 'replace')!r}). Re-encode the "
                          "file as UTF-8 (e.g. iconv -f latin1 -t utf-8) or re-run its converter",
                          path=str(path), line=lineno) from None


def read_records(path: str | Path) -> list[dict]:
    """All validated records of a JSONL file (see ``iter_records``)."""
    return list(iter_records(path))
