"""cotrain.converters.vrsbench: edge cases of the VRSBench evaluation files (main path: test_bench_public)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from cotrain.converters import ConvertError
from cotrain.converters.vrsbench import answer_type_of, convert_vrsbench, parse_percent_box
from cotrain.records import read_records


def test_answer_type_and_box_parsing():
    assert [answer_type_of(a) for a in ("Yes", "no.", "12", "3.5", "red", "two")] == \
        ["yes_no", "yes_no", "number", "number", "word", "word"]
    assert parse_percent_box("{<25><40><33><60>}") == [25.0, 40.0, 33.0, 60.0]
    assert parse_percent_box("{<25><40><33>}") is None and parse_percent_box(None) is None


def test_referring_skips_and_raise(tmp_path):
    img = tmp_path / "Images_val"
    img.mkdir()
    Image.new("RGB", (100, 100)).save(img / "a.png")
    entries = [
        {"image_id": "a.png", "question": "x", "ground_truth": "{<1><2><3>}", "question_id": 0},        # bad box
        {"image_id": "a.png", "question": "y", "ground_truth": "{<5><5><5><9>}", "question_id": 1},     # zero width,
        {"image_id": "b.png", "question": "z", "ground_truth": "{<5><5><9><9>}", "question_id": 2},     # no image
        {"image_id": "a.png", "question": " the  car ", "ground_truth": "{<5><5><9><9>}", "question_id": 3},
    ]
    src = tmp_path / "ref.json"
    src.write_text(json.dumps(entries))
    out = tmp_path / "out.jsonl"
    report = convert_vrsbench(src, img, out, kind="referring")
    assert report.written == 1
    assert dict(report.skipped) == {"bad_box": 1, "box_zero_area": 1, "image_missing": 1}
    (rec,) = read_records(out)
    assert rec["id"] == "referring_3" and rec["expression"] == "the car" and rec["target"] == {"hbb": [5, 5, 9, 9]}
    with pytest.raises(ConvertError, match="question_id 0"):
        convert_vrsbench(src, img, tmp_path / "o2.jsonl", kind="referring", on_bad="raise")
    with pytest.raises(ConvertError, match="kind="):
        convert_vrsbench(src, img, out, kind="det")
    src.write_text("{}")
    with pytest.raises(ConvertError, match="JSON list"):
        convert_vrsbench(src, img, out, kind="vqa")
