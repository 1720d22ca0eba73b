"""Turn a VLM's detection answer text into ``Det`` objects in ORIGINAL pixels, with diagnostics.

This module owns the reading of model responses for detection: finding boxes in plain lines, in
(damaged) JSON, in Qwen2-VL box tokens and in Florence-style ``<loc_k>`` tokens; mapping them back
to original pixels with the same ``cotrain.boxes.BoxCodec`` used for training; normalising labels
to the evaluated class list; and counting every object it could not keep. It never raises on any
response text (argument errors are ``ConfigError``). It must not compute IoU or metrics, and it
must not guess: a line with the wrong number of coordinates is counted as malformed, a label that
is not a known class is counted as unknown and dropped unless the user opts in to fuzzy matching.

Formats recognised (tried in this order):

* Qwen2-VL tokens ``<|object_ref_start|>label<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>``
  (also ``<|quad_start|>``); coordinates in the codec's frame, norm-1000 when no codec is given.
* Florence tokens ``label<loc_x1><loc_y1><loc_x2><loc_y2>`` (8 locs: quad); bin k of 1000 over
  the image maps to ``(k + 0.5) * side / 1000`` (Florence-2's own dequantisation).
* JSON (anything with ``{``): read by a lenient scanner, which is the repair: code fences and prose
  around it are skipped, ``(`` counts as ``[``, doubled or missing commas are ignored, single
  quotes and bare words are accepted, and a cut-off tail keeps every complete object before it.
* Plain lines ``coords label`` or ``label coords``: coords bracketed (``[..]``, ``(..)``, Qwen2
  pairs ``(x1,y1),(x2,y2)``) or bare numbers.

Numbers per box: hbb 4, obb 5 (``cx cy w h angle``, degrees, codec frame), quad 8; ``kind="auto"``
decides by the count. Coordinates outside the image are clipped vertex by vertex and counted;
boxes of zero area after clipping are dropped and counted.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from cotrain.boxes import NONE_ANSWER, VALUE_COUNTS, BoxCodec
from cotrain.dota.types import Det, Detections
from cotrain.errors import ConfigError, RecordError
from cotrain.geometry.quads import hbb_to_quad, obb_to_quad, order_quad, polygon_area
from cotrain.resolution import resized_wh_of
from detection.json_repair import NUMBER_PATTERN, LenientJSON
from detection.labels import LabelNormaliser, _compact

log = logging.getLogger(__name__)

KINDS = ("quad", "hbb", "obb", "auto")
MAX_EXAMPLES = 5
"""How many malformed items (and bad JSONL lines) are kept verbatim as examples."""

# ------------------------------------------------------------------------------ diagnostics

@dataclass
class ParseDiagnostics:
    """What happened to one response."""

    format: str = "none"
    """Which reader found the boxes: qwen_tokens, florence, json, plain or none."""
    lines: int = 0
    """Candidate items seen: non-blank lines (plain), objects (JSON) or box spans (tokens)."""
    parsed: int = 0
    """Objects kept."""
    malformed: int = 0
    """Items with no box, a wrong number of coordinates or non-finite numbers."""
    malformed_examples: list[str] = field(default_factory=list)
    """The first few malformed items, verbatim (cut to 120 characters)."""
    unknown_labels: Counter = field(default_factory=Counter)
    """Raw labels dropped because no class matched them."""
    fuzzy_matched: int = 0
    """Labels accepted through the fuzzy cutoff."""
    duplicates_removed: int = 0
    """Exact repeats (same class, same quad to 0.01 px) dropped."""
    truncated_tail: bool = False
    """The response ends inside an object (generation cut off)."""
    out_of_image_clipped: int = 0
    """Boxes with a coordinate outside the image (clipped to it)."""
    degenerate_dropped: int = 0
    """Boxes of zero area (after clipping) dropped."""
    empty_answer: bool = False
    """The model said there are no objects ("There are none." or an empty JSON list)."""

    def _malformed(self, item: str) -> None:
        self.malformed += 1
        if len(self.malformed_examples) < MAX_EXAMPLES:
            self.malformed_examples.append(item.strip()[:120])


@dataclass
class ParseResult:
    """Objects of one response (quads in original pixels, score 1.0) and what happened."""

    objects: list[Det]
    """Kept detections in the order the model emitted them."""
    diagnostics: ParseDiagnostics
    """Counts of everything that was not kept as is."""


@dataclass
class ParseSummary:
    """Diagnostics summed over a responses file."""

    responses: int = 0
    """JSONL lines parsed as responses."""
    objects: int = 0
    """Objects kept in all responses."""
    lines: int = 0
    """Candidate items seen in all responses."""
    malformed: int = 0
    """Malformed items in all responses."""
    malformed_examples: list[str] = field(default_factory=list)
    """The first few malformed items, prefixed with the response id."""
    unknown_labels: Counter = field(default_factory=Counter)
    """Raw labels dropped as unknown, over all responses."""
    fuzzy_matched: int = 0
    """Labels accepted through the fuzzy cutoff."""
    duplicates_removed: int = 0
    """Exact repeats dropped."""
    truncated_responses: int = 0
    """Responses cut off inside an object."""
    out_of_image_clipped: int = 0
    """Boxes clipped to the image."""
    degenerate_dropped: int = 0
    """Zero-area boxes dropped."""
    empty_answers: int = 0
    """Responses saying there are no objects."""
    formats: Counter = field(default_factory=Counter)
    """Responses per reader (json, plain, ...)."""
    bad_lines: int = 0
    """JSONL lines skipped (not JSON, missing id/response/sizes)."""
    bad_line_messages: list[str] = field(default_factory=list)
    """The first few skip reasons, each naming file:line and the fix."""
    repeated_ids: int = 0
    """Lines whose id was seen before (their objects are appended, e.g. one prompt per class)."""

    def add(self, rid: str, d: ParseDiagnostics) -> None:
        """Fold one response's diagnostics in."""
        self.responses += 1
        self.objects += d.parsed
        self.lines += d.lines
        self.malformed += d.malformed
        for ex in d.malformed_examples:
            if len(self.malformed_examples) < MAX_EXAMPLES:
                self.malformed_examples.append(f"{rid}: {ex}")
        self.unknown_labels.update(d.unknown_labels)
        self.fuzzy_matched += d.fuzzy_matched
        self.duplicates_removed += d.duplicates_removed
        self.truncated_responses += int(d.truncated_tail)
        self.out_of_image_clipped += d.out_of_image_clipped
        self.degenerate_dropped += d.degenerate_dropped
        self.empty_answers += int(d.empty_answer)
        self.formats[d.format] += 1


# ---------------------------------------------------------------------------- text readers

# Atomic digit runs and word-boundary guards keep the scan linear on long digit strings and stop
# "boeing737" or "a321" in a label from reading as coordinates.
_NUM = NUMBER_PATTERN
_NUM_RE = re.compile(_NUM)
_GROUP_RE = re.compile(r"[\[(]([^\[\]()]*)[\])]")
_ONLY_NUMBERS = re.compile(r"\s*(?:" + _NUM + r"\s*(?:,\s*)*)+")
_LIST_MARKER = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+")
_LABEL_JUNK = " \t:;,.=*\"'`{}[]()<>|\u2013\u2014-"
_NONE_RE = re.compile(r"(?:there\s+(?:are|is)\s+(?:none|no\s+[^\d\[\]{}()<>]*?)|none|no\s+objects?(?:\s+found)?)\.?",
                      re.IGNORECASE)
_QWEN_RE = re.compile(r"<\|object_ref_start\|>(.*?)(?:<\|object_ref_end\|>|$)|<\|(box|quad)_start\|>(.*?)(<\|\2_end\|>|$)",
                      re.DOTALL)
_FLORENCE_RE = re.compile(r"((?:<loc_\d+>)+)")
_TAG_RE = re.compile(r"<[^<>]*>")


@dataclass
class _Item:
    """A box candidate before mapping: numbers, raw label, the frame they are in, source text."""

    values: list[float]
    label: str
    frame: str  # "codec" (plain/JSON), "qwen" (box tokens) or "florence" (loc bins)
    source: str
    last_line_cut: bool = False  # the unterminated last line of a plain answer


def _read_plain(text: str, diag: ParseDiagnostics) -> list[_Item]:
    items, saw_none = [], False
    lines = [ln for ln in text.splitlines() if ln.strip() and not re.fullmatch(r"\s*```\w*\s*", ln)]
    for n, line in enumerate(lines):
        body = _LIST_MARKER.sub("", line, count=1)
        if _NONE_RE.fullmatch(body.strip()):
            saw_none = True
            continue
        diag.lines += 1
        groups = [m for m in _GROUP_RE.finditer(body) if _ONLY_NUMBERS.fullmatch(m.group(1))]
        if groups:
            sizes = [len(_NUM_RE.findall(m.group(1))) for m in groups]
            if len(groups) > 1 and any(s != 2 for s in sizes):
                diag._malformed(line)  # several boxes on one line: ambiguous, never guessed
                continue
            values = [float(v) for m in groups for v in _NUM_RE.findall(m.group(1))]
            before, after = body[:groups[0].start()], body[groups[-1].end():]
            between = "".join(body[a.end():b.start()] for a, b in zip(groups, groups[1:]))
            if between.strip(" ,"):
                diag._malformed(line)
                continue
        else:
            nums = list(_NUM_RE.finditer(body))
            if not nums:
                diag._malformed(line)
                continue
            gap = body[nums[0].end():nums[-1].start()]
            if _NUM_RE.sub("", gap).strip(" ,\t"):
                diag._malformed(line)  # words between numbers: not one coordinate run
                continue
            values = [float(m.group()) for m in nums]
            before, after = body[:nums[0].start()], body[nums[-1].end():]
        after, before = after.strip(_LABEL_JUNK), before.strip(_LABEL_JUNK)
        label = after or before
        # An unterminated last line is where a cut-off generation ends.
        items.append(_Item(values, label, "codec", line, n == len(lines) - 1 and not text.endswith("\n")))
    if saw_none and not items:
        diag.empty_answer = True
    return items


_BOX_KEYS = ("bbox2d", "orientedbbox", "quadbbox", "bbox", "box", "quad", "obb", "hbb", "rbox",
             "polygon", "poly", "rotatedbbox", "rotatedbox", "orientedbox")
_LABEL_KEYS = ("label", "category", "class", "name", "object")


def _flatten_numbers(v) -> list[float] | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return [float(v)]
    if isinstance(v, str):
        m = _NUM_RE.fullmatch(v.strip())
        return [float(m.group())] if m else None
    if isinstance(v, list):
        out = []
        for x in v:
            f = _flatten_numbers(x)
            if f is None:
                return None
            out.extend(f)
        return out
    return None


def _read_json(text: str, diag: ParseDiagnostics) -> list[_Item]:
    items: list[_Item] = []
    values = LenientJSON(text).top()

    def walk(v) -> None:
        if isinstance(v, list):
            for x in v:
                walk(x)
            return
        if not isinstance(v, dict):
            return
        keys = {_compact(str(k)): k for k in v}
        box_key = next((keys[k] for k in _BOX_KEYS if k in keys), None)
        if box_key is None:
            nested = [x for x in v.values() if isinstance(x, (dict, list))]
            for x in nested:
                walk(x)
            partial = getattr(v, "partial", False)
            if not nested and (v or partial):
                diag.lines += 1
                diag.truncated_tail |= partial
                diag._malformed(getattr(v, "text", ""))
            return
        diag.lines += 1
        src = getattr(v, "text", "")
        if getattr(v, "partial", False):
            diag.truncated_tail = True
            diag._malformed(src)
            return
        label_key = next((keys[k] for k in _LABEL_KEYS if k in keys), None)
        label = v.get(label_key, "") if label_key is not None else ""
        nums = _flatten_numbers(v[box_key])
        if nums is None:
            diag._malformed(src)
            return
        items.append(_Item(nums, "" if label is None else str(label), "codec", src))

    walk(values)
    if not items and diag.lines == 0 and any(isinstance(v, list) and not v for v in values):
        diag.empty_answer = True  # "[]": the JSON way of saying there are none
    return items


def _read_qwen_tokens(text: str, diag: ParseDiagnostics) -> list[_Item]:
    items, label = [], ""
    for m in _QWEN_RE.finditer(text):
        if m.group(2) is None:
            label = m.group(1)
            continue
        diag.lines += 1
        if not m.group(4):
            diag.truncated_tail = True
            diag._malformed(m.group(0))
            continue
        nums = [float(v) for v in _NUM_RE.findall(m.group(3))]
        items.append(_Item(nums, label, "qwen", m.group(0)))
    return items


def _read_florence(text: str, diag: ParseDiagnostics) -> list[_Item]:
    items, prev = [], 0
    for m in _FLORENCE_RE.finditer(text):
        label = _TAG_RE.sub("", text[prev:m.start()]).strip(_LABEL_JUNK)
        prev = m.end()
        diag.lines += 1
        nums = [float(v) for v in re.findall(r"<loc_(\d+)>", m.group(1))]
        items.append(_Item(nums, label, "florence", text[max(0, m.start() - 40):m.end()]))
    return items


# -------------------------------------------------------------------------- the entry point

def _kind_for(n: int, kind: str, frame: str) -> str | None:
    if frame in ("qwen", "florence"):  # token formats carry corner points only
        allowed = {4: "hbb", 8: "quad"}
        k = allowed.get(n)
        return k if kind in ("auto", k) else None
    if kind == "auto":
        return {4: "hbb", 5: "obb", 8: "quad"}.get(n)
    return kind if n == VALUE_COUNTS[kind] else None


def _to_quad(values: list[float], k: str, frame: str, codec: BoxCodec | None, orig_wh, resized_wh) -> np.ndarray:
    """Quad in original pixels (not yet clipped)."""
    if frame == "florence":
        w, h = orig_wh if orig_wh is not None else (1000, 1000)
        pts = [(v + 0.5) * (w if i % 2 == 0 else h) / 1000.0 for i, v in enumerate(values)]
        return np.asarray(hbb_to_quad(_sorted_hbb(pts)) if k == "hbb" else order_quad(pts), dtype=np.float64)
    if frame == "qwen" and codec is None:
        codec = BoxCodec("norm1000") if orig_wh is not None else None
    if codec is not None and orig_wh is not None:
        box = codec.to_original(values, k, orig_wh, resized_wh)
        return np.asarray(hbb_to_quad(box["hbb"]) if "hbb" in box else box["quad"], dtype=np.float64)
    if k == "hbb":
        return np.asarray(hbb_to_quad(_sorted_hbb(values)), dtype=np.float64)
    return np.asarray(obb_to_quad(values) if k == "obb" else order_quad(values), dtype=np.float64)


def _sorted_hbb(v: list[float]) -> list[float]:
    return [min(v[0], v[2]), min(v[1], v[3]), max(v[0], v[2]), max(v[1], v[3])]


def _check_args(kind: str, codec, orig_wh, resized_wh) -> None:
    if kind not in KINDS:
        raise ConfigError(f"unknown box kind {kind!r}; use one of {', '.join(KINDS)}")
    if codec is not None and orig_wh is None:
        raise ConfigError("a codec was given without orig_wh: pass the original (width, height) of the image "
                          "so that boxes can be mapped back to original pixels")
    if codec is not None and codec.convention == "abs" and resized_wh is None:
        raise ConfigError("the 'abs' codec needs resized_wh, the (width, height) the model saw")
    for name, wh in (("orig_wh", orig_wh), ("resized_wh", resized_wh)):
        if wh is not None and (len(wh) != 2 or not all(isinstance(v, (int, float)) and v > 0 for v in wh)):
            raise ConfigError(f"{name} must be two positive numbers (width, height), got {wh!r}")


def parse_response(text, *, kind: str = "auto", codec: BoxCodec | None = None, orig_wh=None, resized_wh=None,
                   classes=None, synonyms: dict | None = None, fuzzy_cutoff: float | None = None,
                   drop_repeats: bool = True, normaliser: LabelNormaliser | None = None) -> ParseResult:
    """Detections in one response, quads in ORIGINAL pixels, labels canonical; never raises on ``text``.

    ``orig_wh``/``resized_wh`` are (width, height). Without a codec, coordinates are taken as
    original pixels (token formats: norm-1000 / loc bins over ``orig_wh``, or a 1000x1000 frame
    when it is unknown). ``normaliser`` (built from classes/synonyms/fuzzy_cutoff when omitted)
    lets a caller parsing many responses reuse one label cache.
    """
    _check_args(kind, codec, orig_wh, resized_wh)
    norm = normaliser or LabelNormaliser(classes, synonyms, fuzzy_cutoff)
    diag = ParseDiagnostics()
    text = text if isinstance(text, str) else ("" if text is None else str(text))
    stripped = text.strip()
    unfenced = re.sub(r"```\w*", "", stripped).strip()
    if _NONE_RE.fullmatch(unfenced) or unfenced == NONE_ANSWER or re.fullmatch(r"\[\s*\]", unfenced):
        diag.empty_answer = True
        return ParseResult([], diag)
    if "<|box_start|>" in text or "<|quad_start|>" in text:
        diag.format, items = "qwen_tokens", _read_qwen_tokens(text, diag)
    elif "<loc_" in text:
        diag.format, items = "florence", _read_florence(text, diag)
    elif "{" in text:
        diag.format, items = "json", _read_json(text, diag)
        if not items and diag.lines == 0 and not diag.empty_answer:
            diag.format, items = "plain", _read_plain(text, diag)
    elif stripped:
        diag.format, items = "plain", _read_plain(text, diag)
    else:
        items = []

    objects: list[Det] = []
    seen: set = set()
    for it in items:
        source = it.source
        k = _kind_for(len(it.values), kind, it.frame)
        if k is None or not all(math.isfinite(v) for v in it.values):
            diag._malformed(source)
            diag.truncated_tail |= it.last_line_cut  # a cut-off last line is the truncated tail
            continue
        label, fuzzy = norm(it.label)
        if label is None:
            diag.unknown_labels[it.label.strip() or "<missing>"] += 1
            continue
        try:
            quad = _to_quad(it.values, k, it.frame, codec, orig_wh, resized_wh)
        except (ValueError, OverflowError, ZeroDivisionError):
            diag._malformed(source)
            continue
        if not np.all(np.isfinite(quad)):
            diag._malformed(source)
            continue
        hi = (np.inf, np.inf) if orig_wh is None else (float(orig_wh[0]), float(orig_wh[1]))
        clipped = quad.copy()
        clipped[0::2] = np.clip(quad[0::2], 0.0, hi[0])
        clipped[1::2] = np.clip(quad[1::2], 0.0, hi[1])
        # Float noise from the codec's scaling (W * rw / rw) is not "outside the image".
        tol = 1e-6 * max([1.0, *(v for v in hi if math.isfinite(v))])
        if np.max(np.abs(clipped - quad)) > tol:
            diag.out_of_image_clipped += 1
        if polygon_area(clipped) <= 1e-9:
            diag.degenerate_dropped += 1
            continue
        if drop_repeats:
            key = (label, tuple(np.round(clipped, 2).tolist()))
            if key in seen:
                diag.duplicates_removed += 1
                continue
            seen.add(key)
        diag.fuzzy_matched += int(fuzzy)
        objects.append(Det(label, clipped, 1.0))
    diag.parsed = len(objects)
    return ParseResult(objects, diag)


def parse_responses_file(path, *, kind: str = "auto", codec: BoxCodec | None = None, classes=None,
                         synonyms: dict | None = None, fuzzy_cutoff: float | None = None, drop_repeats: bool = True,
                         image_sizes: dict | None = None, on_bad_line: str = "skip") -> tuple[Detections, ParseSummary]:
    """Parse a responses JSONL file: one ``{"id", "response", "resized_wh": [w, h] (or the older "resized": [h, w]),
    "orig_wh"?: [w, h]}`` per line -> (image id -> detections, summed diagnostics).

    ``image_sizes`` (id -> original (width, height), e.g. from the GT) fills a missing ``orig_wh``.
    A line that cannot be used is skipped and counted with a message naming ``file:line`` and the
    fix (``on_bad_line="raise"`` raises ``RecordError`` instead). Several lines with one id add up.
    Images without a line are absent from the result: the metric treats them as "no detections".
    """
    if on_bad_line not in ("skip", "raise"):
        raise ConfigError(f"on_bad_line must be 'skip' or 'raise', got {on_bad_line!r}")
    _check_args(kind, None, None, None)
    norm = LabelNormaliser(classes, synonyms, fuzzy_cutoff)
    dets: Detections = {}
    summary = ParseSummary()
    path = Path(path)

    def bad(lineno: int, msg: str, rid=None, fieldname=None) -> None:
        err = RecordError(msg, path=str(path), line=lineno, record_id=rid, field=fieldname)
        if on_bad_line == "raise":
            raise err
        summary.bad_lines += 1
        if len(summary.bad_line_messages) < MAX_EXAMPLES:
            summary.bad_line_messages.append(str(err))
        log.warning("skipped response line: %s", err)

    with path.open(encoding="utf-8", errors="replace") as f:
        lines = tqdm(f, desc=f"parse {path.name}", unit=" responses", leave=False, mininterval=1.0)
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                bad(lineno, f"not a JSON object ({e.msg} at column {e.colno}). Write one JSON object per line.")
                continue
            if not isinstance(rec, dict) or "id" not in rec or not isinstance(rec.get("response"), (str, type(None))):
                bad(lineno, "needs an object with 'id' and a string 'response'. Fix the writer of this file.")
                continue
            rid = str(rec["id"])
            orig = rec.get("orig_wh") or (image_sizes or {}).get(rid)
            resized = rec.get("resized_wh")
            if resized is None and isinstance(rec.get("resized"), (list, tuple)) and len(rec["resized"]) == 2:
                resized = resized_wh_of({"resized": rec["resized"]})  # the older [height, width] field
            try:
                result = parse_response(rec["response"], kind=kind, codec=codec,
                                        orig_wh=None if orig is None else tuple(orig),
                                        resized_wh=None if resized is None else tuple(resized),
                                        drop_repeats=drop_repeats, normaliser=norm)
            except (ConfigError, TypeError) as e:
                bad(lineno, f"{e}. Add 'orig_wh' [w, h] and 'resized_wh' [w, h] to the line, or pass image_sizes.",
                    rid, "orig_wh/resized")
                continue
            if rid in dets:
                summary.repeated_ids += 1
            dets.setdefault(rid, []).extend(result.objects)
            summary.add(rid, result.diagnostics)
    return dets, summary
