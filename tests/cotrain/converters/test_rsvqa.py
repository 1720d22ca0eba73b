"""cotrain.converters.rsvqa + tools/convert_rsvqa.py on an RSVQA-style JSON triple written from the release layout.

Layout (RSVQA LR/HR on Zenodo): ``LR_split_<split>_{images,questions,answers}.json`` with lists keyed
``images`` / ``questions`` / ``answers``, entries linked by ``img_id``, ``answers_ids``, ``question_id``
and an ``active`` flag; images ``<id>.tif``. Expected records are written by hand.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from cotrain.converters import CONVERTERS, ConvertError
from cotrain.converters.rsvqa import convert_rsvqa
from cotrain.records import read_records

ROOT = Path(__file__).resolve().parents[3]


def _write(d: Path, prefix: str, split: str, images, questions, answers) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for kind, entries in (("images", images), ("questions", questions), ("answers", answers)):
        (d / f"{prefix}_split_{split}_{kind}.json").write_text(json.dumps({kind: entries}))


def _q(qid, img, text, qtype, answers, active=True):
    return {"id": qid, "img_id": img, "question": text, "type": qtype, "answers_ids": answers, "active": active,
            "date_added": 1.0, "people_id": 1}


def _a(aid, qid, text, active=True):
    return {"id": aid, "question_id": qid, "answer": text, "active": active, "date_added": 1.0, "people_id": 1}


@pytest.fixture()
def lr(tmp_path):
    imgs = tmp_path / "Images_LR"
    imgs.mkdir()
    for i in (0, 1):
        Image.new("RGB", (256, 256), (i * 50, 100, 100)).save(imgs / f"{i}.tif")
    images = [{"id": 0, "questions_ids": [0, 1, 2, 3], "active": True, "original_name": "S2_0.tif"},
              {"id": 1, "questions_ids": [4, 5], "active": True, "original_name": "S2_1.tif"},
              {"id": 2, "questions_ids": [6], "active": True, "original_name": "S2_2.tif"},    # file missing
              {"id": 3, "questions_ids": [], "active": False}]
    questions = [
        _q(0, 0, "Is there a road?", "presence", [0]),
        _q(1, 0, "How many buildings are there?", "count", [1]),
        _q(2, 0, "Is the number of roads equal to the number of water areas?", "comp", [2]),
        _q(3, 0, "Is it a rural or an urban area", "rural_urban", [3]),
        _q(4, 1, "Is there a farmland?", "presence", [5, 4]),   # first listed answer is inactive
        _q(5, 1, "How many parkings are there?", "count", [6], active=False),
        _q(6, 2, "Is there a forest?", "presence", [7]),         # image file missing
        _q(7, 3, "Is there water?", "presence", [8]),            # image entry inactive
        _q(8, 1, "  ", "presence", [9]),                         # empty question
        _q(9, 1, "Is there a park?", "presence", [42]),          # dangling answer id
    ]
    answers = [_a(0, 0, "yes"), _a(1, 0, "12"), _a(2, 0, "no"), _a(3, 0, "rural"), _a(4, 4, "no"),
               _a(5, 4, "yes", active=False), _a(6, 5, "3"), _a(7, 6, "yes"), _a(8, 7, "no"), _a(9, 8, "no")]
    _write(tmp_path, "LR", "train", images, questions, answers)
    return tmp_path


def test_lr_triple_to_vqa_records(lr, tmp_path):
    out = tmp_path / "rsvqa.jsonl"
    report = convert_rsvqa(lr, lr / "Images_LR", out, split="train")
    recs = read_records(out)
    img0 = [{"path": "0.tif", "modality": "rgb", "width": 256, "height": 256}]
    img1 = [{"path": "1.tif", "modality": "rgb", "width": 256, "height": 256}]
    assert recs == [
        {"id": "train_0", "task": "vqa", "images": img0, "question": "Is there a road?", "answer": "yes",
         "answer_type": "yes_no"},
        {"id": "train_1", "task": "vqa", "images": img0, "question": "How many buildings are there?",
         "answer": "12", "answer_type": "number"},
        {"id": "train_2", "task": "vqa", "images": img0,
         "question": "Is the number of roads equal to the number of water areas?", "answer": "no",
         "answer_type": "yes_no"},
        {"id": "train_3", "task": "vqa", "images": img0, "question": "Is it a rural or an urban area",
         "answer": "rural", "answer_type": "word"},
        {"id": "train_4", "task": "vqa", "images": img1, "question": "Is there a farmland?", "answer": "no",
         "answer_type": "yes_no"},
    ]
    assert report.ignored == {"inactive": 1}
    assert report.skipped == {"image_missing": 1, "image_entry_missing": 1, "malformed_entry": 1,
                              "answer_missing": 1}
    assert "questions[6] (id 6)" in report.examples["image_missing"][0]
    assert "LR_split_train_questions.json" in report.examples["malformed_entry"][0]


def test_hr_prefix_split_and_area_type(tmp_path):
    (tmp_path / "Data").mkdir()
    Image.new("RGB", (512, 512)).save(tmp_path / "Data" / "7.tif")
    _write(tmp_path, "USGS", "test_phili", [{"id": 7, "active": True, "questions_ids": [70]}],
           [_q(70, 7, "What is the area covered by residential buildings?", "area", [700])],
           [_a(700, 70, "between 100m2 and 1000m2")])
    _write(tmp_path, "LR", "test_phili", [], [], [])  # a second prefix with the same split name
    with pytest.raises(ConvertError, match="several"):
        convert_rsvqa(tmp_path, tmp_path / "Data", tmp_path / "o.jsonl", split="test_phili")
    report = convert_rsvqa(tmp_path, tmp_path / "Data", tmp_path / "o.jsonl", split="test_phili", prefix="USGS")
    (rec,) = read_records(tmp_path / "o.jsonl")
    assert rec["id"] == "test_phili_70" and rec["answer_type"] == "word"
    assert rec["answer"] == "between 100m2 and 1000m2" and rec["images"][0]["width"] == 512
    assert report.written == 1
    with pytest.raises(ConvertError, match="no '<prefix>_split_val_questions.json'"):
        convert_rsvqa(tmp_path, tmp_path / "Data", tmp_path / "o.jsonl", split="val")


def test_broken_json_and_raise_mode(lr, tmp_path):
    with pytest.raises(ConvertError) as err:
        convert_rsvqa(lr, lr / "Images_LR", tmp_path / "r.jsonl", on_bad="raise")
    assert err.value.reason == "image_missing" and not (tmp_path / "r.jsonl").exists()
    (lr / "LR_split_train_answers.json").write_bytes(b'{"answers": [\n{"id": 0, "answer": "caf\xe9"}]}')
    with pytest.raises(ConvertError) as err:
        convert_rsvqa(lr, lr / "Images_LR", tmp_path / "r.jsonl")
    assert err.value.reason == "not_utf8" and "LR_split_train_answers.json:2" in str(err.value)
    (lr / "LR_split_train_answers.json").write_text('{"answers": [\n{"id": 0,, }]}')
    with pytest.raises(ConvertError) as err:
        convert_rsvqa(lr, lr / "Images_LR", tmp_path / "r.jsonl")
    assert err.value.reason == "malformed_json" and "LR_split_train_answers.json:2" in str(err.value)


def test_cli(lr, tmp_path):
    assert CONVERTERS["rsvqa"] is convert_rsvqa
    r = subprocess.run([sys.executable, "-m", "cotrain", "convert", "rsvqa", "--json-dir", str(lr),
                        "--images", str(lr / "Images_LR"), "--out", str(tmp_path / "c.jsonl")],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "wrote 5 records" in r.stdout and "skipped 1 x answer_missing" in r.stdout
