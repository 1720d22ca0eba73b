"""DIOR-R (cotrain.converters.dior) and DIOR-RSVG (cotrain.converters.rsvg) on fixtures written from the releases.

DIOR-R: ``<object><name>..</name><robndbox><x_left_top>..`` corner fields (as mmrotate's DIORDataset
reads them); DIOR-RSVG: ``<object><name/><bndbox><xmin/>..</bndbox><description/></object>`` with split
files of global object indices (as the authors' data_loader.py counts them). Expected records by hand.
"""

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from cotrain.converters import CONVERTERS, ConvertError
from cotrain.converters.dior import DIOR_CLASSES, convert_dior_r
from cotrain.converters.rsvg import convert_rsvg
from cotrain.records import read_records

ROOT = Path(__file__).resolve().parents[3]


def _image(path: Path, w: int = 800, h: int = 800) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (90, 90, 60)).save(path, quality=80)


def _robj(name, corners, difficult=None):
    fields = ("x_left_top", "y_left_top", "x_right_top", "y_right_top", "x_right_bottom", "y_right_bottom",
              "x_left_bottom", "y_left_bottom")
    box = "".join(f"<{f}>{v}</{f}>" for f, v in zip(fields, corners))
    diff = "" if difficult is None else f"<difficult>{difficult}</difficult>"
    return f"<object><name>{name}</name><pose>Unspecified</pose>{diff}<robndbox>{box}</robndbox></object>"


def _xml(path: Path, filename: str, objects: str, size=(800, 800)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'<?xml version="1.0" encoding="utf-8"?>\n<annotation>\n<filename>{filename}</filename>\n'
                    f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>\n"
                    f"{objects}\n</annotation>\n", encoding="utf-8")


@pytest.fixture()
def dior(tmp_path):
    ann = tmp_path / "Annotations" / "Oriented Bounding Boxes"
    _image(tmp_path / "JPEGImages-trainval" / "00001.jpg")
    _image(tmp_path / "JPEGImages-test" / "11726.jpg")
    _image(tmp_path / "JPEGImages-trainval" / "00003.jpg", 640, 480)
    _xml(ann / "00001.xml", "00001.jpg",
         _robj("Expressway-Service-area", (100, 100, 300, 120, 290, 220, 90, 200), difficult=1)
         + _robj("vehicle", (10.5, 20, 30.5, 20, 30.5, 30, 10.5, 30))
         + _robj("spaceport", (1, 1, 5, 1, 5, 5, 1, 5))                     # unknown class
         + "<object><name>ship</name><robndbox><x_left_top>1</x_left_top></robndbox></object>"  # missing fields
         + "<object><name>ship</name><robndbox>" + "".join(
             f"<{f}>x</{f}>" for f in ("x_left_top", "y_left_top", "x_right_top", "y_right_top", "x_right_bottom",
                                         "y_right_bottom", "x_left_bottom", "y_left_bottom")) + "</robndbox></object>"
         + _robj("ship", (700, 700, 810, 700, 810, 790, 700, 790))          # 10 px outside
         + "<object><name>dam</name><bndbox><xmin>5</xmin><ymin>6</ymin><xmax>50</xmax><ymax>60</ymax></bndbox>"
           "</object>")
    _xml(ann / "11726.xml", "11726.jpg", _robj("windmill", (400, 400, 420, 400, 420, 440, 400, 440)))
    _xml(ann / "00003.xml", "00003.jpg", _robj("ship", (1, 1, 5, 1, 5, 5, 1, 5)))  # says 800x800, image 640x480
    _xml(ann / "00004.xml", "00004.jpg", "")                                          # no image
    (ann / "00005.xml").write_text("<annotation>\n<filename>00005.jpg</filename>\n<object>\n</annotation>\n")
    (ann / "00006.xml").write_bytes(b"<annotation><filename>caf\xe9.jpg</filename></annotation>")
    return tmp_path, ann


def test_dior_r_records(dior, tmp_path):
    root, ann = dior
    out = tmp_path / "dior.jsonl"
    report = convert_dior_r(ann, [root / "JPEGImages-trainval", root / "JPEGImages-test"], out)
    recs = {r["id"]: r for r in read_records(out)}
    assert set(recs) == {"00001", "11726"}
    r = recs["00001"]
    assert r["classes"] == list(DIOR_CLASSES) and len(DIOR_CLASSES) == 20
    assert r["images"] == [{"path": "JPEGImages-trainval/00001.jpg", "modality": "rgb", "width": 800, "height": 800}]
    assert r["objects"] == [
        {"label": "expressway-service-area", "quad": [100, 100, 300, 120, 290, 220, 90, 200], "difficult": 1},
        {"label": "vehicle", "quad": [10.5, 20, 30.5, 20, 30.5, 30, 10.5, 30], "difficult": 0},
        {"label": "dam", "hbb": [5, 6, 50, 60], "difficult": 0},
    ]
    assert recs["11726"]["images"][0]["path"] == "JPEGImages-test/11726.jpg"
    assert report.skipped == {"unknown_class": 1, "malformed_element": 2, "box_outside": 1, "size_mismatch": 1,
                              "image_missing": 1, "malformed_xml": 1, "not_utf8": 1}
    assert any("field <y_left_top> is missing" in m for m in report.examples["malformed_element"])
    assert any("'x', not a number" in m for m in report.examples["malformed_element"])
    assert str(ann / "00005.xml") + ":4" in report.examples["malformed_xml"][0]
    assert "800x800" in report.examples["size_mismatch"][0] and "640x480" in report.examples["size_mismatch"][0]


def test_dior_r_split_file_and_raise(dior, tmp_path):
    root, ann = dior
    split = tmp_path / "test.txt"
    split.write_text("11726\n")
    out = tmp_path / "test.jsonl"
    report = convert_dior_r(ann, [root / "JPEGImages-trainval", root / "JPEGImages-test"], out, split=split)
    assert [r["id"] for r in read_records(out)] == ["11726"] and not report.skipped
    with pytest.raises(ConvertError) as err:
        convert_dior_r(ann, [root / "JPEGImages-trainval", root / "JPEGImages-test"], tmp_path / "r.jsonl",
                       on_bad="raise")
    assert err.value.reason == "unknown_class" and "00001.xml: <object> 2 (spaceport)" in str(err.value)
    assert not (tmp_path / "r.jsonl").exists()


def _gobj(name, box, description):
    desc = "" if description is None else f"<description>{description}</description>"
    b = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
    return f"<object><name>{name}</name><pose>Unspecified</pose><bndbox>{b}</bndbox>{desc}</object>"


@pytest.fixture()
def rsvg(tmp_path):
    ann, img = tmp_path / "Annotations", tmp_path / "JPEGImages"
    for stem in ("00001", "00002", "00003"):
        _image(img / f"{stem}.jpg")
    _xml(ann / "00001.xml", "00001.jpg", _gobj("golffield", (133, 237, 684, 672), "A green and brown golf field"))
    _xml(ann / "00002.xml", "00002.jpg",
         _gobj("vehicle", (10, 10, 30, 25), "the  vehicle\n on the left")          # index 1
         + _gobj("vehicle", (40, 10, 60, 25), None)                                 # index 2: no description
         + _gobj("ship", (40, 30, 40, 60), "a zero-width ship"))                    # index 3: zero area
    _xml(ann / "00003.xml", "00003.jpg", _gobj("dam", (100, 200, 300, 799.5), "the dam at the bottom"))  # index 4
    return tmp_path


def test_rsvg_all_objects(rsvg, tmp_path):
    out = tmp_path / "rsvg.jsonl"
    report = convert_rsvg(rsvg / "Annotations", rsvg / "JPEGImages", out)
    recs = {r["id"]: r for r in read_records(out)}
    assert recs == {
        "00001_0": {"id": "00001_0", "task": "grounding", "expression": "A green and brown golf field",
                    "images": [{"path": "00001.jpg", "modality": "rgb", "width": 800, "height": 800}],
                    "target": {"hbb": [133, 237, 684, 672]}},
        "00002_0": {"id": "00002_0", "task": "grounding", "expression": "the vehicle on the left",
                    "images": [{"path": "00002.jpg", "modality": "rgb", "width": 800, "height": 800}],
                    "target": {"hbb": [10, 10, 30, 25]}},
        "00003_0": {"id": "00003_0", "task": "grounding", "expression": "the dam at the bottom",
                    "images": [{"path": "00003.jpg", "modality": "rgb", "width": 800, "height": 800}],
                    "target": {"hbb": [100, 200, 300, 799.5]}},
    }
    assert report.skipped == {"box_zero_area": 1} and report.ignored == {"no_description": 1}


def test_rsvg_split_indices_count_objects_over_sorted_files(rsvg, tmp_path):
    split = tmp_path / "val.txt"
    split.write_text("1\n4\n")  # second file's first object, third file's object
    out = tmp_path / "val.jsonl"
    report = convert_rsvg(rsvg / "Annotations", rsvg / "JPEGImages", out, split=split)
    assert [r["id"] for r in read_records(out)] == ["00002_0", "00003_0"] and not report.skipped
    split.write_text("0\n9\n")
    report = convert_rsvg(rsvg / "Annotations", rsvg / "JPEGImages", out, split=split)
    assert report.skipped == {"split_mismatch": 1} and report.written == 1
    split.write_text("zero\n")
    with pytest.raises(ConvertError, match=r"val.txt:1: 'zero' is not an object index"):
        convert_rsvg(rsvg / "Annotations", rsvg / "JPEGImages", out, split=split)


def test_xml_clis(rsvg, dior, tmp_path):
    assert CONVERTERS["rsvg"] is convert_rsvg and CONVERTERS["dior_r"] is convert_dior_r
    r = subprocess.run([sys.executable, "-m", "cotrain", "convert", "rsvg", "--annotations",
                        str(rsvg / "Annotations"), "--images", str(rsvg / "JPEGImages"), "--out",
                        str(tmp_path / "g.jsonl")], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "wrote 3 records" in r.stdout and "ignored 1 x no_description" in r.stdout
    root, ann = dior
    r = subprocess.run([sys.executable, "-m", "cotrain", "convert", "dior_r", "--annotations", str(ann),
                        "--images", str(root / "JPEGImages-trainval"), str(root / "JPEGImages-test"),
                        "--out", str(tmp_path / "d.jsonl"), "--on-bad", "raise"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2 and "spaceport" in r.stderr
