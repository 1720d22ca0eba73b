"""FusionRS-style RGB / infrared question answering (scene, object, IR-cue QA) -> vqa records.

No public specification of FusionRS's QA files could be found, so this module reads a DOCUMENTED
ASSUMPTION next to the caption layouts of ``cotrain.converters.fusion``: one entry list (``.json``
list or ``.jsonl``), paths relative to ``image_root`` (default: the file's folder)::

    {"id": "0001_q3", "rgb": "rgb/0001.jpg", "ir": "ir/0001.png",     # at least one image
     "question": "...", "answer": "...",
     "type": "scene" | "object" | "ir_cue",                          # the QA family
     "split": "test"}                                                 # optional; filtered by ``split=``

``type`` also accepts ``scene_qa`` / ``object_qa`` / ``ir_cue_qa`` / ``ircue`` (any case, ``-`` or
``_``). Each entry becomes one vqa record whose images are those it names, RGB first (an IR-cue
question is asked with the infrared image in view); ``answer_type`` follows the answer text
(``cotrain.converters.vrsbench.answer_type_of``). Record ids: ``id`` (else ``<type>_<index>``).
Must not decode pixels or register the two images.
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
from cotrain.converters.vrsbench import answer_type_of

QA_TYPES = ("scene", "object", "ir_cue")
_ALIASES = {"scene": "scene", "scene qa": "scene", "object": "object", "object qa": "object", "ir cue": "ir_cue",
            "ircue": "ir_cue", "ir cue qa": "ir_cue", "ircue qa": "ir_cue"}


def qa_type_of(value: object) -> str | None:
    """Canonical QA family of an entry's ``type`` (None when unknown)."""
    if not isinstance(value, str):
        return None
    return _ALIASES.get(" ".join(value.replace("_", " ").replace("-", " ").lower().split()))


def _entries(path: Path) -> list[tuple[str, object]]:
    if not path.is_file():
        raise ConvertError(f"{path}: FusionRS QA file not found. Pass an entry list (.json/.jsonl), see "
                           "cotrain/converters/fusionrs_qa.py", reason="source_missing")
    text = read_utf8(path)
    if path.suffix.lower() == ".jsonl":
        out = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    out.append((f"{path}:{lineno}", json.loads(line)))
                except json.JSONDecodeError:
                    out.append((f"{path}:{lineno}", None))
        return out
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConvertError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}). Fix the file", reason="invalid_json") from None
    if not isinstance(data, list):
        raise ConvertError(f"{path}: expected a JSON list of QA entries, got {type(data).__name__}",
                           reason="bad_format")
    return [(f"{path}: entry {i}", e) for i, e in enumerate(data)]


def convert_fusionrs_qa(src: str | Path, out_jsonl: str | Path, *, qa_type: str | None = None,
                        image_root: str | Path | None = None, split: str | None = None,
                        on_bad: str = "skip") -> ConvertReport:
    """Write vqa records for the entries of ``src`` of one QA family (``qa_type``; None: all)."""
    if qa_type is not None and qa_type not in QA_TYPES:
        raise ConvertError(f"qa_type={qa_type!r} is not one of {', '.join(QA_TYPES)}", reason="bad_option")
    src = Path(src)
    root = Path(image_root) if image_root is not None else src.parent
    report = ConvertReport(f"fusionrs qa {src}", on_bad=on_bad)
    entries = _entries(src)
    with RecordWriter(out_jsonl, report) as writer:
        for i, (where, e) in enumerate(entries):
            if not isinstance(e, dict):
                report.skip("bad_entry", f"{where}: not a JSON object. Fix the entry")
                continue
            if split is not None and e.get("split") != split:
                continue
            family = qa_type_of(e.get("type"))
            if family is None:
                report.skip("bad_entry", f"{where}: 'type' {e.get('type')!r} is not one of {', '.join(QA_TYPES)}. "
                            "Fix the entry")
                continue
            if qa_type is not None and family != qa_type:
                continue
            question, answer = e.get("question"), e.get("answer")
            if not (isinstance(question, str) and question.strip() and isinstance(answer, str) and answer.strip()):
                report.skip("bad_entry", f"{where}: needs non-empty 'question' and 'answer' strings. Fix the entry")
                continue
            named = [(m, e[m]) for m in ("rgb", "ir") if isinstance(e.get(m), str) and e[m]]
            if not named:
                report.skip("bad_entry", f"{where}: names no image; give 'rgb' and/or 'ir'. Fix the entry")
                continue
            images = []
            try:
                for modality, rel in named:
                    w, h = image_size(root / rel)
                    images.append({"path": Path(rel).as_posix(), "modality": modality, "width": w, "height": h})
            except ConvertError as exc:
                report.skip(exc.reason, f"{where}: {exc}")
                continue
            rid = str(e.get("id") or f"{family}_{i}")
            writer.write({"id": rid, "task": "vqa", "images": images, "question": question.strip(),
                          "answer": answer.strip(), "answer_type": answer_type_of(answer)}, where)
    return report
