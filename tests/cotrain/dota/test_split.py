"""Patch split and merge: window grid against the DOTA devkit loop, IoF / clipping against shapely,
NMS against a brute-force shapely NMS, determinism under permuted input, split -> merge round trip."""

import numpy as np
import pytest
import shapely
from PIL import Image

from cotrain.dota.formats import DotaFormatError, read_labeltxt
from cotrain.dota.split import (
    merge_patch_detections,
    parse_patch_id,
    patch_id,
    rotated_nms,
    split_annotations,
    split_image,
    window_starts,
)
from cotrain.dota.types import GT, Det
from cotrain.errors import ConfigError


def devkit_starts(length, patch, gap):
    """The DOTA devkit's ImgSplit while-loop over one axis, transcribed as the reference."""
    out, left = [], 0
    while left < length:
        if left + patch >= length:
            left = max(length - patch, 0)
        out.append(left)
        if left + patch >= length:
            break
        left += patch - gap
    return out


@pytest.mark.parametrize("length", [1, 500, 1023, 1024, 1025, 1848, 1849, 3000, 4000, 20000])
def test_window_starts_match_devkit(length):
    assert window_starts(length, 1024, 200) == devkit_starts(length, 1024, 200)


def test_window_starts_hand_cases():
    assert window_starts(3000, 1024, 200) == [0, 824, 1648, 1976]
    assert window_starts(1025, 1024, 200) == [0, 1]
    assert window_starts(600, 1024, 200) == [0]


def test_patch_ids_parse_from_the_right():
    pid = patch_id("my__scene", 1024, 824, 0)
    assert pid == "my__scene__1024__824___0"
    assert parse_patch_id(pid) == ("my__scene", 824, 0)
    with pytest.raises(DotaFormatError, match="not a patch id"):
        parse_patch_id("P0001")


def test_bad_grid_parameters():
    with pytest.raises(ConfigError, match="patch > gap"):
        split_annotations("a", 100, 100, [], patch=100, gap=100)
    with pytest.raises(ConfigError, match="iof_thr"):
        split_annotations("a", 100, 100, [], iof_thr=0.0)


def _rect(x0, y0, x1, y1):
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def test_small_image_gives_one_padded_window():
    gts = [GT("plane", [5, 5, 40, 8, 38, 30, 3, 28], 1)]
    patches = split_annotations("tiny", 300, 200, gts)
    assert [(p.id, p.x, p.y, p.w, p.h) for p in patches] == [("tiny__1024__0___0", 0, 0, 1024, 1024)]
    # Wholly inside: the vertex order and the difficult flag are kept as written.
    assert patches[0].gts[0].quad.tolist() == [5, 5, 40, 8, 38, 30, 3, 28] and patches[0].gts[0].difficult == 1


def test_iof_threshold_clipping_and_truncated_flag():
    # Windows at x = 0 and 70 (patch 100, gap 30, width 170); the rotated object straddles x = 100
    # and lies wholly inside the right window.
    obj = [75, 20, 120, 10, 125, 40, 80, 50]
    gts = [GT("ship", obj), GT("plane", _rect(20, 60, 40, 80))]
    poly = shapely.Polygon(np.reshape(obj, (4, 2)))
    left = poly.intersection(shapely.box(0, 0, 100, 100))
    iof_left = left.area / poly.area
    assert 0.4 < iof_left < 0.6
    patches = {(p.x, p.y): p for p in split_annotations("img", 170, 100, gts, patch=100, gap=30, iof_thr=0.4)}
    assert sorted(patches) == [(0, 0), (70, 0)]
    (ship,) = [g for g in patches[(0, 0)].gts if g.label == "ship"]
    assert ship.difficult == 2
    # The cut runs through two sides, so the visible part is a quad: kept exactly (same area, same place).
    assert shapely.Polygon(ship.quad.reshape(4, 2)).symmetric_difference(left).area == pytest.approx(0, abs=1e-9)
    # Right window: the object is wholly inside, in patch coordinates, original flag and vertex order.
    (ship_r,) = [g for g in patches[(70, 0)].gts if g.label == "ship"]
    assert ship_r.quad.tolist() == (np.array(obj) - np.tile([70, 0], 4)).tolist() and ship_r.difficult == 0
    # A threshold above the IoF drops the cut copy.
    higher = {(p.x, p.y): p for p in split_annotations("img", 170, 100, gts, patch=100, gap=30, iof_thr=0.6)}
    assert [g.label for g in higher[(0, 0)].gts] == ["plane"]


def test_clipped_polygon_with_more_vertices_becomes_its_min_area_rectangle():
    # The window corner cuts a diamond into a hexagon; its quad is the hexagon's min-area rectangle.
    diamond = [50, 10, 90, 50, 50, 90, 10, 50]
    patches = split_annotations("d", 160, 100, [GT("roundabout", diamond)], patch=80, gap=20, iof_thr=0.5)
    first = patches[0]
    assert (first.x, first.y) == (0, 0)
    (g,) = first.gts
    assert g.difficult == 2
    piece = shapely.Polygon(np.reshape(diamond, (4, 2))).intersection(shapely.box(0, 0, 80, 80))
    assert len(piece.exterior.coords) - 1 == 6
    rect = shapely.Polygon(g.quad.reshape(4, 2))
    assert rect.area == pytest.approx(piece.minimum_rotated_rectangle.area)
    assert rect.buffer(1e-9).contains(piece)


def test_split_image_crops_pads_and_writes_labels(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(1, 256, size=(130, 170, 3), dtype=np.uint8)      # no zeros, so padding is visible
    Image.fromarray(pixels).save(tmp_path / "scene.png")
    gts = [GT("plane", _rect(10, 10, 30, 30)), GT("ship", _rect(120, 90, 150, 120), 1)]
    patches = split_image(tmp_path / "scene.png", tmp_path / "out", gts, patch=100, gap=20)
    assert [p.id for p in patches] == ["scene__100__0___0", "scene__100__0___30", "scene__100__70___0",
                                       "scene__100__70___30"]
    for p in patches:
        got = np.asarray(Image.open(tmp_path / "out" / "images" / f"{p.id}.png"))
        assert got.shape == (100, 100, 3)
        h, w = min(100, 130 - p.y), min(100, 170 - p.x)
        assert np.array_equal(got[:h, :w], pixels[p.y:p.y + h, p.x:p.x + w])
        assert not got[h:].any() and not got[:, w:].any()
        labels = read_labeltxt(tmp_path / "out" / "labelTxt" / f"{p.id}.txt")
        assert [(g.label, g.quad.tolist(), g.difficult) for g in labels] == \
            [(g.label, g.quad.tolist(), g.difficult) for g in p.gts]
    ship = [g for g in patches[-1].gts if g.label == "ship"]
    assert ship[0].quad.tolist() == _rect(50, 60, 80, 90) and ship[0].difficult == 1


def _shapely_rbox_iou(a, b):
    pa = shapely.Polygon(np.reshape(a, (4, 2))).minimum_rotated_rectangle
    pb = shapely.Polygon(np.reshape(b, (4, 2))).minimum_rotated_rectangle
    union = pa.union(pb).area
    return pa.intersection(pb).area / union if union > 0 else 0.0


def _reference_nms(quads, thr):
    keep = []
    for i, q in enumerate(quads):
        if all(_shapely_rbox_iou(quads[k], q) <= thr for k in keep):
            keep.append(i)
    return keep


def _random_quads(rng, n, extent=200):
    centers = rng.uniform(0, extent, (n, 2))
    sizes = rng.uniform(5, 40, (n, 2))
    theta = rng.uniform(-np.pi, np.pi, n)
    c, s = np.cos(theta), np.sin(theta)
    quads = []
    for (cx, cy), (w, h), ci, si in zip(centers, sizes, c, s):
        u, v = np.array([ci, si]) * w / 2, np.array([-si, ci]) * h / 2
        quads.append(np.concatenate([[cx, cy] + u + v, [cx, cy] + u - v, [cx, cy] - u - v, [cx, cy] - u + v]))
    return np.array(quads)


@pytest.mark.parametrize("thr", [0.1, 0.5])
def test_rotated_nms_matches_shapely_reference(thr):
    quads = _random_quads(np.random.default_rng(3), 60)
    assert rotated_nms(quads, thr).tolist() == _reference_nms(list(quads), thr)


def test_box_seen_in_two_patches_merges_to_one():
    # One object at x 80..110 of the original seen by windows x=0 (cut) and x=70 (whole).
    dets = {
        "img__100__0___0": [Det("ship", _rect(80, 10, 100, 30), 0.6)],
        "img__100__70___0": [Det("ship", _rect(10, 10, 40, 30), 0.9), Det("plane", _rect(12, 12, 38, 28), 0.5)],
        "other__100__0___0": [],
    }
    merged = merge_patch_detections(dets)
    assert list(merged) == ["img", "other"] and merged["other"] == []
    got = [(d.label, d.quad.tolist(), d.score) for d in merged["img"]]
    # Classes are merged separately (the plane survives), and the higher-scored whole copy wins.
    assert got == [("plane", _rect(82, 12, 108, 28), 0.5), ("ship", _rect(80, 10, 110, 30), 0.9)]


def test_nms_threshold_is_strictly_above():
    # Two 10x10 squares shifted by 5: IoU = 50 / 150 = 1/3, above 0.1 (suppressed), not above 1/3 + eps.
    a, b = _rect(0, 0, 10, 10), _rect(5, 0, 15, 10)
    iou = _shapely_rbox_iou(a, b)
    assert iou == pytest.approx(1 / 3)
    dets = {"i__100__0___0": [Det("ship", a, 0.9), Det("ship", b, 0.8)]}
    assert len(merge_patch_detections(dets, nms_iou=0.1)["i"]) == 1
    assert len(merge_patch_detections(dets, nms_iou=1 / 3 + 1e-9)["i"]) == 2


def test_ties_resolve_the_same_under_permuted_input():
    rng = np.random.default_rng(7)
    dets = {}
    for x in (0, 70, 140):
        for y in (0, 70):
            quads = _random_quads(rng, 12, extent=100)
            dets[patch_id("s", 100, x, y)] = [Det(["ship", "plane"][k % 2], q, 1.0) for k, q in enumerate(quads)]
    reference = merge_patch_detections(dets)
    keys = list(dets)
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(len(keys))
        shuffled = {keys[i]: dets[keys[i]] for i in order}
        again = merge_patch_detections(shuffled)
        assert [(d.label, d.quad.tolist()) for d in again["s"]] == [(d.label, d.quad.tolist()) for d in reference["s"]]
    # Hand check of the rule: all scores tied, so the patch with the smallest offset wins first.
    first_ship = next(d for d in reference["s"] if d.label == "ship")
    assert first_ship.quad.tolist() == dets["s__100__0___0"][0].quad.tolist()


def test_split_then_merge_recovers_the_originals():
    # Objects smaller than the gap are wholly inside at least one window; truncated copies score lower.
    rng = np.random.default_rng(11)
    originals = []
    for cx in range(25, 300, 45):
        for cy in range(25, 220, 45):
            w, h, t = rng.uniform(8, 24), rng.uniform(6, 14), rng.uniform(-np.pi, np.pi)
            u, v = np.array([np.cos(t), np.sin(t)]) * w / 2, np.array([-np.sin(t), np.cos(t)]) * h / 2
            c = np.array([cx, cy]) + rng.uniform(-8, 8, 2)
            originals.append(GT(["ship", "plane"][len(originals) % 2],
                                np.concatenate([c + u + v, c + u - v, c - u - v, c - u + v])))
    patches = split_annotations("big", 310, 230, originals, patch=100, gap=30, iof_thr=0.5)
    assert any(g.difficult == 2 for p in patches for g in p.gts)     # the test does exercise cut copies
    dets = {p.id: [Det(g.label, g.quad, 0.5 if g.difficult == 2 else 1.0) for g in p.gts] for p in patches}
    merged = merge_patch_detections(dets)["big"]
    assert len(merged) == len(originals)
    want = sorted((g.label, tuple(np.round(g.quad, 6))) for g in originals)
    got = sorted((d.label, tuple(np.round(d.quad, 6))) for d in merged)
    assert got == want
