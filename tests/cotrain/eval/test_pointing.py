"""Referring points (point-in-target accuracy), per-subtask summaries and their tables."""

import numpy as np
import pytest
from shapely.geometry import Point, Polygon

from cotrain.boxes import BoxCodec
from cotrain.eval.scoring import score_sample, summarise
from cotrain.eval.summary import report_markdown, subtask_tables
from cotrain.geometry import box_to_quad, point_in_box

CODEC = BoxCodec("abs")


def test_point_in_box_matches_shapely_on_random_quads():
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(300):
        quad = rng.uniform(0, 100, 8).round(1).tolist()
        poly = Polygon(np.array(box_to_quad({"quad": quad})).reshape(4, 2))
        for x, y in rng.uniform(-10, 110, (20, 2)):
            if poly.exterior.distance(Point(x, y)) < 1e-6:
                continue  # the boundary is tested by hand below
            assert point_in_box([x, y], {"quad": quad}) == poly.covers(Point(x, y)), (quad, x, y)
            checked += 1
    assert checked > 5000


def test_point_in_box_by_hand():
    box = {"hbb": [10, 20, 30, 40]}
    assert point_in_box([20, 30], box) and point_in_box([10, 25], box) and point_in_box([30, 40], box)  # edge, corner
    assert not point_in_box([30.01, 30], box) and not point_in_box([20, 19.99], box)
    assert not point_in_box([float("nan"), 30], box)
    arrow = {"quad": [0, 0, 10, 5, 0, 10, 3, 5]}  # non-convex: (2, 5) is in the hull, left of the notch at (3, 5)
    assert not point_in_box([2, 5], arrow) and point_in_box([5, 5], arrow) and point_in_box([1, 1], arrow)


def _grounding(i, hbb, subtask=None, wh=(100, 100)):
    r = {"id": f"g{i}", "task": "grounding", "expression": "the forest", "target": {"hbb": hbb},
         "images": [{"path": "x.png", "width": wh[0], "height": wh[1]}]}
    return {**r, "subtask": subtask} if subtask else r


def _rows(records, responses, options):
    rows = []
    for i, (rec, text) in enumerate(zip(records.values(), responses)):
        img = rec["images"][0]
        images = [{**img, "resized_wh": [img["width"] // 2, img["height"] // 2]}]  # answers in the half-size frame
        rows.append({"index": i, "task": rec["task"], "response": text, "images": images,
                     "score": score_sample("grounding", rec, text, images=images, codec=CODEC, options=options)})
    return rows


def test_point_answers_scored_inside_the_target_in_original_pixels():
    opts = {"box_format": "point"}
    records = {0: _grounding(0, [0, 0, 40, 40]), 1: _grounding(1, [60, 60, 100, 100]), 2: _grounding(2, [0, 0, 20, 20]),
               3: _grounding(3, [0, 0, 100, 50])}
    # half-size frame: (10, 10) -> (20, 20) inside; (10, 10) -> (20, 20) outside [60..100]; no point; (60, 10)
    # -> (120, 20) beyond the 50-px frame: flagged, scored as it is (outside)
    rows = _rows(records, ["[10, 10]", "[10, 10]", "I cannot see it", '{"point_2d": [60, 10]}'], opts)
    assert [r["score"]["inside"] for r in rows] == [True, False, False, False]
    assert rows[0]["score"]["pred_point"] == [20.0, 20.0] and rows[2]["score"]["parsed"] is False
    assert rows[3]["score"]["outside"] is True
    out = summarise("grounding", rows, records, codec=CODEC, options=opts)
    assert out["point_accuracy"] == 0.25 and out["parse_rate"] == 0.75 and out["outside_frame"] == 1
    assert "acc@0.5" not in out and "by_subtask" not in out
    # the fixed point: mean of the centres (.2,.2), (.8,.8), (.1,.1), (.5,.25) = (.4, .3375) -> (40, 33.75) lies
    # inside target 0 (its edge x = 40) and target 3 only (hand-derived)
    base = out["fixed_point_baseline"]
    assert base["point"] == [0.4, 0.3375] and base["point_accuracy"] == 0.5


def test_by_subtask_summaries_and_the_paper_shaped_table():
    opts = {"box_format": "hbb", "iou_thresholds": [0.25, 0.5, 0.75, 0.9]}
    records = {0: _grounding(0, [0, 0, 40, 40], "RED"), 1: _grounding(1, [0, 0, 40, 40], "RED"),
               2: _grounding(2, [0, 0, 40, 40], "other")}
    rows = _rows(records, ["[0, 0, 20, 20]", "[0, 0, 10, 10]", "[0, 0, 20, 20]"], opts)
    out = summarise("grounding", rows, records, codec=CODEC, options=opts)
    assert out["by_subtask"]["RED"]["acc@0.5"] == 0.5 and out["by_subtask"]["RED"]["n"] == 2
    assert out["by_subtask"]["other"]["acc@0.9"] == 1.0 and out["acc@0.25"] == 1.0  # IoU 0.25 exactly counts
    lines = subtask_tables({"ben_ref": {**out, "metric": "grounding", "task": "grounding"}})
    assert lines[1] == "## ben_ref by subtask" and lines[3] == "| metric | RED | other | all |"
    assert [ln.split(" | ")[0] for ln in lines[5:]] == ["| acc@0.25", "| acc@0.5", "| acc@0.75", "| acc@0.9",
                                                        "| miou", "| parse_rate", "| n"]
    assert lines[6] == "| acc@0.5 | 0.5000 | 1.0000 | 0.6667 |"
    one = {0: records[0], 1: records[1]}  # a single subtask: the overall numbers are its numbers
    assert "by_subtask" not in summarise("grounding", rows[:2], one, codec=CODEC, options=opts)
    report = report_markdown({"ben_ref": {**out, "metric": "grounding", "task": "grounding", "skipped": {}}})
    assert "## ben_ref by subtask" in report


def test_a_record_subtask_must_be_a_name():
    from cotrain.errors import RecordError
    from cotrain.records import validate_record

    with pytest.raises(RecordError, match="subtask"):
        validate_record({**_grounding(0, [0, 0, 4, 4]), "images": [{"path": "x.png", "modality": "rgb", "width": 9,
                                                                    "height": 9}], "subtask": 3})
