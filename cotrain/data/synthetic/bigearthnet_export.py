"""The synthetic S1 / S2 test patches written as a BigEarthNet.txt release: rows + RGB renderings.

``cotrain.converters.bigearthnet_txt`` and the ``bigearthnet_txt_*`` public benchmarks read the real
release from ``<root>/BigEarthNet.txt/BigEarthNet.txt.jsonl`` (the parquet exported as JSON lines) and
``<root>/BigEarthNet.txt/images/<patch_id>.png``. This module writes the same two things from the
multisensor generator's records, so the whole path (converter -> benchmark -> eval -> per-subtask
tables) runs on demo data: ``cotrain eval --bench bigearthnet_txt_referring --data-root <ms data>``.

Rows, one per record, all with ``split: benchmark`` and ``type`` = the record's subtask:

* ms_vqa -> a binary row (output ``Yes`` / ``No``);
* ms_mcq -> an MCQ row (options ``A. ...`` one per line after the question, output the letter);
* ms_cap -> a caption row (``Describe the image.``);
* ms_ref -> a referring row (output ``[x1, y1, x2, y2]`` in pixels of the 120 x 120 rendering).

The renderings are the true-colour composite (``cotrain.sensors.COMPOSITES``). It must not train or
evaluate anything.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from cotrain.files import write_jsonl_atomic
from cotrain.sensors import composite_array

EXPORT_DIR = "BigEarthNet.txt"
ROWS_FILE = "BigEarthNet.txt.jsonl"


def _row(rec: dict, patch: str) -> dict | None:
    base = {"ID": rec["id"], "patch_id": patch, "s1_name": f"{patch}_S1",
            "type": rec.get("subtask", rec["task"]), "split": "benchmark"}
    task = rec["task"]
    if task == "vqa":
        return {**base, "input": rec["question"], "output": rec["answer"].capitalize()}
    if task == "mcq":
        options = "\n".join(f"{chr(65 + k)}. {c}" for k, c in enumerate(rec["choices"]))
        return {**base, "input": f"{rec['question']}\n{options}", "output": chr(65 + rec["answer"])}
    if task == "captioning":
        return {**base, "type": "caption", "input": "Describe the image.", "output": rec["captions"][0]}
    if task == "grounding" and "point" not in rec:
        x1, y1, x2, y2 = rec["target"]["hbb"]
        return {**base, "input": f"Detect {rec['expression']}.", "output": f"[{x1}, {y1}, {x2}, {y2}]"}
    return None


def write_bigearthnet_txt_export(root: str | Path, records: list[dict]) -> dict:
    """Write the rows of ``records`` (multisensor records of one split) and each patch's rendering under
    ``<root>/BigEarthNet.txt``; returns {"rows": n, "patches": n}."""
    root = Path(root)
    out = root / EXPORT_DIR
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows, patches = [], set()
    for rec in records:
        patch = Path(rec["images"][0]["path"]).parent.name
        row = _row(rec, patch)
        if row is None:
            continue
        rows.append(row)
        if patch not in patches:
            patches.add(patch)
            Image.fromarray(composite_array(rec["images"][0], root, "true_colour", rid=rec["id"])).save(
                out / "images" / f"{patch}.png")
    write_jsonl_atomic(out / ROWS_FILE, rows)
    return {"rows": len(rows), "patches": len(patches)}


def read_export_rows(root: str | Path) -> list[dict]:
    """The rows written by ``write_bigearthnet_txt_export`` (for tests and inspection)."""
    path = Path(root) / EXPORT_DIR / ROWS_FILE
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
