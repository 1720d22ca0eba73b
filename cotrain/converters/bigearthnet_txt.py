"""BigEarthNet.txt (Herzog et al., 2026) rows of its four categories -> cotrain records.

The release is one table, ``BigEarthNet.txt.parquet``, with the columns ``ID``, ``s1_name``
(Sentinel-1 patch), ``patch_id`` (Sentinel-2 patch of BigEarthNet v2.0), ``input`` (instruction or
question), ``output`` (reference answer), ``type``, ``category`` and ``split`` (plus
``country`` / ``season`` / ``climate_zone``). The benchmark split is the manually verified one
(1,082 image pairs). Kinds: ``binary`` -> vqa, ``mcq`` -> mcq, ``caption`` -> captioning,
``referring`` -> grounding (one box; scored as boxes, or as points with ``box_format: point``).

Documented assumptions (the public card does not pin these down; a differing source is a
one-line reshaping away):

* Rows are read from a JSON-lines export of the parquet (one object per row, the columns as keys):
  reading parquet needs pyarrow, which cotrain does not depend on. Export with
  ``pandas.read_parquet(p).to_json(out, orient="records", lines=True)``.
* Images are RGB renderings of the Sentinel-2 patches (bands B04/B03/B02), one file per patch,
  ``<image_dir>/<patch_id>.<png|jpg|tif>``; the multi-band GeoTIFFs themselves are not read.
* A row's kind is read from its content, not from ``type`` / ``category`` (their values are not
  documented), in this order:

  - mcq: the input lists at least two options, one per line, as ``A. text``, ``A) text``,
    ``(A) text`` or ``A: text``; the output must name one of them by letter (``B``, ``b``, ``B.``,
    ``(B)``, ``B) text``) or by its exact text (case-insensitive), else the row is skipped
    (``answer_not_in_choices``). The question is the input without the option lines;
  - binary: the output is ``yes`` or ``no`` (any case, trailing period allowed);
  - referring: the output is boxes and nothing else: groups of 4 numbers ``x1, y1, x2, y2``
    (brackets, parentheses, braces, ``<>``, commas, spaces, JSON ``bbox_2d`` / ``bbox`` keys
    allowed, no other words). Their unit is the option ``box_units``: ``pixels`` of the image
    (default; BigEarthNet's 10 m grid is 120 x 120), ``thousandths`` of the side (0..1000, the
    Qwen2-VL convention) or ``unit`` (0..1). The expression is the input without a leading
    instruction verb (``referring_expression``: "Detect the forest." -> "the forest"), since the
    grounding prompt supplies the instruction. A row with more than one box is skipped
    (``several_boxes``): a grounding record has one target;
  - caption: any other row whose output has at least 3 words. The instruction is not kept (the
    captioning prompt is cotrain's own).
* ``type`` (when present) becomes the record's ``subtask``, so evaluation reports each task of a
  category apart (``by_subtask``), the way the paper's tables do.

Record ids: ``ID`` as a string (``<line number>`` when absent). Must not decode pixels.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from cotrain.converters.base import (
    ConvertError,
    ConvertReport,
    RecordWriter,
    find_image,
    image_size,
    read_utf8,
    relative_image_path,
)

KINDS = ("binary", "mcq", "caption", "referring")
TASK_OF_KIND = {"binary": "vqa", "mcq": "mcq", "caption": "captioning", "referring": "grounding"}
BOX_UNITS = {"pixels": None, "thousandths": 1000.0, "unit": 1.0}
"""Unit of referring boxes -> the full side in that unit (None: image pixels)."""
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_OPTION = re.compile(r"^\s*\(?([A-Z])\s*[\.\):]\s*(\S.*?)\s*$")
_LETTER_ANSWER = re.compile(r"^\s*\(?([A-Za-z])\s*(?:[\.\):]|$)")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
_BOX_KEY = re.compile(r"[\"']?\b(?:bbox_2d|bbox)\b[\"']?")
_BOX_PUNCTUATION = re.compile(r"^[\s\[\](){}<>,;:]*$")
MIN_CAPTION_WORDS = 3
_INSTRUCTION = re.compile(r"^\s*(?:please\s+)?(?:detect|locate|find|identify|mark|show|point\s+(?:to|at))\s+"
                          r"(?:the\s+(?:bounding\s+box|box|location|position)\s+of\s+)?", re.IGNORECASE)


def parse_options(text: str) -> tuple[str, list[str]]:
    """(question, options) of an MCQ input; options must be consecutive letters from A."""
    question, options = [], []
    for line in text.splitlines():
        m = _OPTION.match(line)
        if m and ord(m.group(1)) - ord("A") == len(options):
            options.append(m.group(2))
        elif not options:
            question.append(line.strip())
    return " ".join(q for q in question if q), options


def answer_index(output: str, options: list[str]) -> int | None:
    """Index of the option an MCQ output names (by letter first, then by exact text); None if none."""
    m = _LETTER_ANSWER.match(output)
    if m and ord(m.group(1).upper()) - ord("A") < len(options):
        return ord(m.group(1).upper()) - ord("A")
    lowered = [o.strip().lower() for o in options]
    text = output.strip().rstrip(".").strip().lower()
    return lowered.index(text) if text in lowered else None


def parse_boxes(output: str) -> list[list[float]] | None:
    """The ``[x1, y1, x2, y2]`` boxes of an output made of boxes only (module docstring), else None."""
    text = _BOX_KEY.sub(" ", output)
    numbers = _NUMBER.findall(text)
    if not numbers or len(numbers) % 4 or not _BOX_PUNCTUATION.match(_NUMBER.sub(" ", text)):
        return None
    values = [float(v) for v in numbers]
    return [values[k:k + 4] for k in range(0, len(values), 4)]


def referring_expression(text: str) -> str:
    """The expression of a referring instruction: a leading "Detect" / "Locate" / "Find" / "Identify" / "Mark" /
    "Show" / "Point to" (optionally "... the bounding box / location of") and a final period removed, since
    cotrain's grounding prompt supplies the instruction; the whole input when no such verb leads it."""
    stripped = _INSTRUCTION.sub("", text.strip(), count=1).rstrip(" .")
    return stripped or text.strip()


def row_kind(text: str, output: str) -> str | None:
    """mcq | binary | referring | caption, read from the row's content in that order; None for none."""
    if len(parse_options(text)[1]) >= 2:
        return "mcq"
    if output.strip().rstrip(".").strip().lower() in ("yes", "no"):
        return "binary"
    if parse_boxes(output) is not None:
        return "referring"
    return "caption" if len(output.split()) >= MIN_CAPTION_WORDS else None


def read_rows(path: str | Path) -> list[tuple[int, object]]:
    """(line number, parsed object) of a JSON-lines file; a malformed line is returned as the exception."""
    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"{path}: BigEarthNet.txt rows not found. Export BigEarthNet.txt.parquet as JSON lines "
                           "(pandas.read_parquet(p).to_json(out, orient='records', lines=True))",
                           reason="source_missing")
    rows = []
    for lineno, line in enumerate(read_utf8(path).splitlines(), start=1):
        if line.strip():
            try:
                rows.append((lineno, json.loads(line)))
            except json.JSONDecodeError as exc:
                rows.append((lineno, exc))
    return rows


def _payload(kind: str, text: str, output: str, size: tuple[int, int], box_units: str) -> dict | tuple[str, str]:
    """The task fields of one row, or (skip reason, problem) when the row cannot be one."""
    if kind == "binary":
        return {"task": "vqa", "question": text.strip(), "answer": output.strip().rstrip(".").strip(),
                "answer_type": "yes_no"}
    if kind == "mcq":
        question, options = parse_options(text)
        index = answer_index(output, options)
        if index is None or not question:
            return "answer_not_in_choices", (f"output {output!r:.40} names none of the options {options}, or the "
                                             "question is empty")
        return {"task": "mcq", "question": question, "choices": options, "answer": index}
    if kind == "caption":
        return {"task": "captioning", "captions": [output.strip()], "caption_style": "scene"}
    boxes = parse_boxes(output)
    if len(boxes) != 1:
        return "several_boxes", f"output has {len(boxes)} boxes; a grounding record has one target"
    w, h = size
    side = BOX_UNITS[box_units]
    x1, y1, x2, y2 = boxes[0] if side is None else [v * (w if k % 2 == 0 else h) / side
                                                      for k, v in enumerate(boxes[0])]
    if not (x1 < x2 and y1 < y2):
        return "bad_box", f"box {boxes[0]} is empty or its corners are reversed (x1 < x2 and y1 < y2 expected)"
    if min(x1, y1) < -1 or x2 > w + 1 or y2 > h + 1:
        return "box_outside", (f"box {boxes[0]} read as {box_units} lies outside the {w} x {h} image; pass the "
                               f"unit the boxes are written in (box_units: {', '.join(BOX_UNITS)})")
    clip = [min(max(v, 0.0), float(w if k % 2 == 0 else h)) for k, v in enumerate((x1, y1, x2, y2))]
    return {"task": "grounding", "expression": referring_expression(text), "target": {"hbb": [round(v, 3) for v in clip]}}


def _image_entry(patch: str, image_dir: Path, root_dir: Path) -> dict | ConvertError:
    path = find_image(patch, [image_dir], IMAGE_EXTS)
    try:
        if path is None:
            raise ConvertError(f"{image_dir}/{patch}.png (or .jpg/.tif): RGB rendering not found. Render "
                               "the Sentinel-2 patch or drop the row", reason="image_missing")
        w, h = image_size(path)
        return {"path": relative_image_path(path, root_dir), "modality": "rgb", "width": w, "height": h}
    except ConvertError as exc:
        return exc


def convert_bigearthnet_txt(rows_jsonl: str | Path, image_dir: str | Path, out_jsonl: str | Path, *, kind: str,
                            split: str | None = "benchmark", image_root: str | Path | None = None,
                            box_units: str = "pixels", on_bad: str = "skip") -> ConvertReport:
    """Write the ``kind`` rows (``KINDS``; module docstring) of ``split`` (None: every row) as records.

    ``image_root``: root of the record image paths (default: ``image_dir``). ``box_units``: the unit of
    referring boxes (``BOX_UNITS``). Rows of other kinds are counted as ignored (``not_<kind>``).
    """
    if kind not in KINDS:
        raise ConvertError(f"kind={kind!r} is not one of {', '.join(KINDS)}", reason="bad_option")
    if box_units not in BOX_UNITS:
        raise ConvertError(f"box_units={box_units!r} is not one of {', '.join(BOX_UNITS)}", reason="bad_option")
    rows_jsonl, image_dir = Path(rows_jsonl), Path(image_dir)
    root_dir = Path(image_root) if image_root is not None else image_dir
    report = ConvertReport(f"BigEarthNet.txt {kind} {rows_jsonl}", on_bad=on_bad)
    rows = read_rows(rows_jsonl)
    splits_seen = {str(r.get("split")) for _, r in rows if isinstance(r, dict)}
    if split is not None and split not in splits_seen and rows:
        raise ConvertError(f"{rows_jsonl}: no row has split {split!r} (splits found: {sorted(splits_seen)}). Pass "
                           "the split that holds the benchmark rows", reason="split_missing")
    images: dict[str, dict | ConvertError] = {}
    with RecordWriter(out_jsonl, report) as writer:
        for lineno, row in rows:
            where = f"{rows_jsonl}:{lineno}"
            if isinstance(row, Exception) or not isinstance(row, dict):
                report.skip("bad_row", f"{where}: not a JSON object. Write one row object per line")
                continue
            if split is not None and row.get("split") != split:
                continue
            text, output, patch = row.get("input"), row.get("output"), row.get("patch_id")
            if not all(isinstance(v, str) and v.strip() for v in (text, output, patch)):
                report.skip("bad_row", f"{where}: needs non-empty 'input', 'output' and 'patch_id' strings. Fix the row")
                continue
            if row_kind(text, output) != kind:
                report.ignored[f"not_{kind}"] += 1
                continue
            if patch not in images:
                images[patch] = _image_entry(patch, image_dir, root_dir)
            image = images[patch]
            if isinstance(image, ConvertError):
                report.skip(image.reason, f"{where}: {image}")
                continue
            payload = _payload(kind, text, output, (image["width"], image["height"]), box_units)
            if isinstance(payload, tuple):
                report.skip(payload[0], f"{where}: {payload[1]}. Fix the row")
                continue
            rid = str(row["ID"]) if row.get("ID") is not None else str(lineno)
            extra = {"subtask": str(row["type"])} if isinstance(row.get("type"), (str, int)) and row["type"] != "" else {}
            writer.write({"id": rid, "images": [image], **payload, **extra}, where)
    return report
