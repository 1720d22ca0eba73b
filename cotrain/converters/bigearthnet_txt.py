"""BigEarthNet.txt (Herzog et al., 2026) binary (yes/no) and multiple-choice VQA -> vqa / mcq records.

The release is one table, ``BigEarthNet.txt.parquet``, with the columns ``ID``, ``s1_name``
(Sentinel-1 patch), ``patch_id`` (Sentinel-2 patch of BigEarthNet v2.0), ``input`` (instruction or
question), ``output`` (reference answer), ``type``, ``category`` and ``split`` (plus
``country`` / ``season`` / ``climate_zone``). The benchmark split is the manually verified one
(1,082 image pairs).

Documented assumptions (the public card does not pin these down; a differing source is a
one-line reshaping away):

* Rows are read from a JSON-lines export of the parquet (one object per row, the columns as keys):
  reading parquet needs pyarrow, which cotrain does not depend on. Export with
  ``pandas.read_parquet(p).to_json(out, orient="records", lines=True)``.
* Images are RGB renderings of the Sentinel-2 patches (bands B04/B03/B02), one file per patch,
  ``<image_dir>/<patch_id>.<png|jpg|tif>``; the multi-band GeoTIFFs themselves are not read.
* Which rows are binary / MCQ is read from the content, not from ``type`` (its values are not
  documented): binary = the output is ``yes`` or ``no`` (any case, trailing period allowed);
  MCQ = the input lists at least two options, one per line, as ``A. text``, ``A) text``,
  ``(A) text`` or ``A: text``, and the output names one of them by letter (``B``, ``b``, ``B.``,
  ``(B)``, ``B) text``) or by its exact text (case-insensitive). The question is the input
  without the option lines. Other rows (captions, referring expressions) are counted as ignored.

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

KINDS = ("binary", "mcq")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_OPTION = re.compile(r"^\s*\(?([A-Z])\s*[\.\):]\s*(\S.*?)\s*$")
_LETTER_ANSWER = re.compile(r"^\s*\(?([A-Za-z])\s*(?:[\.\):]|$)")


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


def convert_bigearthnet_txt(rows_jsonl: str | Path, image_dir: str | Path, out_jsonl: str | Path, *, kind: str,
                            split: str | None = "benchmark", image_root: str | Path | None = None,
                            on_bad: str = "skip") -> ConvertReport:
    """Write the ``kind`` (binary -> vqa, mcq -> mcq) rows of ``split`` (None: every row) as records.

    ``image_root``: root of the record image paths (default: ``image_dir``).
    """
    if kind not in KINDS:
        raise ConvertError(f"kind={kind!r} is not one of {', '.join(KINDS)}", reason="bad_option")
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
            answer = output.strip().rstrip(".").strip()
            if kind == "binary":
                if answer.lower() not in ("yes", "no"):
                    report.ignored["not_binary"] += 1
                    continue
                payload = {"task": "vqa", "question": text.strip(), "answer": answer, "answer_type": "yes_no"}
            else:
                question, options = parse_options(text)
                if len(options) < 2:
                    report.ignored["not_mcq"] += 1
                    continue
                index = answer_index(output, options)
                if index is None or not question:
                    report.skip("answer_not_in_choices", f"{where}: output {output!r:.40} names none of the options "
                                f"{options}, or the question is empty. Fix the row")
                    continue
                payload = {"task": "mcq", "question": question, "choices": options, "answer": index}
            if patch not in images:
                path = find_image(patch, [image_dir], IMAGE_EXTS)
                try:
                    if path is None:
                        raise ConvertError(f"{image_dir}/{patch}.png (or .jpg/.tif): RGB rendering not found. Render "
                                           "the Sentinel-2 patch or drop the row", reason="image_missing")
                    w, h = image_size(path)
                    images[patch] = {"path": relative_image_path(path, root_dir), "modality": "rgb",
                                     "width": w, "height": h}
                except ConvertError as exc:
                    images[patch] = exc
            image = images[patch]
            if isinstance(image, ConvertError):
                report.skip(image.reason, f"{where}: {image}")
                continue
            rid = str(row["ID"]) if row.get("ID") is not None else str(lineno)
            writer.write({"id": rid, "images": [image], **payload}, where)
    return report
