"""cotrain.converters.fusionrs_qa: the assumed QA entry list (main path: test_bench_public)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from cotrain.converters import ConvertError
from cotrain.converters.fusionrs_qa import convert_fusionrs_qa, qa_type_of
from cotrain.records import read_records


def test_type_aliases():
    assert [qa_type_of(t) for t in ("Scene", "object_qa", "IR-cue", "ircue_qa", "count", 3)] == \
        ["scene", "object", "ir_cue", "ir_cue", None, None]


def test_entries(tmp_path):
    Image.new("RGB", (30, 20)).save(tmp_path / "r.jpg")
    Image.new("L", (30, 20)).save(tmp_path / "i.png")
    lines = [{"rgb": "r.jpg", "ir": "i.png", "question": "Warm?", "answer": "Yes", "type": "ir_cue", "split": "test"},
             {"rgb": "r.jpg", "question": "Warm?", "answer": "no", "type": "ir_cue", "split": "train"},
             {"question": "Scene?", "answer": "port", "type": "scene", "split": "test"},              # no image
             {"rgb": "r.jpg", "question": "Scene?", "answer": "port", "type": "weather", "split": "test"}]
    src = tmp_path / "qa.jsonl"
    src.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    report = convert_fusionrs_qa(src, tmp_path / "o.jsonl", split="test")
    assert report.skipped["bad_entry"] == 3 and report.written == 1
    (rec,) = read_records(tmp_path / "o.jsonl")
    assert rec["id"] == "ir_cue_0" and [i["modality"] for i in rec["images"]] == ["rgb", "ir"]
    assert rec["answer_type"] == "yes_no"
    with pytest.raises(ConvertError, match="qa_type="):
        convert_fusionrs_qa(src, tmp_path / "o.jsonl", qa_type="weather")
