"""LLaVA/ShareGPT conversation converter: roles, placeholders, and the three box conventions.

Golden boxes are hand-derived (normalised value / full scale * image side) and, for GeoChat's
rotated boxes, computed with shapely's rotation as an independent route.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from shapely.affinity import rotate
from shapely.geometry import Polygon, box

from cotrain.boxes import BoxCodec
from cotrain.converters import ConvertError
from cotrain.converters.llava import convert_llava, rotate_box
from cotrain.records import read_records
from cotrain.tasks import build_conversation

ROOT = Path(__file__).resolve().parents[3]


def _conv(*texts, roles=("human", "gpt")):
    return [{"from": roles[i % 2], "value": t} for i, t in enumerate(texts)]


def _run(tmp_path, entries, convention="none", size=(200, 100), jsonl=False, **kw):
    images = tmp_path / "images"
    for name in ("a.png", "b.png"):
        if not (images / name).exists():
            images.mkdir(exist_ok=True)
            Image.new("RGB", size).save(images / name)
    src = tmp_path / ("conv.jsonl" if jsonl else "conv.json")
    src.write_text("\n".join(json.dumps(e) for e in entries) if jsonl else json.dumps(entries))
    out = tmp_path / "out.jsonl"
    report = convert_llava(src, out, image_root=images, box_convention=convention, **kw)
    return report, {r["id"]: r for r in read_records(out)}


def test_plain_conversation_roles_and_image_entry(tmp_path):
    entries = [{"id": "c1", "image": "a.png",
                "conversations": _conv("<image>\nWhat is shown?", "An airport.", "How many planes?", "Three.")}]
    report, recs = _run(tmp_path, entries)
    r = recs["c1"]
    assert r["task"] == "conversation" and "boxes" not in r
    assert r["images"] == [{"path": "a.png", "modality": "rgb", "width": 200, "height": 100}]
    assert [t["role"] for t in r["turns"]] == ["user", "assistant", "user", "assistant"]
    assert r["turns"][0]["text"] == "<image>\nWhat is shown?" and r["turns"][3]["text"] == "Three."
    assert report.written == 1 and not report.skipped


def test_geochat_hbb_and_rotated_boxes(tmp_path):
    entries = [{"id": "g", "image": "a.png", "conversations": _conv(
        "<image>\n[refer] Where is the <p>white plane</p>?",
        "<p>white plane</p> {<10><20><50><60>} and {<40><40><60><50>|<30>}")}]
    report, recs = _run(tmp_path, entries, "geochat", size=(200, 100))
    r = recs["g"]
    assert r["turns"][1]["text"] == "<p>white plane</p> <box>0</box> and <box>1</box>"
    assert r["boxes"][0] == {"hbb": [20, 20, 100, 60]}  # 10/100*200, 20/100*100, 50/100*200, 60/100*100
    quad = r["boxes"][1]["quad"]
    # independent route: shapely rotates counter-clockwise in a y-up frame, i.e. clockwise on a y-down
    # screen, so GeoChat's (OpenCV) counter-clockwise-on-screen theta is shapely's -theta here.
    expected = rotate(box(80, 40, 120, 50), -30, origin="center")
    got = Polygon(list(zip(quad[0::2], quad[1::2])))
    assert got.is_valid and got.hausdorff_distance(expected) < 0.01  # coordinates are rounded to 0.01 px


def test_rotation_sense_hand_derived():
    # 90 degrees counter-clockwise on screen: the top-left corner (up-left of the centre) moves to
    # down-left; a 20x10 box about (50, 45) becomes 10x20.
    q = rotate_box(40, 40, 60, 50, 90)
    assert q[:2] == pytest.approx([45, 55])
    xs, ys = q[0::2], q[1::2]
    assert (min(xs), max(xs), min(ys), max(ys)) == pytest.approx((45, 55, 35, 55))


def test_geochat_rotated_box_at_edge_is_clamped(tmp_path):
    entries = [{"id": "e", "image": "a.png", "conversations": _conv("<image> find it", "{<0><0><20><10>|<45>}")}]
    report, recs = _run(tmp_path, entries, "geochat", size=(100, 100))
    quad = recs["e"]["boxes"][0]["quad"]
    assert min(quad) >= 0 and max(quad) <= 100
    assert report.fixed["rotated_box_clamped"] == 1


def test_qwen2vl_boxes_and_object_refs(tmp_path):
    text = "<|object_ref_start|>the ship<|object_ref_end|><|box_start|>(100,200),(500,800)<|box_end|>"
    entries = [{"id": "q", "image": "a.png", "conversations": _conv("Find the ship.", text)}]
    _, recs = _run(tmp_path, entries, "qwen2vl", size=(300, 200))
    r = recs["q"]
    assert r["turns"][1]["text"] == "the ship<box>0</box>"
    assert r["boxes"] == [{"hbb": [30, 40, 150, 160]}]  # 100/1000*300, 200/1000*200, ...


def test_unit_boxes_only_with_decimals(tmp_path):
    entries = [{"id": "u", "image": "a.png", "conversations": _conv(
        "Where is the tank?", "It is at [0.25, 0.5, 0.75, 1.0]; scores [1, 2, 3, 4] stay.")}]
    _, recs = _run(tmp_path, entries, "unit", size=(400, 200))
    r = recs["u"]
    assert r["turns"][1]["text"] == "It is at <box>0</box>; scores [1, 2, 3, 4] stay."
    assert r["boxes"] == [{"hbb": [100, 100, 300, 200]}]


def test_convention_none_leaves_text(tmp_path):
    text = "{<10><20><50><60>} [0.1, 0.2, 0.3, 0.4]"
    entries = [{"id": "n", "image": "a.png", "conversations": _conv("Where?", text)}]
    _, recs = _run(tmp_path, entries, "none")
    assert recs["n"]["turns"][1]["text"] == text and "boxes" not in recs["n"]


def test_converted_boxes_render_in_the_model_convention(tmp_path):
    entries = [{"id": "r", "image": "a.png", "conversations": _conv("Where?", "Here {<10><20><50><60>}")}]
    _, recs = _run(tmp_path, entries, "geochat", size=(200, 100))
    conv = build_conversation(recs["r"], image_root=tmp_path / "images", resized_sizes=[(50, 100)],
                              codec=BoxCodec("abs"), seed=0, epoch=0, index=0, box_format="hbb")
    answer = "".join(p["text"] for p in conv.messages[-1]["content"] if p["type"] == "text")
    assert answer == "Here [10, 10, 50, 30]"  # original [20, 20, 100, 60] halved for the 100x50 image


def test_bad_conversations_are_counted_skips(tmp_path):
    entries = [
        {"id": "ok", "image": "a.png", "conversations": _conv("<image> q", "a")},
        {"id": "two_users", "image": "a.png", "conversations": _conv("q1", "q2", roles=("human", "human"))},
        {"id": "ends_user", "image": "a.png", "conversations": _conv("q", "a", "q2")},
        {"id": "no_image", "conversations": _conv("q", "a")},
        {"id": "two_placeholders", "image": "a.png", "conversations": _conv("<image><image> q", "a")},
        {"id": "missing_file", "image": "zzz.png", "conversations": _conv("q", "a")},
        {"id": "bad_box", "image": "a.png", "conversations": _conv("q", "{<60><20><50><60>}")},
        {"id": "empty_turn", "image": "a.png", "conversations": _conv("q", "  ")},
        {"id": "odd_role", "image": "a.png", "conversations": _conv("q", "a", roles=("human", "bot"))},
        "not an object",
    ]
    report, recs = _run(tmp_path, entries, "geochat")
    assert set(recs) == {"ok"}
    assert report.skipped == {"bad_turns": 4, "no_image": 1, "image_placeholders": 1, "image_missing": 1,
                              "bad_box": 1, "bad_entry": 1}
    assert any("two_users" in m for m in report.examples["bad_turns"])
    with pytest.raises(ConvertError) as exc:
        _run(tmp_path, entries[1:], "geochat", on_bad="raise")
    assert exc.value.reason == "bad_turns" and "two_users" in str(exc.value)


def test_sharegpt_variants_system_turn_repeated_ids_multi_image(tmp_path):
    entries = [
        {"id": 7, "images": ["a.png", "b.png"], "messages": [
            {"role": "system", "content": "You are a remote-sensing expert."},
            {"role": "user", "content": "<image> before, <image> after: what changed?"},
            {"role": "assistant", "content": "A new road."}]},
        {"id": 7, "image": "a.png", "conversations": _conv("Describe.", "Fields.")},
    ]
    report, recs = _run(tmp_path, entries, jsonl=True)
    assert set(recs) == {"7", "7#2"}
    assert [i["path"] for i in recs["7"]["images"]] == ["a.png", "b.png"]
    assert recs["7"]["turns"][0]["role"] == "user"
    assert report.fixed["system_turn_dropped"] == 1 and report.fixed["repeated_id_renamed"] == 1


def test_bad_options_and_cli(tmp_path, capsys):
    with pytest.raises(ConvertError, match="box_convention"):
        _run(tmp_path, [], "pixels")
    from cotrain.cli.convert import main as convert_main

    def cli_main(argv):
        return convert_main(["llava", *argv])

    _run(tmp_path, [{"id": "c", "image": "a.png", "conversations": _conv("Where?", "{<0><0><50><50>}")}])
    out = tmp_path / "cli.jsonl"
    assert cli_main([str(tmp_path / "conv.json"), str(out), "--image-root", str(tmp_path / "images"),
                     "--box-convention", "geochat"]) == 0
    (rec,) = read_records(out)
    assert rec["boxes"] == [{"hbb": [0, 0, 100, 50]}]
    assert cli_main([str(tmp_path / "missing.json"), str(out), "--image-root", "."]) == 2
    capsys.readouterr()
