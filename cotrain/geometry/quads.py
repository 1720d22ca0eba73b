"""Quads and box dicts: vertex order, areas, hulls, oriented boxes, enclosing boxes.

Records store boxes in ORIGINAL image pixels (x right, y down) as ``{"hbb": [x1, y1, x2, y2]}``,
``{"quad": [x1, y1, ..., x4, y4]}`` or ``{"obb": [cx, cy, w, h, angle_deg]}``. Everything that
measures or converts such a box lives here (the vectorised many-box versions and IoU are in
``cotrain.geometry.iou``); ``cotrain.boxes`` only turns boxes into text and back.

Conventions (shared/DESIGN.md section 6)
----------------------------------------
* quad: 4 vertices clockwise ON SCREEN (y down), starting at the top-most vertex, ties: left-most.
  Every public function here that returns a quad returns it in this order (``order_quad``).
* obb: ``cx, cy, w, h, angle``: the minimum-area rectangle, ``w >= h``, angle in degrees in
  [-90, 90) of the ``w`` side, measured from +x towards +y (clockwise on screen). A square
  (``w == h``) takes the side whose angle lies in [-45, 45), so its angle is stable.

It must not know about text, codecs, labels or files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

_SQUARE_RTOL = 1e-9  # sides equal up to float noise count as a square (stable angle rule)


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
    """The quad of a box dict ``{"hbb": [...]}``, ``{"quad": [...]}`` or ``{"obb": [...]}``, ordered by ``order_quad``."""
    if "quad" in box:
        return order_quad(box["quad"])
    if "hbb" in box:
        return hbb_to_quad(box["hbb"])
    if "obb" in box:
        return obb_to_quad(box["obb"])
    if "point" in box:
        raise ValueError(f"a point {box['point']!r} has no outline; render it with kind 'point'")
    raise ValueError(f"a box is {{'hbb': [4 numbers]}}, {{'quad': [8 numbers]}} or {{'obb': [5 numbers]}}, "
                     f"got keys {sorted(box)}")


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


def enclosing_hbb(box: dict) -> dict:
    """The axis-aligned box ``{"hbb": [...]}`` enclosing an hbb / quad / obb box dict."""
    if "hbb" in box:
        return {"hbb": list(box["hbb"])}
    q = box["quad"] if "quad" in box else obb_to_quad(box["obb"])
    return {"hbb": quad_to_hbb(q)}


def polygon_area(q: np.ndarray) -> float:
    """Shoelace area of a polygon given as flat (x1, y1, x2, y2, ...) in the order given."""
    x, y = q[0::2], q[1::2]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


NINTHS = (("top-left", "top", "top-right"), ("left", "centre", "right"), ("bottom-left", "bottom", "bottom-right"))
"""Names of the 3 x 3 parts of an image, row by row (questions about "the top-left part", ...)."""


def ninth_box(name: str, width: float, height: float) -> list[float]:
    """[x1, y1, x2, y2] of the named ninth of a ``width`` x ``height`` image."""
    for r, row in enumerate(NINTHS):
        if name in row:
            c = row.index(name)
            return [c * width / 3, r * height / 3, (c + 1) * width / 3, (r + 1) * height / 3]
    raise KeyError(f"{name!r} is not one of {[n for row in NINTHS for n in row]}")


def point_in_box(point: Sequence[float], box: dict, tol: float = 1e-9) -> bool:
    """True when ``point`` (x, y) lies inside ``box`` or on its outline (points of a referring answer).

    The outline is the box's ``box_to_quad`` (an hbb's rectangle, a quad in ``order_quad`` order, an
    obb's corners); the test is the even-odd crossing rule plus a distance-to-edge check, so a point
    on an edge or a vertex counts as inside (``tol`` in pixels), for convex and non-convex outlines.
    """
    x, y = float(point[0]), float(point[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        return False
    pts = _pairs([float(v) for v in box_to_quad(box)])
    inside = False
    for (ax, ay), (bx, by) in zip(pts, pts[1:] + pts[:1]):
        ex, ey = bx - ax, by - ay
        length2 = ex * ex + ey * ey
        t = 0.0 if length2 == 0 else min(1.0, max(0.0, ((x - ax) * ex + (y - ay) * ey) / length2))
        if math.hypot(x - (ax + t * ex), y - (ay + t * ey)) <= tol:
            return True
        if (ay > y) != (by > y) and x < ax + (y - ay) * ex / ey:
            inside = not inside
    return inside
