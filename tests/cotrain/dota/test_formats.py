"""DOTA labelTxt / Task1 I/O and mmrotate pickle reading, against hand-written files and shapely geometry."""

import logging
import pickle

import numpy as np
import pytest
import shapely
from shapely import affinity

from cotrain.dota.formats import (
    DetectorResultError,
    DotaFormatError,
    ReadReport,
    read_labeltxt,
    read_labeltxt_dir,
    read_labeltxt_header,
    read_mmrotate_pickle,
    read_task1_dir,
    write_labeltxt,
    write_task1_dir,
)
from cotrain.dota.types import DOTA_V1_CLASSES, GT, Det
from cotrain.errors import CotrainError

LABEL_FILE = """imagesource:GoogleEarth
gsd:0.146343590398

2753 2408 2861 2385 2888 2468 2805 2502 plane 0
1106.5 1167 1132 1167 1132 1180 1106.5 1180 small-vehicle
10 10 20 10 20 20 10 20 ship 1
1 2 3 4 5 large-vehicle 0
1 2 3 4 5 6 large-vehicle 0
1 2 3 4 5 6 7 large-vehicle 0
1 2 3 4 5 6 7 8 9 large-vehicle 0
1 2 3 4 5 6 7 8 9
1 2 3 4 5 6 7 nan plane 0
1 2 3 4 5 6 7 8 plane x
"""


def test_read_labeltxt_header_missing_difficult_and_malformed_lines(tmp_path):
    path = tmp_path / "P0001.txt"
    path.write_text(LABEL_FILE)
    report = ReadReport()
    gts = read_labeltxt(path, report=report)
    assert [g.label for g in gts] == ["plane", "small-vehicle", "ship"]
    assert [g.difficult for g in gts] == [0, 0, 1]          # missing flag -> 0
    assert gts[1].quad.tolist() == [1106.5, 1167, 1132, 1167, 1132, 1180, 1106.5, 1180]
    # Lines 7..13 of the file are the bad ones (two header lines and a blank line come first).
    assert [m.split(": ")[0] for m in report.malformed] == [f"{path}:{n}" for n in range(7, 14)]
    assert report.objects == 3 and report.files == 1
    assert read_labeltxt_header(path) == {"imagesource": "GoogleEarth", "gsd": "0.146343590398"}


def test_read_labeltxt_strict_names_file_and_line(tmp_path):
    path = tmp_path / "P0001.txt"
    path.write_text(LABEL_FILE)
    with pytest.raises(DotaFormatError, match=r"P0001\.txt:7: 7 fields") as info:
        read_labeltxt(path, strict=True)
    assert isinstance(info.value, CotrainError) and info.value.line == 7


def test_unreported_malformed_lines_are_logged(tmp_path, caplog):
    path = tmp_path / "a.txt"
    path.write_text("1 2 3 plane\n0 0 4 0 4 4 0 4 plane 0\n")
    with caplog.at_level(logging.WARNING, logger="cotrain.dota.formats"):
        gts = read_labeltxt(path)
    assert len(gts) == 1
    assert "a.txt:1" in caplog.text


def test_labeltxt_round_trip_and_dir(tmp_path):
    gts = [GT("plane", [0.1, 2, 3.333333333333, 4, 5, 6, 7, 8e3], 0), GT("harbor", [1, 1, 9, 1, 9, 9, 1, 9], 2)]
    write_labeltxt(tmp_path / "lab" / "B.txt", gts, header={"imagesource": "GoogleEarth", "gsd": "null"})
    write_labeltxt(tmp_path / "lab" / "A.txt", [])
    (tmp_path / "lab" / "notes.md").write_text("ignored")
    assert (tmp_path / "lab" / "B.txt").read_text().splitlines()[:3] == [
        "imagesource:GoogleEarth", "gsd:null", "0.1 2 3.333333333333 4 5 6 7 8000 plane 0"]
    got = read_labeltxt_dir(tmp_path / "lab")
    assert list(got) == ["A", "B"] and got["A"] == []
    assert [(g.label, g.quad.tolist(), g.difficult) for g in got["B"]] == \
        [(g.label, g.quad.tolist(), g.difficult) for g in gts]
    with pytest.raises(DotaFormatError, match="whitespace"):
        write_labeltxt(tmp_path / "x.txt", [GT("small vehicle", [0] * 8)])


def test_labeltxt_dir_errors(tmp_path):
    with pytest.raises(DotaFormatError, match="not a directory"):
        read_labeltxt_dir(tmp_path / "missing")
    with pytest.raises(DotaFormatError, match="no .txt files"):
        read_labeltxt_dir(tmp_path)


def test_task1_round_trip_order_and_empty_files(tmp_path):
    dets = {
        "P2": [Det("ship", [1, 2, 3, 4, 5, 6, 7, 8], 0.123456789), Det("plane", [0, 0, 2, 0, 2, 2, 0, 2], 0.9)],
        "P1": [Det("ship", [9.5, 2, 3, 4, 5, 6, 7, 8], 0.5), Det("ship", [1, 1, 1, 1, 1, 1, 1, 1], 0.5)],
    }
    written = write_task1_dir(tmp_path, dets, DOTA_V1_CLASSES)
    assert len(written) == 15 and (tmp_path / "Task1_helicopter.txt").read_text() == ""
    assert (tmp_path / "Task1_ship.txt").read_text().splitlines() == [
        "P1 0.5 9.5 2 3 4 5 6 7 8", "P1 0.5 1 1 1 1 1 1 1 1", "P2 0.123456789 1 2 3 4 5 6 7 8"]
    got = read_task1_dir(tmp_path, DOTA_V1_CLASSES)
    assert list(got) == ["P1", "P2"]
    # Classes come in class-list order within an image (plane before ship), file order within a class.
    assert [(d.label, d.score, d.quad.tolist()) for d in got["P2"]] == [
        ("plane", 0.9, [0, 0, 2, 0, 2, 2, 0, 2]), ("ship", 0.123456789, [1, 2, 3, 4, 5, 6, 7, 8])]
    assert [d.quad[0] for d in got["P1"]] == [9.5, 1.0]


def test_task1_classes_filter_and_errors(tmp_path):
    (tmp_path / "Task1_ship.txt").write_text("P1 0.5 0 0 1 0 1 1 0 1\nP1 0.5 0 0 1 1\n\nP2 oops 0 0 1 0 1 1 0 1\n")
    (tmp_path / "Task1_container-crane.txt").write_text("P1 0.7 0 0 1 0 1 1 0 1\n")
    with pytest.raises(DotaFormatError, match="container-crane"):
        read_task1_dir(tmp_path, DOTA_V1_CLASSES)
    report = ReadReport()
    got = read_task1_dir(tmp_path, report=report)          # no class list: every Task1 file
    assert sorted(d.label for d in got["P1"]) == ["container-crane", "ship"]
    assert len(report.malformed) == 2
    assert "Task1_ship.txt:2: 6 fields (6 fields is the Task2" in report.malformed[0]
    assert "Task1_ship.txt:4:" in report.malformed[1]
    with pytest.raises(DotaFormatError, match=r"Task1_ship\.txt:2:"):
        read_task1_dir(tmp_path, strict=True)
    with pytest.raises(DotaFormatError, match="no Task1_"):
        read_task1_dir(_empty(tmp_path))
    with pytest.raises(DotaFormatError, match="not in the class list"):
        write_task1_dir(tmp_path / "out", {"P1": [Det("aircraft", [0] * 8)]}, DOTA_V1_CLASSES)


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


def _shapely_corners(cx, cy, w, h, theta):
    """Corners of an mmrotate rbox by an independent route: shapely rotates an axis-aligned box.

    shapely's positive rotation is counter-clockwise with y up, i.e. from +x towards +y, which is
    mmrotate's theta direction (clockwise on screen with y down).
    """
    box = shapely.box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    ring = np.asarray(affinity.rotate(box, theta, origin=(cx, cy), use_radians=True).exterior.coords)[:4]
    return sorted(map(tuple, np.round(ring, 9)))


def _write_pickle(path, results):
    with open(path, "wb") as fh:
        pickle.dump(results, fh)
    return path


RBOXES = np.array([[100.0, 50.0, 40.0, 10.0, 0.0], [300.0, 200.0, 60.0, 20.0, 0.5], [20.0, 30.0, 8.0, 4.0, -1.2]])


@pytest.mark.parametrize("as_tensor", [False, True])
def test_mmrotate_pickle_numpy_and_torch(tmp_path, as_tensor):
    wrap = np.asarray
    if as_tensor:
        torch = pytest.importorskip("torch")
        wrap = torch.as_tensor
    results = [
        {"img_id": "P0003", "img_path": "/data/P0003.png",
         "pred_instances": {"bboxes": wrap(RBOXES.astype(np.float32)), "scores": wrap(np.array([0.9, 0.8, 0.1])),
                            "labels": wrap(np.array([0, 6, 14]))}},
        {"img_path": "/data/images/P0007.png",
         "pred_instances": {"bboxes": wrap(np.zeros((0, 5), np.float32)), "scores": wrap(np.zeros(0)),
                            "labels": wrap(np.zeros(0, np.int64))}},
    ]
    dets = read_mmrotate_pickle(_write_pickle(tmp_path / "r.pkl", results), DOTA_V1_CLASSES)
    assert list(dets) == ["P0003", "P0007"] and dets["P0007"] == []
    got = dets["P0003"]
    assert [d.label for d in got] == ["plane", "ship", "helicopter"]
    assert [d.score for d in got] == pytest.approx([0.9, 0.8, 0.1])
    for det, rbox in zip(got, RBOXES.astype(np.float32).astype(np.float64)):
        corners = sorted(map(tuple, np.round(det.quad.reshape(4, 2), 9)))
        np.testing.assert_allclose(np.array(corners), np.array(_shapely_corners(*rbox)), rtol=1e-6, atol=1e-9)
    # Hand-derived: an unrotated 40x10 box centred at (100, 50).
    assert sorted(map(tuple, got[0].quad.reshape(4, 2))) == [(80, 45), (80, 55), (120, 45), (120, 55)]


def _one(**pred):
    base = {"bboxes": RBOXES[:1], "scores": np.array([0.5]), "labels": np.array([0])}
    base.update(pred)
    return {"img_id": "P1", "pred_instances": {k: v for k, v in base.items() if v is not None}}


@pytest.mark.parametrize("results, message", [
    ({"P1": []}, "expected a list"),
    ([[np.zeros((0, 6))] * 15], "mmrotate 0.x"),
    (["P1"], "expected a dict"),
    ([{"pred_instances": {}}], "neither 'img_id' nor 'img_path'"),
    ([{"img_id": "P1"}], "no 'pred_instances'"),
    ([_one(scores=None)], r"lacks \['scores'\]"),
    ([_one(labels=np.array([15]))], "pickle from a different dataset: 15 classes expected, found label 15"),
    ([_one(labels=np.array([-1]))], "found label -1"),
    ([_one(bboxes=np.zeros((1, 4)))], r"shape \(1, 4\)"),
    ([_one(scores=np.array([0.5, 0.4]))], "must agree"),
    ([_one(), _one()], "appears twice"),
])
def test_mmrotate_pickle_errors(tmp_path, results, message):
    path = _write_pickle(tmp_path / "bad.pkl", results)
    with pytest.raises(DetectorResultError, match=message) as info:
        read_mmrotate_pickle(path, DOTA_V1_CLASSES)
    assert str(path) in str(info.value)


def test_mmrotate_pickle_unreadable(tmp_path):
    bad = tmp_path / "trunc.pkl"
    bad.write_bytes(pickle.dumps([_one()])[:20])
    with pytest.raises(DetectorResultError, match="not a readable pickle"):
        read_mmrotate_pickle(bad, DOTA_V1_CLASSES)
    with pytest.raises(DetectorResultError, match="cannot read"):
        read_mmrotate_pickle(tmp_path / "missing.pkl", DOTA_V1_CLASSES)
