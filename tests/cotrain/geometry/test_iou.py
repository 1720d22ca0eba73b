"""Rotated IoU against shapely (an independent GEOS implementation) and hand-derived cases."""

import math

import numpy as np
import pytest
import shapely

from cotrain.geometry.iou import (
    iou_matrix,
    iou_pairs,
    min_area_rect,
    order_quads,
    rbox_iou,
    rboxes_to_quads,
)
from cotrain.geometry.quads import obb_to_quad, order_quad, quad_to_obb


def _random_rboxes(rng, n, spread=100.0):
    centres = rng.uniform(0, spread, (n, 2))
    w = rng.uniform(0.5, 40, n) * np.exp(rng.uniform(-2.5, 2.5, n))   # aspect ratios up to ~100:1
    h = rng.uniform(0.5, 40, n)
    return np.column_stack([centres, w, h, rng.uniform(-math.pi, math.pi, n)])


def _shapely_iou(a, b):
    """Pairwise IoU with shapely; quads are taken as the convex hull of their vertices."""
    pa = shapely.convex_hull(shapely.polygons(np.asarray(a).reshape(-1, 4, 2)))
    pb = shapely.convex_hull(shapely.polygons(np.asarray(b).reshape(-1, 4, 2)))
    inter = shapely.area(shapely.intersection(pa, pb))
    union = shapely.area(pa) + shapely.area(pb) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _near_pairs(rng, n):
    """Pairs that mostly overlap: b is a jittered, rescaled, rotated copy of a."""
    ra = _random_rboxes(rng, n)
    rb = ra.copy()
    rb[:, :2] += rng.normal(0, 8, (n, 2))
    rb[:, 2:4] *= rng.uniform(0.5, 1.5, (n, 2))
    rb[:, 4] += rng.normal(0, 0.4, n)
    return rboxes_to_quads(ra), rboxes_to_quads(rb)


def test_known_fixture_rbox_iou():
    boxes1 = [[1, 1, 3, 4, 0.5], [2, 2, 3, 4, 0.6], [7, 7, 8, 8, 0.4]]
    boxes2 = [[0, 2, 2, 5, 0.3], [2, 1, 3, 3, 0.5], [5, 5, 6, 7, 0.4]]
    expected = [[0.3708, 0.4351, 0], [0.1104, 0.4487, 0.0424], [0, 0, 0.3622]]
    np.testing.assert_allclose(rbox_iou(boxes1, boxes2), expected, atol=1e-4)


def test_rotated_boxes_match_shapely():
    rng = np.random.default_rng(1234)
    a, b = _near_pairs(rng, 4000)
    ref = _shapely_iou(a, b)
    assert (ref > 0).mean() > 0.5, "the fixture must exercise overlapping pairs"
    for mode in ("quad", "rbox"):   # rectangles: the min-area rectangle is the box itself
        np.testing.assert_allclose(iou_pairs(a, b, mode=mode), ref, rtol=0, atol=1e-9)


def test_irregular_quads_match_shapely_hull_and_rbox_matches_rectangles():
    rng = np.random.default_rng(99)
    a = rng.uniform(0, 60, (3000, 8))
    b = a + rng.normal(0, 15, (3000, 8))          # many non-convex and bow-tie vertex orders
    np.testing.assert_allclose(iou_pairs(a, b, mode="quad"), _shapely_iou(a, b), atol=1e-9)
    # A quad can have two different minimum-area rectangles (equal areas, e.g. when one vertex lies
    # inside the rectangle flush with either of two edges), so compare only where shapely picked ours.
    ra = shapely.minimum_rotated_rectangle(shapely.polygons(a.reshape(-1, 4, 2)))
    rb = shapely.minimum_rotated_rectangle(shapely.polygons(b.reshape(-1, 4, 2)))
    same = (_shapely_iou(min_area_rect(a), shapely.get_coordinates(ra).reshape(-1, 5, 2)[:, :4]) > 1 - 1e-9) & (
        _shapely_iou(min_area_rect(b), shapely.get_coordinates(rb).reshape(-1, 5, 2)[:, :4]) > 1 - 1e-9)
    assert same.mean() > 0.5
    inter = shapely.area(shapely.intersection(ra, rb))
    ref = inter / (shapely.area(ra) + shapely.area(rb) - inter)
    np.testing.assert_allclose(iou_pairs(a, b, mode="rbox")[same], ref[same], atol=1e-9)


def test_large_coordinates_keep_precision():
    rng = np.random.default_rng(7)
    a, b = _near_pairs(rng, 1000)
    shift = np.tile([12000.0, 9000.0], 4)
    np.testing.assert_allclose(iou_pairs(a + shift, b + shift, mode="quad"), _shapely_iou(a, b), atol=1e-9)


def test_iou_matrix_matches_pairwise_shapely_and_prefilter_zeroes():
    rng = np.random.default_rng(5)
    a = rboxes_to_quads(_random_rboxes(rng, 60, spread=300))
    b = rboxes_to_quads(_random_rboxes(rng, 45, spread=300))
    m = iou_matrix(a, b, mode="quad")
    ii, jj = np.meshgrid(np.arange(60), np.arange(45), indexing="ij")
    ref = _shapely_iou(a[ii.ravel()], b[jj.ravel()]).reshape(60, 45)
    np.testing.assert_allclose(m, ref, atol=1e-9)
    assert (ref == 0).any() and (ref > 0).any()
    assert iou_matrix(a, b[:0]).shape == (60, 0) and iou_matrix(np.zeros((0, 8)), b).shape == (0, 45)


def test_iou_matrix_blocks_rows(monkeypatch):
    import cotrain.geometry.iou as iou_module

    rng = np.random.default_rng(6)
    a = rboxes_to_quads(_random_rboxes(rng, 50, spread=150))
    b = rboxes_to_quads(_random_rboxes(rng, 40, spread=150))
    full = iou_matrix(a, b)
    monkeypatch.setattr(iou_module, "PREFILTER_CELLS", 7)      # one row per block
    monkeypatch.setattr(iou_module, "PAIR_CHUNK", 3)            # tiny clipping chunks
    np.testing.assert_array_equal(iou_matrix(a, b), full)


def test_hand_derived_cases():
    square = [0, 0, 2, 0, 2, 2, 0, 2]
    cases = [
        (square, square, 1.0),                                  # identical
        (square, [2, 0, 4, 0, 4, 2, 2, 2], 0.0),                # touching along an edge
        (square, [2, 2, 3, 2, 3, 3, 2, 3], 0.0),                # touching at a corner
        (square, [1, 0, 3, 0, 3, 2, 1, 2], 2 / 6),              # collinear top/bottom edges, half overlap
        (square, [0, 0, 1, 0, 1, 1, 0, 1], 1 / 4),              # inside, sharing two edges
        ([-1, -1, 3, -1, 3, 3, -1, 3], [0.5, 0.5, 1, 0.5, 1, 1, 0.5, 1], 0.25 / 16),  # strictly inside
        (square, [1, -1, 3, 1, 1, 3, -1, 1], 4 / 8),            # diamond: overlap is the square
        (square, [2, 0, 0, 0, 0, 2, 2, 2], 1.0),                # same square, other vertex order
        (square, [0, 0, 2, 2, 2, 0, 0, 2], 1.0),                # bow-tie order of the same corners
        (square, [1, 1, 1, 1, 1, 1, 1, 1], 0.0),                # a point inside
        (square, [0, 1, 2, 1, 2, 1, 0, 1], 0.0),                # a segment across
        ([1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1], 0.0),  # degenerate with itself
    ]
    a = np.array([c[0] for c in cases], dtype=float)
    b = np.array([c[1] for c in cases], dtype=float)
    expected = [c[2] for c in cases]
    for mode in ("quad", "rbox"):
        np.testing.assert_allclose(iou_pairs(a, b, mode=mode), expected, atol=1e-12, err_msg=mode)


def test_identical_rotated_boxes_are_one():
    rng = np.random.default_rng(3)
    q = rboxes_to_quads(_random_rboxes(rng, 500))
    np.testing.assert_allclose(iou_pairs(q, q), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.diag(iou_matrix(q[:50], q[:50], mode="quad")), 1.0, atol=1e-12)


def test_rboxes_to_quads_matches_box_codec_geometry():
    rng = np.random.default_rng(11)
    r = _random_rboxes(rng, 200)
    quads = rboxes_to_quads(r)
    for row, quad in zip(r, quads):
        ref = obb_to_quad([row[0], row[1], row[2], row[3], math.degrees(row[4])])
        np.testing.assert_allclose(quad, ref, atol=1e-9)
    # Axis-aligned, theta = 0: corners by hand, top-left first, clockwise on screen.
    np.testing.assert_allclose(rboxes_to_quads([[5, 5, 4, 2, 0.0]]), [[3, 4, 7, 4, 7, 6, 3, 6]])


def test_order_quads_matches_order_quad():
    rng = np.random.default_rng(12)
    q = rng.integers(0, 5, (300, 8)).astype(float)      # small integers: many ties in y
    expected = np.array([order_quad(list(row)) for row in q])
    np.testing.assert_array_equal(order_quads(q), expected)


def test_min_area_rect_matches_shapely_and_boxes():
    rng = np.random.default_rng(21)
    quads = rng.uniform(0, 50, (500, 8))
    quads[:100] = rboxes_to_quads(_random_rboxes(rng, 100))   # rectangles map to themselves
    rects = min_area_rect(quads)
    ref = shapely.minimum_rotated_rectangle(shapely.polygons(quads.reshape(-1, 4, 2)))
    mine = shapely.polygons(rects.reshape(-1, 4, 2))
    assert shapely.is_valid(mine).all()
    np.testing.assert_allclose(shapely.area(mine), shapely.area(ref), rtol=1e-9, atol=1e-9)
    # Ties between two minimum rectangles exist, so check "encloses the hull with the minimum area,
    # and is a rectangle" rather than "is shapely's rectangle".
    hull = shapely.convex_hull(shapely.polygons(quads.reshape(-1, 4, 2)))
    # (A containment test, not an overlay: GEOS's overlay can return a point or nothing for
    # polygons sharing edges, such as a rectangle and its own hull.)
    assert shapely.covers(shapely.buffer(mine, 1e-7), hull).all()
    pts = rects.reshape(-1, 4, 2)
    sides = np.roll(pts, -1, axis=1) - pts
    dots = (sides * np.roll(sides, -1, axis=1)).sum(axis=2)
    np.testing.assert_allclose(dots, 0, atol=1e-8)
    # Rectangles in: the same rectangle out (vertex order of order_quad).
    np.testing.assert_allclose(rects[:100], order_quads(quads[:100]), atol=1e-9)
    # cotrain.boxes.quad_to_obb (pure Python rotating calipers) agrees on the area.
    for quad, rect in zip(quads[100:150], rects[100:150]):
        _, _, w, h, _ = quad_to_obb(list(quad))
        assert abs(w * h - shapely.area(shapely.Polygon(rect.reshape(4, 2)))) < 1e-8


def test_min_area_rect_degenerate_inputs():
    point = [3, 3] * 4
    segment = [0, 0, 1, 1, 2, 2, 3, 3]
    rects = min_area_rect([point, segment])
    np.testing.assert_allclose(rects[0], point)
    assert shapely.area(shapely.Polygon(rects[1].reshape(4, 2))) == pytest.approx(0, abs=1e-12)
    np.testing.assert_allclose(np.sort(rects[1][0::2]), [0, 0, 3, 3], atol=1e-12)


def test_bad_input_is_rejected_with_a_fix():
    with pytest.raises(ValueError, match=r"shape \(N, 8\)"):
        iou_matrix(np.zeros((3, 5)), np.zeros((3, 8)))
    with pytest.raises(ValueError, match="non-finite"):
        iou_pairs(np.full((2, 8), np.nan), np.zeros((2, 8)))
    with pytest.raises(ValueError, match="unknown IoU mode"):
        iou_matrix(np.zeros((1, 8)), np.zeros((1, 8)), mode="hbb")
    with pytest.raises(ValueError, match="iou_matrix"):
        iou_pairs(np.zeros((2, 8)), np.zeros((3, 8)))


def test_bench_iou_runs_and_agrees_with_shapely():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "tools" / "bench_det.py"
    spec = importlib.util.spec_from_file_location("bench_det", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    res = bench.bench_iou(400, seed=0, loop_pairs=20, repeats=1)
    assert res["max_abs_diff_vs_shapely"] < 1e-9
    assert 0.3 < res["overlapping"] < 1.0
