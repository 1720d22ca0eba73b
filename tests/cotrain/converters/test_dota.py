"""cotrain.converters.dota + tools/convert_dota.py on small DOTA fixtures written from the format description.

DOTA labelTxt (devkit README): optional header lines ``imagesource:...`` / ``gsd:...``, then one object
per line ``x1 y1 x2 y2 x3 y3 x4 y4 category difficult``. Expected records are written by hand.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from cotrain.converters import CONVERTERS, ConvertError, image_size
from cotrain.converters.dota import convert_dota
from cotrain.dota.types import DOTA_V1_CLASSES, DOTA_V15_CLASSES
from cotrain.records import read_records

ROOT = Path(__file__).resolve().parents[3]


def _image(path: Path, w: int, h: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (40, 80, 120)).save(path)


def _labels(path: Path, lines: list[str], encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding) if isinstance(lines, list) else lines)


@pytest.fixture()
def dota(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labelTxt"
    _image(images / "P0001.png", 300, 200)
    _labels(labels / "P0001.txt", [
        "imagesource:GoogleEarth",
        "gsd:0.146343590398",
        "10 20 60 20 60 50 10 50 plane 0",            # line 3: kept as is
        "100 100 150 100 150 140 100 140 ship 1",     # line 4: difficult 1
        "",
        "250 150 300.5 150 300.5 199 250 199 small-vehicle",  # line 6: 0.5 px outside -> clipped, difficult 0
        "280 10 320 10 320 40 280 40 harbor 0",       # line 7: 20 px outside -> skipped
        "5 5 5 5 5 5 5 5 bridge 0",                   # line 8: zero area -> skipped
        "1 2 3 4 5 6 7 plane 0",                      # line 9: 8 fields -> malformed
        "1 2 nan 4 5 6 7 8 plane 0",                  # line 10: NaN -> malformed
        "20 20 40 20 40 40 20 40 container-crane 0",  # line 11: not a v1.0 class
    ])
    _labels(labels / "P0002.txt", ["gsd:null", "0 0 10 0 10 10 0 10 storage-tank 0"])  # no image
    _image(images / "P0003.png", 64, 48)
    _labels(labels / "P0003.txt", ["12 5 30 5 30 9 12 9 storage-tank 0"])
    return tmp_path


def test_whole_images_to_detection_records(dota, tmp_path):
    out = tmp_path / "out" / "dota.jsonl"
    report = convert_dota(dota / "labelTxt", dota / "images", out)
    recs = {r["id"]: r for r in read_records(out)}  # the schema validator is the independent check
    assert set(recs) == {"P0001", "P0003"}
    r = recs["P0001"]
    assert r["task"] == "detection" and r["classes"] == list(DOTA_V1_CLASSES)
    assert r["images"] == [{"path": "P0001.png", "modality": "rgb", "width": 300, "height": 200}]
    assert r["objects"] == [
        {"label": "plane", "quad": [10, 20, 60, 20, 60, 50, 10, 50], "difficult": 0},
        {"label": "ship", "quad": [100, 100, 150, 100, 150, 140, 100, 140], "difficult": 1},
        {"label": "small-vehicle", "quad": [250, 150, 300, 150, 300, 199, 250, 199], "difficult": 0},
    ]
    assert report.written == 2
    assert report.skipped == {"box_outside": 1, "box_zero_area": 1, "malformed_line": 2, "unknown_class": 1,
                              "image_missing": 1}
    assert report.fixed["box_clipped"] == 1
    labels = str(dota / "labelTxt" / "P0001.txt")
    assert any(f"{labels}:7" in m for m in report.examples["box_outside"])
    assert any(f"{labels}:8" in m for m in report.examples["box_zero_area"])
    assert {f"{labels}:9", f"{labels}:10"} <= {m.split(": ")[0] for m in report.examples["malformed_line"]}
    assert any(f"{labels}:11" in m for m in report.examples["unknown_class"])
    assert "P0002" in report.examples["image_missing"][0]
    assert "skipped 1 x box_outside" in report.summary()


def test_version_15_accepts_container_crane(dota, tmp_path):
    out = tmp_path / "v15.jsonl"
    report = convert_dota(dota / "labelTxt", dota / "images", out, version="1.5")
    rec = {r["id"]: r for r in read_records(out)}["P0001"]
    assert rec["classes"] == list(DOTA_V15_CLASSES)
    assert {"label": "container-crane", "quad": [20, 20, 40, 20, 40, 40, 20, 40], "difficult": 0} in rec["objects"]
    assert "unknown_class" not in report.skipped


def test_raise_mode_stops_and_leaves_no_output(dota, tmp_path):
    out = tmp_path / "raise.jsonl"
    with pytest.raises(ConvertError) as err:
        convert_dota(dota / "labelTxt", dota / "images", out, on_bad="raise")
    # Malformed lines are reported when the file is read, before any object is checked.
    assert err.value.reason == "malformed_line"
    assert "P0001.txt:9:" in str(err.value)
    assert not out.exists() and not (tmp_path / "raise.jsonl.tmp").exists()


def test_non_utf8_label_file_and_split_list(tmp_path):
    _image(tmp_path / "images" / "A.png", 50, 50)
    _image(tmp_path / "images" / "B.png", 50, 50)
    _labels(tmp_path / "labelTxt" / "A.txt", "1 1 9 1 9 9 1 9 plane 0\n# caf\xe9\n".encode("latin-1"))
    _labels(tmp_path / "labelTxt" / "B.txt", ["1 1 9 1 9 9 1 9 plane 0"])
    split = tmp_path / "ids.txt"
    split.write_text("A\nB\nZ\n")
    report = convert_dota(tmp_path / "labelTxt", tmp_path / "images", tmp_path / "o.jsonl", split=split)
    assert [r["id"] for r in read_records(tmp_path / "o.jsonl")] == ["B"]
    assert report.skipped == {"not_utf8": 1, "label_missing": 1}
    assert "A.txt:2" in report.examples["not_utf8"][0]


def test_size_comes_from_the_header_of_a_truncated_image(tmp_path):
    p = tmp_path / "big.png"
    _image(p, 321, 123)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])  # pixels cut off; the header still says 321x123
    assert image_size(p) == (321, 123)
    q = tmp_path / "junk.png"
    q.write_bytes(b"not an image")
    with pytest.raises(ConvertError) as err:
        image_size(q)
    assert err.value.reason == "image_unreadable"


def test_patch_split_follows_devkit_rules(tmp_path):
    # 1500 x 1100 image, 1024 patches, gap 200: x windows 0 and 476 (last one flush with the border),
    # y windows 0 and 76.
    _image(tmp_path / "images" / "P0100.png", 1500, 1100)
    _labels(tmp_path / "labelTxt" / "P0100.txt", [
        "100 100 200 100 200 200 100 200 plane 0",        # inside (0,0) and (0,76) only
        "950 500 1050 500 1050 600 950 600 ship 1",        # IoF 0.74 in x=0 windows (cut), whole in x=476
        "1000 300 1100 300 1100 400 1000 400 harbor 0",    # IoF 0.24 in x=0 windows: only x=476
    ])
    patch_dir = tmp_path / "patches"
    out = tmp_path / "patches.jsonl"
    report = convert_dota(tmp_path / "labelTxt", tmp_path / "images", out, split_patches=True, patch_dir=patch_dir)
    recs = {r["id"]: r for r in read_records(out)}
    assert set(recs) == {"P0100__1024__0___0", "P0100__1024__0___76", "P0100__1024__476___0",
                         "P0100__1024__476___76"}
    assert report.written == 4
    for pid, r in recs.items():
        assert r["images"][0] == {"path": f"images/{pid}.png", "modality": "rgb", "width": 1024, "height": 1024}
        with Image.open(patch_dir / "images" / f"{pid}.png") as im:
            assert im.size == (1024, 1024)  # padded

    def objs(pid):
        return {(o["label"], o["difficult"], frozenset(zip(o["quad"][0::2], o["quad"][1::2])))
                for o in recs[pid]["objects"]}

    sq = lambda x1, y1, x2, y2: frozenset({(x1, y1), (x2, y1), (x2, y2), (x1, y2)})  # noqa: E731
    assert objs("P0100__1024__0___0") == {("plane", 0, sq(100, 100, 200, 200)), ("ship", 2, sq(950, 500, 1024, 600))}
    assert objs("P0100__1024__0___76") == {("plane", 0, sq(100, 24, 200, 124)), ("ship", 2, sq(950, 424, 1024, 524))}
    assert objs("P0100__1024__476___0") == {("ship", 1, sq(474, 500, 574, 600)), ("harbor", 0, sq(524, 300, 624, 400))}
    assert objs("P0100__1024__476___76") == {("ship", 1, sq(474, 424, 574, 524)),
                                             ("harbor", 0, sq(524, 224, 624, 324))}


def test_cli_prints_report_and_registry_lists_dota(dota, tmp_path):
    assert CONVERTERS["dota"] is convert_dota
    out = tmp_path / "cli.jsonl"
    r = subprocess.run([sys.executable, "-m", "cotrain", "convert", "dota", "--labels", str(dota / "labelTxt"),
                        "--images", str(dota / "images"), "--out", str(out)], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "wrote 2 records" in r.stdout and "skipped 1 x image_missing" in r.stdout
    assert len(out.read_text().splitlines()) == 2
    bad = subprocess.run([sys.executable, "-m", "cotrain", "convert", "dota", "--labels", str(tmp_path / "no"),
                          "--images", str(dota / "images"), "--out", str(out)], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert bad.returncode == 2 and "not a directory" in bad.stderr
    assert json.loads(out.read_text().splitlines()[0])["id"] == "P0001"
