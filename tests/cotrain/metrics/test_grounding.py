"""Grounding metrics: box IoU against polygons built here by hand, and the Acc@IoU summary."""

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Polygon

from cotrain.geometry.iou import box_iou
from cotrain.metrics.grounding import grounding_summary


def rotated_rect(cx, cy, w, h, angle_deg):
    """Shapely polygon of an oriented box, built with an explicit rotation matrix (not cotrain.boxes)."""
    t = math.radians(angle_deg)
    rot = ((math.cos(t), -math.sin(t)), (math.sin(t), math.cos(t)))
    local = [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]
    return Polygon([(cx + rot[0][0] * x + rot[0][1] * y, cy + rot[1][0] * x + rot[1][1] * y) for x, y in local])


def reference_iou(pa: Polygon, pb: Polygon) -> float:
    inter = pa.intersection(pb).area
    return inter / (pa.area + pb.area - inter)


SQUARE = {"hbb": [0, 0, 10, 10]}


def test_hbb_hand_cases():
    assert box_iou(SQUARE, SQUARE) == pytest.approx(1.0)
    assert box_iou(SQUARE, {"hbb": [5, 0, 15, 10]}) == pytest.approx(50 / 150)   # inter 50, union 150
    assert box_iou(SQUARE, {"hbb": [5, 5, 15, 15]}) == pytest.approx(25 / 175)
    assert box_iou(SQUARE, {"hbb": [20, 20, 30, 30]}) == 0.0
    assert box_iou(SQUARE, {"hbb": [10, 0, 20, 10]}) == 0.0                     # touching edges only


def test_quad_hand_cases():
    # the diamond inscribed in the square: area 50, all inside -> IoU 0.5
    assert box_iou(SQUARE, {"quad": [5, 0, 10, 5, 5, 10, 0, 5]}) == pytest.approx(0.5)
    # any vertex order, including a bow-tie listing, is the same box
    assert box_iou(SQUARE, {"quad": [0, 0, 10, 10, 10, 0, 0, 10]}) == pytest.approx(1.0)
    assert box_iou(SQUARE, {"quad": [0, 10, 10, 10, 10, 0, 0, 0]}) == pytest.approx(1.0)


def test_obb_analytic_cases():
    # Same centre, rotated 45 degrees: the overlap is the square minus 4 right isosceles corners of
    # height (sqrt(2)/2 - 1/2) * side, i.e. 2(sqrt(2)-1) of the unit square; IoU = sqrt(2)/2.
    assert box_iou(SQUARE, {"obb": [5, 5, 10, 10, 45]}) == pytest.approx(math.sqrt(2) / 2)
    # a 20x10 box turned 90 degrees is the 10x20 upright box around the same centre
    assert box_iou({"obb": [5, 5, 20, 10, 90]}, {"hbb": [0, -5, 10, 15]}) == pytest.approx(1.0)
    assert box_iou({"obb": [5, 5, 20, 10, -90]}, {"hbb": [0, -5, 10, 15]}) == pytest.approx(1.0)
    # angle 0 and 180 are the same box
    assert box_iou({"obb": [5, 5, 20, 10, 0]}, {"obb": [5, 5, 20, 10, 180]}) == pytest.approx(1.0)
    assert box_iou({"obb": [5, 5, 20, 10, 0]}, {"hbb": [-5, 0, 15, 10]}) == pytest.approx(1.0)


def test_random_pairs_match_hand_built_polygons():
    rng = random.Random(0)
    for _ in range(300):
        a = [rng.uniform(0, 100), rng.uniform(0, 100), rng.uniform(1, 60), rng.uniform(1, 60), rng.uniform(-180, 180)]
        b = [a[0] + rng.uniform(-30, 30), a[1] + rng.uniform(-30, 30), rng.uniform(1, 60), rng.uniform(1, 60),
             rng.uniform(-180, 180)]
        pa, pb = rotated_rect(*a), rotated_rect(*b)
        want = reference_iou(pa, pb)
        assert box_iou({"obb": a}, {"obb": b}) == pytest.approx(want, abs=1e-9)
        # the same boxes given as quads (corners in a shuffled order) and mixed kinds
        qa = [v for p in rng.sample(list(pa.exterior.coords)[:4], 4) for v in p]
        assert box_iou({"quad": qa}, {"obb": b}) == pytest.approx(want, abs=1e-9)
        x1, y1, x2, y2 = pb.bounds
        assert box_iou({"obb": a}, {"hbb": [x1, y1, x2, y2]}) == pytest.approx(
            reference_iou(pa, Polygon([(x1, y1), (x2, y1), (x2, y2), (x1, y2)])), abs=1e-9)


@pytest.mark.parametrize("bad", [
    {"quad": [1, 1, 1, 1, 1, 1, 1, 1]}, {"hbb": [3, 3, 3, 9]}, {"quad": [0, 0, 5, 5, 10, 10, 2, 2]},
    {"obb": [5, 5, 0, 10, 30]}, {"hbb": [0, 0, float("inf"), 10]}, {"obb": [5, 5, 10, 10, float("nan")]},
    {"hbb": [float("-inf"), 0, 10, 10]}, {"hbb": [-1e308, -1e308, 1e308, 1e308]},  # area overflows float
])
def test_degenerate_boxes_score_zero(bad):
    assert box_iou(SQUARE, bad) == 0.0
    assert box_iou(bad, SQUARE) == 0.0


def test_malformed_box_is_a_caller_error():
    with pytest.raises(ValueError, match="hbb box has 4 numbers"):
        box_iou(SQUARE, {"hbb": [0, 0, 1]})
    with pytest.raises(ValueError, match="got keys"):
        box_iou(SQUARE, {"point": [1, 2]})


_COORD = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=300, deadline=None)
@given(st.lists(_COORD, min_size=8, max_size=8), st.lists(_COORD, min_size=5, max_size=5))
def test_iou_never_raises_and_stays_in_unit_interval(quad, obb):
    for a, b in [({"quad": quad}, {"obb": obb}), ({"hbb": quad[:4]}, {"quad": quad}), ({"obb": obb}, SQUARE)]:
        v = box_iou(a, b)
        assert 0.0 <= v <= 1.0


def test_grounding_summary_hand_case():
    out = grounding_summary([1.0, 0.75, 0.5, 0.2, 0.0])
    assert out == {"acc@0.5": 0.6, "acc@0.7": 0.4, "acc@0.9": 0.2, "miou": pytest.approx(2.45 / 5), "n": 5}
    assert grounding_summary([0.3], thresholds=(0.25,)) == {"acc@0.25": 1.0, "miou": 0.3, "n": 1}
    assert grounding_summary([]) == {"acc@0.5": None, "acc@0.7": None, "acc@0.9": None, "miou": None, "n": 0}
    with pytest.raises(ValueError, match="pass 0.0"):
        grounding_summary([0.5, float("nan")])


def test_box_iou_hand_cases():
    a = {"hbb": [0, 0, 10, 10]}
    assert box_iou(a, a) == pytest.approx(1.0)
    # half overlap: inter 50, union 150
    assert box_iou(a, {"hbb": [5, 0, 15, 10]}) == pytest.approx(50 / 150)
    assert box_iou(a, {"hbb": [20, 20, 30, 30]}) == 0.0
    # a square rotated 45 degrees inside the 10x10 box: diamond area 50, all inside -> IoU 0.5
    diamond = {"quad": [5, 0, 10, 5, 5, 10, 0, 5]}
    assert box_iou(a, diamond) == pytest.approx(0.5)
    # vertex order does not matter: a bow-tie listing of the same square is the same box
    assert box_iou(a, {"quad": [0, 0, 10, 10, 10, 0, 0, 10]}) == pytest.approx(1.0)
    # degenerate boxes score 0 instead of raising
    assert box_iou(a, {"quad": [1, 1, 1, 1, 1, 1, 1, 1]}) == 0.0
