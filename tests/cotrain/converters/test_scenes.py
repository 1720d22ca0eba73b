"""Scene-folder converter: class naming, header sizes, seeded stratified splits, bad files, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from cotrain.converters import ConvertError
from cotrain.converters.scenes import convert_scene_splits, convert_scenes, normalize_class_name, split_files
from cotrain.records import read_records, validate_record

ROOT = Path(__file__).resolve().parents[3]


def _image(path: Path, size=(40, 30), fmt=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 120, 30)).save(path, format=fmt)


def _scene_set(root: Path, layout: dict[str, int], size=(40, 30), ext=".png") -> None:
    for folder, n in layout.items():
        for i in range(n):
            _image(root / folder / f"{folder}{i:02d}{ext}", size)


@pytest.mark.parametrize("folder, expected", [
    ("DenseResidential", "dense residential"),      # AID
    ("dense_residential", "dense residential"),     # NWPU-RESISC45
    ("Dense-Residential", "dense residential"),
    ("denseresidential", "denseresidential"),       # UCM: no boundary to recover
    ("Residential", "residential"),                 # WHU-RS19
    ("  storage__tanks ", "storage tanks"),
    ("BaseballField", "baseball field"),
    ("RSGISLab", "rsgis lab"),                      # acronym then word
])
def test_class_name_normalisation(folder, expected):
    assert normalize_class_name(folder) == expected


def test_records_have_header_sizes_labels_and_class_list(tmp_path):
    root = tmp_path / "AID"
    _scene_set(root, {"Airport": 2, "BareLand": 3}, size=(64, 48))
    _image(root / "Beach" / "beach_1.jpg", size=(33, 21), fmt="JPEG")
    out = tmp_path / "aid.jsonl"
    report = convert_scenes(root, out)
    recs = read_records(out)  # validates every record and id uniqueness
    assert report.written == 6 and not report.skipped
    assert sorted(recs[0]["classes"]) == recs[0]["classes"] == ["airport", "bare land", "beach"]
    by_id = {r["id"]: r for r in recs}
    beach = by_id["Beach/beach_1.jpg"]
    assert beach["label"] == "beach" and beach["task"] == "classification"
    assert beach["images"] == [{"path": "Beach/beach_1.jpg", "modality": "rgb", "width": 33, "height": 21}]
    assert by_id["BareLand/BareLand02.png"]["label"] == "bare land"
    assert by_id["BareLand/BareLand02.png"]["images"][0]["width"] == 64


def test_image_root_above_root_prefixes_paths(tmp_path):
    _scene_set(tmp_path / "data" / "UCMerced" / "Images", {"forest": 1, "river": 1})
    out = tmp_path / "ucm.jsonl"
    convert_scenes(tmp_path / "data" / "UCMerced" / "Images", out, image_root=tmp_path / "data")
    paths = sorted(r["images"][0]["path"] for r in read_records(out))
    assert paths == ["UCMerced/Images/forest/forest00.png", "UCMerced/Images/river/river00.png"]
    for r in read_records(out):
        assert (tmp_path / "data" / r["images"][0]["path"]).is_file()


def test_corrupt_truncated_and_foreign_files_are_counted_skips(tmp_path):
    root = tmp_path / "NWPU"
    _scene_set(root, {"lake": 2, "ship": 2})
    (root / "lake" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "ship" / "empty.png").write_bytes(b"")
    (root / "ship" / "notes.txt").write_text("hello")
    (root / "ship" / ".DS_Store").write_bytes(b"x")  # hidden: ignored, not counted
    out = tmp_path / "nwpu.jsonl"
    report = convert_scenes(root, out)
    assert report.written == 4
    assert report.skipped == {"image_unreadable": 2} and report.ignored == {"not_an_image": 1}
    assert any("broken.jpg" in m for m in report.examples["image_unreadable"])
    with pytest.raises(ConvertError) as exc:
        convert_scenes(root, tmp_path / "strict.jsonl", on_bad="raise")
    assert exc.value.reason == "image_unreadable" and "broken.jpg" in str(exc.value)
    assert not (tmp_path / "strict.jsonl").exists()  # nothing half-written


def test_class_collision_and_too_few_classes_are_errors(tmp_path):
    _scene_set(tmp_path / "a", {"DenseResidential": 1, "dense_residential": 1})
    with pytest.raises(ConvertError, match="both normalise"):
        convert_scenes(tmp_path / "a", tmp_path / "o.jsonl")
    _scene_set(tmp_path / "b", {"only": 2})
    with pytest.raises(ConvertError, match="at least 2"):
        convert_scenes(tmp_path / "b", tmp_path / "o.jsonl")
    with pytest.raises(ConvertError, match="not found"):
        convert_scenes(tmp_path / "missing", tmp_path / "o.jsonl")


def test_split_is_stratified_partition_with_hand_derived_sizes(tmp_path):
    root = tmp_path / "WHU"
    _scene_set(root, {"Airport": 10, "Beach": 7, "Bridge": 1}, size=(8, 8))
    reports = convert_scene_splits(root, str(tmp_path / "whu_{split}.jsonl"), ratios=(0.6, 0.2, 0.2), seed=3)
    parts = {s: read_records(tmp_path / f"whu_{s}.jsonl") for s in ("train", "val", "test")}
    ids = {s: {r["id"] for r in recs} for s, recs in parts.items()}
    # partition: disjoint and complete
    assert not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"])
    assert len(ids["train"] | ids["val"] | ids["test"]) == 18
    # per class: round(n*0.6) train, round(n*0.8)-round(n*0.6) val, rest test (hand-derived)
    expected = {"airport": (6, 2, 2), "beach": (4, 2, 1), "bridge": (1, 0, 0)}
    for label, counts in expected.items():
        got = tuple(sum(r["label"] == label for r in parts[s]) for s in ("train", "val", "test"))
        assert got == counts, label
    assert sum(r.written for r in reports.values()) == 18


def test_split_is_deterministic_and_seed_dependent():
    files = [f"img{i:03d}.png" for i in range(50)]
    a = split_files(files, (0.7, 0.1, 0.2), seed=0, class_key="forest")
    b = split_files(list(reversed(files)), (0.7, 0.1, 0.2), seed=0, class_key="forest")
    c = split_files(files, (0.7, 0.1, 0.2), seed=1, class_key="forest")
    d = split_files(files, (0.7, 0.1, 0.2), seed=0, class_key="river")
    assert a == b  # listing order does not matter
    assert a["train"] != c["train"] and a["train"] != d["train"]
    assert [len(a[s]) for s in ("train", "val", "test")] == [35, 5, 10]


def test_corrupt_file_does_not_move_the_split(tmp_path):
    root = tmp_path / "S"
    _scene_set(root, {"a": 6, "b": 6}, size=(8, 8))
    convert_scenes(root, tmp_path / "before.jsonl", split="train", ratios=(0.5, 0.25, 0.25), seed=7)
    before = {r["id"] for r in read_records(tmp_path / "before.jsonl")}
    victim = sorted(before)[0]
    (root / victim).write_bytes(b"garbage")
    report = convert_scenes(root, tmp_path / "after.jsonl", split="train", ratios=(0.5, 0.25, 0.25), seed=7)
    after = {r["id"] for r in read_records(tmp_path / "after.jsonl")}
    assert after == before - {victim} and report.skipped == {"image_unreadable": 1}


def test_bad_options(tmp_path):
    _scene_set(tmp_path / "r", {"x": 1, "y": 1})
    with pytest.raises(ConvertError, match="needs ratios"):
        convert_scenes(tmp_path / "r", tmp_path / "o.jsonl", split="train")
    with pytest.raises(ConvertError, match="summing to 1"):
        convert_scenes(tmp_path / "r", tmp_path / "o.jsonl", split="train", ratios=(0.5, 0.5, 0.5))
    with pytest.raises(ConvertError, match="modality"):
        convert_scenes(tmp_path / "r", tmp_path / "o.jsonl", modality="thermal")


def test_cli_writes_all_splits(tmp_path, capsys):
    from cotrain.cli.convert import main as convert_main

    def cli_main(argv):
        return convert_main(["scenes", *argv])

    _scene_set(tmp_path / "ucm", {"forest": 4, "river": 4}, size=(16, 16))
    pattern = str(tmp_path / "ucm_{split}.jsonl")
    assert cli_main([str(tmp_path / "ucm"), pattern, "--split", "all", "--ratios", "0.5,0.25,0.25"]) == 0
    total = 0
    for s in ("train", "val", "test"):
        lines = (tmp_path / f"ucm_{s}.jsonl").read_text().splitlines()
        total += len(lines)
        for line in lines:
            validate_record(json.loads(line))
    assert total == 8 and "wrote" in capsys.readouterr().out
    assert cli_main([str(tmp_path / "nope"), str(tmp_path / "x.jsonl")]) == 2
