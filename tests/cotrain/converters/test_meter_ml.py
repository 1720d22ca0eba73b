"""cotrain.converters.meter_ml: the assumed label CSV (main path: test_bench_public)."""

from __future__ import annotations

import pytest
from PIL import Image

from cotrain.converters import ConvertError
from cotrain.converters.meter_ml import CLASS_ALIASES, CLASSES, convert_meter_ml
from cotrain.records import read_records


def test_aliases_cover_every_class():
    assert sorted(set(CLASS_ALIASES.values())) == CLASSES and len(CLASSES) == 7
    assert CLASS_ALIASES["proc plants"] == "natural gas processing plant"
    assert CLASS_ALIASES["wwtps"] == "wastewater treatment plant"


def test_csv_rows(tmp_path):
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    csv = tmp_path / "test.csv"
    csv.write_text("image,label\na.png,Coal_Mines\nb.png,Landfills\na.png,Spaceport\na.png,CAFOs|WWTPs\n,CAFOs\n")
    report = convert_meter_ml(csv, tmp_path / "o.jsonl")
    assert dict(report.skipped) == {"image_missing": 1, "unknown_label": 1, "bad_row": 1}
    assert report.ignored["multi_label"] == 1
    (rec,) = read_records(tmp_path / "o.jsonl")
    assert rec["label"] == "coal mine" and (rec["images"][0]["width"], rec["images"][0]["height"]) == (40, 30)
    csv.write_text("path,class\na.png,CAFOs\n")
    with pytest.raises(ConvertError, match=r"lacks column\(s\) \['image', 'label'\]"):
        convert_meter_ml(csv, tmp_path / "o.jsonl")
