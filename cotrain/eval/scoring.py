"""Per-sample scores and per-benchmark summaries, by metric family.

``score_sample`` turns one response into a small JSON-able dict (cached per sample, so a resumed
run does not re-score); ``summarise`` turns a benchmark's rows into its numbers. Empty or
garbage answers are scored wrong and counted (``empty_responses``); requests that could not run
(missing image, ...) never reach here: the harness counts them as skips.

Boxes are parsed with the training ``BoxCodec`` for the image size the prompt was built for and
mapped back to ORIGINAL pixels before any IoU. Detection summaries hand over to ``detection/``
(its parser and APnc), which registers itself through the ``cotrain.plugins`` entry point
(``register_summary``): cotrain never imports it. This module must not run models or read files.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Callable

from cotrain.boxes import BoxCodec
from cotrain.errors import ConfigError
from cotrain.resolution import resized_wh_of
from cotrain.geometry.iou import box_iou
from cotrain.geometry.quads import enclosing_hbb, point_in_box
from cotrain.metrics.answers import (
    classification_match,
    counting_summary,
    extract_choice,
    mcq_summary,
    normalise_answer,
    parse_count,
    vqa_match,
    yes_no_of,
)
from cotrain.metrics.grounding import grounding_summary, mean_normalised_hbb, point_summary, scale_normalised_hbb
from cotrain.plugins import PLUGIN_GROUP, load_plugins

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
        w, h = resized_wh_of(img)
        kind = "rotated" if "quad" in target or "obb" in target else "hbb"
        box_format = options.get("box_format", "quad")
        if box_format == "point":
            return _score_point(text, target, kind, img, (w, h), codec)
        if box_format == "hbb" and kind == "rotated":
            # the prompt asked for (and training taught) the enclosing axis-aligned box of a rotated target
            target, kind = enclosing_hbb(target), "hbb (enclosing a rotated target)"
        values = codec.parse(text, box_format)
        if values is None:
            return {"iou": 0.0, "parsed": False, "kind": kind}
        orig = (int(img["width"]), int(img["height"]))
        xlim, ylim = codec.frame_limits(orig, (w, h))
        flags = _box_flags(values, box_format, (xlim, ylim))
        if flags.get("reversed"):
            # [x2, y2, x1, y1] is not the format asked for: counted and scored 0, never quietly re-sorted
            return {"iou": 0.0, "parsed": True, "kind": kind, **flags}
        if flags.get("outside"):
            values = [min(max(v, 0.0), xlim if i % 2 == 0 else ylim) for i, v in enumerate(values)]
        try:
            pred = codec.to_original(values, box_format, orig, (w, h))
            iou = box_iou(pred, target)
        except (ValueError, TypeError, IndexError):
            return {"iou": 0.0, "parsed": False, "kind": kind}
        iou = iou if math.isfinite(iou) else 0.0
        return {"iou": iou, "parsed": True, "kind": kind, "pred_box": pred, **flags}
    if metric in ("captioning", "detection"):
        return {}  # corpus-level: summarised from the responses themselves
    raise ValueError(f"metric {metric!r} is not scored per sample")


def _score_point(text: str, target: dict, kind: str, img: dict, resized: tuple[int, int], codec: BoxCodec) -> dict:
    """A pointing answer: ``inside`` when the parsed point lies in the target's outline (ORIGINAL pixels).

    A point beyond the frame is flagged ``outside`` and scored as it is (never clipped: clipping could
    move it onto a target that touches the image border)."""
    values = codec.parse(text, "point")
    if values is None:
        return {"inside": False, "parsed": False, "kind": kind}
    orig = (int(img["width"]), int(img["height"]))
    flags = _box_flags(values, "point", codec.frame_limits(orig, resized))
    pred = codec.to_original(values, "point", orig, resized)
    return {"inside": point_in_box(pred["point"], target), "parsed": True, "kind": kind,
            "pred_point": pred["point"], **flags}


def _box_flags(values: list[float], box_format: str, limits: tuple[int, int]) -> dict:
    """Diagnostics of a parsed box: ``reversed`` (hbb with x1 > x2 or y1 > y2) and ``outside`` (a coordinate
    beyond the codec's frame: negative, or past the resized image / 999, as a box in the other family's
    convention usually is). Only flags that are set appear."""
    out = {}
    if box_format == "hbb" and (values[0] > values[2] or values[1] > values[3]):
        out["reversed"] = True
    if box_format != "obb":
        xlim, ylim = limits
        if any(v < 0 or v > (xlim if i % 2 == 0 else ylim) for i, v in enumerate(values)):
            out["outside"] = True
    return out


def _share(n: int, d: int) -> float | None:
    return n / d if d else None


def summarise(metric: str, rows: list[dict], records: dict[int, dict], *, codec: BoxCodec,
              options: dict) -> dict[str, Any]:
    """Numbers of one benchmark from its scored rows (``rows[i]["index"]`` keys ``records``).

    When records name a ``subtask`` (BigEarthNet.txt's task types, say) and there are two or more,
    ``by_subtask`` holds the same numbers for each subtask's rows (records without one under ``"-"``),
    as the paper's tables report them.
    """
    out = _summarise(metric, rows, records, codec=codec, options=options)
    ok = [r for r in rows if not r.get("error")]
    subtask = {r["index"]: records[r["index"]].get("subtask", "-") for r in ok}
    if metric != "mixed" and set(subtask.values()) - {"-"} and len(set(subtask.values())) > 1:
        out["by_subtask"] = {name: _summarise(metric, [r for r in ok if subtask[r["index"]] == name], records,
                                              codec=codec, options=options) for name in sorted(set(subtask.values()))}
    return out


def _summarise(metric: str, rows: list[dict], records: dict[int, dict], *, codec: BoxCodec,
               options: dict) -> dict[str, Any]:
    ok = [r for r in rows if not r.get("error")]
    if metric == "mixed":
        from cotrain.eval.registry import TASK_METRIC

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
    elif metric == "grounding" and options.get("box_format") == "point":
        out.update(point_summary([bool(r["score"]["inside"]) for r in ok]))
        out["parse_rate"] = sum(bool(r["score"]["parsed"]) for r in ok) / len(ok)
        out["outside_frame"] = sum(bool(r["score"].get("outside")) for r in ok)
        out["fixed_point_baseline"] = _fixed_point_baseline(ok, records, options)
    elif metric == "grounding":
        thresholds = tuple(options.get("iou_thresholds") or (0.5, 0.7, 0.9))
        out.update(grounding_summary([float(r["score"]["iou"]) for r in ok], thresholds))
        out["parse_rate"] = sum(bool(r["score"]["parsed"]) for r in ok) / len(ok)
        out["reversed_corners"] = sum(bool(r["score"].get("reversed")) for r in ok)
        out["outside_frame_clipped"] = sum(bool(r["score"].get("outside")) for r in ok)
        out["fixed_box_baseline"] = _fixed_box_baseline(ok, records, options, thresholds)
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
        out.update(_plugin_summary("detection")(ok, records, codec=codec, options=options))
    return out


def _scored_target(record: dict, options: dict) -> tuple[dict, tuple[int, int]]:
    """A grounding record's target as ``score`` compares against it, and its image's (w, h)."""
    target = record["target"]
    img = record["images"][int(target.get("image", 0))]
    if options.get("box_format", "quad") == "hbb" and ("quad" in target or "obb" in target):
        target = enclosing_hbb(target)
    return target, (int(img["width"]), int(img["height"]))


def _fixed_box_baseline(rows: list[dict], records: dict[int, dict], options: dict, thresholds) -> dict:
    """Acc@t and mIoU of ONE box (the mean of the evaluated targets' enclosing boxes, as a fraction of
    each image's size) given for every question: what a model that never looks at the image gets at
    best with a fixed answer. It is fitted on the evaluated targets themselves, so it is an upper bound
    for any fixed box, and a model must beat it to show it localises."""
    scored = [_scored_target(records[r["index"]], options) for r in rows]
    mean = mean_normalised_hbb([(enclosing_hbb(t)["hbb"], wh) for t, wh in scored])
    ious = [box_iou({"hbb": scale_normalised_hbb(mean, wh)}, t) for t, wh in scored]
    out = grounding_summary([min(1.0, max(0.0, v)) for v in ious], thresholds)
    out["box"] = [round(v, 4) for v in mean]
    return out


def _fixed_point_baseline(rows: list[dict], records: dict[int, dict], options: dict) -> dict:
    """Point accuracy of ONE point (the mean of the targets' centres, as a fraction of each image's size)
    given for every question: the pointing twin of ``_fixed_box_baseline``, fitted on the evaluated targets."""
    scored = [_scored_target(records[r["index"]], options) for r in rows]
    centres = [(enclosing_hbb(t)["hbb"], wh) for t, wh in scored]
    cx, cy, _, _ = mean_normalised_hbb([([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2] * 2, wh) for b, wh in centres])
    out = point_summary([point_in_box([cx * w, cy * h], t) for t, (w, h) in scored])
    out["point"] = [round(cx, 4), round(cy, 4)]
    return out


_SUMMARIES: dict[str, Callable[..., dict]] = {}
"""Summaries that packages building on cotrain provide (metric -> fn(rows, records, codec=, options=))."""


def register_summary(metric: str, fn: Callable[..., dict]) -> None:
    """Let a package that builds on cotrain summarise ``metric`` (``detection/`` registers "detection")."""
    _SUMMARIES[metric] = fn


def _plugin_summary(metric: str) -> Callable[..., dict]:
    if metric not in _SUMMARIES:
        load_plugins()
    if metric not in _SUMMARIES:
        raise ConfigError(f"no summary for metric {metric!r}: it comes from a package that builds on cotrain "
                          f"(detection/ for 'detection'), registered through the {PLUGIN_GROUP!r} entry point; "
                          "install the repository (pip install -e .) so its entry points exist")
    return _SUMMARIES[metric]
