"""RSVQA LR / HR (Lobry et al., TGRS 2020) JSON triples -> canonical vqa records.

Owns the official release layout: per split three JSON files ``<prefix>_split_<split>_images.json``
(``{"images": [{"id", "active", "questions_ids", "original_name", ...}]}``),
``..._questions.json`` (``{"questions": [{"id", "img_id", "question", "type", "answers_ids",
"active", ...}]}``) and ``..._answers.json`` (``{"answers": [{"id", "question_id", "answer",
"active", ...}]}``); prefix ``LR`` (low resolution, Sentinel-2, images ``Images_LR/<id>.tif``) or
``USGS`` (high resolution, images ``Data/<id>.tif``); splits ``train``, ``val``, ``test`` and HR's
``test_phili``. Entries with ``"active": false`` are left out (counted as ignored), as the
authors' loaders do. Question types map to answer types: ``presence`` and ``comp`` (comparison)
-> ``yes_no``, ``count`` -> ``number``, ``rural_urban``, ``area`` and anything else -> ``word``.
Record ids are ``<split>_<question id>``. Must not normalise answers beyond trimming whitespace.
"""

from __future__ import annotations

import json
from pathlib import Path

from cotrain.converters.base import (
    ConvertError,
    ConvertReport,
    RecordWriter,
    image_size,
    read_utf8,
    relative_image_path,
)

ANSWER_TYPES = {"presence": "yes_no", "comp": "yes_no", "comparison": "yes_no", "count": "number",
                "rural_urban": "word", "area": "word"}
"""RSVQA question type -> canonical answer_type (unknown types: 'word')."""
KINDS = ("images", "questions", "answers")


def rsvqa_files(json_dir: str | Path, split: str, prefix: str | None = None) -> dict[str, Path]:
    """The images/questions/answers files of one split; ConvertError naming what is missing or ambiguous."""
    json_dir = Path(json_dir)
    if prefix is None:
        found = sorted(p.name[: -len(f"_split_{split}_questions.json")]
                       for p in json_dir.glob(f"*_split_{split}_questions.json"))
        if len(found) != 1:
            what = "no" if not found else f"several ({', '.join(found)})"
            raise ConvertError(f"{json_dir}: {what} '<prefix>_split_{split}_questions.json' files. Pass the folder "
                               "of the RSVQA JSON files, the right split, and prefix='LR' or 'USGS' when several "
                               "match", reason="bad_option")
        prefix = found[0]
    files = {k: json_dir / f"{prefix}_split_{split}_{k}.json" for k in KINDS}
    for k, p in files.items():
        if not p.is_file():
            raise ConvertError(f"{p}: RSVQA {k} file not found. Download the full JSON triple of the split",
                               reason="bad_option")
    return files


def _load_entries(path: Path, key: str) -> list:
    try:
        data = json.loads(read_utf8(path))
    except json.JSONDecodeError as exc:
        raise ConvertError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}). Re-download the file",
                           reason="malformed_json") from None
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise ConvertError(f"{path}: expected an object with a list '{key}'. Pass the RSVQA {key} file",
                           reason="malformed_json")
    return data[key]


def _active_by_id(entries: list, path: Path, key: str, report: ConvertReport) -> dict:
    out = {}
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("id"), int) or isinstance(e.get("id"), bool):
            report.skip("malformed_entry", f"{path}: {key}[{i}] has no integer 'id'. Fix the entry")
            continue
        if e.get("active", True):
            out[e["id"]] = e
    return out


def _first_answer(answer_ids, answers: dict) -> str | None:
    """Text of the first active, non-empty answer among ``answer_ids`` (the order the file lists them)."""
    for a in answer_ids if isinstance(answer_ids, list) else []:
        text = answers.get(a, {}).get("answer") if isinstance(a, int) else None
        if isinstance(text, str) and text.strip():
            return text
    return None


def convert_rsvqa(json_dir: str | Path, image_dir: str | Path, out_jsonl: str | Path, *, split: str = "train",
                  prefix: str | None = None, image_root: str | Path | None = None, image_name: str = "{id}.tif",
                  on_bad: str = "skip") -> ConvertReport:
    """Convert one RSVQA split into vqa records.

    ``json_dir``: folder of the JSON triples; ``prefix``: ``LR`` / ``USGS`` (auto when only one
    matches ``split``); ``image_name``: file name pattern of an image given its id;
    ``image_root``: root of the record image paths (default: ``image_dir``).
    """
    files = rsvqa_files(json_dir, split, prefix)
    image_dir = Path(image_dir)
    root_dir = Path(image_root) if image_root is not None else image_dir
    report = ConvertReport(f"RSVQA {files['questions']}", on_bad=on_bad)
    images = _active_by_id(_load_entries(files["images"], "images"), files["images"], "images", report)
    answers = _active_by_id(_load_entries(files["answers"], "answers"), files["answers"], "answers", report)
    questions = _load_entries(files["questions"], "questions")
    qpath = files["questions"]
    image_cache: dict[int, dict | ConvertError] = {}
    with RecordWriter(out_jsonl, report) as writer:
        for i, q in enumerate(questions):
            if isinstance(q, dict) and not q.get("active", True):
                report.ignored["inactive"] += 1
                continue
            qid = q.get("id") if isinstance(q, dict) else None
            where = f"{qpath}: questions[{i}] (id {qid})"
            text = q.get("question") if isinstance(q, dict) else None
            if not isinstance(qid, int) or not isinstance(text, str) or not text.strip():
                report.skip("malformed_entry", f"{where}: needs an integer 'id' and a non-empty 'question'. "
                            "Fix the entry")
                continue
            img_id = q.get("img_id")
            image = images.get(img_id) if isinstance(img_id, int) else None
            if image is None:
                report.skip("image_entry_missing", f"{where}: img_id {q.get('img_id')!r} is not an active entry "
                            f"of {files['images']}. Use the JSON triple of one split")
                continue
            answer = _first_answer(q.get("answers_ids"), answers)
            if answer is None:
                report.skip("answer_missing", f"{where}: none of answers_ids {q.get('answers_ids')!r} is an active "
                            f"answer in {files['answers']}. Use the JSON triple of one split")
                continue
            if img_id not in image_cache:
                path = image_dir / image_name.format(id=img_id)
                try:
                    width, height = image_size(path)
                    image_cache[img_id] = {"path": relative_image_path(path, root_dir), "modality": "rgb",
                                           "width": width, "height": height}
                except ConvertError as exc:
                    image_cache[img_id] = exc
            entry = image_cache[img_id]
            if isinstance(entry, ConvertError):
                report.skip(entry.reason, f"{where}: {entry}")
                continue
            qtype = str(q.get("type", ""))
            writer.write({"id": f"{split}_{qid}", "task": "vqa", "images": [entry], "question": text.strip(),
                          "answer": answer.strip(), "answer_type": ANSWER_TYPES.get(qtype, "word")}, where)
    return report
