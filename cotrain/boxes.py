"""Box geometry and the box codec: the one place where boxes turn into text and back.

Records store boxes in ORIGINAL image pixels (x right, y down) as ``{"hbb": [x1, y1, x2, y2]}``,
``{"quad": [x1, y1, ..., x4, y4]}`` or, for pointing answers, ``{"point": [x, y]}``. This module owns

* geometry: quad vertex order, quad <-> oriented box (obb), quad <-> horizontal box (hbb);
* ``BoxCodec``: renders a box for the RESIZED image in the model family's convention, formats it
  as text, parses text back, and maps parsed values back to original pixels;
* the detection answer text (plain lines or a fenced JSON list) and its parser.

Training targets, prompts, response parsing and metrics all go through this module, so a box
means the same thing everywhere. It must not know about tasks, templates or tokenisation.

Conventions (shared/DESIGN.md section 6)
----------------------------------------
* quad: 4 vertices clockwise ON SCREEN (y down), starting at the top-most vertex, ties: left-most.
  Every public function here that returns a quad returns it in this order (``order_quad``).
* obb: ``cx, cy, w, h, angle``: the minimum-area rectangle, ``w >= h``, angle in degrees in
  [-90, 90) of the ``w`` side, measured from +x towards +y (clockwise on screen). A square
  (``w == h``) takes the side whose angle lies in [-45, 45), so its angle is stable.
* ``"abs"`` (Qwen2.5-VL): integer pixels of the resized image, clipped to [0, resized side].
* ``"norm1000"`` (Qwen2-VL, Qwen3-VL): ``round(x / W * 1000)`` clipped to [0, 999].
* Rounding is half-up (``floor(v + 0.5)``), the same for every coordinate and both conventions.
* An obb is computed in the codec's frame (resized pixels, or the 1000x1000 normalised frame), so
  rendering and ``to_original`` are exact inverses up to integer rounding.
* point: ``[x, y]``. A hbb or quad rendered as a point gives its centre (mean of the 4 vertices);
  a point has no extent, so it renders only as a point.

Text forms (one per kind): plain ``[x1, y1, x2, y2]`` (hbb), ``[cx, cy, w, h, angle]`` (obb),
``[x1, y1, x2, y2, x3, y3, x4, y4]`` (quad), ``[x, y]`` (point); JSON objects use the keys
``"bbox_2d"``, ``"oriented bbox"``, ``"quad bbox"`` and ``"point_2d"`` (Qwen2.5-VL's pointing key)
with a ``"label"``.

Quantisation bound of a round trip (render -> to_original), per coordinate, before clipping:
``0.5 * W / rw`` in x and ``0.5 * H / rh`` in y for "abs"; ``0.5 * W / 1000`` and ``0.5 * H / 1000``
for "norm1000" (up to twice that on the right/bottom edge, where 1000 is clipped to 999). So hbb,
quad and point come back within ONE unit of the frame (one resized pixel, or 1/1000 of the side).
An obb cannot promise that: its integer angle moves a corner by up to ``radians(0.5) * half
diagonal`` and its integer w, h by up to ``0.25 * (|cos| + |sin|)`` on top of the centre's 0.5,
so its corner bound per axis, in frame units, is ``0.5 + 0.25 * sqrt(2) + radians(0.5) * half
diagonal`` (tests/cotrain/test_boxes.py checks exactly these bounds).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cotrain.errors import ConfigError

BOX_KINDS = ("hbb", "obb", "quad")
"""Box formats a dataset may train with (recipe key ``box_format``)."""
CODEC_KINDS = BOX_KINDS + ("point",)
"""Everything the codec renders, formats and parses: the box formats plus ``point``."""
CONVENTIONS = ("abs", "norm1000")
NORM_SCALE = 1000
"""Side of the normalised frame of the "norm1000" convention."""
VALUE_COUNTS = {"hbb": 4, "obb": 5, "quad": 8, "point": 2}
JSON_KEYS = {"hbb": "bbox_2d", "obb": "oriented bbox", "quad": "quad bbox", "point": "point_2d"}
NONE_ANSWER = "There are none."
"""Plain detection answer for an image without objects of the asked classes."""

_SQUARE_RTOL = 1e-9  # sides equal up to float noise count as a square (stable angle rule)


def _round(v: float) -> int:
    """Half-up rounding: unlike Python's round() it does not depend on the parity of the integer."""
    return int(math.floor(v + 0.5))


def _pairs(quad: Sequence[float]) -> list[tuple[float, float]]:
    if len(quad) != 8:
        raise ValueError(f"a quad has 8 numbers (4 x,y vertices), got {len(quad)}: {list(quad)!r}")
    return [(quad[i], quad[i + 1]) for i in range(0, 8, 2)]


def order_quad(quad: Sequence[float]) -> list:
    """Reorder 4 vertices clockwise on screen (y down) starting at the top-most (ties: left-most).

    Vertices are sorted by angle around their mean, so a quad given in any order (even a
    self-intersecting "bow-tie" order) comes out as the convex outline for convex inputs.
    Numbers keep their type (ints stay ints).
    """
    pts = _pairs(quad)
    mx = sum(p[0] for p in pts) / 4.0
    my = sum(p[1] for p in pts) / 4.0
    # With y pointing down, increasing atan2(dy, dx) turns clockwise on screen.
    pts.sort(key=lambda p: math.atan2(p[1] - my, p[0] - mx))
    start = min(range(4), key=lambda i: (pts[i][1], pts[i][0]))
    pts = pts[start:] + pts[:start]
    return [v for p in pts for v in p]


def hbb_to_quad(hbb: Sequence[float]) -> list:
    """Quad of an axis-aligned box: top-left, top-right, bottom-right, bottom-left."""
    x1, y1, x2, y2 = hbb
    return [x1, y1, x2, y1, x2, y2, x1, y2]


def quad_to_hbb(quad: Sequence[float]) -> list:
    """Enclosing axis-aligned box ``[xmin, ymin, xmax, ymax]`` of a quad."""
    xs, ys = quad[0::2], quad[1::2]
    return [min(xs), min(ys), max(xs), max(ys)]


def box_to_quad(box: dict) -> list:
    """The quad of a record box ``{"hbb": [...]}`` or ``{"quad": [...]}``, ordered by ``order_quad``."""
    if "quad" in box:
        return order_quad(box["quad"])
    if "hbb" in box:
        return hbb_to_quad(box["hbb"])
    if "point" in box:
        raise ValueError(f"a point {box['point']!r} has no outline; render it with kind 'point'")
    raise ValueError(f"a box is {{'hbb': [4 numbers]}} or {{'quad': [8 numbers]}}, got keys {sorted(box)}")


def quad_area(quad: Sequence[float]) -> float:
    """Area of the quad's outline in ``order_quad`` order (shoelace), so a bow-tie order is not zero."""
    q = order_quad(quad)
    return 0.5 * abs(sum(q[i] * q[(i + 3) % 8] - q[(i + 2) % 8] * q[i + 1] for i in range(0, 8, 2)))


def is_convex_quad(quad: Sequence[float], rtol: float = 1e-9) -> bool:
    """True when the ordered outline covers the convex hull of the 4 vertices (up to ``rtol``).

    False for a vertex strictly inside the triangle of the other three (an arrowhead): three
    different simple quadrilaterals share such vertices, so the annotation is ambiguous. A vertex
    on a hull edge (a triangle with a redundant vertex) counts as convex.
    """
    hull = _convex_hull([(float(x), float(y)) for x, y in _pairs(quad)])
    if len(hull) < 3:
        return True  # collinear or repeated vertices: zero area, which callers reject on its own
    hull_area = 0.5 * abs(sum(hull[i][0] * hull[i - 1][1] - hull[i - 1][0] * hull[i][1] for i in range(len(hull))))
    return quad_area(quad) >= hull_area * (1.0 - rtol)


def _convex_hull(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Convex hull by the monotone-chain method (collinear points dropped)."""
    pts = sorted(set(pts))
    if len(pts) <= 2:
        return pts

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


def _wrap(angle: float, period: float) -> float:
    """Map ``angle`` into [-period/2, period/2)."""
    half = period / 2.0
    a = (angle + half) % period - half
    return a - period if a >= half else a  # float % can land exactly on the upper end


def quad_to_obb(quad: Sequence[float]) -> tuple[float, float, float, float, float]:
    """Minimum-area rectangle of a quad as ``(cx, cy, w, h, angle_deg)``, ``w >= h``, angle in [-90, 90).

    Rotating calipers on the convex hull: the minimum-area enclosing rectangle has one side on a
    hull edge, so trying every hull edge direction is exact.
    """
    hull = _convex_hull([(float(x), float(y)) for x, y in _pairs(quad)])
    if len(hull) == 1:
        return hull[0][0], hull[0][1], 0.0, 0.0, 0.0
    best = None
    for i in range(len(hull)):
        (px, py), (qx, qy) = hull[i], hull[(i + 1) % len(hull)]
        norm = math.hypot(qx - px, qy - py)
        ux, uy = (qx - px) / norm, (qy - py) / norm
        us = [x * ux + y * uy for x, y in hull]
        vs = [-x * uy + y * ux for x, y in hull]  # coordinate along v = (-uy, ux)
        a, b = max(us) - min(us), max(vs) - min(vs)
        # Strictly smaller by more than float noise: equal areas (e.g. the two edge directions of
        # a rectangle) keep the first candidate, so the result does not flicker.
        if best is None or a * b < best[0] - 1e-12 * max(best[0], 1.0):
            cu, cv = (max(us) + min(us)) / 2.0, (max(vs) + min(vs)) / 2.0
            best = (a * b, a, b, ux, uy, cu * ux - cv * uy, cu * uy + cv * ux)
    _, a, b, ux, uy, cx, cy = best
    angle_u = math.degrees(math.atan2(uy, ux))
    if abs(a - b) <= _SQUARE_RTOL * max(a, b):
        return cx, cy, max(a, b), min(a, b), _wrap(angle_u, 90.0)
    if a > b:
        return cx, cy, a, b, _wrap(angle_u, 180.0)
    return cx, cy, b, a, _wrap(angle_u + 90.0, 180.0)


def obb_to_quad(obb: Sequence[float]) -> list[float]:
    """Corners of an oriented box ``(cx, cy, w, h, angle_deg)``, ordered by ``order_quad``."""
    cx, cy, w, h, angle = obb
    t = math.radians(angle)
    c, s = math.cos(t), math.sin(t)
    ux, uy = c * w / 2.0, s * w / 2.0     # half of the w side
    vx, vy = -s * h / 2.0, c * h / 2.0    # half of the h side
    corners = [cx + ux + vx, cy + uy + vy, cx + ux - vx, cy + uy - vy,
               cx - ux - vx, cy - uy - vy, cx - ux + vx, cy - uy + vy]
    return order_quad(corners)


def _fmt_number(v: float) -> str:
    if isinstance(v, int) or float(v).is_integer():
        return str(int(v))
    return f"{v:.2f}".rstrip("0").rstrip(".")


def _check_kind(kind: str) -> None:
    if kind not in VALUE_COUNTS:
        raise ConfigError(f"unknown box format {kind!r}; use one of {', '.join(CODEC_KINDS)} "
                          "(recipe key 'box_format' takes the first three)")


@dataclass(frozen=True)
class BoxCodec:
    """Renders, formats, parses and maps back boxes in one model family's convention."""

    convention: str
    """``"abs"`` (resized-image pixels, Qwen2.5-VL) or ``"norm1000"`` (Qwen2-VL, Qwen3-VL)."""

    def __post_init__(self):
        if self.convention not in CONVENTIONS:
            raise ConfigError(f"unknown box convention {self.convention!r}; use one of {', '.join(CONVENTIONS)}")

    @classmethod
    def for_family(cls, spec) -> BoxCodec:
        """The codec of a ``cotrain.model.families.FamilySpec``."""
        return cls(spec.box_convention)

    def _frame(self, orig_wh, resized_wh) -> tuple[float, float, int, int]:
        """(x scale, y scale, x limit, y limit) from original pixels into the codec's frame."""
        w, h = orig_wh
        if self.convention == "abs":
            rw, rh = resized_wh
            return rw / w, rh / h, int(rw), int(rh)
        return NORM_SCALE / w, NORM_SCALE / h, NORM_SCALE - 1, NORM_SCALE - 1

    def render(self, box: dict, orig_wh, resized_wh, kind: str) -> list[int]:
        """Integers for ``box`` (original pixels) in the model convention, as ``kind``.

        ``orig_wh`` and ``resized_wh`` are (width, height). Coordinates are clipped to the image.
        """
        _check_kind(kind)
        sx, sy, lx, ly = self._frame(orig_wh, resized_wh)
        if kind == "point":
            if "point" in box:
                px, py = box["point"]
            else:  # the centre of a box: a pointing answer for a boxed target
                q = box_to_quad(box)
                px, py = sum(q[0::2]) / 4.0, sum(q[1::2]) / 4.0
            return [_round(min(max(px * sx, 0.0), lx)), _round(min(max(py * sy, 0.0), ly))]
        quad = box_to_quad(box)
        xs = [min(max(x * sx, 0.0), lx) for x in quad[0::2]]
        ys = [min(max(y * sy, 0.0), ly) for y in quad[1::2]]
        if kind == "hbb":
            return [_round(min(xs)), _round(min(ys)), _round(max(xs)), _round(max(ys))]
        if kind == "quad":
            # Order after rounding so that the emitted integers themselves obey the vertex rule.
            ints = [v for x, y in zip(xs, ys) for v in (_round(x), _round(y))]
            return order_quad(ints)
        cx, cy, w, h, angle = quad_to_obb([v for x, y in zip(xs, ys) for v in (x, y)])
        a = _round(angle)
        return [min(_round(cx), lx), min(_round(cy), ly), _round(w), _round(h), -90 if a >= 90 else a]

    def format(self, values: Sequence[float], kind: str, *, style: str = "plain", label: str | None = None) -> str:
        """Text of one box: plain ``[v1, v2, ...]``, or a fenced JSON list with one labelled object."""
        _check_kind(kind)
        if style == "json":
            return format_json_objects([(values, label)], kind)
        if style != "plain":
            raise ConfigError(f"unknown prompt style {style!r}; use plain or json (recipe key 'prompt_style')")
        return "[" + ", ".join(_fmt_number(v) for v in values) + "]"

    def parse(self, text: str, kind: str) -> list[float] | None:
        """The first box of ``kind`` in ``text`` (plain or JSON form), or None when there is none.

        A quad comes back in ``order_quad`` order, whatever order the text wrote its vertices in.
        """
        _check_kind(kind)
        values = _first_group(text, VALUE_COUNTS[kind])
        return order_quad(values) if values is not None and kind == "quad" else values

    def to_original(self, values: Sequence[float], kind: str, orig_wh, resized_wh) -> dict:
        """Map rendered/parsed values back to ORIGINAL pixels: ``{"hbb"|"quad"|"point": [...]}``.

        hbb stays hbb (corners sorted); quad and obb become quads (the obb's corners); a point
        stays a point.
        """
        _check_kind(kind)
        if len(values) != VALUE_COUNTS[kind]:
            raise ValueError(f"a {kind} box has {VALUE_COUNTS[kind]} numbers, got {len(values)}: {list(values)!r}")
        sx, sy, _, _ = self._frame(orig_wh, resized_wh)
        if kind == "hbb":
            x1, y1, x2, y2 = (float(v) for v in values)
            return {"hbb": [min(x1, x2) / sx, min(y1, y2) / sy, max(x1, x2) / sx, max(y1, y2) / sy]}
        if kind == "point":
            return {"point": [float(values[0]) / sx, float(values[1]) / sy]}
        quad = obb_to_quad([float(v) for v in values]) if kind == "obb" else [float(v) for v in values]
        back = [v / (sx if i % 2 == 0 else sy) for i, v in enumerate(quad)]
        return {"quad": order_quad(back)}


_NUMBER = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
# Separators are unambiguous (a comma with optional spaces, or spaces alone) so that long runs of
# whitespace in a generated answer cannot make the regex backtrack combinatorially.
_GROUP = re.compile(r"[\[(]\s*(" + _NUMBER + r"(?:(?:\s*,\s*|\s+)" + _NUMBER + r")*)\s*[\])]")
_JSON_LABEL = re.compile(r'"label"\s*:\s*"((?:[^"\\]|\\.)*)"')


def _numbers(s: str) -> list[float]:
    return [float(m) for m in re.findall(_NUMBER, s)]


def _first_group(text: str, count: int) -> list[float] | None:
    """First bracketed group of exactly ``count`` numbers; else all numbers if there are exactly ``count``.

    The fallback accepts Qwen2-VL's ``(x1,y1),(x2,y2)`` pairs and bare ``x1, y1, x2, y2``.
    """
    for m in _GROUP.finditer(text):
        nums = _numbers(m.group(1))
        if len(nums) == count:
            return nums
    nums = _numbers(text)
    return nums if len(nums) == count else None


def format_json_objects(items: Sequence[tuple[Sequence[float], str | None]], kind: str) -> str:
    """Fenced JSON list, one ``{"<key>": [...], "label": ...}`` object per line (Qwen2.5-VL's layout)."""
    key = JSON_KEYS[kind]
    lines = []
    for values, label in items:
        obj = {key: [int(v) if float(v).is_integer() else float(v) for v in values]}
        if label is not None:
            obj["label"] = label
        lines.append("\t" + json.dumps(obj, ensure_ascii=False))
    body = ",\n".join(lines)
    return "```json\n[\n" + body + "\n]\n```" if lines else "```json\n[]\n```"


def _min_corner(values: Sequence[float], kind: str) -> tuple[float, float]:
    """(y, x) of the top-left corner of a rendered box, the detection answer's sort key."""
    if kind == "point":
        return values[1], values[0]
    quad = obb_to_quad(values) if kind == "obb" else values if kind == "quad" else hbb_to_quad(values)
    return min(quad[1::2]), min(quad[0::2])


def format_detection_answer(objects: Sequence[dict], kind: str, codec: BoxCodec, orig_wh, resized_wh,
                            style: str = "plain") -> str:
    """Answer text listing ``objects`` (``{"label", "hbb"|"quad"}`` in original pixels).

    Objects are ordered by class name, then by the top-left corner of the rendered box (y, then x),
    so the target text is a function of the annotation set, not of its order in the file.
    plain: ``[coords] label`` per line, ``There are none.`` when empty; json: fenced list.
    """
    _check_kind(kind)
    rendered = [(codec.render(o, orig_wh, resized_wh, kind), o["label"]) for o in objects]
    rendered.sort(key=lambda r: (r[1], *_min_corner(r[0], kind), tuple(r[0])))
    if style == "json":
        return format_json_objects(rendered, kind)
    if style != "plain":
        raise ConfigError(f"unknown prompt style {style!r}; use plain or json (recipe key 'prompt_style')")
    if not rendered:
        return NONE_ANSWER
    return "\n".join(f"{codec.format(v, kind)} {label}" for v, label in rendered)


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def _json_string(body: str) -> str:
    try:
        return json.loads(f'"{body}"')
    except json.JSONDecodeError:
        return body


def _ordered(values: list[float], kind: str) -> list[float]:
    return order_quad(values) if kind == "quad" else values


def parse_detection_answer(text: str, kind: str) -> list[tuple[list[float], str]]:
    """``(values, label)`` per object found in a detection answer (plain lines or JSON).

    Lines or objects that do not hold a box of ``kind`` are skipped; the caller counts them if it
    cares. The values are in the codec's frame: map them with ``BoxCodec.to_original``. Quads
    come back in ``order_quad`` order.
    """
    _check_kind(kind)
    count, key = VALUE_COUNTS[kind], JSON_KEYS[kind]
    fenced = _FENCE.search(text)
    candidate = fenced.group(1) if fenced else text.strip()
    if candidate.startswith("["):
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, list) and all(isinstance(o, dict) for o in data):
            out = []
            for obj in data:
                if isinstance(obj.get(key), list) and len(obj[key]) == count:
                    try:
                        out.append((_ordered([float(v) for v in obj[key]], kind), str(obj.get("label", ""))))
                    except (TypeError, ValueError):
                        continue
            return out
    out = []
    for line in text.splitlines():
        m = _GROUP.search(line)
        if m is None:
            continue
        nums = _numbers(m.group(1))
        if len(nums) == count:
            if "{" in line[:m.start()]:
                # A JSON object line from a list that failed to load as a whole (generation cut
                # off): keep it only if its label survived.
                found = _JSON_LABEL.search(line)
                if found:
                    out.append((_ordered(nums, kind), _json_string(found.group(1))))
            else:
                out.append((_ordered(nums, kind), line[m.end():].strip()))
    return out
