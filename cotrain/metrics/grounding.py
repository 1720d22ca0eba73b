"""Visual grounding metrics: the Acc@IoU / mIoU summary over a set of grounding answers, and the
point-in-target accuracy of pointing answers.

The IoU of two record boxes is ``cotrain.geometry.box_iou`` (the same exact convex-quad IoU the
detection metrics use), so a box means the same thing here as in training targets.

It must not parse model text or map boxes between image frames: the caller parses with
``BoxCodec.parse`` / ``BoxCodec.to_original`` and passes an IoU of 0.0 for an answer that gave no
box, so failed parses count against the model.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["grounding_summary", "mean_normalised_hbb", "point_summary", "scale_normalised_hbb"]


def grounding_summary(ious: Sequence[float], thresholds: Sequence[float] = (0.5, 0.7, 0.9)) -> dict:
    """``acc@t`` (share of answers with IoU >= t, for each threshold), ``miou`` (mean IoU) and ``n``.

    One IoU per question; an answer without a parsable box must be passed as 0.0, so it counts in
    both. Keys print the threshold with ``:g`` (``acc@0.5``). Means over nothing are None.
    Raises ValueError for an IoU outside [0, 1] (including NaN), which only a caller bug produces.
    """
    bad = [v for v in ious if not 0.0 <= v <= 1.0]
    if bad:
        raise ValueError(f"IoUs must lie in [0, 1]; got {bad[:5]} (pass 0.0 for an unparsed answer)")
    n = len(ious)
    out: dict = {f"acc@{t:g}": (sum(1 for v in ious if v >= t) / n if n else None) for t in thresholds}
    out["miou"] = sum(ious) / n if n else None
    out["n"] = n
    return out


def point_summary(inside: Sequence[bool]) -> dict:
    """``point_accuracy`` (share of pointing answers inside their target, the point-in-instance accuracy)
    and ``n``. One flag per question; an answer without a parsable point must be passed as False."""
    n = len(inside)
    return {"point_accuracy": sum(1 for v in inside if v) / n if n else None, "n": n}


def mean_normalised_hbb(boxes_wh: Sequence[tuple[Sequence[float], tuple[int, int]]]) -> list[float]:
    """Mean of axis-aligned boxes ``[x1, y1, x2, y2]`` each divided by its image's (w, h): a box in [0, 1]."""
    if not boxes_wh:
        raise ValueError("the mean box of no boxes is undefined")
    acc = [0.0, 0.0, 0.0, 0.0]
    for (x1, y1, x2, y2), (w, h) in boxes_wh:
        for k, v in enumerate((x1 / w, y1 / h, x2 / w, y2 / h)):
            acc[k] += v
    return [v / len(boxes_wh) for v in acc]


def scale_normalised_hbb(box: Sequence[float], wh: tuple[int, int]) -> list[float]:
    """A [0, 1] box in the pixels of an image of size (w, h)."""
    w, h = wh
    return [box[0] * w, box[1] * h, box[2] * w, box[3] * h]
