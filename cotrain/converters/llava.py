"""LLaVA / ShareGPT conversation JSON (GeoChat, VHM style) -> conversation records.

Format read (a ``.json`` list or a ``.jsonl`` file, one entry per line)::

    {"id": "P0003_0002", "image": "P0003_0002.png",          # or "images": [...]; a list = several
     "conversations": [{"from": "human", "value": "<image>\\n[refer] where is the plane?"},
                       {"from": "gpt",   "value": "{<12><40><30><52>|<-20>}"}]}

Roles ``human``/``user`` -> ``user``, ``gpt``/``assistant`` -> ``assistant`` (``messages`` with
``role``/``content`` is read too); a leading ``system`` turn is dropped (counted in
``report.fixed['system_turn_dropped']``). Turns must alternate user/assistant, start with the user
and end with the assistant; ``<image>`` may appear only in user turns, either nowhere or once per
image. Anything else, an entry without an image, or an empty turn is a counted skip. Repeated
source ids (one image, several conversations) get ``#2``, ``#3``, ... appended (counted).

Boxes written in text become structured boxes in ORIGINAL pixels plus ``<box>i</box>`` references
(rendered later in the trained model's convention), when ``box_convention`` names how the source
wrote them; boxes lie on the first image. Supported conventions:

* ``geochat``: ``{<x1><y1><x2><y2>|<theta>}`` (the ``|<theta>`` part optional), integers normalised
  to 0..100 of the image side (GeoChat's ``bounding_box_size = 100``); ``theta`` in degrees rotates
  the box about its centre the way GeoChat's demo draws it (``cv2.getRotationMatrix2D``: positive
  = counter-clockwise on screen). ``theta == 0`` gives an hbb, otherwise a quad whose vertices are
  clamped into the image (counted ``rotated_box_clamped``). ``<p>phrase</p>`` and task tags such as
  ``[refer]`` stay in the text.
* ``qwen2vl``: ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``, integers normalised to 0..1000 (Qwen2-VL).
  The whole token span is replaced; ``<|object_ref_start|>``/``<|object_ref_end|>`` around the
  phrase are removed (the phrase stays), since the codec renders a plain box after it.
* ``unit``: ``[x1, y1, x2, y2]`` with numbers in 0..1 written with a decimal point (VHM / Shikra
  style, e.g. ``[0.12, 0.40, 0.30, 0.52]``); brackets of integers are never taken as boxes.
* ``none`` (default): text unchanged, no boxes.

A box the convention recognises but whose values are impossible (outside the frame,
``x2 <= x1`` or ``y2 <= y1``) makes the conversation a counted skip (``bad_box``), because leaving
source-convention numbers in the text would teach the model a second convention.
Must not decode pixels or rewrite wording.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cotrain.converters.base import (
    ConvertError,
    ConvertReport,
    RecordWriter,
    image_size,
    read_utf8,
)
from cotrain.converters.scenes import check_modality
from cotrain.records import IMAGE_PLACEHOLDER

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
"""Source role names -> canonical roles ("system" is handled separately)."""

_NUM = r"(-?\d+(?:\.\d+)?)"
_UNIT = r"(\d*\.\d+|[01])"


@dataclass(frozen=True)
class BoxConvention:
    """How one source family writes a box in text."""

    pattern: re.Pattern
    """Matches one box; groups 1-4 are x1, y1, x2, y2 and an optional group 5 is an angle."""
    full_scale: float
    """The coordinate value that means the full image side (100, 1000, 1.0)."""
    cleanup: Callable[[str], str] | None = None
    """Applied to a turn after the boxes are replaced (e.g. strip Qwen's object-ref tokens)."""


def _strip_object_ref(text: str) -> str:
    return text.replace("<|object_ref_start|>", "").replace("<|object_ref_end|>", "")


BOX_CONVENTIONS: dict[str, BoxConvention | None] = {
    "none": None,
    "geochat": BoxConvention(
        re.compile(r"\{\s*<" + r">\s*<".join([_NUM] * 4) + r">\s*(?:\|\s*<" + _NUM + r">\s*)?\}"), 100.0),
    "qwen2vl": BoxConvention(
        re.compile(r"<\|box_start\|>\s*\(\s*" + _NUM + r"\s*,\s*" + _NUM + r"\s*\)\s*,\s*\(\s*" + _NUM + r"\s*,\s*"
                   + _NUM + r"\s*\)\s*<\|box_end\|>"), 1000.0, _strip_object_ref),
    "unit": BoxConvention(
        re.compile(r"\[\s*" + r"\s*,\s*".join([_UNIT] * 4) + r"\s*\](?=[^\d]|$)"), 1.0),
}
"""Supported ``box_convention`` values (see the module docstring)."""


class _BadBox(Exception):
    pass


def rotate_box(x1: float, y1: float, x2: float, y2: float, theta: float) -> list[float]:
    """Corners of the hbb rotated by ``theta`` degrees about its centre, counter-clockwise on screen.

    Same sense as OpenCV's ``getRotationMatrix2D`` (which GeoChat's demo uses to draw its boxes):
    ``x' = cx + cos*dx + sin*dy``, ``y' = cy - sin*dx + cos*dy`` with y pointing down.
    """
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    c, s = math.cos(math.radians(theta)), math.sin(math.radians(theta))
    out = []
    for x, y in ((x1, y1), (x2, y1), (x2, y2), (x1, y2)):
        dx, dy = x - cx, y - cy
        out += [cx + c * dx + s * dy, cy - s * dx + c * dy]
    return out


def _box_from_match(m: re.Match, conv: BoxConvention, width: int, height: int, report: ConvertReport) -> dict:
    v = [float(m.group(i)) for i in range(1, 5)]
    if any(not 0 <= x <= conv.full_scale for x in v) or v[2] <= v[0] or v[3] <= v[1]:
        raise _BadBox(f"box {m.group(0)!r} is not x1 < x2, y1 < y2 within 0..{conv.full_scale:g}")
    x1, x2 = (v[0] / conv.full_scale * width, v[2] / conv.full_scale * width)
    y1, y2 = (v[1] / conv.full_scale * height, v[3] / conv.full_scale * height)
    theta = float(m.group(5)) if m.re.groups >= 5 and m.group(5) is not None else 0.0
    if theta == 0.0:
        return {"hbb": [round(x1, 2), round(y1, 2), round(x2, 2), round(y2, 2)]}
    quad = rotate_box(x1, y1, x2, y2, theta)
    clamped = [min(max(q, 0.0), float(width if i % 2 == 0 else height)) for i, q in enumerate(quad)]
    if any(abs(a - b) > 1e-9 for a, b in zip(clamped, quad)):
        report.fixed["rotated_box_clamped"] += 1
    return {"quad": [round(q, 2) for q in clamped]}


def extract_boxes(text: str, convention: str, width: int, height: int, boxes: list[dict],
                  report: ConvertReport) -> str:
    """``text`` with each box of ``convention`` replaced by ``<box>i</box>``; the boxes are appended to ``boxes``."""
    conv = BOX_CONVENTIONS[convention]
    if conv is None:
        return text

    def one(m: re.Match) -> str:
        boxes.append(_box_from_match(m, conv, width, height, report))
        return f"<box>{len(boxes) - 1}</box>"

    out = conv.pattern.sub(one, text)
    return conv.cleanup(out) if conv.cleanup else out


def _entries(path: Path, report: ConvertReport) -> Iterator[tuple[str, object]]:
    if path.suffix.lower() == ".jsonl":
        for lineno, line in enumerate(read_utf8(path).splitlines(), start=1):
            if line.strip():
                try:
                    yield f"{path}:{lineno}", json.loads(line)
                except json.JSONDecodeError as exc:
                    report.skip("invalid_json", f"{path}:{lineno}: invalid JSON ({exc.msg}). Write one object per line")
        return
    try:
        data = json.loads(read_utf8(path))
    except json.JSONDecodeError as exc:
        raise ConvertError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}). Fix the file",
                           reason="invalid_json") from None
    if not isinstance(data, list):
        raise ConvertError(f"{path}: expected a JSON list of conversations, got {type(data).__name__}. Pass the "
                           "LLaVA/ShareGPT list file (or .jsonl)", reason="bad_format")
    for i, entry in enumerate(data):
        yield f"{path}: entry {i}", entry


def _turns(entry: dict, report: ConvertReport) -> list[dict]:
    """Canonical turns, or ValueError naming the problem."""
    raw = entry.get("conversations", entry.get("messages"))
    if not isinstance(raw, list) or not raw:
        raise ValueError("needs a non-empty 'conversations' list")
    turns = []
    for k, t in enumerate(raw):
        if not isinstance(t, dict):
            raise ValueError(f"turn {k} is not an object")
        role = t.get("from", t.get("role"))
        text = t.get("value", t.get("content"))
        if role == "system" and k == 0:
            report.fixed["system_turn_dropped"] += 1
            continue
        if role not in ROLES:
            raise ValueError(f"turn {k} has role {role!r}; expected one of {', '.join(ROLES)}")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"turn {k} has no text")
        turns.append({"role": ROLES[role], "text": text})
    for k, t in enumerate(turns):
        if t["role"] != ("user" if k % 2 == 0 else "assistant"):
            raise ValueError(f"turn {k} is {t['role']!r}; turns must alternate user/assistant starting with user")
    if len(turns) % 2:
        raise ValueError("the last turn is a user turn; a conversation must end with the assistant")
    return turns


def convert_llava(json_path: str | Path, out_jsonl: str | Path, *, image_root: str | Path,
                  split: str | None = None, box_convention: str = "none", modality: str = "rgb",
                  on_bad: str = "skip") -> ConvertReport:
    """Write one conversation record per entry of a LLaVA/ShareGPT file (``split``: keep entries with that 'split')."""
    if box_convention not in BOX_CONVENTIONS:
        raise ConvertError(f"box_convention={box_convention!r} is not one of {', '.join(BOX_CONVENTIONS)}",
                           reason="bad_option")
    check_modality(modality)
    json_path, image_root = Path(json_path), Path(image_root)
    report = ConvertReport(source=f"llava {json_path} (boxes: {box_convention})", on_bad=on_bad)
    if not json_path.is_file():
        raise ConvertError(f"{json_path}: conversation file not found", reason="source_missing")
    seen: dict[str, int] = {}
    with RecordWriter(out_jsonl, report) as writer:
        for index, (where, entry) in enumerate(_entries(json_path, report)):
            if not isinstance(entry, dict):
                report.skip("bad_entry", f"{where}: expected an object, got {entry!r:.80}. Fix the entry")
                continue
            if split is not None and entry.get("split") != split:
                continue
            rid = str(entry["id"]) if entry.get("id") not in (None, "") else str(index)
            where = f"{where} (id {rid})"
            paths = entry.get("image", entry.get("images"))
            paths = [paths] if isinstance(paths, str) else paths
            if not paths or not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
                report.skip("no_image", f"{where}: no image path ('image' or 'images'). Text-only conversations "
                            "are not converted")
                continue
            try:
                turns = _turns(entry, report)
            except ValueError as exc:
                report.skip("bad_turns", f"{where}: {exc}. Fix or drop the conversation")
                continue
            n_placeholders = sum(t["text"].count(IMAGE_PLACEHOLDER) for t in turns)
            in_assistant = any(IMAGE_PLACEHOLDER in t["text"] for t in turns if t["role"] == "assistant")
            if in_assistant or n_placeholders not in (0, len(paths)):
                report.skip("image_placeholders", f"{where}: {n_placeholders} <image> placeholder(s) for "
                            f"{len(paths)} image(s){' (one in an assistant turn)' if in_assistant else ''}. Use one "
                            "<image> per image in user turns, or none")
                continue
            try:
                sizes = [image_size(image_root / p) for p in paths]
            except ConvertError as exc:
                report.skip(exc.reason, f"{where}: {exc}")
                continue
            boxes: list[dict] = []
            try:
                for t in turns:
                    t["text"] = extract_boxes(t["text"], box_convention, *sizes[0], boxes, report)
            except _BadBox as exc:
                report.skip("bad_box", f"{where}: {exc}. Fix the box or convert with --box-convention none")
                continue
            seen[rid] = seen.get(rid, 0) + 1
            if seen[rid] > 1:
                report.fixed["repeated_id_renamed"] += 1
                rid = f"{rid}#{seen[rid]}"
            record = {"id": rid, "task": "conversation",
                      "images": [{"path": p, "modality": modality, "width": w, "height": h}
                                 for p, (w, h) in zip(paths, sizes)],
                      "turns": turns}
            if boxes:
                record["boxes"] = boxes
            writer.write(record, where)
    return report
