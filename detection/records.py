"""Canonical detection records <-> detection data model, and a simulated detector for demos.

``gts_from_records`` turns canonical ``detection`` records (DESIGN.md section 4; boxes in original
pixels, hbb or quad) into ``GroundTruth``; ``oracle_responses`` renders that ground truth as a
model would write it (the same box codec and answer format as training), which must score
APnc = 1 and so checks the whole parse -> metric path by hand; ``simulate_detector`` makes a
scored "conventional detector" output from ground truth: jittered true positives with high
scores, misses, and low-scored false positives, every choice seeded by (seed, image id).
"""

from __future__ import annotations

import zlib

import numpy as np

from cotrain.boxes import BoxCodec, format_detection_answer
from cotrain.dota.types import GT, Det, Detections, GroundTruth
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
        rows.append({"id": rid, "response": text, "resized": [wh[1], wh[0]], "orig_wh": list(wh)})
    return rows


def _rng(seed: int, image_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(image_id.encode())])


def simulate_detector(gts: GroundTruth, classes: list[str], image_sizes: dict[str, tuple[int, int]], *,
                      seed: int = 0, recall: float = 0.85, fp_per_image: float = 1.0, jitter: float = 0.08,
                      confusion: float = 0.05) -> Detections:
    """A scored detector output: each GT found with probability ``recall`` (jittered by ``jitter`` of its
    size, score ~ Beta(5, 2)), sometimes with the wrong class (``confusion``), plus Poisson(``fp_per_image``)
    false positives per image with score ~ Beta(2, 5). Deterministic in (seed, image id)."""
    out: Detections = {}
    for image_id in sorted(gts):
        rng = _rng(seed, image_id)
        dets: list[Det] = []
        for g in gts[image_id]:
            if rng.random() >= recall:
                continue
            q = g.quad.reshape(4, 2)
            size = np.ptp(q, axis=0)
            shift = rng.normal(0.0, jitter, size=2) * size
            scale = 1.0 + rng.normal(0.0, jitter)
            centre = q.mean(axis=0)
            quad = ((q - centre) * scale + centre + shift).reshape(-1)
            label = g.label if rng.random() >= confusion else classes[int(rng.integers(len(classes)))]
            dets.append(Det(label, quad, float(rng.beta(5, 2))))
        w, h = image_sizes[image_id]
        for _ in range(int(rng.poisson(fp_per_image))):
            bw, bh = rng.uniform(8, 60, size=2)
            x, y = rng.uniform(0, max(1.0, w - bw)), rng.uniform(0, max(1.0, h - bh))
            quad = np.array([x, y, x + bw, y, x + bw, y + bh, x, y + bh])
            dets.append(Det(classes[int(rng.integers(len(classes)))], quad, float(rng.beta(2, 5))))
        out[image_id] = dets
    return out
