"""Vectorised rotated IoU: exact intersection of convex quads in numpy.

This module owns the geometry the detection metrics and the patch merge need, in batch form:

* ``rboxes_to_quads``: mmrotate-style boxes ``(cx, cy, w, h, theta)`` (theta in RADIANS) -> quads;
* ``order_quads``: the ``cotrain.geometry.quads.order_quad`` vertex order, for many quads at once;
* ``min_area_rect``: the minimum-area enclosing rectangle of each quad;
* ``iou_matrix`` (all pairs), ``iou_pairs`` (row-wise pairs), ``rbox_iou`` (mmrotate boxes);
* ``box_iou``: two box dicts (hbb / quad / obb, any pair of kinds), the grounding IoU; it is
  ``iou_pairs(mode="quad")`` on their quads, so grounding and detection measure overlap alike.

It must not know about labels, scores, matching or file formats (that is ``metrics`` and ``dota``),
and it does not import shapely (only the tests and the benchmark do, as the reference).

Method
------
Each quad is first made a convex, counter-clockwise (in the x-right/y-down pixel frame: clockwise
on screen) polygon of 4 vertex slots: the vertices are sorted by angle around their mean (the
``order_quad`` rule) and a reflex vertex, if any, is replaced by its neighbour, which gives the
convex hull of the 4 points. So a quad is always measured as the convex hull of its vertices: the
same as the quad itself for the convex quads of DOTA-style labels, and what ``order_quad`` already
assumes. In ``mode="rbox"`` each side is then replaced by its minimum-area rectangle (the DOTA /
mmrotate convention: labels go through ``cv2.minAreaRect`` before a rotated-box IoU).

Candidate pairs are those whose axis-aligned bounding boxes overlap with positive area and whose
two areas are positive; every other pair has IoU 0 without further work (DOTA scenes are sparse).
A candidate pair is intersected by Sutherland-Hodgman clipping of one quad by the 4 edge lines of
the other, for a chunk of pairs at once in padded arrays (a convex quad clipped by 4 half-planes
has at most 8 vertices), followed by the shoelace area. Coordinates are shifted to the first
polygon's mean per pair first, so large image coordinates do not cost precision.

Degenerate cases: a zero-area box (a point, a segment) has IoU 0 with everything, itself
included; touching boxes have IoU 0; identical boxes 1. Inputs must be finite.
"""

from __future__ import annotations

import math

import numpy as np

from cotrain.geometry.quads import box_to_quad

IOU_MODES = ("rbox", "quad")
PAIR_CHUNK = 16384
"""Candidate pairs clipped per numpy pass: large enough to amortise numpy's per-call cost, small
enough that the temporaries (a few dozen vertex-major arrays of up to 16 x chunk) stay small."""
PREFILTER_CELLS = 1 << 22
"""Bounding-box tests per block of ``iou_matrix`` rows, so the prefilter never holds N x M booleans
beyond what the (N, M) result needs anyway."""


def _as_boxes(values, width: int, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, width)
    if arr.ndim != 2 or arr.shape[1] != width:
        kind = "quads (x1, y1, ..., x4, y4)" if width == 8 else "rotated boxes (cx, cy, w, h, theta_rad)"
        raise ValueError(f"{name}: expected an array of shape (N, {width}) of {kind}, got shape {arr.shape}; "
                         f"stack the boxes into one 2-D array")
    if not np.isfinite(arr).all():
        rows = np.nonzero(~np.isfinite(arr).all(axis=1))[0][:5].tolist()
        raise ValueError(f"{name}: non-finite coordinates in rows {rows}; drop or repair those boxes first")
    return arr


def _cross(ax, ay, bx, by):
    return ax * by - ay * bx


def order_quads(quads) -> np.ndarray:
    """Reorder each quad's vertices by the ``cotrain.geometry.quads.order_quad`` rule, (N, 8) -> (N, 8).

    Sorted by angle around the vertex mean (clockwise on screen, y down), starting at the top-most
    vertex, ties: left-most. Identical to ``order_quad`` row by row.
    """
    q = _as_boxes(quads, 8, "quads")
    pts = q.reshape(-1, 4, 2)
    mean = pts.mean(axis=1, keepdims=True)
    # Stable sort, as Python's list.sort in order_quad, so tied angles keep their input order.
    idx = np.argsort(np.arctan2(pts[..., 1] - mean[..., 1], pts[..., 0] - mean[..., 0]), axis=1, kind="stable")
    pts = np.take_along_axis(pts, idx[..., None], axis=1)
    ys = pts[..., 1]
    top = ys == ys.min(axis=1, keepdims=True)
    start = np.argmin(np.where(top, pts[..., 0], np.inf), axis=1)
    roll = (start[:, None] + np.arange(4)) % 4
    return np.take_along_axis(pts, roll[..., None], axis=1).reshape(-1, 8)


def rboxes_to_quads(rboxes) -> np.ndarray:
    """Corners of rotated boxes ``(cx, cy, w, h, theta)``, theta in RADIANS from +x towards +y, (N, 5) -> (N, 8).

    ``w`` runs along ``(cos theta, sin theta)`` (mmrotate's convention); the result is ordered by
    ``order_quads``.
    """
    r = _as_boxes(rboxes, 5, "rboxes")
    cx, cy, w, h, t = r.T
    c, s = np.cos(t), np.sin(t)
    ux, uy = c * w / 2.0, s * w / 2.0
    vx, vy = -s * h / 2.0, c * h / 2.0
    corners = np.stack([cx + ux + vx, cy + uy + vy, cx + ux - vx, cy + uy - vy,
                        cx - ux - vx, cy - uy - vy, cx - ux + vx, cy - uy + vy], axis=1)
    return order_quads(corners)


# Internally a set of N polygons with 4 vertex slots is vertex-major: x and y of shape (4, N), so
# every numpy pass runs over contiguous rows of N numbers instead of short strided axes.
_PREV = [3, 0, 1, 2]
_NEXT = [1, 2, 3, 0]


def _split(quads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.ascontiguousarray(quads[:, 0::2].T), np.ascontiguousarray(quads[:, 1::2].T)


def _join(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.stack([x.T, y.T], axis=2).reshape(-1, 8)


def _turns(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cross product of the incoming and outgoing edge at each vertex, (4, N)."""
    return _cross(x - x[_PREV], y - y[_PREV], x[_NEXT] - x, y[_NEXT] - y)


def _convex_quads(quads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertex-major (4, N) x and y of the convex hulls of the quads, counter-clockwise in the pixel frame.

    Quads that already turn one way at every vertex (every well-formed label, rotated box and
    rectangle) only get their direction fixed. The others are sorted by angle around their mean,
    which gives the convex outline when the 4 points are in convex position; otherwise one point
    lies inside the triangle of the others and is the only reflex vertex of the sorted outline, so
    replacing it by its predecessor leaves the hull (a triangle with one vertex listed twice, which
    neither clipping nor the shoelace formula minds).
    """
    x, y = _split(quads)
    turn = _turns(x, y)
    ccw, cw = (turn >= 0).all(axis=0), (turn <= 0).all(axis=0)
    flip = cw & ~ccw
    if flip.any():
        x[:, flip], y[:, flip] = x[::-1, flip], y[::-1, flip]
    odd = ~(ccw | cw)
    if odd.any():
        fx, fy = _split(order_quads(quads[odd]))
        reflex = _turns(fx, fy) < 0
        x[:, odd] = np.where(reflex, fx[_PREV], fx)
        y[:, odd] = np.where(reflex, fy[_PREV], fy)
    return x, y


def _areas(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Shoelace areas of (W, N) vertex-major polygons, measured from their first vertex for precision."""
    lx, ly = x - x[0], y - y[0]
    return 0.5 * (lx * np.roll(ly, -1, axis=0) - np.roll(lx, -1, axis=0) * ly).sum(axis=0)


def min_area_rect(quads, *, ordered: bool = True) -> np.ndarray:
    """Minimum-area enclosing rectangle of each quad, (N, 8) -> (N, 8), ordered by ``order_quads``.

    ``ordered=False`` skips the vertex ordering (about half the cost) for callers that only
    measure areas or IoU, which do not depend on where the vertex list starts.

    Rotating calipers over the convex hull of the 4 vertices (``_convex_quads``): the minimum-area
    rectangle of a convex polygon has a side on one of its edges, so trying the (at most 4) edge
    directions is exact. A non-convex quad is therefore replaced by its hull first. A point or a
    segment gives a zero-area rectangle. Where two edges give the same area (possible when one
    vertex lies inside both candidate rectangles), the first edge in vertex order wins; shapely's
    ``minimum_rotated_rectangle`` may return the other one, of the same area.
    """
    q = _as_boxes(quads, 8, "quads")
    if len(q) == 0:
        return q.copy()
    rects = _join(*_min_area_rects(*_convex_quads(q)))
    return order_quads(rects) if ordered else rects


def _min_area_rects(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertex-major convex counter-clockwise polygons -> their min-area rectangles, counter-clockwise."""
    cx, cy = x.mean(axis=0), y.mean(axis=0)
    lx, ly = x - cx, y - cy
    ex, ey = lx[_NEXT] - lx, ly[_NEXT] - ly                         # (4 edges, N)
    length = np.hypot(ex, ey)
    ok = length > 0
    safe = np.where(ok, length, 1.0)
    ux = np.where(ok, ex / safe, 1.0)                              # a zero edge falls back to +x
    uy = np.where(ok, ey / safe, 0.0)
    # Coordinates of every vertex along each edge direction u and its normal v = (-uy, ux).
    along = ux[:, None] * lx[None] + uy[:, None] * ly[None]        # (edge, vertex, N)
    across = ux[:, None] * ly[None] - uy[:, None] * lx[None]
    lo_u, hi_u = along.min(axis=1), along.max(axis=1)
    lo_v, hi_v = across.min(axis=1), across.max(axis=1)
    area = np.where(ok, (hi_u - lo_u) * (hi_v - lo_v), np.inf)
    best = np.argmin(area, axis=0)                                 # all-inf columns (a point) pick edge 0
    cols = np.arange(x.shape[1])
    bux, buy = ux[best, cols], uy[best, cols]
    u0, u1, v0, v1 = lo_u[best, cols], hi_u[best, cols], lo_v[best, cols], hi_v[best, cols]
    u = np.stack([u0, u1, u1, u0])
    v = np.stack([v0, v0, v1, v1])
    return cx + u * bux - v * buy, cy + u * buy + v * bux


class _Prepared:
    """Polygons ready for clipping: vertex-major x, y (4, N), areas (N,), bounding boxes (4 rows, N)."""

    def __init__(self, quads, mode: str, name: str):
        if mode not in IOU_MODES:
            raise ValueError(f"unknown IoU mode {mode!r}; use one of {IOU_MODES} "
                             f"('rbox': min-area rectangles as DOTA/mmrotate, 'quad': exact quads)")
        q = _as_boxes(quads, 8, name)
        self.n = len(q)
        x, y = _convex_quads(q)
        if mode == "rbox" and self.n:
            x, y = _min_area_rects(x, y)
        self.x, self.y = x, y
        self.area = _areas(x, y)
        self.x0, self.x1 = np.minimum.reduce(x), np.maximum.reduce(x)
        self.y0, self.y1 = np.minimum.reduce(y), np.maximum.reduce(y)


def _clip(x, y, count, px, py, ex, ey):
    """One Sutherland-Hodgman step: keep the part of each polygon left of the line (px, py) + t (ex, ey).

    Polygons are vertex-major, ``x`` and ``y`` of shape (W, K) for K polygons, with ``count``
    valid leading slots each (the rest are zeros). Returns the clipped polygons in the same form.
    """
    w, k = x.shape
    cols = np.arange(k)
    side = ex * (y - py) - ey * (x - px)                          # >= 0: inside (boundary included)
    last = np.maximum(count - 1, 0)
    xp, yp, sp = np.empty_like(x), np.empty_like(y), np.empty_like(side)
    xp[1:], yp[1:], sp[1:] = x[:-1], y[:-1], side[:-1]
    xp[0], yp[0], sp[0] = x[last, cols], y[last, cols], side[last, cols]
    valid = np.arange(w)[:, None] < count
    inside = side >= 0
    crossing = (inside != (sp >= 0)) & valid
    # The crossing point lies on the segment prev -> cur; the two sides have opposite signs there,
    # so the fraction is in [0, 1] and the denominator is not zero.
    frac = sp / np.where(crossing, sp - side, 1.0)
    # Candidates of slot i, in output order: the crossing point on the edge into it, then itself.
    keep = np.stack([crossing, inside & valid], axis=1).reshape(2 * w, k)
    cand_x = np.stack([xp + frac * (x - xp), x], axis=1).reshape(2 * w, k)
    cand_y = np.stack([yp + frac * (y - yp), y], axis=1).reshape(2 * w, k)
    pos = np.cumsum(keep, axis=0)
    new_count = pos[-1]
    width = max(int(new_count.max(initial=0)), 1)
    target = ((pos - 1) * k + cols)[keep]
    out_x, out_y = np.zeros(width * k), np.zeros(width * k)
    out_x[target] = cand_x[keep]
    out_y[target] = cand_y[keep]
    return out_x.reshape(width, k), out_y.reshape(width, k), new_count


def _intersection_areas(ax, ay, bx, by) -> np.ndarray:
    """Areas of a[i] & b[i] for vertex-major (4, K) convex counter-clockwise polygons."""
    # Shift to a's mean: large image coordinates would otherwise cost digits in the shoelace sum.
    ox, oy = ax.mean(axis=0), ay.mean(axis=0)
    x, y = ax - ox, ay - oy
    cx, cy = bx - ox, by - oy
    count = np.full(x.shape[1], 4)
    for e, f in enumerate(_NEXT):
        x, y, count = _clip(x, y, count, cx[e], cy[e], cx[f] - cx[e], cy[f] - cy[e])
    # Shoelace with the padding at the origin: padded slots add nothing, so only the closing
    # edge (last valid vertex -> first) needs adding by hand.
    cols = np.arange(x.shape[1])
    last = np.maximum(count - 1, 0)
    twice = (x[:-1] * y[1:] - x[1:] * y[:-1]).sum(axis=0)
    twice += x[last, cols] * y[0] - x[0] * y[last, cols]
    # Clipping keeps the orientation, so a negative value is rounding noise of an empty overlap.
    return np.where(count >= 3, np.maximum(0.5 * twice, 0.0), 0.0)


def _iou_of_candidates(a: _Prepared, ia: np.ndarray, b: _Prepared, ib: np.ndarray) -> np.ndarray:
    """IoU of the pairs (a[ia[k]], b[ib[k]]), PAIR_CHUNK pairs per numpy pass."""
    out = np.empty(len(ia))
    for lo in range(0, len(ia), PAIR_CHUNK):
        i, j = ia[lo:lo + PAIR_CHUNK], ib[lo:lo + PAIR_CHUNK]
        inter = _intersection_areas(a.x[:, i], a.y[:, i], b.x[:, j], b.y[:, j])
        area_a, area_b = a.area[i], b.area[j]
        # A box can not share more than its own area; clamping removes rounding above it (1 + 1e-16).
        inter = np.minimum(inter, np.minimum(area_a, area_b))
        out[lo:lo + PAIR_CHUNK] = inter / (area_a + area_b - inter)
    return out


def _candidates(a: _Prepared, ia, b: _Prepared, ib) -> np.ndarray:
    """Broadcast test: bounding boxes overlap with positive area (touching boxes have IoU 0) and
    both boxes have positive area."""
    return ((a.x0[ia] < b.x1[ib]) & (b.x0[ib] < a.x1[ia]) & (a.y0[ia] < b.y1[ib]) & (b.y0[ib] < a.y1[ia])
            & (a.area[ia] > 0) & (b.area[ib] > 0))


def iou_pairs(a, b, mode: str = "rbox") -> np.ndarray:
    """IoU of a[i] with b[i] for quads a, b of shape (N, 8) -> (N,) float64.

    ``mode="rbox"``: both quads become their min-area rectangles first (DOTA / mmrotate);
    ``mode="quad"``: the quads as given (their convex hulls, see the module docstring).
    """
    pa, pb = _Prepared(a, mode, "a"), _Prepared(b, mode, "b")
    if pa.n != pb.n:
        raise ValueError(f"iou_pairs pairs rows: a has {pa.n} quads, b has {pb.n}; "
                         f"use iou_matrix for all pairs of two different-size sets")
    out = np.zeros(pa.n)
    every = slice(None)
    cand = np.nonzero(_candidates(pa, every, pb, every))[0]
    out[cand] = _iou_of_candidates(pa, cand, pb, cand)
    return out


def iou_matrix(a, b, *, mode: str = "rbox") -> np.ndarray:
    """IoU of every quad of a (N, 8) with every quad of b (M, 8) -> (N, M) float64.

    ``mode`` as in ``iou_pairs``. Only pairs whose bounding boxes overlap are intersected.
    """
    pa, pb = _Prepared(a, mode, "a"), _Prepared(b, mode, "b")
    n, m = pa.n, pb.n
    out = np.zeros((n, m))
    if n == 0 or m == 0:
        return out
    rows = max(1, PREFILTER_CELLS // m)
    every = np.arange(m)[None, :]
    for lo in range(0, n, rows):
        ii, jj = np.nonzero(_candidates(pa, np.arange(lo, min(n, lo + rows))[:, None], pb, every))
        ii += lo
        out[ii, jj] = _iou_of_candidates(pa, ii, pb, jj)
    return out


def rbox_iou(a, b) -> np.ndarray:
    """IoU matrix of mmrotate-style rotated boxes a (N, 5) and b (M, 5), ``(cx, cy, w, h, theta_rad)``."""
    # Corners of a rotated box already form its min-area rectangle, so the exact quad IoU is the
    # rotated-box IoU and the rectangle fit can be skipped.
    return iou_matrix(rboxes_to_quads(a), rboxes_to_quads(b), mode="quad")


_BOX_SIZES = {"hbb": 4, "quad": 8, "obb": 5}


def _box_quad(box: dict) -> np.ndarray | None:
    """The (8,) quad of a box dict, or None when its numbers are not finite (e.g. a parsed "1e999")."""
    kinds = [k for k in _BOX_SIZES if k in box]
    if len(kinds) != 1:
        raise ValueError(f"a box is one of {{'hbb': [4]}}, {{'quad': [8]}}, {{'obb': [5]}}; got keys {sorted(box)}")
    kind = kinds[0]
    values = [float(v) for v in box[kind]]
    if len(values) != _BOX_SIZES[kind]:
        raise ValueError(f"a {kind} box has {_BOX_SIZES[kind]} numbers, got {len(values)}: {box[kind]!r}")
    if not all(math.isfinite(v) for v in values):
        return None
    with np.errstate(all="ignore"):
        q = np.asarray(box_to_quad({kind: values}), dtype=np.float64)
    return q if np.isfinite(q).all() else None


def box_iou(a: dict, b: dict) -> float:
    """Exact IoU of two box dicts of any kinds (ORIGINAL pixels), in [0, 1].

    A quad is measured as the convex hull of its vertices, as everywhere in this module. A
    degenerate box (zero area, non-finite numbers) gives 0.0 rather than raising, since predicted
    boxes come from model text; a box with the wrong keys or number count raises ValueError (a
    caller or record bug).
    """
    qa, qb = _box_quad(a), _box_quad(b)
    if qa is None or qb is None:
        return 0.0
    with np.errstate(all="ignore"):  # areas of coordinates near 1e308 overflow to inf / nan
        iou = float(iou_pairs(qa[None], qb[None], mode="quad")[0])
    if not math.isfinite(iou):
        return 0.0
    return min(max(iou, 0.0), 1.0)
