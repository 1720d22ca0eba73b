"""The box codec: the one place where boxes turn into text and back.

Records store boxes in ORIGINAL image pixels (x right, y down) as ``{"hbb": [x1, y1, x2, y2]}``,
``{"quad": [x1, y1, ..., x4, y4]}`` or, for pointing answers, ``{"point": [x, y]}``. This module owns

* (geometry, vertex order and obb <-> quad, lives in ``cotrain.geometry``);
* ``BoxCodec``: renders a box for the RESIZED image in the model family's convention, formats it
  as text, parses text back, and maps parsed values back to original pixels;
* the detection answer text (plain lines or a fenced JSON list); ``detection.parse`` reads it back.

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
from cotrain.geometry.quads import (
    box_to_quad,
    hbb_to_quad,
    obb_to_quad,
    order_quad,
    quad_to_obb,
)

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

def _round(v: float) -> int:
    """Half-up rounding: unlike Python's round() it does not depend on the parity of the integer."""
    return int(math.floor(v + 0.5))


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

    def frame_limits(self, orig_wh, resized_wh) -> tuple[int, int]:
        """Largest x and y a coordinate of this convention can take (the resized size, or 999)."""
        _, _, xlim, ylim = self._frame(orig_wh, resized_wh)
        return xlim, ylim

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
