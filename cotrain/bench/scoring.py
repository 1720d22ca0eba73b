"""Per-sample scores and per-benchmark summaries, by metric family.

``score_sample`` turns one response into a small JSON-able dict (cached per sample, so a resumed
run does not re-score); ``summarise`` turns a benchmark's rows into its numbers. Empty or
garbage answers are scored wrong and counted (``empty_responses``); requests that could not run
(missing image, ...) never reach here: the harness counts them as skips.

Boxes are parsed with the training ``BoxCodec`` for the image size the prompt was built for and
mapped back to ORIGINAL pixels before any IoU. Detection summaries hand over to ``detection/``
(its parser and APnc). This module must not run models or read files.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from cotrain.boxes import BoxCodec
from cotrain.metrics.answers import (classification_match, counting_summary, extract_choice, mcq_summary,
                                     normalise_answer, parse_count, vqa_match, yes_no_of)
from cotrain.metrics.grounding import box_iou, grounding_summary

YES_NO = ("yes", "no")


def answer_type(record: dict) -> str:
    """yes_no | number | other: the record's ``answer_type`` or read from the answer itself."""
    t = record.get("answer_type")
    if t in ("yes_no", "number"):
        return t
    if t:
        return "other"
    ans = normalise_answer(str(record.get("answer", "")))
    if ans in YES_NO:
        return "yes_no"
    if ans.isdigit():
        return "number"
    return "other"


def score_sample(metric: str, record: dict, response: str, *, images: list[dict], codec: BoxCodec,
                 options: dict) -> dict:
    """Score of one response (never raises on model text)."""
    text = response if isinstance(response, str) else ""
    if metric == "classification":
        out = {"correct": classification_match(text, record["label"]), "label": record["label"]}
        if options.get("lenient"):
            out["correct_contains"] = classification_match(text, record["label"], lenient=True,
                                                           classes=record.get("classes") or options.get("classes"))
        return out
    if metric == "vqa":
        kind = answer_type(record)
        out = {"correct": vqa_match(text, str(record["answer"])), "answer": str(record["answer"]), "type": kind}
        if kind == "yes_no":
            out["yes_no"] = yes_no_of(text)
        elif kind == "number":
            out["count"] = parse_count(text)
        return out
    if metric == "mcq":
        idx = extract_choice(text, record["choices"])
        return {"correct": idx == record["answer"], "extracted": idx, "answer": record["answer"],
                "n_choices": len(record["choices"])}
    if metric == "grounding":
        target = record["target"]
        img = images[int(target.get("image", 0))]
        h, w = img["resized"]
        kind = "rotated" if "quad" in target or "obb" in target else "hbb"
        box_format = options.get("box_format", "quad")
        if box_format == "hbb" and kind == "rotated":
            # the prompt asked for (and training taught) the enclosing axis-aligned box of a rotated target
            target, kind = enclosing_hbb(target), "hbb (enclosing a rotated target)"
        values = codec.parse(text, box_format)
        if values is None:
            return {"iou": 0.0, "parsed": False, "kind": kind}
        try:
            pred = codec.to_original(values, box_format, (int(img["width"]), int(img["height"])), (w, h))
            iou = box_iou(pred, target)
        except (ValueError, TypeError, IndexError):
            return {"iou": 0.0, "parsed": False, "kind": kind}
        iou = iou if math.isfinite(iou) else 0.0
        return {"iou": iou, "parsed": True, "kind": kind, "pred_box": pred}
    if metric in ("captioning", "detection"):
        return {}  # corpus-level: summarised from the responses themselves
    raise ValueError(f"metric {metric!r} is not scored per sample")


def _share(n: int, d: int) -> float | None:
    return n / d if d else None


def summarise(metric: str, rows: list[dict], records: dict[int, dict], *, codec: BoxCodec,
              options: dict) -> dict[str, Any]:
    """Numbers of one benchmark from its scored rows (``rows[i]["index"]`` keys ``records``)."""
    ok = [r for r in rows if not r.get("error")]
    if metric == "mixed":
        from cotrain.bench.registry import TASK_METRIC

        tasks = sorted({r["task"] for r in ok})
        by_task = {t: summarise(TASK_METRIC[t], [r for r in ok if r["task"] == t], records, codec=codec,
                                options=options) for t in tasks}
        return {"n": len(ok), "by_task": by_task,
                "empty_responses": sum(1 for r in ok if not r["response"].strip())}
    out: dict[str, Any] = {"n": len(ok), "empty_responses": sum(1 for r in ok if not r["response"].strip()),
                           "cut_off": sum(1 for r in ok if r.get("finish_reason") == "length")}
    if not ok:
        return out
    if metric in ("classification", "vqa", "mcq"):
        out["accuracy"] = sum(bool(r["score"]["correct"]) for r in ok) / len(ok)
    if metric == "classification":
        if options.get("lenient"):
            out["accuracy_contains (lenient)"] = sum(bool(r["score"].get("correct_contains")) for r in ok) / len(ok)
        labels = Counter(normalise_answer(r["score"]["label"]) for r in ok)
        out["majority_baseline"] = labels.most_common(1)[0][1] / len(ok)
        classes = options.get("classes") or records[ok[0]["index"]].get("classes")
        if classes:
            out["chance"] = 1.0 / len(classes)
    elif metric == "vqa":
        answers = Counter(normalise_answer(r["score"]["answer"]) for r in ok)
        out["majority_baseline"] = answers.most_common(1)[0][1] / len(ok)
        for kind in ("yes_no", "number", "other"):
            sub = [r for r in ok if r["score"]["type"] == kind]
            if sub:
                out[f"accuracy_{kind}"] = sum(bool(r["score"]["correct"]) for r in sub) / len(sub)
                out[f"n_{kind}"] = len(sub)
        yn = [r for r in ok if r["score"]["type"] == "yes_no"]
        if yn:
            out["yes_no_unanswered"] = sum(r["score"].get("yes_no") is None for r in yn) / len(yn)
        num = [r for r in ok if r["score"]["type"] == "number"]
        if num:
            truths = [parse_count(r["score"]["answer"]) for r in num]
            pairs = [(r["score"].get("count"), t) for r, t in zip(num, truths) if t is not None]
            if pairs:
                counting = counting_summary([p for p, _ in pairs], [t for _, t in pairs])
                out.update({f"counting_{k}": v for k, v in counting.items()})
    elif metric == "mcq":
        out.update(mcq_summary([r["score"]["extracted"] for r in ok], [r["score"]["answer"] for r in ok],
                               [r["score"]["n_choices"] for r in ok]))
    elif metric == "grounding":
        thresholds = tuple(options.get("iou_thresholds") or (0.5, 0.7, 0.9))
        out.update(grounding_summary([float(r["score"]["iou"]) for r in ok], thresholds))
        out["parse_rate"] = sum(bool(r["score"]["parsed"]) for r in ok) / len(ok)
        kinds = Counter(r["score"]["kind"] for r in ok)
        if len(kinds) > 1:  # hbb and rotated targets in one set: report each
            for kind in kinds:
                sub = [float(r["score"]["iou"]) for r in ok if r["score"]["kind"] == kind]
                out.update({f"{kind}/{k}": v for k, v in grounding_summary(sub, thresholds).items()})
        else:
            out["box_kind"] = next(iter(kinds))
    elif metric == "captioning":
        from cotrain.metrics.captioning import caption_scores

        cands = {str(r["index"]): r["response"] for r in ok}
        refs = {str(r["index"]): list(records[r["index"]]["captions"]) for r in ok}
        out.update(caption_scores(cands, refs))
    elif metric == "detection":
        out.update(_detection_summary(ok, records, codec=codec, options=options))
    return out


def enclosing_hbb(box: dict) -> dict:
    """The axis-aligned box enclosing an hbb / quad / obb box dict."""
    from cotrain.boxes import obb_to_quad

    if "hbb" in box:
        return {"hbb": list(box["hbb"])}
    q = box["quad"] if "quad" in box else obb_to_quad(box["obb"])
    xs, ys = q[0::2], q[1::2]
    return {"hbb": [min(xs), min(ys), max(xs), max(ys)]}


def _detection_summary(rows: list[dict], records: dict[int, dict], *, codec: BoxCodec, options: dict) -> dict:
    # detection/ owns parsing and APnc; it imports cotrain, so import it only here
    from detection.metrics import IOU_THRS_50_95, apnc
    from detection.parse import LabelNormaliser, ParseSummary, parse_response
    from detection.records import record_quad
    from detection.types import GT

    mine = [records[r["index"]] for r in rows]  # a mixed set holds other tasks' records too
    classes = sorted({o["label"] for rec in mine for o in rec["objects"]} | {c for rec in mine for c in rec.get("classes") or []})
    hbb = options.get("box_format", "quad") == "hbb"
    norm = LabelNormaliser(classes, None, None)
    dets, gts = {}, {}
    summary = ParseSummary()
    for r in rows:
        rec = records[r["index"]]
        rid = str(rec["id"])
        img = r["images"][0]
        h, w = img["resized"]
        parsed = parse_response(r["response"], kind=options.get("box_format", "quad"), codec=codec,
                                orig_wh=(int(img["width"]), int(img["height"])), resized_wh=(w, h),
                                normaliser=norm, drop_repeats=False)
        summary.add(rid, parsed.diagnostics)
        dets[rid] = parsed.objects
        # hbb answers are scored against each object's enclosing axis-aligned box (DOTA's HBB task)
        gts[rid] = [GT(o["label"], record_quad(enclosing_hbb(o) if hbb else o), int(o.get("difficult", 0)))
                    for o in rec["objects"]]
    res = apnc(dets, gts, classes, iou_thrs=IOU_THRS_50_95)
    return {"APnc50": res.map_at(0.5), "APnc75": res.map_at(0.75), "APnc50:95": res.map_mean,
            "objects_parsed": int(sum(len(v) for v in dets.values())),
            "objects_gt": int(sum(len(v) for v in gts.values())),
            "parse": {k: v for k, v in vars(summary).items() if isinstance(v, (int, float))}}
