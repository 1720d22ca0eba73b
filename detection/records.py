"""Canonical detection records <-> detection data model, and the oracle answers that must score 1.

``gts_from_records`` turns canonical ``detection`` records (DESIGN.md section 4; boxes in original
pixels, hbb or quad) into ``GroundTruth``; ``oracle_responses`` renders that ground truth as a
model would write it (the same box codec and answer format as training), which must score
APnc = 1 and so checks the whole parse -> metric path by hand. The simulated detector lives in
``detection.synthetic``.
"""

from __future__ import annotations

import numpy as np

from cotrain.boxes import BoxCodec, format_detection_answer
from cotrain.dota.types import GT, GroundTruth
from cotrain.errors import RecordError
from cotrain.geometry.quads import box_to_quad
from cotrain.records import read_records


def gts_from_records(path: str) -> tuple[GroundTruth, list[str], dict[str, dict]]:
    """(ground truth by record id, class list, records by id) from a canonical detection JSONL file."""
    records = read_records(path)
    gts: GroundTruth = {}
    classes: set[str] = set()
    by_id: dict[str, dict] = {}
    for rec in records:
        if rec["task"] != "detection":
            raise RecordError(f"task {rec['task']!r}: eval_det needs detection records", path=path,
                              record_id=rec.get("id"), field="task")
        rid = str(rec["id"])
        by_id[rid] = rec
        gts[rid] = [GT(o["label"], np.asarray(box_to_quad(o), dtype=np.float64), int(o.get("difficult", 0))) for o in rec["objects"]]
        classes.update(rec.get("classes") or [o["label"] for o in rec["objects"]])
    return gts, sorted(classes), by_id


def oracle_responses(records: dict[str, dict], kind: str = "quad") -> list[dict]:
    """Ground truth written as answers at original resolution (resized = original, so no quantisation)."""
    codec = BoxCodec("abs")
    rows = []
    for rid, rec in records.items():
        img = rec["images"][0]
        wh = (int(img["width"]), int(img["height"]))
        text = format_detection_answer(rec["objects"], kind, codec, wh, wh)
        rows.append({"id": rid, "response": text, "resized_wh": list(wh), "orig_wh": list(wh)})
    return rows
