"""Record validator and JSONL reader: every schema violation names file:line, the field and a fix."""

import copy
import json

import pytest

from cotrain.errors import RecordError
from cotrain.records import TASKS, iter_records, read_records, validate_record

IMG = {"path": "scene/a.png", "modality": "rgb", "width": 100, "height": 80}

VALID = {
    "classification": {"label": "forest", "classes": ["forest", "river"]},
    "vqa": {"question": "Is there a road?", "answer": "yes", "answer_type": "yes_no"},
    "mcq": {"question": "What is it?", "choices": ["a", "b", "c"], "answer": 2},
    "grounding": {"expression": "the red roof", "target": {"hbb": [10, 10, 30, 20]}, "point": [20, 15]},
    "detection": {"objects": [{"label": "car", "quad": [10, 10, 20, 10, 20, 15, 10, 15], "difficult": 0},
                              {"label": "ship", "hbb": [50, 50, 60, 70]}], "classes": ["car", "ship"]},
    "captioning": {"captions": ["A forest."], "caption_style": "scene"},
    "zoom_vqa": {"question": "What colour is the car?", "answer": "red", "regions": [{"hbb": [1, 1, 9, 9]}]},
    "conversation": {"boxes": [{"hbb": [5, 5, 20, 20]}],
                     "turns": [{"role": "user", "text": "<image>\nWhat is at <box>0</box>?"},
                               {"role": "assistant", "text": "A house."}]},
    "triplet": {"images": [dict(IMG), {**IMG, "path": "scene/a_ir.png", "modality": "ir"}], "captions": ["A forest."],
                "ir_captions": ["Warm ground under cool trees."]},
}


def record(kind, **changes):
    rec = {"id": f"{kind}-1", "task": kind, "images": [dict(IMG)]}
    rec.update(copy.deepcopy(VALID[kind]))
    rec.update(changes)
    return rec


def write_jsonl(tmp_path, lines):
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def test_every_task_has_a_valid_example():
    assert set(VALID) == set(TASKS)
    for task in TASKS:
        assert validate_record(record(task))["task"] == task


def test_read_records_skips_blank_lines(tmp_path):
    path = write_jsonl(tmp_path, [record("vqa"), "", "   ", record("mcq")])
    assert [r["id"] for r in read_records(path)] == ["vqa-1", "mcq-1"]
    assert [r["id"] for r in iter_records(path)] == ["vqa-1", "mcq-1"]


def test_tolerance_of_one_pixel_outside_the_image_is_accepted():
    validate_record(record("grounding", target={"hbb": [-0.9, 0, 100.9, 80.9]}))


def test_bow_tie_vertex_order_is_not_zero_area():
    validate_record(record("grounding", target={"quad": [10, 10, 20, 20, 20, 10, 10, 20]}))


def _mutate(task, fn):
    rec = record(task)
    fn(rec)
    return rec


def _set(path_keys, value):
    def fn(rec):
        obj = rec
        for k in path_keys[:-1]:
            obj = obj[k]
        obj[path_keys[-1]] = value
    return fn


def _del(key):
    return lambda rec: rec.pop(key)


NAN, INF = float("nan"), float("inf")

BAD = [
    ("vqa", _del("id"), "'id'"),
    ("vqa", _set(["id"], 7), "'id'"),
    ("vqa", _set(["task"], "segmentation"), "'task'"),
    ("vqa", _del("images"), "'images'"),
    ("vqa", _set(["images"], []), "'images'"),
    ("vqa", _set(["images", 0, "path"], ""), "images[0].path"),
    ("vqa", _set(["images", 0, "modality"], "thermal"), "images[0].modality"),
    ("vqa", _set(["images", 0, "width"], 0), "images[0].width"),
    ("vqa", _set(["images", 0, "height"], "80"), "images[0].height"),
    ("vqa", _set(["images", 0, "width"], True), "images[0].width"),
    ("classification", _del("label"), "'label'"),
    ("classification", _set(["label"], "desert"), "'label'"),
    ("vqa", _del("question"), "'question'"),
    ("vqa", _set(["answer"], 3), "'answer'"),
    ("vqa", _set(["answer_type"], "count"), "'answer_type'"),
    ("mcq", _set(["answer"], 3), "'answer'"),
    ("mcq", _set(["answer"], -1), "'answer'"),
    ("mcq", _set(["answer"], True), "'answer'"),
    ("mcq", _set(["choices"], ["only"]), "'choices'"),
    ("mcq", _set(["choices"], [str(i) for i in range(27)]), "'choices'"),
    ("grounding", _del("expression"), "'expression'"),
    ("grounding", _del("target"), "'target'"),
    ("grounding", _set(["target"], {"hbb": [1, 2, 3]}), "target.hbb"),
    ("grounding", _set(["target"], {"hbb": [1, 2, 3, 4], "quad": [0] * 8}), "'target'"),
    ("grounding", _set(["target"], {"hbb": [1, NAN, 3, 4]}), "target.hbb"),
    ("grounding", _set(["target"], {"hbb": [1, 2, INF, 4]}), "target.hbb"),
    ("grounding", _set(["target"], {"hbb": [30, 2, 10, 4]}), "target.hbb"),
    ("grounding", _set(["target"], {"hbb": [1, 20, 10, 20]}), "target.hbb"),
    ("grounding", _set(["target"], {"quad": [0, 0, 10, 10, 20, 20, 30, 30]}), "target.quad"),
    ("grounding", _set(["target"], {"quad": [0, 0, 10, 0, 10, 10, 0, "10"]}), "target.quad"),
    ("grounding", _set(["target"], {"hbb": [10, 10, 102, 20]}), "target.hbb"),
    ("grounding", _set(["target"], {"hbb": [10, -2, 30, 20]}), "target.hbb"),
    ("grounding", _set(["point"], [500, 5]), "'point'"),
    ("detection", _set(["objects"], {"label": "car"}), "'objects'"),
    ("detection", _set(["objects", 0, "label"], "truck"), "objects[0].label"),
    ("detection", _set(["objects", 0, "difficult"], 3), "objects[0].difficult"),
    ("detection", _set(["objects", 1, "hbb"], [50, 50, 60]), "objects[1].hbb"),
    ("detection", _set(["objects", 1, "image"], 1), "objects[1].image"),
    ("captioning", _set(["captions"], []), "'captions'"),
    ("captioning", _set(["captions"], ["ok", ""]), "captions[1]"),
    ("captioning", _set(["caption_style"], "poetic"), "'caption_style'"),
    ("zoom_vqa", _set(["regions"], []), "'regions'"),
    ("zoom_vqa", _set(["regions"], [{"quad": [1, 1, 9, 1, 9, 9, 1, 9]}]), "regions[0]"),
    ("conversation", _set(["turns"], []), "'turns'"),
    ("conversation", _set(["turns", 1, "role"], "user"), "turns[1].role"),
    ("conversation", _set(["turns", 0, "role"], "assistant"), "turns[0].role"),
    ("conversation", lambda r: r["turns"].pop(), "'turns'"),
    ("conversation", _set(["turns", 0, "text"], "What is at <box>3</box>?"), "turns[0].text"),
    ("conversation", _set(["turns", 1, "text"], "At <box>x</box>."), "turns[1].text"),
    ("conversation", _set(["turns", 0, "text"], "<image><image> compare"), "'turns'"),
    ("conversation", _set(["turns", 1, "text"], "<image>"), "turns[1].text"),
    ("conversation", _set(["boxes"], [{"hbb": [5, 5, 200, 20]}]), "boxes[0].hbb"),
]


@pytest.mark.parametrize("task,mutation,field", BAD, ids=[f"{t}-{f}-{i}" for i, (t, _, f) in enumerate(BAD)])
def test_bad_record_names_file_line_field_and_fix(tmp_path, task, mutation, field):
    path = write_jsonl(tmp_path, [record("vqa", id="ok-1"), "", _mutate(task, mutation)])
    with pytest.raises(RecordError) as e:
        read_records(path)
    msg = str(e.value)
    assert f"{path}:3:" in msg, msg          # line 3: the blank line is counted
    assert field in msg, msg
    assert e.value.line == 3
    # A fix follows the problem ("<problem>. <Fix>."): the message has at least two sentences.
    assert msg.rstrip(".").count(". ") >= 1, msg


def test_unknown_task_lists_valid_tasks():
    with pytest.raises(RecordError) as e:
        validate_record(record("vqa", task="segmentation"))
    assert all(t in str(e.value) for t in TASKS)


def test_record_id_is_named(tmp_path):
    path = write_jsonl(tmp_path, [record("mcq", id="scene-42", answer=9)])
    with pytest.raises(RecordError, match="scene-42"):
        read_records(path)


def test_invalid_json_and_non_object_lines(tmp_path):
    path = write_jsonl(tmp_path, [record("vqa"), '{"id": "x", "task": ', record("mcq")])
    with pytest.raises(RecordError, match=rf"{path}:2: invalid JSON"):
        read_records(path)
    path = write_jsonl(tmp_path, ["[1, 2]"])
    with pytest.raises(RecordError, match=rf"{path}:1: field '<record>'"):
        read_records(path)


def test_duplicate_ids(tmp_path):
    path = write_jsonl(tmp_path, [record("vqa"), record("mcq", id="a"), record("vqa")])
    with pytest.raises(RecordError, match=rf"{path}:3: record 'vqa-1': field 'id': duplicate id, first used on line 1"):
        read_records(path)


def test_extreme_aspect_ratio_is_rejected_at_validation():
    from cotrain.errors import RecordError
    from cotrain.records import validate_record

    rec = {"id": "thin", "task": "classification", "label": "x",
           "images": [{"path": "p.png", "modality": "rgb", "width": 4020, "height": 20}]}
    with pytest.raises(RecordError, match=r"f.jsonl:3.*'thin'.*images\[0\].*aspect ratio 201 > 200"):
        validate_record(rec, path="f.jsonl", line=3)
    rec["images"][0]["width"] = 4000  # exactly 200 is allowed, as in transformers
    validate_record(rec, path="f.jsonl", line=3)


# ---------------------------------------------------------------- quad shape ----
# Decision (records.py docstring): any vertex order of a CONVEX quad is accepted (order_quad turns a
# bow-tie into the convex outline); a non-convex quad (an arrowhead) is rejected.

@pytest.mark.parametrize("quad", [
    [10, 10, 30, 30, 30, 10, 10, 30],   # bow-tie order of the square 10..30: crossing edges
    [30, 30, 10, 10, 10, 30, 30, 10],   # another crossing order of the same square
    [10, 10, 20, 10, 30, 10, 20, 30],   # triangle with a redundant vertex on its top edge
])
def test_convex_quads_in_any_vertex_order_are_accepted(quad):
    validate_record(record("detection", objects=[{"label": "car", "quad": quad}], classes=["car"]))


def test_self_intersecting_non_convex_quad_is_rejected(tmp_path):
    # (20, 15) lies inside the triangle (10, 10), (30, 10), (20, 40): whatever the order, the
    # outline is an arrowhead (area 300 - 50 = 250 against the hull's 300) or crosses itself.
    arrow = [10, 10, 20, 40, 30, 10, 20, 15]
    path = write_jsonl(tmp_path, [record("grounding", target={"quad": arrow})])
    with pytest.raises(RecordError) as e:
        read_records(path)
    msg = str(e.value)
    assert f"{path}:1:" in msg and "target.quad" in msg and "not convex" in msg and "Re-annotate" in msg


# ---------------------------------------------------------------- encoding ----

def test_non_utf8_bytes_name_file_line_and_byte(tmp_path):
    good = json.dumps(record("vqa", id="a")).encode()
    bad = json.dumps(record("vqa", id="b", answer="caf\u00e9")).encode().replace(b"caf\\u00e9", b"caf\xe9")
    assert b"\xe9" in bad
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(good + b"\n" + bad + b"\n")
    with pytest.raises(RecordError) as e:
        read_records(path)
    msg = str(e.value)
    col = bad.index(b"\xe9")  # the byte offset within line 2, found independently of the reader
    assert f"{path}:2: not UTF-8 at byte {col}" in msg, msg
    assert "\\xe9" in msg and "iconv" in msg
    assert e.value.line == 2


def test_utf8_text_and_byte_order_mark_are_read(tmp_path):
    path = tmp_path / "bom.jsonl"
    rec = record("vqa", id="a", answer="caf\u00e9 \u6e2f")
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(rec, ensure_ascii=False).encode("utf-8") + b"\r\n")
    assert read_records(path)[0]["answer"] == "caf\u00e9 \u6e2f"



def test_triplet_records():
    rgb, ir = VALID["triplet"]["images"]
    no_ir = record("triplet")
    del no_ir["ir_captions"]
    assert validate_record(no_ir)["task"] == "triplet"  # IR-aware captions are optional
    bad = [
        (record("triplet", images=[rgb]), "images", r"exactly \[rgb, ir\]"),
        (record("triplet", images=[ir, rgb]), "images", "RGB image first"),
        (record("triplet", images=[rgb, {**ir, "width": 99}]), "images[1]", "99x80"),
        (record("triplet", captions=[" "]), "captions[0]", "non-empty"),
        (record("triplet", ir_captions=[]), "ir_captions", "at least 1"),
    ]
    for rec, field, msg in bad:
        with pytest.raises(RecordError, match=msg) as e:
            validate_record(rec)
        assert e.value.field == field
