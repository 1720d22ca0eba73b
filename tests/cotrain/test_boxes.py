"""Box geometry against shapely and hand-derived cases; the codec in both conventions."""

import math

import numpy as np
import pytest
import shapely
from shapely.geometry import LinearRing, MultiPoint, Polygon

from cotrain.boxes import (
    NONE_ANSWER,
    BoxCodec,
    format_detection_answer,
)
from cotrain.errors import ConfigError
from cotrain.geometry.quads import (
    hbb_to_quad,
    obb_to_quad,
    order_quad,
    quad_to_hbb,
    quad_to_obb,
)
from cotrain.model.families import FAMILIES


def rect_corners(cx, cy, w, h, deg):
    """Corners of a rotated rectangle built with a numpy rotation matrix (independent of boxes.py)."""
    t = np.deg2rad(deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    local = np.array([[w / 2, h / 2], [w / 2, -h / 2], [-w / 2, -h / 2], [-w / 2, h / 2]])
    pts = local @ rot.T + [cx, cy]
    return [float(v) for v in pts.ravel()]


def angle_mod(a, period):
    """Distance between two angles modulo ``period``."""
    d = (a % period + period) % period
    return min(d, period - d)


# ---------------------------------------------------------------- quad ordering ----

@pytest.mark.parametrize("quad", [
    [0, 0, 10, 0, 10, 10, 0, 10], [0, 10, 10, 10, 10, 0, 0, 0],
    [10, 10, 0, 0, 10, 0, 0, 10], [10, 0, 0, 10, 0, 0, 10, 10],
])
def test_order_quad_axis_aligned_square_any_order(quad):
    # Hand case: top-left, top-right, bottom-right, bottom-left (clockwise on a y-down screen).
    assert order_quad(quad) == [0, 0, 10, 0, 10, 10, 0, 10]


def test_order_quad_diamond_starts_at_top_and_goes_right():
    # Top vertex first, then the right one: clockwise when y points down.
    assert order_quad([0, 10, 10, 20, 20, 10, 10, 0]) == [10, 0, 20, 10, 10, 20, 0, 10]


def test_order_quad_tie_on_top_takes_left_most():
    assert order_quad([30, 5, 20, 40, 0, 40, 5, 5])[:2] == [5, 5]


def test_order_quad_random_convex_quads_match_shapely_orientation():
    rng = np.random.default_rng(0)
    for _ in range(300):
        q = rect_corners(*rng.uniform(50, 150, 2), *rng.uniform(5, 60, 2), rng.uniform(-180, 180))
        perm = rng.permutation(4)
        shuffled = [q[2 * i + k] for i in perm for k in (0, 1)]
        out = order_quad(shuffled)
        pts = list(zip(out[0::2], out[1::2]))
        assert sorted(pts) == sorted(zip(q[0::2], q[1::2]))
        # Shapely uses y-up maths: counter-clockwise there is clockwise on a y-down screen.
        assert LinearRing(pts).is_ccw
        assert pts[0] == min(pts, key=lambda p: (p[1], p[0]))
        assert Polygon(pts).is_valid and Polygon(pts).area == pytest.approx(MultiPoint(pts).convex_hull.area)


# ---------------------------------------------------------------- obb ----

@pytest.mark.parametrize("quad,expected", [
    ([0, 0, 10, 0, 10, 4, 0, 4], (5, 2, 10, 4, 0)),          # wide: long side along +x
    ([0, 0, 4, 0, 4, 10, 0, 10], (2, 5, 10, 4, -90)),        # tall: long side vertical, 90 wraps to -90
    ([0, 0, 4, 0, 4, 4, 0, 4], (2, 2, 4, 4, 0)),             # square, axis-aligned
    ([10, 0, 20, 10, 10, 20, 0, 10], (10, 10, math.sqrt(200), math.sqrt(200), -45)),  # square at 45 deg
])
def test_quad_to_obb_hand_cases(quad, expected):
    assert quad_to_obb(quad) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("deg,expected", [(30, 30), (-30, -30), (120, -60), (-100, 80), (90, -90), (-90, -90),
                                          (179, -1)])
def test_quad_to_obb_rectangle_angles(deg, expected):
    cx, cy, w, h, a = quad_to_obb(rect_corners(100, 80, 40, 10, deg))
    assert (cx, cy, w, h) == pytest.approx((100, 80, 40, 10), abs=1e-9)
    assert a == pytest.approx(expected, abs=1e-9) and -90 <= a < 90


def test_square_angle_convention_is_stable():
    rng = np.random.default_rng(1)
    for deg in list(rng.uniform(-180, 180, 200)) + [0, 45, -45, 90, 135, 30, 60]:
        cx, cy, w, h, a = quad_to_obb(rect_corners(50, 50, 20, 20, deg))
        assert w == pytest.approx(20) and h == pytest.approx(20)
        assert -45 <= a < 45
        assert angle_mod(a - deg, 90) < 1e-7


def test_quad_to_obb_matches_shapely_minimum_rotated_rectangle():
    rng = np.random.default_rng(2)
    same = 0
    for _ in range(300):
        q = [float(v) for v in rng.uniform(0, 100, 8)]
        if MultiPoint(list(zip(q[0::2], q[1::2]))).convex_hull.area < 1:
            continue
        pts = MultiPoint(list(zip(q[0::2], q[1::2])))
        ours = Polygon(list(zip(*[iter(obb_to_quad(quad_to_obb(q)))] * 2)))
        ref = shapely.minimum_rotated_rectangle(pts)
        # Several rectangles can share the minimum area (e.g. near-triangular hulls), so compare the
        # area and check that ours encloses every vertex rather than comparing the shapes.
        assert ours.area == pytest.approx(ref.area, rel=1e-9)
        assert ours.buffer(1e-7).contains(pts)
        if ours.symmetric_difference(ref).area < 1e-6 * ref.area:
            same += 1
    assert same > 200  # and usually it is exactly shapely's rectangle


def test_obb_quad_round_trip_random():
    rng = np.random.default_rng(3)
    for _ in range(300):
        w, h = sorted(rng.uniform(1, 80, 2), reverse=True)
        if w - h < 1e-3:
            continue
        obb = (*rng.uniform(0, 500, 2), w, h, rng.uniform(-90, 90))
        back = quad_to_obb(obb_to_quad(obb))
        assert back[:4] == pytest.approx(obb[:4], abs=1e-7)
        assert angle_mod(back[4] - obb[4], 180) < 1e-7


def test_hbb_quad_conversions():
    assert hbb_to_quad([1, 2, 5, 7]) == [1, 2, 5, 2, 5, 7, 1, 7]
    assert quad_to_hbb([3, 1, 9, 4, 6, 8, 0, 5]) == [0, 1, 9, 8]
    assert order_quad(hbb_to_quad([1, 2, 5, 7])) == hbb_to_quad([1, 2, 5, 7])


# ---------------------------------------------------------------- codec ----

def test_codec_for_family():
    assert BoxCodec.for_family(FAMILIES["qwen2_5_vl"]).convention == "abs"
    assert BoxCodec.for_family(FAMILIES["qwen2_vl"]).convention == "norm1000"
    assert BoxCodec.for_family(FAMILIES["qwen3_vl"]).convention == "norm1000"
    with pytest.raises(ConfigError):
        BoxCodec("pixels")


def test_render_hand_examples():
    orig, resized = (1000, 500), (448, 224)
    # abs: 100*0.448=44.8->45, 50*0.448=22.4->22, 300*0.448=134.4->134, 250*0.448=112
    assert BoxCodec("abs").render({"hbb": [100, 50, 300, 250]}, orig, resized, "hbb") == [45, 22, 134, 112]
    # norm1000: 100/1000, 100/500, 300/1000, 500/500 -> 100, 200, 300, 1000 clipped to 999
    assert BoxCodec("norm1000").render({"hbb": [100, 100, 300, 500]}, orig, resized, "hbb") == [100, 200, 300, 999]
    assert BoxCodec("abs").render({"hbb": [100, 50, 300, 250]}, orig, resized, "quad") == [45, 22, 134, 22, 134, 112,
                                                                                           45, 112]
    # Half-up rounding: 0.5 -> 1 and 2.5 -> 3 (Python's round would give 0 and 2).
    assert BoxCodec("abs").render({"hbb": [1, 5, 2, 9]}, (100, 100), (50, 50), "hbb") == [1, 3, 1, 5]
    # obb in a uniformly scaled frame (1000 -> 500): centre, sides halve, angle kept.
    quad = rect_corners(500, 400, 200, 100, 30)
    assert BoxCodec("abs").render({"quad": quad}, (1000, 1000), (500, 500), "obb") == [250, 200, 100, 50, 30]


def test_render_clips_to_the_image():
    box = {"hbb": [-5, -5, 1200, 600]}
    assert BoxCodec("abs").render(box, (1000, 500), (448, 224), "hbb") == [0, 0, 448, 224]
    assert BoxCodec("norm1000").render(box, (1000, 500), (448, 224), "hbb") == [0, 0, 999, 999]
    quad = BoxCodec("abs").render({"quad": [-3, 10, 50, -2, 1010, 250, 40, 505]}, (1000, 500), (500, 250), "quad")
    assert min(quad) >= 0 and max(quad[0::2]) <= 500 and max(quad[1::2]) <= 250


@pytest.mark.parametrize("convention", ["abs", "norm1000"])
def test_round_trip_within_quantisation_bound(convention):
    codec = BoxCodec(convention)
    rng = np.random.default_rng(4)
    for _ in range(200):
        W, H = (int(v) for v in rng.integers(300, 5000, 2))
        rw, rh = (int(v) for v in rng.integers(8, 60, 2) * 28)
        fw, fh = (rw, rh) if convention == "abs" else (1000, 1000)
        # The bound stated in boxes.py: half a unit of the codec frame, mapped to original pixels.
        bx, by = 0.5 * W / fw + 1e-9, 0.5 * H / fh + 1e-9
        x1, x2 = sorted(rng.uniform(0, W * 0.99, 2))
        y1, y2 = sorted(rng.uniform(0, H * 0.99, 2))
        back = codec.to_original(codec.render({"hbb": [x1, y1, x2, y2]}, (W, H), (rw, rh), "hbb"), "hbb", (W, H),
                                 (rw, rh))["hbb"]
        assert all(abs(a - b) <= bound for a, b, bound in zip(back, [x1, y1, x2, y2], [bx, by, bx, by]))
        side = min(W, H)  # keep the rotated box inside the image: clipping is tested separately
        q = rect_corners(W / 2, H / 2, side / 3, side / 5, rng.uniform(-90, 90))
        back = codec.to_original(codec.render({"quad": q}, (W, H), (rw, rh), "quad"), "quad", (W, H), (rw, rh))["quad"]
        for x, y in zip(q[0::2], q[1::2]):  # every vertex has a partner within the bound
            assert any(abs(x - u) <= bx and abs(y - v) <= by for u, v in zip(back[0::2], back[1::2]))


def test_obb_round_trip_bound_abs():
    # Integer cx, cy (0.5 each), w, h (0.5 each) and angle (0.5 deg) move a corner by at most
    # |dc| + |dw|/2 + |dh|/2 + r*|dtheta|, r the half diagonal, in resized pixels.
    codec, rng = BoxCodec("abs"), np.random.default_rng(5)
    for _ in range(200):
        W = H = int(rng.integers(500, 4000))
        r = int(rng.integers(10, 40)) * 28
        w, h = sorted(rng.uniform(0.05, 0.4, 2) * W, reverse=True)
        q = rect_corners(W / 2, H / 2, w, h, rng.uniform(-90, 90))
        s = r / W
        half_diag = 0.5 * math.hypot(w * s, h * s)
        bound = (math.sqrt(0.5) + 0.25 + 0.25 + half_diag * math.radians(0.5)) / s + 1e-6
        back = codec.to_original(codec.render({"quad": q}, (W, H), (r, r), "obb"), "obb", (W, H), (r, r))["quad"]
        ref = Polygon(list(zip(q[0::2], q[1::2])))
        assert Polygon(list(zip(back[0::2], back[1::2]))).hausdorff_distance(ref) <= bound


def test_format_and_parse():
    codec = BoxCodec("abs")
    assert codec.format([45, 22, 134, 112], "hbb") == "[45, 22, 134, 112]"
    assert codec.format([1, 2, 3, 4, -30], "obb") == "[1, 2, 3, 4, -30]"
    for kind, vals in (("hbb", [1, 2, 3, 4]), ("obb", [5, 6, 7, 8, -45]), ("quad", [1, 2, 3, 4, 5, 6, 7, 8])):
        assert codec.parse(codec.format(vals, kind), kind) == vals
        assert codec.parse(codec.format(vals, kind, style="json", label="car"), kind) == vals
    assert codec.parse('The ship is at {"bbox_2d": [10, 20.5, 30, 40]}.', "hbb") == [10, 20.5, 30, 40]
    assert codec.parse("<|box_start|>(10,20),(30,40)<|box_end|>", "hbb") == [10, 20, 30, 40]
    assert codec.parse("no box here", "hbb") is None
    assert codec.parse("[1, 2, 3]", "hbb") is None
    assert codec.parse("[1, 2, 3, 4]", "quad") is None
    with pytest.raises(ConfigError, match="box format"):
        codec.parse("[1, 2, 3, 4]", "rbox")


OBJECTS = [
    {"label": "ship", "hbb": [10, 10, 20, 20]},
    {"label": "car", "hbb": [50, 30, 60, 40]},
    {"label": "car", "hbb": [10, 30, 20, 40]},
    {"label": "car", "quad": [80, 5, 90, 5, 90, 15, 80, 15]},
]


def test_detection_answer_order_and_text():
    text = format_detection_answer(OBJECTS, "hbb", BoxCodec("abs"), (100, 100), (200, 200))
    # car first (class name), then by top-left y, then x; coordinates doubled by the resize.
    assert text.splitlines() == ["[160, 10, 180, 30] car", "[20, 60, 40, 80] car", "[100, 60, 120, 80] car",
                                 "[20, 20, 40, 40] ship"]
    assert format_detection_answer(list(reversed(OBJECTS)), "hbb", BoxCodec("abs"), (100, 100), (200, 200)) == text


def test_detection_answer_empty_and_json():
    codec = BoxCodec("norm1000")
    assert format_detection_answer([], "quad", codec, (100, 100), (56, 56)) == NONE_ANSWER
    assert format_detection_answer([], "quad", codec, (100, 100), (56, 56), style="json") == "```json\n[]\n```"
    text = format_detection_answer(OBJECTS, "quad", codec, (100, 100), (56, 56), style="json")
    assert text.startswith("```json\n[") and '"quad bbox": [800, 50, 900, 50, 900, 150, 800, 150]' in text


# ---------------------------------------------------------------- point kind ----

def test_point_hand_examples_both_conventions_and_styles():
    # 1000x500 image resized to 448x224: scale 0.448 on both axes; norm1000 scales by 1 and 2.
    abs_codec, norm = BoxCodec("abs"), BoxCodec("norm1000")
    assert abs_codec.render({"point": [500, 250]}, (1000, 500), (448, 224), "point") == [224, 112]
    assert norm.render({"point": [500, 250]}, (1000, 500), (448, 224), "point") == [500, 500]
    # A box rendered as a point is its centre: hbb [100, 50, 300, 250] -> (200, 150) -> 89.6, 67.2.
    assert abs_codec.render({"hbb": [100, 50, 300, 250]}, (1000, 500), (448, 224), "point") == [90, 67]
    assert norm.render({"quad": [100, 50, 300, 50, 300, 250, 100, 250]}, (1000, 500), (448, 224),
                       "point") == [200, 300]
    assert abs_codec.render({"point": [1200, -3]}, (1000, 500), (448, 224), "point") == [448, 0]  # clipped
    assert abs_codec.format([224, 112], "point") == "[224, 112]"
    text = abs_codec.format([224, 112], "point", style="json", label="tower")
    assert text == '```json\n[\n\t{"point_2d": [224, 112], "label": "tower"}\n]\n```'
    assert abs_codec.parse(text, "point") == [224, 112]
    assert abs_codec.parse("The tower is at (224, 112).", "point") == [224, 112]
    assert abs_codec.parse("[1, 2, 3, 4]", "point") is None
    assert abs_codec.to_original([224, 112], "point", (1000, 500), (448, 224)) == {"point": [500.0, 250.0]}
    assert norm.to_original([500, 500], "point", (1000, 500), (448, 224)) == {"point": [500.0, 250.0]}


def test_point_has_no_outline():
    with pytest.raises(ValueError, match="render it with kind 'point'"):
        BoxCodec("abs").render({"point": [5, 5]}, (100, 100), (56, 56), "hbb")


def test_points_in_a_detection_answer():
    objects = [{"label": "car", "point": [10, 90]}, {"label": "car", "point": [50, 10]}]
    text = format_detection_answer(objects, "point", BoxCodec("abs"), (100, 100), (200, 200))
    assert text == "[100, 20] car\n[20, 180] car"  # top-most first within a class


# ---------------------------------------------------------------- round-trip properties ----
# parse(format(render(box))) mapped back with to_original lands within ONE quantum of the frame
# per axis: W / resized_w (abs) or W / 1000 (norm1000) in x, likewise in y. The boxes are drawn
# in ORIGINAL pixels (hbb, point) or in the codec's frame (quad, obb: that is where their shape
# meets the integer grid, so their size in frame units is what the draw controls) and mapped to
# original pixels by the frame's scale, computed here independently of boxes.py.

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st

from cotrain.resolution import smart_resize  # noqa: E402

PROPERTY = settings(max_examples=200, derandomize=True, deadline=None)


@st.composite
def _setups(draw):
    long = draw(st.integers(64, 8000))
    aspect = draw(st.floats(1.0, 20.0))
    short = max(64, min(long, int(long / aspect)))
    w, h = (long, short) if draw(st.booleans()) else (short, long)
    factor = draw(st.sampled_from([28, 32]))
    budget = draw(st.integers(4, 16384)) * factor * factor
    rh, rw = smart_resize(h, w, factor=factor, min_pixels=4 * factor * factor, max_pixels=budget)
    convention = draw(st.sampled_from(["abs", "norm1000"]))
    style = draw(st.sampled_from(["plain", "json"]))
    if convention == "abs":
        frame = (rw / w, rh / h, rw, rh)   # scale x, scale y, frame width, frame height
    else:
        frame = (1000 / w, 1000 / h, 999, 999)
    return (w, h), (rw, rh), BoxCodec(convention), style, frame


def _round_trip(codec, box, kind, orig, resized, style):
    values = codec.render(box, orig, resized, kind)
    text = codec.format(values, kind, style=style, label="ship")
    parsed = codec.parse(text, kind)
    assert parsed == values
    return codec.to_original(parsed, kind, orig, resized)


def _cyclic_error(got, want, qx, qy):
    """Largest per-axis error in quanta, minimised over the start vertex (ties for top-most can
    move the start by one when rounding lifts one of two equally high vertices)."""
    best = math.inf
    for s in range(4):
        rolled = want[2 * s:] + want[:2 * s]
        err = max(max(abs(g - r) / qx for g, r in zip(got[0::2], rolled[0::2])),
                  max(abs(g - r) / qy for g, r in zip(got[1::2], rolled[1::2])))
        best = min(best, err)
    return best


def _is_screen_clockwise_from_top(quad):
    pts = list(zip(quad[0::2], quad[1::2]))
    return LinearRing(pts).is_ccw and pts[0] == min(pts, key=lambda p: (p[1], p[0]))


@PROPERTY
@given(setup=_setups(), data=st.data())
def test_property_hbb_round_trip_within_one_quantum(setup, data):
    orig, resized, codec, style, (sx, sy, _, _) = setup
    x1, x2 = sorted(data.draw(st.lists(st.floats(0, orig[0]), min_size=2, max_size=2)))
    y1, y2 = sorted(data.draw(st.lists(st.floats(0, orig[1]), min_size=2, max_size=2)))
    back = _round_trip(codec, {"hbb": [x1, y1, x2, y2]}, "hbb", orig, resized, style)["hbb"]
    qx, qy = 1 / sx, 1 / sy
    for got, want, q in zip(back, [x1, y1, x2, y2], [qx, qy, qx, qy]):
        assert abs(got - want) <= q * (1 + 1e-9)


@PROPERTY
@given(setup=_setups(), data=st.data())
def test_property_point_round_trip_within_one_quantum(setup, data):
    orig, resized, codec, style, (sx, sy, _, _) = setup
    x, y = data.draw(st.floats(0, orig[0])), data.draw(st.floats(0, orig[1]))
    bx, by = _round_trip(codec, {"point": [x, y]}, "point", orig, resized, style)["point"]
    assert abs(bx - x) <= (1 + 1e-9) / sx and abs(by - y) <= (1 + 1e-9) / sy


def _frame_shape(data, fw, fh, min_radius):
    """Centre and radii in frame units, the whole shape inside [0, fw] x [0, fh] (None if it cannot fit)."""
    if min(fw, fh) < 2 * min_radius + 2:
        return None
    rx = data.draw(st.floats(min_radius, fw / 2 - 1))
    ry = data.draw(st.floats(min_radius, fh / 2 - 1))
    r = min(rx, ry)  # a rotated shape must fit in its inscribed circle's square too
    cx = data.draw(st.floats(max(rx, r), fw - max(rx, r)))
    cy = data.draw(st.floats(max(ry, r), fh - max(ry, r)))
    return cx, cy, rx, ry


@PROPERTY
@given(setup=_setups(), data=st.data())
def test_property_quad_round_trip_within_one_quantum(setup, data):
    orig, resized, codec, style, (sx, sy, fw, fh) = setup
    shape = _frame_shape(data, fw, fh, 8)
    if shape is None:
        return
    cx, cy, rx, ry = shape
    # Four points on an axis-aligned ellipse (a convex quad), at least 30 degrees apart.
    start = data.draw(st.floats(0, 360))
    gaps = data.draw(st.lists(st.floats(30, 150), min_size=3, max_size=3).filter(lambda g: sum(g) <= 330))
    angles = np.radians(start + np.concatenate([[0], np.cumsum(gaps)]))
    frame_quad = [v for a in angles for v in (cx + rx * np.cos(a), cy + ry * np.sin(a))]
    quad = [float(v) / (sx if i % 2 == 0 else sy) for i, v in enumerate(frame_quad)]
    shuffled = [quad[2 * i + k] for i in data.draw(st.permutations(range(4))) for k in (0, 1)]
    back = _round_trip(codec, {"quad": shuffled}, "quad", orig, resized, style)["quad"]
    assert _is_screen_clockwise_from_top(back)
    want = order_quad(quad)
    assert _cyclic_error(back, want, 1 / sx, 1 / sy) <= 1 + 1e-9


@PROPERTY
@given(setup=_setups(), data=st.data())
def test_property_obb_round_trip_within_its_bound(setup, data):
    orig, resized, codec, style, (sx, sy, fw, fh) = setup
    shape = _frame_shape(data, fw, fh, 2)
    if shape is None:
        return
    cx, cy, rx, ry = shape
    half_w, half_h = min(rx, ry), data.draw(st.floats(1, min(rx, ry)))
    deg = data.draw(st.floats(-180, 180))
    # A rectangle in the frame (numpy rotation, independent of boxes.py), corners inside the frame
    # because its half diagonal fits the inscribed circle only when rescaled: shrink it to fit.
    half_diag = math.hypot(half_w, half_h)
    fit = min(1.0, min(cx, fw - cx, cy, fh - cy) / half_diag)
    frame_rect = rect_corners(cx, cy, 2 * half_w * fit, 2 * half_h * fit, deg)
    quad = [v / (sx if i % 2 == 0 else sy) for i, v in enumerate(frame_rect)]
    back = _round_trip(codec, {"quad": quad}, "obb", orig, resized, style)["quad"]
    assert _is_screen_clockwise_from_top(back)
    # Bound in frame units (module docstring of boxes.py): centre 0.5, integer w/h 0.25*(|cos|+|sin|)
    # <= 0.354, integer angle radians(0.5) * half diagonal.
    bound = 0.5 + 0.25 * math.sqrt(2) + math.radians(0.5) * half_diag * fit + 1e-6
    assert _cyclic_error(back, order_quad(quad), 1 / sx, 1 / sy) <= bound


@PROPERTY
@given(setup=_setups(), data=st.data())
def test_property_small_axis_aligned_obb_within_one_quantum(setup, data):
    # Without rotation the angle is exact, and an obb of a hbb meets the plain one-quantum bound
    # whenever w and h are whole frame units (here: integer frame corners).
    orig, resized, codec, style, (sx, sy, fw, fh) = setup
    x1 = data.draw(st.integers(0, int(fw) - 2))
    y1 = data.draw(st.integers(0, int(fh) - 2))
    x2 = data.draw(st.integers(x1 + 1, int(fw)))
    y2 = data.draw(st.integers(y1 + 1, int(fh)))
    hbb = [x1 / sx, y1 / sy, x2 / sx, y2 / sy]
    back = _round_trip(codec, {"hbb": hbb}, "obb", orig, resized, style)["quad"]
    assert _cyclic_error(back, hbb_to_quad(hbb), 1 / sx, 1 / sy) <= 1 + 1e-9


# ---------------------------------------------------------------- one vertex rule ----

def test_every_public_function_returning_quads_uses_the_vertex_rule():
    from cotrain.geometry.quads import box_to_quad

    rng = np.random.default_rng(7)
    codec_abs, codec_norm = BoxCodec("abs"), BoxCodec("norm1000")
    for _ in range(100):
        q = rect_corners(*rng.uniform(40, 60, 2), *rng.uniform(5, 30, 2), rng.uniform(-180, 180))
        bow_tie = [q[2 * i + k] for i in (0, 2, 1, 3) for k in (0, 1)]  # self-intersecting order
        ints = [int(round(v)) for v in bow_tie]
        text = "[" + ", ".join(map(str, ints)) + "] car"
        hbb = [min(q[0::2]), min(q[1::2]), max(q[0::2]), max(q[1::2])]
        outputs = [order_quad(bow_tie), hbb_to_quad(hbb), box_to_quad({"quad": bow_tie}),
                   box_to_quad({"hbb": hbb}), obb_to_quad(quad_to_obb(bow_tie)),
                   codec_abs.render({"quad": bow_tie}, (100, 100), (56, 56), "quad"),
                   codec_norm.render({"quad": bow_tie}, (100, 100), (56, 56), "quad"),
                   codec_abs.parse(text, "quad"),
                   codec_abs.to_original(ints, "quad", (100, 100), (56, 56))["quad"],
                   codec_norm.to_original(codec_norm.render({"quad": q}, (100, 100), (56, 56), "obb"), "obb",
                                          (100, 100), (56, 56))["quad"]]
        for out in outputs:
            assert _is_screen_clockwise_from_top(out), out


def test_convexity_helpers_against_shapely():
    from cotrain.geometry.quads import is_convex_quad, quad_area

    rng = np.random.default_rng(8)
    for _ in range(300):
        q = [float(v) for v in rng.uniform(0, 100, 8)]
        pts = list(zip(q[0::2], q[1::2]))
        hull = MultiPoint(pts).convex_hull
        if hull.area < 1:
            continue
        convex = len(hull.exterior.coords) - 1 == 4  # all 4 vertices on the hull
        assert is_convex_quad(q) == convex
        if convex:
            assert quad_area(q) == pytest.approx(hull.area, rel=1e-9)
