"""Objects of the synthetic scenes: DOTA-style kinds, non-overlapping placement, RGB + IR painting.

This module owns the object registry (``KINDS``: size in metres at ``GSD_M``, colours, surfaces
an object may stand on, IR body and hot-spot intensities), the placement of oriented rectangles
(inside the image, on an allowed surface, never closer than ``gap_px`` to another object) and the
drawing of each kind inside its rectangle. An object's annotation is the quad of that rectangle,
ordered by ``cotrain.boxes.order_quad`` (the one ordering rule of the project) and rounded to
0.1 px; a storage tank's quad is its axis-aligned bounding square. It must not decide how many
objects a scene holds (``scenes.SCENE_CLASSES``) or write anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import shapely
from PIL import Image, ImageDraw

from cotrain.data.synthetic.scenes import COVER_NAMES, GSD_M
from cotrain.geometry.quads import order_quad

COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (236, 236, 232), "gray": (140, 142, 146), "black": (34, 35, 38), "red": (182, 44, 38),
    "blue": (44, 72, 162), "yellow": (216, 186, 52), "green": (58, 128, 70),
}


@dataclass(frozen=True)
class ObjectKind:
    """One object class, with the physical facts its drawing and placement need."""

    label: str
    """DOTA-style class name written to records."""
    phrase: str
    """Singular noun phrase for text ("storage tank")."""
    plural: str
    """Plural noun phrase for text ("storage tanks")."""
    length_m: tuple[float, float]
    """Range of the long side in metres (diameter for tanks)."""
    aspect: tuple[float, float]
    """Range of short side / long side."""
    colours: tuple[str, ...]
    """Colour names (keys of ``COLOURS``) the object may be painted in."""
    surfaces: tuple[str, ...]
    """Covers the object may stand on."""
    ir_body: int
    """IR intensity of the object's body (IR rule in ``scenes``)."""
    ir_hot: int
    """IR intensity of its engine/funnel hot spot; 0 = none."""


# Ordered from large to small: big objects are placed first, while there is room.
KINDS: dict[str, ObjectKind] = {
    "ship": ObjectKind("ship", "ship", "ships", (18.0, 110.0), (0.16, 0.22),
                       ("white", "gray", "red", "blue"), ("water",), 110, 235),
    "plane": ObjectKind("plane", "plane", "planes", (28.0, 62.0), (0.85, 1.0), ("white", "gray"),
                        ("concrete",), 150, 250),
    "storage-tank": ObjectKind("storage-tank", "storage tank", "storage tanks", (10.0, 40.0), (1.0, 1.0),
                               ("white", "gray"), ("bare_soil", "concrete", "farmland"), 178, 0),
    "tennis-court": ObjectKind("tennis-court", "tennis court", "tennis courts", (34.0, 37.0), (0.5, 0.55),
                               ("green", "blue", "red"), ("urban", "forest"), 165, 0),
    "large-vehicle": ObjectKind("large-vehicle", "large vehicle", "large vehicles", (9.0, 16.0), (0.18, 0.25),
                                ("white", "yellow", "red", "blue", "green"),
                                ("asphalt", "urban", "concrete", "bare_soil", "farmland", "forest"), 178, 245),
    "small-vehicle": ObjectKind("small-vehicle", "small vehicle", "small vehicles", (4.0, 5.2), (0.38, 0.45),
                                ("white", "gray", "black", "red", "blue", "yellow"),
                                ("asphalt", "urban", "concrete", "bare_soil", "farmland"), 175, 245),
}
LABELS: tuple[str, ...] = tuple(sorted(KINDS))
"""The detection class list (sorted DOTA-style names)."""


@dataclass
class PlacedObject:
    """One object of a scene, in ORIGINAL image pixels."""

    label: str
    """Key of ``KINDS``."""
    quad: list[float]
    """Corners of the oriented rectangle, ordered by ``order_quad``, rounded to 0.1 px."""
    cx: float
    """Centre x."""
    cy: float
    """Centre y."""
    length: float
    """Long side in pixels."""
    width: float
    """Short side in pixels."""
    angle: float
    """Direction of the long side (nose/bow), degrees from +x towards +y (screen clockwise)."""
    colour: str
    """Colour name of the body."""

    @property
    def hbb(self) -> list[float]:
        xs, ys = self.quad[0::2], self.quad[1::2]
        return [min(xs), min(ys), max(xs), max(ys)]

    @property
    def area(self) -> float:
        return self.length * self.width


def _corners(cx: float, cy: float, length: float, width: float, angle: float) -> list[tuple[float, float]]:
    return _local(cx, cy, length, width, angle, [(0.5, 0.5), (0.5, -0.5), (-0.5, -0.5), (-0.5, 0.5)])


def _local(cx, cy, length, width, angle, pts) -> list[tuple[float, float]]:
    """Image points of (u, v) given as fractions of (length, width) in the object's frame."""
    ca, sa = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return [(cx + u * length * ca - v * width * sa, cy + u * length * sa + v * width * ca) for u, v in pts]


def place_objects(rng: np.random.Generator, counts: dict[str, int], cover_map: np.ndarray, scale: int,
                  width: int, height: int, *, angle_hint: dict[str, float] | None = None,
                  gap_px: float = 4.0, attempts: int = 40) -> list[PlacedObject]:
    """Place up to ``counts[label]`` objects of each label; returns the ones that fit.

    A candidate is kept when its rectangle lies inside the image (1 px margin), its centre and
    corners stand on one of the kind's surfaces (looked up on the canvas cover map) and it is at
    least ``gap_px`` from every placed object (room for shadows). If nothing at all fits, one small
    vehicle is placed on any surface so every scene has an object to ask about.
    """
    angle_hint = angle_hint or {}
    placed: list[PlacedObject] = []
    shapes: list = []
    for label in sorted(counts, key=list(KINDS).index):
        kind = KINDS[label]
        allowed = [COVER_NAMES.index(s) for s in kind.surfaces]
        cand_cells = np.flatnonzero(np.isin(cover_map, allowed))
        if cand_cells.size == 0:
            continue
        for _ in range(counts[label]):
            obj = _try_place(rng, kind, cand_cells, allowed, cover_map, scale, width, height,
                             angle_hint.get(label), shapes, gap_px, attempts)
            if obj is not None:
                placed.append(obj)
                shapes.append(shapely.Polygon(list(zip(obj.quad[0::2], obj.quad[1::2]))))
    if not placed:
        kind = KINDS["small-vehicle"]
        every = list(range(len(COVER_NAMES)))
        obj = _try_place(rng, kind, np.arange(cover_map.size), every, cover_map, scale, width, height,
                         None, shapes, gap_px, attempts * 5)
        if obj is not None:
            placed.append(obj)
    return placed


def _try_place(rng, kind, cand_cells, allowed, cover_map, scale, width, height, hint, shapes, gap_px,
               attempts) -> PlacedObject | None:
    cw = cover_map.shape[1]
    for _ in range(attempts):
        length = rng.uniform(*kind.length_m) / GSD_M
        length = min(length, 0.45 * min(width, height))
        w = length * rng.uniform(*kind.aspect)
        if kind.label == "storage-tank":
            angle = 0.0
        elif hint is not None:
            angle = float(hint + rng.normal(0.0, 3.0))
        else:
            angle = float(rng.uniform(0.0, 360.0))
        cell = int(cand_cells[rng.integers(cand_cells.size)])
        row, col = divmod(cell, cw)
        jy, jx = rng.random(2)
        cx, cy = float((col + jx) * scale), float((row + jy) * scale)
        corners = _corners(cx, cy, length, w, angle)
        if any(not (1.0 <= x <= width - 1.0 and 1.0 <= y <= height - 1.0) for x, y in corners):
            continue
        probe = corners + [(cx, cy)]
        if any(cover_map[min(int(y // scale), cover_map.shape[0] - 1),
                         min(int(x // scale), cw - 1)] not in allowed for x, y in probe):
            continue
        # Round before ordering: rounding can tie two top vertices, and the tie rule must see it.
        quad = order_quad([round(float(c), 1) for p in corners for c in p])
        poly = shapely.Polygon(list(zip(quad[0::2], quad[1::2])))
        if shapes and bool(np.any(shapely.dwithin(shapes, poly, gap_px))):
            continue
        colour = kind.colours[int(rng.integers(len(kind.colours)))]
        return PlacedObject(kind.label, quad, round(float(cx), 1), round(float(cy), 1), round(float(length), 1),
                            round(float(w), 1), round(angle % 360.0, 1), colour)
    return None


# --- painting -------------------------------------------------------------------------------

_SHADOW = (30, 33, 36)
_GLASS = (40, 46, 54)


def _poly(draw_rgb, draw_ir, o: PlacedObject, pts, rgb, ir) -> None:
    xy = _local(o.cx, o.cy, o.length, o.width, o.angle, pts)
    draw_rgb.polygon(xy, fill=rgb)
    if ir is not None:
        draw_ir.polygon(xy, fill=int(ir))


def _spot(draw_rgb, draw_ir, o: PlacedObject, u: float, v: float, radius: float, rgb, ir) -> None:
    (x, y), = _local(o.cx, o.cy, o.length, o.width, o.angle, [(u, v)])
    r = max(1.0, radius)
    if rgb is not None:
        draw_rgb.ellipse([x - r, y - r, x + r, y + r], fill=rgb)
    draw_ir.ellipse([x - r, y - r, x + r, y + r], fill=int(ir))


def _shadow(draw_rgb, o: PlacedObject, pts) -> None:
    off = float(np.clip(0.15 * o.width, 1.0, 3.0))
    xy = _local(o.cx + off, o.cy + off, o.length, o.width, o.angle, pts)
    draw_rgb.polygon(xy, fill=_SHADOW)


_RECT = [(0.5, 0.5), (0.5, -0.5), (-0.5, -0.5), (-0.5, 0.5)]


def _paint_plane(dr, di, o, k):
    fuselage = [(0.5, 0.0), (0.44, 0.05), (-0.42, 0.04), (-0.5, 0.0), (-0.42, -0.04), (0.44, -0.05)]
    wings = [[(0.12, s * 0.04), (-0.1, s * 0.5), (-0.2, s * 0.5), (-0.08, s * 0.04)] for s in (1, -1)]
    tails = [[(-0.34, s * 0.03), (-0.44, s * 0.18), (-0.49, s * 0.18), (-0.46, s * 0.03)] for s in (1, -1)]
    parts = [fuselage] + wings + tails
    for p in parts:
        _shadow(dr, o, p)
    for p in parts:
        _poly(dr, di, o, p, COLOURS[o.colour], k.ir_body)
    for s in (1, -1):
        _spot(dr, di, o, 0.05, s * 0.2, 0.035 * o.length, (90, 92, 96), k.ir_hot)


def _paint_ship(dr, di, o, k):
    hull = [(-0.5, -0.5), (0.3, -0.5), (0.5, 0.0), (0.3, 0.5), (-0.5, 0.5)]
    _shadow(dr, o, hull)
    _poly(dr, di, o, hull, COLOURS[o.colour], k.ir_body)
    deck = COLOURS["gray"] if o.colour == "white" else COLOURS["white"]
    _poly(dr, di, o, [(-0.42, -0.3), (-0.2, -0.3), (-0.2, 0.3), (-0.42, 0.3)], deck, k.ir_body + 20)
    _spot(dr, di, o, -0.33, 0.0, 0.18 * o.width, (50, 50, 50), k.ir_hot)


def _paint_small_vehicle(dr, di, o, k):
    _shadow(dr, o, _RECT)
    _poly(dr, di, o, _RECT, COLOURS[o.colour], k.ir_body)
    _poly(dr, di, o, [(0.12, -0.4), (0.25, -0.4), (0.25, 0.4), (0.12, 0.4)], _GLASS, k.ir_body - 25)
    _poly(dr, di, o, [(-0.38, -0.38), (-0.28, -0.38), (-0.28, 0.38), (-0.38, 0.38)], _GLASS, k.ir_body - 25)
    _spot(dr, di, o, 0.38, 0.0, 0.28 * o.width, None, k.ir_hot)


def _paint_large_vehicle(dr, di, o, k):
    _shadow(dr, o, _RECT)
    cargo = COLOURS["white"] if o.colour != "white" else COLOURS["gray"]
    _poly(dr, di, o, [(-0.5, -0.5), (0.27, -0.5), (0.27, 0.5), (-0.5, 0.5)], cargo, k.ir_body)
    _poly(dr, di, o, [(0.3, -0.5), (0.5, -0.42), (0.5, 0.42), (0.3, 0.5)], COLOURS[o.colour], k.ir_body + 5)
    _spot(dr, di, o, 0.4, 0.0, 0.3 * o.width, None, k.ir_hot)


def _paint_storage_tank(dr, di, o, k):
    r = o.length / 2.0
    off = float(np.clip(0.08 * r, 1.0, 4.0))
    dr.ellipse([o.cx - r + off, o.cy - r + off, o.cx + r + off, o.cy + r + off], fill=_SHADOW)
    dr.ellipse([o.cx - r, o.cy - r, o.cx + r, o.cy + r], fill=COLOURS[o.colour])
    di.ellipse([o.cx - r, o.cy - r, o.cx + r, o.cy + r], fill=k.ir_body)
    ri = 0.8 * r
    inner = tuple(int(v * 0.9) for v in COLOURS[o.colour])
    dr.ellipse([o.cx - ri, o.cy - ri, o.cx + ri, o.cy + ri], fill=inner)
    di.ellipse([o.cx - ri, o.cy - ri, o.cx + ri, o.cy + ri], fill=k.ir_body + 6)


_COURT = {"green": (62, 132, 74), "blue": (52, 92, 152), "red": (172, 84, 62)}


def _paint_tennis_court(dr, di, o, k):
    _poly(dr, di, o, _RECT, _COURT[o.colour], k.ir_body)
    white = (238, 238, 236)
    lines = [[(-0.33, -0.29), (0.33, -0.29), (0.33, 0.29), (-0.33, 0.29), (-0.33, -0.29)],
             [(-0.33, 0.22), (0.33, 0.22)], [(-0.33, -0.22), (0.33, -0.22)], [(0.0, -0.29), (0.0, 0.29)],
             [(-0.18, -0.22), (-0.18, 0.22)], [(0.18, -0.22), (0.18, 0.22)], [(-0.18, 0.0), (0.18, 0.0)]]
    for line in lines:
        xy = _local(o.cx, o.cy, o.length, o.width, o.angle, line)
        dr.line(xy, fill=white, width=1)
        di.line(xy, fill=k.ir_body - 12, width=1)


PAINTERS: dict[str, Callable] = {
    "plane": _paint_plane, "ship": _paint_ship, "small-vehicle": _paint_small_vehicle,
    "large-vehicle": _paint_large_vehicle, "storage-tank": _paint_storage_tank,
    "tennis-court": _paint_tennis_court,
}
assert set(PAINTERS) == set(KINDS)


def paint_objects(rgb: Image.Image, ir: Image.Image, objects: list[PlacedObject]) -> None:
    """Draw every object into the full-resolution RGB and IR images, in place."""
    dr, di = ImageDraw.Draw(rgb), ImageDraw.Draw(ir)
    for o in objects:
        PAINTERS[o.label](dr, di, o, KINDS[o.label])
