"""Visual grounding metrics: exact box IoU and the Acc@IoU / mIoU summary.

This module owns the IoU of two record boxes (``{"hbb": [x1, y1, x2, y2]}``, ``{"quad": [8
numbers]}`` or ``{"obb": [cx, cy, w, h, angle_deg]}``, all in ORIGINAL pixels, any pair of kinds)
and the summary over a set of grounding answers. Geometry (quad vertex order, obb corners) comes
from ``cotrain.boxes`` so that a box means the same thing here as in training targets.

It must not parse model text or map boxes between image frames: the caller parses with
``BoxCodec.parse`` / ``BoxCodec.to_original`` and passes an IoU of 0.0 for an answer that gave no
box, so failed parses count against the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from shapely.errors import GEOSException
from shapely.geometry import Polygon

from cotrain.boxes import obb_to_quad, order_quad

__all__ = ["box_iou", "grounding_summary"]

_SIZES = {"hbb": 4, "quad": 8, "obb": 5}


def _outline(box: dict) -> list[tuple[float, float]] | None:
    """The box's 4 corners, or None when its numbers are not finite (e.g. a parsed "1e999")."""
    kinds = [k for k in _SIZES if k in box]
    if len(kinds) != 1:
        raise ValueError(f"a box is one of {{'hbb': [4]}}, {{'quad': [8]}}, {{'obb': [5]}}; got keys {sorted(box)}")
    kind = kinds[0]
    values = [float(v) for v in box[kind]]
    if len(values) != _SIZES[kind]:
        raise ValueError(f"a {kind} box has {_SIZES[kind]} numbers, got {len(values)}: {box[kind]!r}")
    if not all(math.isfinite(v) for v in values):
        return None
    if kind == "hbb":
        x1, y1, x2, y2 = values
        q = [x1, y1, x2, y1, x2, y2, x1, y2]
    elif kind == "obb":
        q = obb_to_quad(values)
    else:
        # Records and parsers may list quad vertices in any order; unordered, a quad can be a
        # self-intersecting "bow-tie" whose shapely area is meaningless.
        q = order_quad(values)
    return [(q[i], q[i + 1]) for i in range(0, 8, 2)]


def box_iou(a: dict, b: dict) -> float:
    """Exact (polygon) intersection over union of two boxes of any kinds, in [0, 1].

    A degenerate box (zero area, non-finite numbers, an outline that is not a simple polygon)
    gives 0.0 rather than raising, since predicted boxes come from model text. A box with the
    wrong keys or number count raises ValueError: that is a caller or record bug.
    """
    oa, ob = _outline(a), _outline(b)
    if oa is None or ob is None:
        return 0.0
    pa, pb = Polygon(oa), Polygon(ob)
    if not pa.is_valid or not pb.is_valid or pa.area <= 0 or pb.area <= 0:
        return 0.0
    try:
        inter = pa.intersection(pb).area
    except GEOSException:  # robustness failures on near-degenerate inputs: score as no overlap
        return 0.0
    union = pa.area + pb.area - inter
    iou = inter / union if union > 0 else 0.0
    if not math.isfinite(iou):  # areas that overflow float (coordinates near 1e308)
        return 0.0
    # Clamp float noise so that the result never leaves [0, 1].
    return float(min(max(iou, 0.0), 1.0))


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
