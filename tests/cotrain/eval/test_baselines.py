"""Fixed-box baselines of the harness: one box for every question (grounding) or image (detection)."""

import pytest

from cotrain.boxes import BoxCodec
from cotrain.eval.scoring import score_sample, summarise
from cotrain.metrics.grounding import mean_normalised_hbb, scale_normalised_hbb

CODEC = BoxCodec("abs")


def _grounding(i, wh, hbb):
    return {"id": f"g{i}", "task": "grounding", "expression": "the ship", "target": {"hbb": hbb},
            "images": [{"path": "x.png", "width": wh[0], "height": wh[1]}]}


def _rows(records, responses):
    rows = []
    for i, (rec, text) in enumerate(zip(records.values(), responses)):
        images = [{**rec["images"][0], "resized_wh": list((rec["images"][0]["width"], rec["images"][0]["height"]))}]
        rows.append({"index": i, "task": rec["task"], "response": text, "images": images,
                     "score": score_sample("grounding", rec, text, images=images, codec=CODEC,
                                               options={"box_format": "hbb"})})
    return rows


def test_mean_box_is_taken_in_image_fractions():
    # hand-derived: [0, 0, .5, .5] and [.5, .5, 1, 1] average to [.25, .25, .75, .75] whatever the sizes
    boxes = [([0, 0, 100, 50], (200, 100)), ([50, 50, 100, 100], (100, 100))]
    assert mean_normalised_hbb(boxes) == pytest.approx([0.25, 0.25, 0.75, 0.75])
    assert scale_normalised_hbb([0.25, 0.25, 0.75, 0.75], (200, 100)) == [50, 25, 150, 75]
    with pytest.raises(ValueError):
        mean_normalised_hbb([])


def test_grounding_summary_reports_the_fixed_box_next_to_the_model():
    records = {0: _grounding(0, (200, 100), [0, 0, 100, 50]), 1: _grounding(1, (100, 100), [50, 50, 100, 100])}
    # the model answers the first exactly and misses the second
    rows = _rows(records, ["[0, 0, 100, 50]", "[0, 0, 10, 10]"])
    out = summarise("grounding", rows, records, codec=CODEC, options={"box_format": "hbb"})
    assert out["acc@0.5"] == 0.5 and out["miou"] == pytest.approx(0.5)
    base = out["fixed_box_baseline"]
    # the mean box [.25, .25, .75, .75] overlaps each target by a quarter of its own area:
    # IoU = 625 / (2500 + 2500 - 625) = 1/7 in the 100 x 100 frame (and the same in 200 x 100)
    assert base["box"] == [0.25, 0.25, 0.75, 0.75]
    assert base["miou"] == pytest.approx(1 / 7) and base["acc@0.5"] == 0.0 and base["n"] == 2


def test_detection_fixed_box_baseline():
    from detection.evaluate import fixed_box_detections

    recs = [{"id": "a", "images": [{"width": 100, "height": 100}],
             "objects": [{"label": "ship", "hbb": [0, 0, 40, 40]}]},
            {"id": "b", "images": [{"width": 200, "height": 100}],
             "objects": [{"label": "ship", "hbb": [40, 20, 120, 60]}, {"label": "plane", "hbb": [0, 0, 20, 20]}]}]
    dets = fixed_box_detections(recs, ["plane", "ship", "tank"])
    # ship: mean of [0, 0, .4, .4] and [.2, .2, .6, .6] = [.1, .1, .5, .5]; plane only its own box; no tank GT
    assert [d.label for d in dets["a"]] == ["plane", "ship"]
    ship_b = dets["b"][1].quad.reshape(-1, 2)
    assert ship_b[:, 0].min() == pytest.approx(20) and ship_b[:, 0].max() == pytest.approx(100)
    assert ship_b[:, 1].min() == pytest.approx(10) and ship_b[:, 1].max() == pytest.approx(50)
    plane_a = dets["a"][0].quad.reshape(-1, 2)
    assert plane_a[:, 0].max() == pytest.approx(10) and plane_a[:, 1].max() == pytest.approx(20)


def test_bad_grounding_answers_are_counted_never_quietly_correct():
    target = [10, 10, 50, 50]
    records = {i: _grounding(i, (100, 100), target) for i in range(5)}
    answers = ["[50, 50, 10, 10]",        # reversed corners: 0, counted
               "[10, 10, 50, 50]",        # right
               "[-20, 10, 50, 50]",       # outside the frame: clipped to 0 and scored, counted
               "[10, 10, 50",             # truncated: no box
               "[100, 100, 500, 500]"]    # a box in a larger frame (e.g. norm-1000 on a 100 px image)
    rows = _rows(records, answers)
    ious = [r["score"]["iou"] for r in rows]
    assert ious[0] == 0.0 and rows[0]["score"]["reversed"]
    assert ious[1] == 1.0 and "outside" not in rows[1]["score"]
    assert ious[2] == pytest.approx(40 * 40 / (50 * 40)) and rows[2]["score"]["outside"]  # [0, 10, 50, 50]
    assert ious[3] == 0.0 and not rows[3]["score"]["parsed"]
    assert ious[4] == 0.0 and rows[4]["score"]["outside"]
    out = summarise("grounding", rows, records, codec=CODEC, options={"box_format": "hbb"})
    assert out["reversed_corners"] == 1 and out["outside_frame_clipped"] == 2 and out["parse_rate"] == 0.8
    assert out["acc@0.5"] == 0.4


def test_psum_nsum_by_hand():
    from cotrain.eval.summary import psum_nsum

    results = {"cls": {"metric": "classification", "accuracy": 0.5},
               "vqa": {"metric": "vqa", "accuracy": 0.25},
               "ground": {"metric": "grounding", "acc@0.5": 0.1},
               "count": {"metric": "vqa", "accuracy": 0.3, "counting_mae": 1.5, "aggregate": "mae"},
               "count2": {"metric": "vqa", "counting_mae": 0.5, "aggregate": "mae"},
               "cap": {"metric": "captioning", "CIDEr": 0.7}}
    got = psum_nsum(results)
    assert got == {"psum": pytest.approx(50 + 25 + 10), "psum_sets": 3, "nsum": 2.0, "nsum_sets": 2}
