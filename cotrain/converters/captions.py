"""Karpathy-style caption JSON (RSICD, UCM-captions, Sydney-captions, RSITMD) -> captioning records.

Format read (the ``dataset_*.json`` files these sets ship)::

    {"dataset": "rsicd",
     "images": [{"filename": "airport_1.jpg", "imgid": 0, "split": "train", "filepath": "...",
                 "sentences": [{"raw": "many planes ...", "tokens": [...], "imgid": 0, "sentid": 0}, ...]},
                ...]}

Each image becomes ``{"task": "captioning", "captions": [...], "caption_style": "scene"}``.
Captions are the ``raw`` sentences, whitespace-normalised; a sentence with an empty ``raw`` falls
back to its joined ``tokens``. RSICD pads images that had fewer than five distinct captions by
repeating them; repeats are dropped by default (``dedupe``, counted in
``report.fixed['duplicate_captions_dropped']``) because a repeated reference only reweights the
training answer. The image path is ``filepath/filename`` when the entry has a ``filepath``, else
``filename``, relative to ``image_root``. ``split`` keeps only entries whose ``split`` field is
that value (Karpathy files also use ``restval``). Record ids are the image paths (unique).

Must not decode pixels or tokenise; the ``tokens`` field is not used beyond the fallback.
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
)
from cotrain.converters.scenes import check_modality


def _sentence_text(sentence: object) -> str:
    """The raw text of one sentence entry (a plain string is accepted too), whitespace-normalised."""
    if isinstance(sentence, str):
        return " ".join(sentence.split())
    if not isinstance(sentence, dict):
        return ""
    raw = sentence.get("raw")
    text = " ".join(raw.split()) if isinstance(raw, str) else ""
    if not text and isinstance(sentence.get("tokens"), list):
        text = " ".join(str(t) for t in sentence["tokens"] if str(t).strip())
    return text


def load_caption_json(path: str | Path) -> list:
    """The ``images`` list of a Karpathy-style file; ConvertError naming the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"{path}: caption file not found. Pass the dataset_*.json file", reason="source_missing")
    try:
        data = json.loads(read_utf8(path))
    except json.JSONDecodeError as exc:
        raise ConvertError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}, column {exc.colno}). Fix or re-download "
                           "the file", reason="invalid_json") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        got = f"an object with keys {sorted(data)}" if isinstance(data, dict) else f"a {type(data).__name__}"
        raise ConvertError(f"{path}: expected an object with an 'images' list (Karpathy format), got {got}. "
                           "Pass the dataset_*.json file of RSICD / UCM / Sydney / RSITMD", reason="bad_format")
    return data["images"]


def convert_captions(json_path: str | Path, out_jsonl: str | Path, *, image_root: str | Path,
                     split: str | None = None, modality: str = "rgb", dedupe: bool = True,
                     on_bad: str = "skip") -> ConvertReport:
    """Write one captioning record per image entry (of ``split`` when given) of a caption JSON."""
    json_path = Path(json_path)
    image_root = Path(image_root)
    check_modality(modality)
    report = ConvertReport(source=f"captions {json_path}", on_bad=on_bad)
    entries = load_caption_json(json_path)
    with RecordWriter(out_jsonl, report) as writer:
        for i, entry in enumerate(entries):
            where = f"{json_path}: images[{i}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str) or not entry["filename"]:
                report.skip("bad_entry", f"{where}: needs a 'filename' string, got {entry!r:.120}. Fix the entry")
                continue
            where = f"{where} ({entry['filename']})"
            if split is not None and entry.get("split") != split:
                continue
            sentences = entry.get("sentences")
            if not isinstance(sentences, list):
                report.skip("bad_entry", f"{where}: 'sentences' must be a list, got {sentences!r:.80}. Fix the entry")
                continue
            captions = [t for t in (_sentence_text(s) for s in sentences) if t]
            if dedupe:
                unique = list(dict.fromkeys(captions))
                if len(unique) < len(captions):
                    report.fixed["duplicate_captions_dropped"] += len(captions) - len(unique)
                captions = unique
            if not captions:
                report.skip("no_captions", f"{where}: no non-empty sentence. Add captions or drop the entry")
                continue
            filepath = entry.get("filepath")
            rel = entry["filename"]
            if isinstance(filepath, str) and filepath.strip("/"):
                rel = f"{filepath.strip('/')}/{rel}"
            try:
                width, height = image_size(image_root / rel)
            except ConvertError as exc:
                report.skip(exc.reason, f"{where}: {exc}")
                continue
            record = {
                "id": rel,
                "task": "captioning",
                "images": [{"path": rel, "modality": modality, "width": width, "height": height}],
                "captions": captions,
                "caption_style": "scene",
            }
            writer.write(record, where)
    return report
