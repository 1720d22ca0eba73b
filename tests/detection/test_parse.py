"""Tests of detection.parse: every format, every bad input of issue 5, and a never-raises property.

Golden values are hand-derived in the comments (or come from json.loads / difflib / the codec's
own rendering as an independent route), never from the parser itself.
"""

import difflib
import json
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cotrain.boxes import BoxCodec, format_detection_answer
from cotrain.dota.types import DOTA_V1_CLASSES
from cotrain.errors import ConfigError, RecordError
from detection.parse import LabelNormaliser, parse_response, parse_responses_file

DOTA = list(DOTA_V1_CLASSES)
DIOR_R = ["airplane", "airport", "baseballfield", "basketballcourt", "bridge", "chimney", "dam",
          "Expressway-Service-area", "Expressway-toll-station", "golffield", "groundtrackfield", "harbor",
          "overpass", "ship", "stadium", "storagetank", "tenniscourt", "trainstation", "vehicle", "windmill"]


def quads(result):
    return [(d.label, d.quad.tolist()) for d in result.objects]


def hbb_quad(x1, y1, x2, y2):
    return [x1, y1, x2, y1, x2, y2, x1, y2]


# ------------------------------------------------------------------------------------ plain

def test_plain_lines_both_orders_and_list_markers():
    text = "[10, 20, 30, 40] plane\nship: 50 60 70 80\n1. (5, 6, 15, 16) harbor\n- 1 2 3 4 bridge"
    r = parse_response(text, classes=DOTA)
    assert quads(r) == [("plane", hbb_quad(10, 20, 30, 40)), ("ship", hbb_quad(50, 60, 70, 80)),
                        ("harbor", hbb_quad(5, 6, 15, 16)), ("bridge", hbb_quad(1, 2, 3, 4))]
    d = r.diagnostics
    assert (d.format, d.lines, d.parsed, d.malformed) == ("plain", 4, 4, 0)
    assert all(o.score == 1.0 for o in r.objects)


def test_abs_codec_maps_back_to_original_pixels():
    # original 1000x500 shown to the model at 500x250: every rendered coordinate doubles
    r = parse_response("[10, 20, 30, 40] plane", codec=BoxCodec("abs"), orig_wh=(1000, 500), resized_wh=(500, 250))
    assert quads(r) == [("plane", hbb_quad(20, 40, 60, 80))]


def test_norm1000_codec_maps_back():
    # x: 500 / 1000 * 2000 = 1000; y: 500 / 1000 * 1000 = 500
    r = parse_response("[100, 200, 500, 500] ship", codec=BoxCodec("norm1000"), orig_wh=(2000, 1000))
    assert quads(r) == [("ship", hbb_quad(200, 200, 1000, 500))]


def test_obb_and_quad_kinds():
    # obb (50, 50, 20, 10, 0): w along x -> corners x 40..60, y 45..55, from the top-left clockwise
    r = parse_response("[50, 50, 20, 10, 0] ship", kind="obb")
    np.testing.assert_allclose(r.objects[0].quad, [40, 45, 60, 45, 60, 55, 40, 55], atol=1e-9)
    # angle 90: the w side is vertical -> x 45..55, y 40..60
    r = parse_response("[50, 50, 20, 10, 90] ship", kind="obb")
    np.testing.assert_allclose(r.objects[0].quad, [45, 40, 55, 40, 55, 60, 45, 60], atol=1e-9)
    # a diamond given counter-clockwise from the left vertex comes back from the top, clockwise
    r = parse_response("[10, 30, 30, 50, 50, 30, 30, 10] plane", kind="quad")
    assert quads(r) == [("plane", [30, 10, 50, 30, 30, 50, 10, 30])]


def test_kind_auto_decides_by_count():
    r = parse_response("[1, 2, 11, 12] plane\n[50, 50, 20, 10, 0] ship\n[0, 0, 10, 0, 10, 10, 0, 10] harbor")
    assert [o.label for o in r.objects] == ["plane", "ship", "harbor"]
    np.testing.assert_allclose(r.objects[1].quad, [40, 45, 60, 45, 60, 55, 40, 55], atol=1e-9)


@pytest.mark.parametrize("kind", ["hbb", "quad"])
def test_wrong_counts_are_malformed_never_guessed(kind):
    text = "\n".join(f"[{', '.join(str(10 * i) for i in range(1, n + 1))}] plane" for n in (5, 6, 7, 9))
    r = parse_response(text, kind=kind, classes=DOTA)
    assert r.objects == []
    assert r.diagnostics.malformed == 4 and r.diagnostics.lines == 4
    assert r.diagnostics.malformed_examples[0] == "[10, 20, 30, 40, 50] plane"


def test_five_numbers_are_fine_for_obb_but_not_four():
    r = parse_response("[50, 50, 20, 10, 0] ship\n[1, 2, 3, 4] ship", kind="obb")
    assert len(r.objects) == 1 and r.diagnostics.malformed == 1


def test_floats_negative_and_beyond_image():
    text = "[10.5, 20.25, 30.75, 40] plane\n[-5, 10, 120, 50] ship\n[150, 150, 200, 200] harbor\n[10, 10, 10, 50] bridge"
    r = parse_response(text, orig_wh=(100, 100), classes=DOTA)
    assert quads(r) == [("plane", hbb_quad(10.5, 20.25, 30.75, 40)), ("ship", hbb_quad(0, 10, 100, 50))]
    d = r.diagnostics
    # ship and harbor cross the border; harbor clipped to the corner point (100, 100) has no area,
    # the bridge is a zero-width box
    assert d.out_of_image_clipped == 2 and d.degenerate_dropped == 2 and d.parsed == 2


def test_negative_clipped_even_without_image_size():
    r = parse_response("[-4, 2, 10, 12] plane")
    assert quads(r) == [("plane", hbb_quad(0, 2, 10, 12))]
    assert r.diagnostics.out_of_image_clipped == 1


def test_cut_mid_line_keeps_complete_lines():
    r = parse_response("[10, 20, 30, 40] plane\n[50, 60, 7", classes=DOTA)
    assert quads(r) == [("plane", hbb_quad(10, 20, 30, 40))]
    assert r.diagnostics.truncated_tail and r.diagnostics.malformed == 1
    # the same bad line followed by a newline was not cut off by the generation limit
    assert not parse_response("[50, 60, 7\n[10, 20, 30, 40] plane\n").diagnostics.truncated_tail


@pytest.mark.parametrize("text", ["", "   \n\t", None])
def test_empty_response(text):
    r = parse_response(text)
    assert r.objects == [] and r.diagnostics.lines == 0 and r.diagnostics.malformed == 0


@pytest.mark.parametrize("text", ["There are none.", "there are none", "```\nThere are none.\n```", "[]",
                                  "```json\n[]\n```", "There are no planes in this image."])
def test_none_answers(text):
    r = parse_response(text, classes=DOTA)
    assert r.objects == [] and r.diagnostics.empty_answer and r.diagnostics.malformed == 0


def test_nonsense_is_counted():
    r = parse_response("I see a lot of things!\nasdf qwer zxcv\n3 planes", classes=DOTA)
    assert r.objects == [] and r.diagnostics.malformed == 3 and not r.diagnostics.empty_answer


def test_digits_inside_labels_are_not_coordinates():
    r = parse_response("[1, 2, 11, 12] Boeing737\n[3, 4, 13, 14] A321", classes=DOTA)
    assert [o.label for o in r.objects] == ["plane", "plane"]


def test_duplicates_dropped_or_kept():
    text = "[10, 20, 30, 40] plane\n[10, 20, 30, 40] Plane\n[10, 20, 30, 40] ship\n[10, 20, 30, 40] plane"
    r = parse_response(text, classes=DOTA)
    assert [o.label for o in r.objects] == ["plane", "ship"] and r.diagnostics.duplicates_removed == 2
    r = parse_response(text, classes=DOTA, drop_repeats=False)
    assert len(r.objects) == 4 and r.diagnostics.duplicates_removed == 0


# ----------------------------------------------------------------------------------- labels

@pytest.mark.parametrize("raw,expected", [
    ("Small Vehicles", "small-vehicle"), ("small_vehicle", "small-vehicle"), ("SMALL-VEHICLE", "small-vehicle"),
    ("harbors", "harbor"), ("storage tanks", "storage-tank"), ("aircraft", "plane"), ("airplanes", "plane"),
    ("vessel", "ship"), ("boats", "ship"), ("car", "small-vehicle"), ("truck", "large-vehicle"),
    ("buses", "large-vehicle"), ("oil tank", "storage-tank"), ("harbour", "harbor"),
    ("Tennis Courts", "tennis-court"), ("Dump Truck", "large-vehicle"), ("Football Field", "soccer-ball-field"),
])
def test_labels_to_dota(raw, expected):
    assert LabelNormaliser(DOTA)(raw) == (expected, False)


@pytest.mark.parametrize("raw,expected", [
    ("aircraft", "airplane"), ("plane", "airplane"), ("storage-tank", "storagetank"), ("car", "vehicle"),
    ("Tennis Court", "tenniscourt"), ("ground track field", "groundtrackfield"), ("expressway service area",
                                                                                 "Expressway-Service-area"),
])
def test_labels_to_dior_r(raw, expected):
    assert LabelNormaliser(DIOR_R)(raw) == (expected, False)


def test_unknown_labels_counted_and_dropped():
    r = parse_response("[1, 2, 11, 12] dog\n[1, 2, 11, 12] vehicle\n[3, 4, 13, 14] plane\n[5, 6, 15, 16]",
                       classes=DOTA)
    assert [o.label for o in r.objects] == ["plane"]
    # "vehicle" is broader than both DOTA vehicle classes: never guessed
    assert r.diagnostics.unknown_labels == {"dog": 1, "vehicle": 1, "<missing>": 1}


def test_fuzzy_cutoff():
    # difflib: "plain" vs "plane" share "pla" + "n" -> 2 * 4 / 10 = 0.8
    assert difflib.SequenceMatcher(None, "plain", "plane").ratio() == pytest.approx(0.8)
    text = "[1, 2, 11, 12] plain"
    assert parse_response(text, classes=DOTA).objects == []
    r = parse_response(text, classes=DOTA, fuzzy_cutoff=0.8)
    assert [o.label for o in r.objects] == ["plane"] and r.diagnostics.fuzzy_matched == 1
    assert parse_response(text, classes=DOTA, fuzzy_cutoff=0.81).diagnostics.unknown_labels == {"plain": 1}


def test_no_class_list_keeps_every_label_normalised():
    r = parse_response("[1, 2, 11, 12] Planes\n[1, 2, 11, 12] Wind Turbine")
    assert [o.label for o in r.objects] == ["plane", "wind-turbine"]


def test_custom_synonyms_replace_the_table():
    norm = LabelNormaliser(["plane"], synonyms={"jet": "plane"})
    assert norm("jet") == ("plane", False) and norm("aircraft") == (None, False)


# ------------------------------------------------------------------------------------- JSON

def test_valid_json_matches_json_loads():
    objs = [{"bbox_2d": [10, 20, 30, 40], "label": "plane"}, {"bbox_2d": [5, 5, 9, 9], "label": "ship"}]
    text = "```json\n" + json.dumps(objs, indent=1) + "\n```"
    expected = [(o["label"], hbb_quad(*o["bbox_2d"])) for o in json.loads(text.strip("`json\n"))]
    r = parse_response(text, classes=DOTA)
    assert quads(r) == expected and r.diagnostics.format == "json" and r.diagnostics.lines == 2


def test_json_repairs():
    text = ('Here you go:\n```json\n[\n  {"bbox_2d": (10, 20, 30, 40), "label": "plane"},,\n'
            '  {"bbox_2d": [50, 60, 70, 80], "label": "ship"}\n'       # missing comma
            "  {'bbox_2d': [1, 2, 3, 4], 'label': 'car'},\n"           # single quotes
            '  {"bbox_2d": [5, 6, 7, 8], "label": "harbor",\n'         # missing closing brace
            '  {"bbox_2d": [9, 9, 19, 19] "label": "bridge"}\n'        # missing comma inside
            "]\n```\nHope this helps! {not json")
    r = parse_response(text, classes=DOTA)
    assert quads(r) == [("plane", hbb_quad(10, 20, 30, 40)), ("ship", hbb_quad(50, 60, 70, 80)),
                        ("small-vehicle", hbb_quad(1, 2, 3, 4)), ("harbor", hbb_quad(5, 6, 7, 8)),
                        ("bridge", hbb_quad(9, 9, 19, 19))]
    # the trailing "{not json" is an object without a box, cut off by the end of the text
    assert r.diagnostics.malformed == 1


def test_cut_off_json_recovers_complete_objects():
    text = '```json\n[\n\t{"bbox_2d": [10, 20, 30, 40], "label": "plane"},\n\t{"bbox_2d": [50, 60, 7'
    r = parse_response(text, classes=DOTA)
    assert quads(r) == [("plane", hbb_quad(10, 20, 30, 40))]
    d = r.diagnostics
    assert d.truncated_tail and d.malformed == 1 and d.malformed_examples == ['{"bbox_2d": [50, 60, 7']
    # cut inside the label: the object is not kept with a half label
    r = parse_response('[{"bbox_2d": [10, 20, 30, 40], "label": "pla', classes=DOTA)
    assert r.objects == [] and r.diagnostics.truncated_tail


def test_cut_off_json_inside_a_wrapper_object():
    text = '{"objects": [{"bbox_2d": [1, 2, 11, 12], "label": "plane"}, {"bbox_2d": [5, 6, 15, 16], "label": "sh'
    r = parse_response(text, classes=DOTA)
    assert quads(r) == [("plane", hbb_quad(1, 2, 11, 12))]
    assert r.diagnostics.truncated_tail and r.diagnostics.malformed == 1 and r.diagnostics.lines == 2


def test_json_keys_for_each_kind():
    text = ('[{"oriented bbox": [50, 50, 20, 10, 0], "label": "ship"},'
            ' {"quad bbox": [10, 30, 30, 50, 50, 30, 30, 10], "label": "plane"},'
            ' {"bbox": [[1, 2], [11, 12]], "category": "harbor"},'
            ' {"label": "bridge"}, {"bbox_2d": ["a", 2, 3, 4], "label": "ship"}]')
    r = parse_response(text, classes=DOTA)
    assert [o.label for o in r.objects] == ["ship", "plane", "harbor"]
    np.testing.assert_allclose(r.objects[0].quad, [40, 45, 60, 45, 60, 55, 40, 55], atol=1e-9)
    assert r.objects[1].quad.tolist() == [30, 10, 50, 30, 30, 50, 10, 30]
    assert r.objects[2].quad.tolist() == hbb_quad(1, 2, 11, 12)
    assert r.diagnostics.malformed == 2 and r.diagnostics.lines == 5


def test_json_wrong_count_for_kind_is_malformed():
    r = parse_response('[{"bbox_2d": [1, 2, 3, 4, 5, 6], "label": "plane"}]', kind="hbb", classes=DOTA)
    assert r.objects == [] and r.diagnostics.malformed == 1


@pytest.mark.parametrize("kind", ["hbb", "obb", "quad"])
@pytest.mark.parametrize("style", ["plain", "json"])
@pytest.mark.parametrize("convention", ["abs", "norm1000"])
def test_round_trip_through_the_training_answer(kind, style, convention):
    # Independent route: the training target text of known objects; parsing must give the objects
    # back within the codec's quantisation bound (one rendered unit in original pixels).
    orig, resized = (1200, 900), (616, 462)
    objects = [{"label": "plane", "quad": [100, 100, 300, 150, 280, 260, 80, 210]},
               {"label": "ship", "hbb": [500.0, 400.0, 700.0, 520.0]}]
    codec = BoxCodec(convention)
    text = format_detection_answer(objects, kind, codec, orig, resized, style=style)
    r = parse_response(text, kind=kind, codec=codec, orig_wh=orig, resized_wh=resized, classes=DOTA)
    unit = max(orig[0] / resized[0], orig[1] / resized[1]) if convention == "abs" else max(orig) / 1000
    by_label = {o.label: o.quad for o in r.objects}
    assert sorted(by_label) == ["plane", "ship"]
    for o in objects:
        got = by_label[o["label"]]
        if kind == "hbb" or "hbb" in o:  # compare enclosing boxes: obb/hbb change the shape itself
            xs, ys = got[0::2], got[1::2]
            src = o.get("quad") or [o["hbb"][0], o["hbb"][1], o["hbb"][2], o["hbb"][3]]
            want = [min(src[0::2]), min(src[1::2]), max(src[0::2]), max(src[1::2])]
            np.testing.assert_allclose([xs.min(), ys.min(), xs.max(), ys.max()], want, atol=2 * unit)
        elif kind == "quad":
            np.testing.assert_allclose(got, o["quad"], atol=unit)


# ------------------------------------------------------------------------------- token formats

def test_qwen2_box_tokens_norm1000():
    # orig 2000x1000: x 100/1000*2000 = 200, y 200/1000*1000 = 200, x 300 -> 600, y 400 -> 400
    text = ("<|object_ref_start|>planes<|object_ref_end|><|box_start|>(100,200),(300,400)<|box_end|>"
            "<|box_start|>(10,20),(30,40)<|box_end|>"
            "<|object_ref_start|>ship<|object_ref_end|><|quad_start|>(500,100),(600,200),(500,300),(400,200)<|quad_end|>"
            "<|object_ref_start|>ship<|object_ref_end|><|box_start|>(1,2),(3")
    r = parse_response(text, orig_wh=(2000, 1000), classes=DOTA)
    assert quads(r) == [("plane", hbb_quad(200, 200, 600, 400)), ("plane", hbb_quad(20, 20, 60, 40)),
                        ("ship", [1000, 100, 1200, 200, 1000, 300, 800, 200])]
    assert r.diagnostics.format == "qwen_tokens" and r.diagnostics.truncated_tail


def test_florence_loc_tokens():
    # Florence-2 dequantises bin k to (k + 0.5) * side / 1000; orig 1000x500
    text = "plane<loc_100><loc_200><loc_300><loc_400>ship<loc_500><loc_0><loc_600><loc_100><loc_500><loc_200>" \
           "<loc_400><loc_100></s>harbor<loc_1><loc_2><loc_3>"
    r = parse_response(text, orig_wh=(1000, 500), classes=DOTA)
    assert [o.label for o in r.objects] == ["plane", "ship"]
    np.testing.assert_allclose(r.objects[0].quad, hbb_quad(100.5, 100.25, 300.5, 200.25))
    np.testing.assert_allclose(r.objects[1].quad, [500.5, 0.25, 600.5, 50.25, 500.5, 100.25, 400.5, 50.25])
    assert r.diagnostics.malformed == 1 and r.diagnostics.format == "florence"


# ---------------------------------------------------------------------------- never raises

_NUMBER = st.one_of(st.integers(-50, 2000).map(str), st.floats(-1e3, 1e4, allow_nan=False).map(lambda v: f"{v:.2f}"),
                    st.sampled_from(["1e999", "nan", "-0", "1e5", "", "0x10", "１２"]))
_LABEL = st.one_of(st.sampled_from(DOTA + ["Planes", "aircraft", "dog", "", "small vehicle", "b737"]), st.text(max_size=8))
_SEP = st.sampled_from([", ", ",", " ", ",,", "  ", "\t"])


@st.composite
def near_valid(draw):
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        nums = draw(st.lists(_NUMBER, min_size=0, max_size=10))
        coords = draw(_SEP).join(nums)
        left, right = draw(st.sampled_from(["[]", "()", "  ", "[)", "{}"]))
        box = left + coords + right
        label = draw(_LABEL)
        form = draw(st.sampled_from(["plain", "label_first", "json", "qwen", "florence"]))
        if form == "plain":
            lines.append(f"{box} {label}")
        elif form == "label_first":
            lines.append(f"{label}: {box}")
        elif form == "json":
            key = draw(st.sampled_from(["bbox_2d", "oriented bbox", "quad bbox", "bbox", "box", "x"]))
            lines.append('{"%s": %s, "label": "%s"}%s' % (key, box, label, draw(st.sampled_from([",", "", ",,", "}"]))))
        elif form == "qwen":
            lines.append(f"<|object_ref_start|>{label}<|object_ref_end|><|box_start|>{box}<|box_end|>")
        else:
            lines.append(label + "".join(f"<loc_{n}>" for n in nums))
    text = draw(st.sampled_from(["", "```json\n[\n", "Sure: "])) + "\n".join(lines)
    cut = draw(st.integers(0, len(text)))
    return text[:cut] if draw(st.booleans()) else text


def _check_invariants(r, orig_wh, classes):
    d = r.diagnostics
    assert d.parsed == len(r.objects)
    for o in r.objects:
        assert o.quad.shape == (8,) and np.all(np.isfinite(o.quad)) and o.score == 1.0
        if orig_wh is not None:
            assert o.quad[0::2].min() >= 0 and o.quad[0::2].max() <= orig_wh[0]
            assert o.quad[1::2].min() >= 0 and o.quad[1::2].max() <= orig_wh[1]
        if classes is not None:
            assert o.label in classes


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400), st.sampled_from(["auto", "hbb", "obb", "quad"]))
def test_never_raises_on_arbitrary_text(text, kind):
    r = parse_response(text, kind=kind, classes=DOTA, orig_wh=(800, 600))
    _check_invariants(r, (800, 600), DOTA)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(near_valid(), st.sampled_from(["auto", "hbb", "obb", "quad"]), st.sampled_from(["abs", "norm1000", None]),
       st.sampled_from([None, 0.6]))
def test_never_raises_on_near_valid_text(text, kind, convention, cutoff):
    codec = BoxCodec(convention) if convention else None
    r = parse_response(text, kind=kind, codec=codec, orig_wh=(640, 480), resized_wh=(320, 240), classes=DOTA,
                       fuzzy_cutoff=cutoff)
    _check_invariants(r, (640, 480), DOTA)


@pytest.mark.parametrize("text", ["1" * 100_000 + "x", "[" * 20_000, "{" * 20_000, "(" * 5_000 + "1" * 5_000,
                                  "[1, 2, 3, 4] plane " + " " * 50_000 + "x", '{"a": "' + "\\" * 30_000,
                                  "<|box_start|>" * 3_000, "<loc_1>" * 20_000],
                         ids=["digits", "brackets", "braces", "parens_digits", "spaces", "backslashes", "box_starts",
                              "locs"])
def test_adversarial_inputs_are_fast(text):
    t0 = time.perf_counter()
    parse_response(text, classes=DOTA, orig_wh=(100, 100))
    assert time.perf_counter() - t0 < 3.0


# ------------------------------------------------------------------------------- arguments

def test_argument_errors_are_config_errors():
    with pytest.raises(ConfigError, match="unknown box kind"):
        parse_response("", kind="rbox")
    with pytest.raises(ConfigError, match="orig_wh"):
        parse_response("", codec=BoxCodec("norm1000"))
    with pytest.raises(ConfigError, match="resized_wh"):
        parse_response("", codec=BoxCodec("abs"), orig_wh=(10, 10))
    with pytest.raises(ConfigError, match="fuzzy_cutoff"):
        parse_response("", classes=DOTA, fuzzy_cutoff=1.5)


# ------------------------------------------------------------------------------------ files

def test_responses_file(tmp_path):
    path = tmp_path / "responses.jsonl"
    rows = [
        json.dumps({"id": "P0001", "response": "[10, 20, 30, 40] plane", "resized": [250, 500],
                    "orig_wh": [1000, 500]}),
        "this is not json",
        json.dumps({"id": "P0002", "response": "There are none.", "resized_wh": [500, 250], "orig_wh": [1000, 500]}),
        json.dumps({"response": "[1, 2, 3, 4] ship"}),
        "",
        json.dumps({"id": "P0001", "response": "[50, 50, 60, 60] ship\n[1, 2, 3] x", "resized": [250, 500],
                    "orig_wh": [1000, 500]}),
        json.dumps({"id": 7, "response": "[5, 5, 10, 10] harbor", "resized": [100, 100]}),
        json.dumps({"id": "P0003", "response": "[5, 5, 10, 10] harbor"}),
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    dets, summary = parse_responses_file(path, codec=BoxCodec("abs"), classes=DOTA, image_sizes={"7": (200, 200)})
    # P0001: both lines add up, each coordinate doubled (500 -> 1000 wide); "7": 100 -> 200 wide
    assert {k: [(d.label, d.quad.tolist()) for d in v] for k, v in dets.items()} == {
        "P0001": [("plane", hbb_quad(20, 40, 60, 80)), ("ship", hbb_quad(100, 100, 120, 120))],
        "P0002": [], "7": [("harbor", hbb_quad(10, 10, 20, 20))]}
    assert summary.bad_lines == 3 and summary.repeated_ids == 1 and summary.responses == 4
    assert summary.empty_answers == 1 and summary.malformed == 1 and summary.objects == 3
    assert summary.bad_line_messages[0].startswith(f"{path}:2:")
    assert summary.bad_line_messages[1].startswith(f"{path}:4:")
    assert summary.bad_line_messages[2].startswith(f"{path}:8: record 'P0003'") and "orig_wh" in summary.bad_line_messages[2]
    with pytest.raises(RecordError, match=":2:"):
        parse_responses_file(path, codec=BoxCodec("abs"), classes=DOTA, on_bad_line="raise")


def test_responses_file_without_codec_takes_original_pixels(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"id": "a", "response": "[1, 2, 11, 12] plane"}) + "\n", encoding="utf-8")
    dets, summary = parse_responses_file(path, classes=DOTA)
    assert dets["a"][0].quad.tolist() == hbb_quad(1, 2, 11, 12) and summary.bad_lines == 0


# ------------------------------------------------------------- answers the task builders write

CODEC_OBJECTS = [
    {"label": "ship", "hbb": [10, 10, 20, 20]},
    {"label": "car", "hbb": [50, 30, 60, 40]},
    {"label": "car", "hbb": [10, 30, 20, 40]},
    {"label": "car", "quad": [80, 5, 90, 5, 90, 15, 80, 15]},
]


@pytest.mark.parametrize("convention, kind, style", [("abs", "hbb", "plain"), ("norm1000", "quad", "json"),
                                                     ("abs", "quad", "plain"), ("norm1000", "hbb", "json")])
def test_codec_written_answers_parse_back_to_the_objects(convention, kind, style):
    """format_detection_answer (training targets) -> parse_response: every object, in original pixels."""
    codec = BoxCodec(convention)
    text = format_detection_answer(CODEC_OBJECTS, kind, codec, (100, 100), (200, 200), style=style)
    got = parse_response(text, kind=kind, codec=codec, orig_wh=(100, 100), resized_wh=(200, 200),
                         classes=["car", "ship"])
    assert [d.label for d in got.objects] == ["car", "car", "car", "ship"]  # class, then top-most, then left-most
    want = [hbb_quad(80, 5, 90, 15), hbb_quad(10, 30, 20, 40), hbb_quad(50, 30, 60, 40), hbb_quad(10, 10, 20, 20)]
    for d, w in zip(got.objects, want):
        assert sorted(map(tuple, np.asarray(d.quad).reshape(4, 2).round(6).tolist())) == \
            sorted(map(tuple, np.asarray(w, dtype=float).reshape(4, 2).tolist()))
    assert parse_response(format_detection_answer([], kind, codec, (100, 100), (200, 200), style=style),
                          kind=kind, codec=codec, orig_wh=(100, 100), resized_wh=(200, 200)).objects == []


def test_cut_off_json_keeps_the_complete_objects():
    text = '```json\n[\n\t{"bbox_2d": [1, 2, 3, 4], "label": "storage tank"},\n\t{"bbox_2d": [5, 6, 7, 8], "lab'
    got = parse_response(text, kind="hbb", codec=BoxCodec("abs"), orig_wh=(10, 10), resized_wh=(10, 10))
    assert quads(got) == [("storage-tank", hbb_quad(1, 2, 3, 4))]  # the label canonical (DOTA name)
