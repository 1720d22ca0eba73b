"""cotrain.converters.bigearthnet_txt: option parsing and row filtering (main path: test_bench_public)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from cotrain.converters import ConvertError
from cotrain.converters.bigearthnet_txt import answer_index, convert_bigearthnet_txt, parse_options
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
