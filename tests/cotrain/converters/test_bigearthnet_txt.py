"""cotrain.converters.bigearthnet_txt: option parsing and row filtering (main path: test_bench_public)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from cotrain.converters import ConvertError
from cotrain.converters.bigearthnet_txt import (
    answer_index,
    convert_bigearthnet_txt,
    parse_boxes,
    parse_options,
    referring_expression,
    row_kind,
)
from cotrain.records import read_records


def test_parse_options_and_answer():
    q, opts = parse_options("Which season?\nA) Winter\nB: Summer\nC. Autumn")
    assert q == "Which season?" and opts == ["Winter", "Summer", "Autumn"]
    assert parse_options("Which?\nB. out of order\nA. first")[1] == ["first"]  # options must start at A
    assert [answer_index(o, opts) for o in ("C", "(B)", "B) Summer", "autumn.", "D", "Spring")] == [2, 1, 1, 2, None, None]


def test_rows(tmp_path):
    (tmp_path / "img").mkdir()
    Image.new("RGB", (120, 120)).save(tmp_path / "img" / "p1.jpg")
    rows = ["not json",
            json.dumps({"ID": 9, "patch_id": "p1", "input": "Which?\nA. x\nB. y", "output": "Z", "split": "benchmark"}),
            json.dumps({"ID": 10, "patch_id": "p2", "input": "Which?\nA. x\nB. y", "output": "A", "split": "benchmark"}),
            json.dumps({"ID": 11, "patch_id": "p1", "input": "Which?\nA. x\nB. y", "output": "a", "split": "benchmark"})]
    src = tmp_path / "rows.jsonl"
    src.write_text("\n".join(rows) + "\n")
    report = convert_bigearthnet_txt(src, tmp_path / "img", tmp_path / "o.jsonl", kind="mcq")
    assert dict(report.skipped) == {"bad_row": 1, "answer_not_in_choices": 1, "image_missing": 1}
    (rec,) = read_records(tmp_path / "o.jsonl")
    assert rec["id"] == "11" and rec["answer"] == 0 and rec["images"][0]["path"] == "p1.jpg"
    with pytest.raises(ConvertError, match=r"splits found: \['benchmark'\]"):
        convert_bigearthnet_txt(src, tmp_path / "img", tmp_path / "o.jsonl", kind="mcq", split="test")


def test_parse_boxes_and_row_kind():
    assert parse_boxes("[10, 20, 60, 80]") == [[10.0, 20.0, 60.0, 80.0]]
    assert parse_boxes('{"bbox_2d": [1.5, 2, 3, 4]}') == [[1.5, 2.0, 3.0, 4.0]]
    assert parse_boxes("<1><2><3><4> (5 6 7 8)") == [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]
    for not_boxes in ("[1, 2, 3]", "Forest covers 1, 2, 3, 4 km", "yes", ""):
        assert parse_boxes(not_boxes) is None, not_boxes
    assert row_kind("Is there water?", "No.") == "binary"
    assert row_kind("Which?\nA. Yes\nB. No", "Yes") == "mcq"  # the options decide, before yes/no
    assert row_kind("Where is the forest?", "[1, 2, 3, 4]") == "referring"
    assert row_kind("Describe it.", "Arable land with a river.") == "caption"
    assert row_kind("Name it.", "Forest") is None  # two words or fewer: no kind


def _rows(tmp_path, outputs):
    (tmp_path / "img").mkdir(exist_ok=True)
    Image.new("RGB", (120, 60)).save(tmp_path / "img" / "p1.png")
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps({"ID": i, "patch_id": "p1", "input": "Detect the forest.", "output": o,
                                       "type": "RED", "split": "benchmark"}) + "\n" for i, o in enumerate(outputs)))
    return src


def test_referring_rows_units_and_bad_boxes(tmp_path):
    src = _rows(tmp_path, ["[12, 6, 60, 30]", "[60, 6, 12, 30]", "[0, 0, 5, 5] [1, 1, 2, 2]", "[0, 0, 130, 30]"])
    report = convert_bigearthnet_txt(src, tmp_path / "img", tmp_path / "o.jsonl", kind="referring")
    assert dict(report.skipped) == {"bad_box": 1, "several_boxes": 1, "box_outside": 1}
    assert "box_units" in " ".join(report.examples["box_outside"])
    (rec,) = read_records(tmp_path / "o.jsonl")
    assert rec["target"] == {"hbb": [12.0, 6.0, 60.0, 30.0]} and rec["subtask"] == "RED"
    assert rec["expression"] == "the forest" and rec["task"] == "grounding"
    # The same box in thousandths of a 120 x 60 image: x * 120 / 1000, y * 60 / 1000 (hand-derived).
    src = _rows(tmp_path, ["[100, 100, 500, 500]"])
    convert_bigearthnet_txt(src, tmp_path / "img", tmp_path / "o.jsonl", kind="referring", box_units="thousandths")
    assert read_records(tmp_path / "o.jsonl")[0]["target"] == {"hbb": [12.0, 6.0, 60.0, 30.0]}
    unit = _rows(tmp_path, ["[0.1, 0.1, 0.5, 0.5]"])
    convert_bigearthnet_txt(unit, tmp_path / "img", tmp_path / "o.jsonl", kind="referring", box_units="unit")
    assert read_records(tmp_path / "o.jsonl")[0]["target"] == {"hbb": [12.0, 6.0, 60.0, 30.0]}
    with pytest.raises(ConvertError, match="box_units='percent' is not one of pixels, thousandths, unit"):
        convert_bigearthnet_txt(src, tmp_path / "img", tmp_path / "o.jsonl", kind="referring", box_units="percent")


def test_caption_rows(tmp_path):
    src = _rows(tmp_path, ["Arable land next to a coniferous forest.", "yes", "Forest"])
    report = convert_bigearthnet_txt(src, tmp_path / "img", tmp_path / "o.jsonl", kind="caption")
    assert report.ignored["not_caption"] == 2
    (rec,) = read_records(tmp_path / "o.jsonl")
    assert rec["captions"] == ["Arable land next to a coniferous forest."] and rec["task"] == "captioning"


def test_referring_expression_drops_the_instruction_verb_only():
    assert referring_expression("Detect the forest.") == "the forest"
    assert referring_expression("Please locate the bounding box of the largest lake.") == "the largest lake"
    assert referring_expression("point to the urban fabric") == "the urban fabric"
    assert referring_expression("The river north of the fields.") == "The river north of the fields"
    assert referring_expression("Detect.") == "Detect"  # no expression follows the verb: only the period goes
