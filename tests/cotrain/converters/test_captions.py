"""Caption JSON (Karpathy format) and FusionRS triplet converters, with hand-written fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from cotrain.converters import ConvertError
from cotrain.converters.captions import convert_captions
from cotrain.converters.fusion import convert_fusionrs
from cotrain.records import read_records

ROOT = Path(__file__).resolve().parents[3]


def _image(path: Path, size, mode="RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size).save(path)


def _sent(raw, tokens=None):
    return {"raw": raw, "tokens": tokens if tokens is not None else raw.split(), "imgid": 0, "sentid": 0}


def _rsicd(tmp_path: Path) -> Path:
    """A 5-entry RSICD-like file: padded duplicates, an empty raw, a bad entry, a missing image."""
    imgs = tmp_path / "RSICD_images"
    _image(imgs / "airport_1.jpg", (224, 224))
    _image(imgs / "beach_7.jpg", (200, 150))
    _image(imgs / "sub" / "farm_2.png", (50, 60))
    data = {"dataset": "rsicd", "images": [
        {"filename": "airport_1.jpg", "imgid": 0, "split": "train",
         "sentences": [_sent("many planes are parked  near a terminal ."),
                       _sent("many planes are parked near a terminal ."),
                       _sent("a runway beside buildings .")]},
        {"filename": "beach_7.jpg", "imgid": 1, "split": "test",
         "sentences": [_sent("", ["yellow", "beach", "near", "sea"]), _sent("waves reach the sand .")]},
        {"filename": "farm_2.png", "filepath": "sub", "imgid": 2, "split": "val",
         "sentences": [_sent("green fields .")]},
        {"imgid": 3, "split": "train", "sentences": [_sent("no filename here .")]},
        {"filename": "gone.jpg", "imgid": 4, "split": "train", "sentences": [_sent("an image that is missing .")]},
    ]}
    path = tmp_path / "dataset_rsicd.json"
    path.write_text(json.dumps(data))
    return path


def test_karpathy_file_to_captioning_records(tmp_path):
    src = _rsicd(tmp_path)
    out = tmp_path / "rsicd.jsonl"
    report = convert_captions(src, out, image_root=tmp_path / "RSICD_images")
    recs = {r["id"]: r for r in read_records(out)}
    assert set(recs) == {"airport_1.jpg", "beach_7.jpg", "sub/farm_2.png"}
    a = recs["airport_1.jpg"]
    # whitespace normalised, the padded repeat dropped, order kept
    assert a["captions"] == ["many planes are parked near a terminal .", "a runway beside buildings ."]
    assert a["images"] == [{"path": "airport_1.jpg", "modality": "rgb", "width": 224, "height": 224}]
    assert a["task"] == "captioning" and a["caption_style"] == "scene"
    assert recs["beach_7.jpg"]["captions"] == ["yellow beach near sea", "waves reach the sand ."]  # token fallback
    assert recs["sub/farm_2.png"]["images"][0]["height"] == 60
    assert report.skipped == {"bad_entry": 1, "image_missing": 1}
    assert report.fixed["duplicate_captions_dropped"] == 1
    assert any("images[4]" in m and "gone.jpg" in m for m in report.examples["image_missing"])


def test_split_filter_and_keep_duplicates(tmp_path):
    src = _rsicd(tmp_path)
    out = tmp_path / "test.jsonl"
    convert_captions(src, out, image_root=tmp_path / "RSICD_images", split="test")
    assert [r["id"] for r in read_records(out)] == ["beach_7.jpg"]
    convert_captions(src, out, image_root=tmp_path / "RSICD_images", split="train", dedupe=False)
    (rec,) = read_records(out)
    assert len(rec["captions"]) == 3


def test_malformed_caption_files_raise_named_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [ {"filename": "a.jpg",, } ]}')
    with pytest.raises(ConvertError, match=r"bad\.json:1: invalid JSON"):
        convert_captions(bad, tmp_path / "o.jsonl", image_root=tmp_path)
    wrong = tmp_path / "wrong.json"
    wrong.write_text('[{"filename": "a.jpg"}]')
    with pytest.raises(ConvertError, match="Karpathy"):
        convert_captions(wrong, tmp_path / "o.jsonl", image_root=tmp_path)
    latin = tmp_path / "latin.json"
    latin.write_bytes('{"images": [{"filename": "caf\u00e9.jpg"}]}'.encode("latin-1"))
    with pytest.raises(ConvertError) as exc:
        convert_captions(latin, tmp_path / "o.jsonl", image_root=tmp_path)
    assert exc.value.reason == "not_utf8"


def test_on_bad_raise_stops_at_first_bad_entry(tmp_path):
    src = _rsicd(tmp_path)
    with pytest.raises(ConvertError) as exc:
        convert_captions(src, tmp_path / "o.jsonl", image_root=tmp_path / "RSICD_images", on_bad="raise")
    assert exc.value.reason == "bad_entry" and "images[3]" in str(exc.value)
    assert not (tmp_path / "o.jsonl").exists()


def test_captions_cli(tmp_path, capsys):
    from cotrain.cli.convert import main as convert_main

    def cli_main(argv):
        return convert_main(["captions", *argv])

    src = _rsicd(tmp_path)
    out = tmp_path / "cli.jsonl"
    assert cli_main([str(src), str(out), "--image-root", str(tmp_path / "RSICD_images"), "--split", "train"]) == 0
    assert [r["id"] for r in read_records(out)] == ["airport_1.jpg"]
    assert "skipped" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- FusionRS


def _triplets(tmp_path: Path) -> Path:
    _image(tmp_path / "rgb" / "0001.jpg", (64, 48))
    _image(tmp_path / "ir" / "0001.png", (64, 48), mode="L")
    _image(tmp_path / "rgb" / "0002.jpg", (32, 32))
    _image(tmp_path / "ir" / "0002.png", (32, 32), mode="I;16")
    _image(tmp_path / "rgb" / "0003.jpg", (20, 20))  # its IR file is missing
    lines = [
        {"id": "0001", "rgb": "rgb/0001.jpg", "ir": "ir/0001.png",
         "captions": ["a road crosses a field", "road and field"],
         "ir_captions": ["warm cars on a cool road"], "split": "train"},
        {"rgb": "rgb/0002.jpg", "ir": "ir/0002.png", "caption": "a lake beside houses", "split": "test"},
        {"id": "0003", "rgb": "rgb/0003.jpg", "ir": "ir/0003.png", "caption": "a small pond", "split": "train"},
        {"id": "0004", "rgb": "rgb/0001.jpg", "caption": "no ir path", "split": "train"},
        {"id": "0005", "rgb": "rgb/0001.jpg", "ir": "ir/0001.png", "captions": [3, 4]},
    ]
    path = tmp_path / "triplets.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n{not json\n")
    return path


def test_fusion_jsonl_gives_three_kinds(tmp_path):
    src = _triplets(tmp_path)
    out = tmp_path / "fusion.jsonl"
    report = convert_fusionrs(src, out)
    recs = {r["id"]: r for r in read_records(out)}
    assert set(recs) == {"0001#rgb", "0001#ir", "0001#dual", "0002#rgb", "0002#ir", "0002#dual", "0003#rgb"}
    assert recs["0001#rgb"]["captions"] == ["a road crosses a field", "road and field"]
    assert recs["0001#rgb"]["caption_style"] == "scene"
    ir = recs["0001#ir"]
    assert ir["caption_style"] == "ir_aware" and ir["captions"] == ["warm cars on a cool road"]
    assert ir["images"] == [{"path": "ir/0001.png", "modality": "ir", "width": 64, "height": 48}]
    dual = recs["0001#dual"]
    assert [i["modality"] for i in dual["images"]] == ["rgb", "ir"] and dual["caption_style"] == "ir_aware"
    # no IR-specific caption: the general one is used; the dual record is then a scene caption
    assert recs["0002#ir"]["captions"] == ["a lake beside houses"] and recs["0002#ir"]["caption_style"] == "ir_aware"
    assert recs["0002#dual"]["caption_style"] == "scene"
    # 0003: IR file missing -> its ir and dual kinds skipped alone; 0004/0005 bad entries; last line bad JSON
    assert report.skipped == {"image_missing": 2, "bad_entry": 2, "invalid_json": 1}


def test_fusion_split_and_kinds(tmp_path):
    src = _triplets(tmp_path)
    out = tmp_path / "f.jsonl"
    convert_fusionrs(src, out, split="test", kinds=("dual",))
    assert [r["id"] for r in read_records(out)] == ["0002#dual"]
    with pytest.raises(ConvertError, match="kinds"):
        convert_fusionrs(src, out, kinds=("thermal",))


def test_fusion_folder_layout(tmp_path):
    root = tmp_path / "FusionRS"
    _image(root / "rgb" / "a.jpg", (30, 40))
    _image(root / "ir" / "a.png", (30, 40), mode="L")
    _image(root / "rgb" / "b.jpg", (30, 40))
    _image(root / "ir" / "b.jpg", (30, 40), mode="L")
    _image(root / "rgb" / "c.jpg", (30, 40))  # no caption in captions.json
    _image(root / "ir" / "c.jpg", (30, 40), mode="L")
    (root / "captions.json").write_text(json.dumps({
        "a.jpg": "an airport apron",
        "b": {"captions": ["two ships"], "ir_captions": ["hot ship engines"]},
    }))
    out = tmp_path / "folder.jsonl"
    report = convert_fusionrs(root, out, image_root=tmp_path)
    recs = {r["id"]: r for r in read_records(out)}
    assert report.written == 6 and report.skipped == {"no_captions": 3}
    assert recs["a#ir"]["images"][0]["path"] == "FusionRS/ir/a.png"  # IR found by stem, other extension
    assert recs["b#ir"]["captions"] == ["hot ship engines"]
    assert recs["a#dual"]["images"][0]["path"] == "FusionRS/rgb/a.jpg"
    (tmp_path / "no_ir").mkdir()
    (tmp_path / "no_ir" / "rgb").mkdir()
    with pytest.raises(ConvertError, match="rgb/, ir/"):
        convert_fusionrs(tmp_path / "no_ir", out)
    with pytest.raises(ConvertError, match="not under image_root"):
        convert_fusionrs(root, out, image_root=tmp_path / "elsewhere")


def test_fusion_cli(tmp_path, capsys):
    from cotrain.cli.convert import main as convert_main

    def cli_main(argv):
        return convert_main(["fusionrs", *argv])

    src = _triplets(tmp_path)
    out = tmp_path / "cli.jsonl"
    assert cli_main([str(src), str(out), "--kinds", "rgb"]) == 0
    assert {r["id"] for r in read_records(out)} == {"0001#rgb", "0002#rgb", "0003#rgb"}
    assert cli_main([str(src), str(out), "--on-bad", "raise"]) == 2
    capsys.readouterr()


def test_fusion_triplet_and_ir_original_kinds(tmp_path):
    src = _triplets(tmp_path)
    _image(tmp_path / "rgb" / "0006.jpg", (40, 30))
    _image(tmp_path / "ir" / "0006.png", (20, 15), mode="L")  # a twin of another size
    with src.open("a") as fh:
        fh.write(json.dumps({"id": "0006", "rgb": "rgb/0006.jpg", "ir": "ir/0006.png", "caption": "a yard"}) + "\n")
    out = tmp_path / "trip.jsonl"
    report = convert_fusionrs(src, out, kinds=("triplet", "ir_original"))
    recs = {r["id"]: r for r in read_records(out)}
    assert set(recs) == {"0001#triplet", "0001#ir_original", "0002#triplet", "0002#ir_original",
                         "0006#ir_original"}
    t = recs["0001#triplet"]
    assert t["task"] == "triplet" and [i["modality"] for i in t["images"]] == ["rgb", "ir"]
    assert t["captions"] == ["a road crosses a field", "road and field"]
    assert t["ir_captions"] == ["warm cars on a cool road"]
    assert "ir_captions" not in recs["0002#triplet"]  # no IR-aware caption in the entry: none invented
    io = recs["0001#ir_original"]
    assert io["captions"] == t["captions"] and io["caption_style"] == "scene" and io["images"][0]["modality"] == "ir"
    # 0003: RGB without its IR twin (skipped for both kinds); 0006: twins of different sizes (triplet only)
    assert report.skipped == {"image_missing": 2, "bad_entry": 2, "invalid_json": 1, "twin_size_mismatch": 1}
