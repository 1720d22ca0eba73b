"""VRSBench (Li, Ding, Elhoseiny, NeurIPS 2024 D&B) evaluation JSON files -> vqa / captioning / grounding records.

Owns the released evaluation files (``VRSBench_EVAL_vqa.json``, ``VRSBench_EVAL_Cap.json``,
``VRSBench_EVAL_referring.json``), each a JSON list of entries with these fields (as written by
the authors' ``prepare_eval_all.ipynb``):

* every kind: ``image_id`` (file name in ``Images_val/``, e.g. ``P0003_0002.png``), ``question``,
  ``ground_truth``, ``question_id`` (int, unique within a file), ``type``;
* vqa: ``ground_truth`` is the answer, ``type`` the question type (``object existence``,
  ``object quantity``, ``object color``, ...);
* caption: ``ground_truth`` is the one detailed caption (``question`` is a fixed instruction);
* referring: ``question`` is the referring sentence, ``ground_truth`` the box as the string
  ``{<x1><y1><x2><y2>}`` in integers 0..100 = per cent of the image width / height (the authors
  truncate ``corner * 100``), plus ``obj_corner`` (the object's 4 corners, 8 floats normalised to
  0..1), ``obj_cls``, ``unique`` (the only object of its class in the image) and ``size_group``.

Boxes: the ``ground_truth`` box is THE scoring reference of the published numbers, so the record
target is that box mapped to pixels (``v / 100 * width``, ``v / 100 * height``). A few references
collapse to zero width or height after the truncation; for those the hbb of ``obj_corner``
(0..1 -> pixels) is used instead (counted in ``report.fixed['box_from_obj_corner']``); without
``obj_corner`` the entry is a counted ``box_zero_area`` skip (the record schema has no zero-area
boxes). Answer types follow the answer text (``answer_type_of``), not the question type, so a
``yes``/``no`` answer is scored as yes/no whatever its label says.

Record ids: ``<kind>_<question_id>``. Must not decode pixels or reword text beyond trimming.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from cotrain.converters.base import (
    ConvertError,
    ConvertReport,
    RecordWriter,
    clean_box,
    image_size,
    read_utf8,
    relative_image_path,
)

KINDS = ("vqa", "caption", "referring")
EVAL_FILES = {"vqa": "VRSBench_EVAL_vqa.json", "caption": "VRSBench_EVAL_Cap.json",
              "referring": "VRSBench_EVAL_referring.json"}
"""Release file name of each kind."""
_BOX_NUMBER = re.compile(r"<\s*(-?\d+(?:\.\d+)?)\s*>")
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")


def answer_type_of(answer: str) -> str:
    """Canonical answer_type from the answer text: yes/no -> ``yes_no``, a number -> ``number``, else ``word``."""
    text = answer.strip().rstrip(".").strip().lower()
    if text in ("yes", "no"):
        return "yes_no"
    if _NUMBER.match(text):
        return "number"
    return "word"


def parse_percent_box(text: object) -> list[float] | None:
    """``"{<25><40><33><60>}"`` -> ``[25.0, 40.0, 33.0, 60.0]``; None unless exactly four numbers."""
    if not isinstance(text, str):
        return None
    values = [float(v) for v in _BOX_NUMBER.findall(text)]
    return values if len(values) == 4 else None


def load_entries(path: str | Path) -> list:
    """The entry list of one VRSBench evaluation file; ConvertError naming the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"{path}: VRSBench evaluation file not found. Download {', '.join(EVAL_FILES.values())} "
                           "from the VRSBench release", reason="source_missing")
    try:
        data = json.loads(read_utf8(path))
    except json.JSONDecodeError as exc:
        raise ConvertError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}). Re-download the file",
                           reason="invalid_json") from None
    if not isinstance(data, list):
        raise ConvertError(f"{path}: expected a JSON list of entries, got {type(data).__name__}. Pass a "
                           "VRSBench_EVAL_*.json file", reason="bad_format")
    return data


def _corner_hbb(corners: object, width: int, height: int) -> list[float] | None:
    """Pixel hbb of ``obj_corner`` (8 numbers in 0..1); None when absent or malformed."""
    if not isinstance(corners, list) or len(corners) != 8:
        return None
    try:
        v = [float(c) for c in corners]
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(c) for c in v):
        return None
    xs, ys = [x * width for x in v[0::2]], [y * height for y in v[1::2]]
    return [round(min(xs), 3), round(min(ys), 3), round(max(xs), 3), round(max(ys), 3)]


def convert_vrsbench(json_path: str | Path, image_dir: str | Path, out_jsonl: str | Path, *, kind: str,
                     image_root: str | Path | None = None, on_bad: str = "skip") -> ConvertReport:
    """Convert one VRSBench evaluation file (``kind``: vqa | caption | referring) into canonical records.

    ``image_dir``: the ``Images_val`` folder; ``image_root``: root of the record image paths
    (default: ``image_dir``).
    """
    if kind not in KINDS:
        raise ConvertError(f"kind={kind!r} is not one of {', '.join(KINDS)}", reason="bad_option")
    json_path, image_dir = Path(json_path), Path(image_dir)
    root_dir = Path(image_root) if image_root is not None else image_dir
    report = ConvertReport(f"VRSBench {kind} {json_path}", on_bad=on_bad)
    entries = load_entries(json_path)
    images: dict[str, dict | ConvertError] = {}
    with RecordWriter(out_jsonl, report) as writer:
        for i, e in enumerate(entries):
            where = f"{json_path}: entry {i}"
            if not isinstance(e, dict):
                report.skip("bad_entry", f"{where}: expected an object, got {e!r:.80}. Fix the entry")
                continue
            qid, image_id = e.get("question_id"), e.get("image_id")
            question, truth = e.get("question"), e.get("ground_truth")
            where = f"{where} (question_id {qid})"
            needs_question = kind != "caption"
            if (qid is None or not isinstance(image_id, str) or not image_id or not isinstance(truth, str)
                    or not truth.strip() or (needs_question and (not isinstance(question, str) or not question.strip()))):
                report.skip("bad_entry", f"{where}: needs 'question_id', 'image_id', 'ground_truth'"
                            f"{' and question' if needs_question else ''} strings. Fix the entry")
                continue
            if image_id not in images:
                path = image_dir / image_id
                try:
                    w, h = image_size(path)
                    images[image_id] = {"path": relative_image_path(path, root_dir), "modality": "rgb",
                                        "width": w, "height": h}
                except ConvertError as exc:
                    images[image_id] = exc
            image = images[image_id]
            if isinstance(image, ConvertError):
                report.skip(image.reason, f"{where}: {image}")
                continue
            record = {"id": f"{kind}_{qid}", "images": [image]}
            if kind == "vqa":
                answer = truth.strip()
                record.update(task="vqa", question=question.strip(), answer=answer, answer_type=answer_type_of(answer))
            elif kind == "caption":
                record.update(task="captioning", captions=[" ".join(truth.split())], caption_style="scene")
            else:
                percent = parse_percent_box(truth)
                if percent is None:
                    report.skip("bad_box", f"{where}: ground_truth {truth!r:.60} is not '{{<x1><y1><x2><y2>}}'. "
                                "Fix the entry")
                    continue
                w, h = image["width"], image["height"]
                box = [round(percent[0] * w / 100, 3), round(percent[1] * h / 100, 3),
                       round(percent[2] * w / 100, 3), round(percent[3] * h / 100, 3)]
                if not (box[2] > box[0] and box[3] > box[1]):
                    corner = _corner_hbb(e.get("obj_corner"), w, h)
                    if corner is not None and corner[2] > corner[0] and corner[3] > corner[1]:
                        box = corner
                        report.fixed["box_from_obj_corner"] += 1
                box = clean_box(box, "hbb", w, h, where, report)
                if box is None:
                    continue
                record.update(task="grounding", expression=" ".join(question.split()), target={"hbb": box})
            writer.write(record, where)
    return report
