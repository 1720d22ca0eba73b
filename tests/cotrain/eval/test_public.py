"""cotrain.eval.public: every public benchmark on a tiny fixture laid out like its standard files.

Expected records are hand-derived from the fixtures (boxes, answers, labels written here), the
scene test parts are checked against the training converter's train part (disjoint), and the
cache is checked for reuse, rebuild on a changed source, and errors that name the layout.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from cotrain.converters.scenes import convert_scenes
from cotrain.errors import ConfigError
from cotrain.eval.public import (
    AID_CLASSES,
    NWPU_CLASSES,
    PUBLIC_BENCHMARKS,
    UCM_CLASSES,
    WHU_RS19_CLASSES,
    prepare_public,
)
from cotrain.eval.registry import OPTION_KEYS, resolve_benchmarks
from cotrain.records import read_records


def _image(path: Path, w: int = 64, h: int = 48) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (80, 120, 60)).save(path)


def _json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


# ----------------------------------------------------------------------------------------------
# fixtures: one builder per dataset; each returns the expected records keyed by id (hand-derived)

SCENES = {
    # name: (folder under the root, release folder names, normalised classes, file extension)
    "aid": ("AID", ["".join(w.capitalize() for w in c.split()) for c in AID_CLASSES], AID_CLASSES, ".jpg"),
    "ucm": ("UCMerced_LandUse/Images", list(UCM_CLASSES), UCM_CLASSES, ".tif"),
    "nwpu_resisc45": ("NWPU-RESISC45", [c.replace(" ", "_") for c in NWPU_CLASSES], NWPU_CLASSES, ".jpg"),
    "whu_rs19": ("WHU-RS19", ["".join(w.capitalize() for w in c.split()) for c in WHU_RS19_CLASSES],
                 WHU_RS19_CLASSES, ".jpg"),
}
PER_CLASS = 10  # 0.8/0.1/0.1 of 10 files: cut points 8 and 9, so exactly one test image per class


def _scene_tree(root: Path, name: str) -> None:
    folder, raw, _, ext = SCENES[name]
    seed = root / f"seed{ext}"
    _image(seed, 32, 32)
    for d in raw:
        (root / folder / d).mkdir(parents=True)
        for k in range(PER_CLASS):
            shutil.copyfile(seed, root / folder / d / f"{d.lower()}_{k:02d}{ext}")
    seed.unlink()


def _rsvqa(root: Path, folder: str, prefix: str, images: str, split: str) -> dict:
    base = root / folder
    _image(base / images / "7.tif", 256, 256)
    _json(base / f"{prefix}_split_{split}_images.json",
          {"images": [{"id": 7, "active": True, "questions_ids": [70, 71, 72], "original_name": "x.tif"}]})
    _json(base / f"{prefix}_split_{split}_questions.json", {"questions": [
        {"id": 70, "img_id": 7, "question": "Is there a road?", "type": "presence", "answers_ids": [700], "active": True},
        {"id": 71, "img_id": 7, "question": "How many buildings are there?", "type": "count", "answers_ids": [710],
         "active": True},
        {"id": 72, "img_id": 7, "question": "Is it rural?", "type": "rural_urban", "answers_ids": [720],
         "active": False}]})
    _json(base / f"{prefix}_split_{split}_answers.json", {"answers": [
        {"id": 700, "question_id": 70, "answer": "yes", "active": True},
        {"id": 710, "question_id": 71, "answer": "12", "active": True},
        {"id": 720, "question_id": 72, "answer": "rural", "active": True}]})
    return {f"{split}_70": {"answer": "yes", "answer_type": "yes_no", "question": "Is there a road?"},
            f"{split}_71": {"answer": "12", "answer_type": "number"}}


def _vrsbench(root: Path, kind: str) -> dict:
    base = root / "VRSBench"
    _image(base / "Images_val" / "P0001_0001.png", 200, 100)  # non-square: exposes an x/y scale mix-up
    if kind == "vqa":
        _json(base / "VRSBench_EVAL_vqa.json", [
            {"image_id": "P0001_0001.png", "question": "Is there a ship?", "ground_truth": "Yes", "dataset": "RSBench",
             "question_id": 0, "type": "object existence"},
            {"image_id": "P0001_0001.png", "question": "How many cars?", "ground_truth": "3", "question_id": 1,
             "type": "object quantity"},
            {"image_id": "P0001_0001.png", "question": "What color is the roof?", "ground_truth": "Red",
             "question_id": 2, "type": "object color"}])
        return {"vqa_0": {"answer": "Yes", "answer_type": "yes_no"}, "vqa_1": {"answer": "3", "answer_type": "number"},
                "vqa_2": {"answer": "Red", "answer_type": "word", "question": "What color is the roof?"}}
    if kind == "caption":
        _json(base / "VRSBench_EVAL_Cap.json", [
            {"image_id": "P0001_0001.png", "ground_truth": "A harbour  with two ships.",
             "question": "Describe the image in detail", "question_id": 5, "type": "caption"}])
        return {"caption_5": {"captions": ["A harbour with two ships."]}}
    _json(base / "VRSBench_EVAL_referring.json", [
        {"image_id": "P0001_0001.png", "question": "The large ship on the left.", "ground_truth": "{<25><40><50><80>}",
         "question_id": 3, "type": "ref", "unique": True, "obj_corner": [0.25, 0.4, 0.5, 0.4, 0.5, 0.8, 0.25, 0.8],
         "obj_cls": "ship"},
        # truncated to zero width: the obj_corner hbb (0.1..0.15 x 0.2..0.3) stands in
        {"image_id": "P0001_0001.png", "question": "The small vehicle.", "ground_truth": "{<10><20><10><30>}",
         "question_id": 4, "type": "ref", "unique": False,
         "obj_corner": [0.1, 0.2, 0.15, 0.2, 0.15, 0.3, 0.1, 0.3], "obj_cls": "vehicle"}])
    # per cent -> pixels of a 200x100 image: x * 2, y * 1
    return {"referring_3": {"target": {"hbb": [50, 40, 100, 80]}, "expression": "The large ship on the left."},
            "referring_4": {"target": {"hbb": [20, 20, 30, 30]}}}


def _gobj(box, description):
    b = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
    return f"<object><name>vehicle</name><bndbox>{b}</bndbox><description>{description}</description></object>"


def _rsvg(root: Path, folder: str) -> dict:
    base = root / folder
    for stem in ("00001", "00002"):
        _image(base / "JPEGImages" / f"{stem}.jpg", 100, 80)
        objs = ([_gobj((1, 2, 30, 40), "the left car"), _gobj((50, 10, 90, 70), "the right car")] if stem == "00001"
                else [_gobj((5, 5, 20, 25), "a small truck")])
        (base / "Annotations").mkdir(parents=True, exist_ok=True)
        (base / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename><size><width>100</width><height>80</height></size>"
            f"{''.join(objs)}</annotation>", encoding="utf-8")
    (base / "test.txt").write_text("1\n2\n", encoding="utf-8")  # global object indices: 00001's 2nd, 00002's 1st
    return {"00001_1": {"target": {"hbb": [50, 10, 90, 70]}, "expression": "the right car"},
            "00002_0": {"target": {"hbb": [5, 5, 20, 25]}, "expression": "a small truck"}}


def _fusion(root: Path, kind: str) -> dict:
    base = root / "FusionRS" / "test"
    _image(base / "rgb" / "0001.jpg", 64, 64)
    _image(base / "ir" / "0001.png", 64, 64)
    _json(base / "captions.json", {"0001.jpg": {"captions": ["a road"], "ir_captions": ["a warm road at night"]}})
    _json(base / "qa.json", [
        {"id": "q1", "rgb": "rgb/0001.jpg", "question": "What is the scene?", "answer": "road", "type": "scene"},
        {"id": "q2", "rgb": "rgb/0001.jpg", "ir": "ir/0001.png", "question": "How many cars?", "answer": "2",
         "type": "object_qa"},
        {"id": "q3", "ir": "ir/0001.png", "question": "Is the engine warm?", "answer": "yes", "type": "IR-cue"}])
    if kind == "caption":
        return {"0001#ir": {"captions": ["a warm road at night"], "caption_style": "ir_aware"}}
    if kind == "triplet":
        return {"0001#triplet": {"captions": ["a road"], "ir_captions": ["a warm road at night"]}}
    return {"scene": {"q1": {"answer": "road", "answer_type": "word"}},
            "object": {"q2": {"answer": "2", "answer_type": "number"}},
            "ir_cue": {"q3": {"answer": "yes", "answer_type": "yes_no"}}}[kind]


def _bigearthnet(root: Path, kind: str) -> dict:
    base = root / "BigEarthNet.txt"
    _image(base / "images" / "S2A_patch_1.png", 120, 120)
    rows = [
        {"ID": 1, "s1_name": "S1_a", "patch_id": "S2A_patch_1", "input": "Is there any forest in the image?",
         "output": "Yes", "type": "presence", "split": "benchmark"},
        {"ID": 2, "s1_name": "S1_a", "patch_id": "S2A_patch_1",
         "input": "Which class covers the largest area?\nA. Arable land\nB. Coniferous forest\nC. Urban fabric",
         "output": "B", "type": "area", "split": "benchmark"},
        {"ID": 3, "s1_name": "S1_a", "patch_id": "S2A_patch_1",
         "input": "In which season was the image acquired?\n(A) Winter\n(B) Summer",
         "output": "Summer", "type": "season", "split": "benchmark"},
        {"ID": 4, "s1_name": "S1_a", "patch_id": "S2A_patch_1", "input": "Is there water?", "output": "no",
         "type": "presence", "split": "train"},                                 # other split
        {"ID": 5, "s1_name": "S1_a", "patch_id": "S2A_patch_1", "input": "Describe the image.",
         "output": "Fields and a forest.", "type": "caption", "split": "benchmark"},
        {"ID": 6, "s1_name": "S1_a", "patch_id": "S2A_patch_1", "input": "Detect the coniferous forest.",
         "output": "[10, 20, 60, 80]", "type": "referring", "split": "benchmark"},
        {"ID": 7, "s1_name": "S1_a", "patch_id": "S2A_patch_1", "input": "Detect the arable land.",
         "output": "[0, 0, 5, 5], [6, 6, 9, 9]", "type": "referring", "split": "benchmark"},  # two boxes: skipped
        {"ID": 8, "s1_name": "S1_a", "patch_id": "S2A_patch_1", "input": "Name it.", "output": "Forest",
         "type": "other", "split": "benchmark"},                                # no kind (one word)
    ]
    base.mkdir(parents=True, exist_ok=True)
    (base / "BigEarthNet.txt.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    if kind == "binary":
        return {"1": {"answer": "Yes", "answer_type": "yes_no", "question": "Is there any forest in the image?",
                      "subtask": "presence"}}
    if kind == "caption":
        return {"5": {"captions": ["Fields and a forest."], "subtask": "caption"}}
    if kind == "referring":
        return {"6": {"expression": "the coniferous forest", "target": {"hbb": [10.0, 20.0, 60.0, 80.0]}}}
    return {"2": {"question": "Which class covers the largest area?",
                  "choices": ["Arable land", "Coniferous forest", "Urban fabric"], "answer": 1},
            "3": {"choices": ["Winter", "Summer"], "answer": 1}}


def _meter_ml(root: Path) -> dict:
    base = root / "METER-ML"
    for i in range(4):
        _image(base / "test_images" / f"s{i}" / "naip.png", 72, 72)
    (base / "test.csv").write_text("image,label\ntest_images/s0/naip.png,CAFOs\ntest_images/s1/naip.png,R&Ts\n"
                                   "test_images/s2/naip.png,Negative\ntest_images/s3/naip.png,Landfills;WWTPs\n",
                                   encoding="utf-8")
    return {"test_images/s0/naip.png": {"label": "concentrated animal feeding operation"},
            "test_images/s1/naip.png": {"label": "oil refinery and petroleum terminal"},
            "test_images/s2/naip.png": {"label": "no methane source"}}


BUILDERS = {
    "meter_ml": _meter_ml,
    "rsvqa_lr_test": lambda r: _rsvqa(r, "RSVQA_LR", "LR", "Images_LR", "test"),
    "rsvqa_hr_test": lambda r: _rsvqa(r, "RSVQA_HR", "USGS", "Data", "test"),
    "rsvqa_hr_test_phili": lambda r: _rsvqa(r, "RSVQA_HR", "USGS", "Data", "test_phili"),
    "vrsbench_vqa": lambda r: _vrsbench(r, "vqa"),
    "vrsbench_cap": lambda r: _vrsbench(r, "caption"),
    "vrsbench_referring": lambda r: _vrsbench(r, "referring"),
    "dior_rsvg_test": lambda r: _rsvg(r, "DIOR-RSVG"),
    "rsvg_test": lambda r: _rsvg(r, "RSVG"),
    "fusionrs_ir_caption": lambda r: _fusion(r, "caption"),
    "fusionrs_retrieval": lambda r: _fusion(r, "triplet"),
    "fusionrs_scene_qa": lambda r: _fusion(r, "scene"),
    "fusionrs_object_qa": lambda r: _fusion(r, "object"),
    "fusionrs_ir_cue_qa": lambda r: _fusion(r, "ir_cue"),
    "bigearthnet_txt_binary": lambda r: _bigearthnet(r, "binary"),
    "bigearthnet_txt_mcq": lambda r: _bigearthnet(r, "mcq"),
    "bigearthnet_txt_caption": lambda r: _bigearthnet(r, "caption"),
    "bigearthnet_txt_referring": lambda r: _bigearthnet(r, "referring"),
    "bigearthnet_txt_point": lambda r: _bigearthnet(r, "referring"),
}


def test_every_benchmark_has_a_fixture_and_a_consistent_definition():
    assert set(BUILDERS) | set(SCENES) == set(PUBLIC_BENCHMARKS)
    for name, b in PUBLIC_BENCHMARKS.items():
        assert b.name == name == name.lower() and b.layout and b.source and b.files
        assert set(b.options) <= set(OPTION_KEYS)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_prepare_public_records(name, tmp_path):
    root = tmp_path / "data"
    expected = BUILDERS[name](root)
    bench = prepare_public(name, root, tmp_path / "cache")
    spec = PUBLIC_BENCHMARKS[name]
    assert (bench.name, bench.task, bench.metric) == (name, spec.task, spec.metric)
    assert bench.options == spec.options and bench.options is not spec.options
    records = read_records(bench.records)  # validates every record
    by_id = {r["id"]: r for r in records}
    assert sorted(by_id) == sorted(expected)
    for rid, fields in expected.items():
        rec = by_id[rid]
        assert rec["task"] == spec.task
        for key, value in fields.items():
            assert rec[key] == value, (rid, key)
        for img in rec["images"]:  # every image path resolves from the benchmark's image_root
            with Image.open(Path(bench.image_root) / img["path"]) as im:
                assert (im.width, im.height) == (img["width"], img["height"])
    if "classes" in spec.options:
        assert all(r["classes"] == spec.options["classes"] for r in records)


@pytest.mark.parametrize("name", sorted(SCENES))
def test_scene_benchmarks_are_the_test_part_of_the_training_split(name, tmp_path):
    root = tmp_path / "data"
    _scene_tree(root, name)
    folder, raw, classes, _ = SCENES[name]
    bench = prepare_public(name, root, tmp_path / "cache")
    records = read_records(bench.records)
    assert len(records) == len(classes)  # one of ten per class (hand-derived from 0.8/0.1/0.1)
    expected_label = dict(zip(raw, classes))
    for r in records:
        assert r["label"] == expected_label[r["id"].split("/")[0]]
        assert r["classes"] == classes == bench.options["classes"]
        assert (Path(bench.image_root) / r["images"][0]["path"]).is_file()
    # The training converter's train part with the project's default split never holds these images.
    train = tmp_path / "train.jsonl"
    convert_scenes(root / folder, train, image_root=root, split="train", ratios=(0.8, 0.1, 0.1), seed=0)
    train_paths = {r["images"][0]["path"] for r in read_records(train)}
    assert len(train_paths) == 8 * len(classes)
    assert not train_paths & {r["images"][0]["path"] for r in records}


def test_scene_benchmark_refuses_a_different_class_set(tmp_path):
    root = tmp_path / "data"
    _scene_tree(root, "whu_rs19")
    shutil.rmtree(root / "WHU-RS19" / "Viaduct")
    (root / "WHU-RS19" / "Harbour").mkdir()
    with pytest.raises(ConfigError, match=r"missing \['viaduct'\], unexpected \['harbour'\]"):
        prepare_public("whu_rs19", root, tmp_path / "cache")


def test_cache_is_reused_and_rebuilt_when_a_source_changes(tmp_path):
    root, cache = tmp_path / "data", tmp_path / "cache"
    _vrsbench(root, "vqa")
    first = prepare_public("vrsbench_vqa", root, cache)
    out = Path(first.records)
    mtime = out.stat().st_mtime_ns
    os.utime(out, ns=(mtime + 10**9, mtime + 10**9))  # a reuse leaves the file untouched
    stamp = out.stat().st_mtime_ns
    second = prepare_public("vrsbench_vqa", root, cache)
    assert second.records == first.records and out.stat().st_mtime_ns == stamp
    assert "cached" in second.description
    # Change the source: one answer edited, same file name; the cache must follow it.
    src = root / "VRSBench" / "VRSBench_EVAL_vqa.json"
    data = json.loads(src.read_text())
    data[2]["ground_truth"] = "Blue roof"
    src.write_text(json.dumps(data))
    os.utime(src, ns=(stamp + 10**9, stamp + 10**9))
    third = prepare_public("vrsbench_vqa", root, cache)
    assert {r["id"]: r["answer"] for r in read_records(third.records)}["vqa_2"] == "Blue roof"
    # A new image file under a fingerprinted folder also rebuilds (folders are walked).
    before = out.stat().st_mtime_ns
    _image(root / "VRSBench" / "Images_val" / "extra.png")
    os.utime(root / "VRSBench" / "Images_val" / "extra.png", ns=(before + 10**9, before + 10**9))
    prepare_public("vrsbench_vqa", root, cache)
    assert out.stat().st_mtime_ns != before
    # A cache whose fingerprint is gone (crash between records and fingerprint) is rebuilt.
    (cache / "vrsbench_vqa.fingerprint.json").unlink()
    assert "cached" not in prepare_public("vrsbench_vqa", root, cache).description


def test_missing_root_and_files_name_the_layout(tmp_path):
    with pytest.raises(ConfigError, match=r"not a directory.*VRSBench_EVAL_vqa\.json"):
        prepare_public("vrsbench_vqa", tmp_path / "nowhere", tmp_path / "cache")
    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(ConfigError, match=r"RSVQA_LR.*not found.*Expected layout.*LR_split_test_"):
        prepare_public("rsvqa_lr_test", root, tmp_path / "cache")
    # a near-miss folder name is suggested
    (root / "DIOR_RSVG").mkdir()
    with pytest.raises(ConfigError, match=r"did you mean .*DIOR_RSVG\?.*Annotations/\*\.xml"):
        prepare_public("dior_rsvg_test", root, tmp_path / "cache")
    # the parquet-only case says how to export it
    (root / "BigEarthNet.txt").mkdir()
    (root / "BigEarthNet.txt" / "BigEarthNet.txt.parquet").write_bytes(b"PAR1")
    with pytest.raises(ConfigError, match=r"BigEarthNet\.txt\.jsonl not found.*did you mean.*parquet.*to_json"):
        prepare_public("bigearthnet_txt_binary", root, tmp_path / "cache")


def test_no_convertible_record_is_an_error(tmp_path):
    root = tmp_path / "data"
    _vrsbench(root, "vqa")
    (root / "VRSBench" / "Images_val" / "P0001_0001.png").unlink()
    with pytest.raises(ConfigError, match=r"(?s)no records could be converted.*image_missing"):
        prepare_public("vrsbench_vqa", root, tmp_path / "cache")


def test_unknown_names_and_registry_wiring(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'rsvqa_lr_test'"):
        prepare_public("rsvqa_lr_tst", tmp_path, tmp_path / "cache")
    with pytest.raises(ConfigError, match="pass --data-root"):
        resolve_benchmarks("vrsbench_vqa")
    root = tmp_path / "data"
    _rsvg(root, "DIOR-RSVG")
    _meter_ml(root)
    got = resolve_benchmarks("dior_rsvg_test,meter_ml", public_root=root, cache_dir=tmp_path / "cache")
    assert [b.name for b in got] == ["dior_rsvg_test", "meter_ml"]
    assert got[0].options["iou_thresholds"] == [0.5]
