"""Zoom-chain training data: native crops from the original file, overview at the model's size,
tool calls that map back to their windows, several zooms for several regions, records that
validate and encode within the recipe's length, counted skips, determinism."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf_smart_resize

from cotrain.boxes import BoxCodec
from cotrain.config import load_config
from cotrain.data.dataset import LoadedDataset, SampleBuilder
from cotrain.data.encoder import ChatEncoder
from cotrain.data.synthetic import generate_demo_data
from cotrain.model.families import get_family
from cotrain.model.processor import build_offline_processor
from cotrain.records import read_records, validate_record
from cotrain.tasks import build_conversation
from zoom_chain import protocol as P
from cotrain.raster import open_uhr
from zoom_chain.training_data import build_chain_records, detection_question

RECIPE = Path(__file__).resolve().parents[2] / "data_recipes" / "zoom_demo.yaml"
LO, HI = 3136, 50176  # the recipe's pixel limits (checked against the recipe below)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Small synthetic data with one 2048 px tiled-TIFF large image, and its chains (qwen2_5_vl, recipe limits)."""
    root = tmp_path_factory.mktemp("demo")
    generate_demo_data(root, n_scenes=30, n_large=1, large_size=2048, progress=False)
    zoom = read_records(root / "records" / "syn_zoom_train.jsonl")
    det = read_records(root / "records" / "syn_det_train.jsonl")
    out = tmp_path_factory.mktemp("chains")
    recs, skips = build_chain_records(zoom + det, root, out, family="qwen2_5_vl", min_pixels=LO, max_pixels=HI)
    return {"root": root, "zoom": zoom, "det": det, "out": out, "recs": recs, "skips": skips}


def _hf_size(w, h, lo=LO, hi=HI):
    """(w, h) transformers' own smart_resize gives (the reference for what the model sees)."""
    rh, rw = hf_smart_resize(h, w, factor=28, min_pixels=lo, max_pixels=hi)
    return rw, rh


def test_recipe_limits_match_the_builder_defaults():
    cfg = load_config(RECIPE)
    assert (cfg.data.min_pixels, cfg.data.max_pixels, cfg.model.tiny.family) == (LO, HI, "qwen2_5_vl")
    ds = next(d for d in cfg.data.datasets if d.name == "zoom_chain")
    assert ds.box_format == "hbb" and ds.random_resize == 0.0 and ds.min_pixels is None and ds.max_pixels is None
    from zoom_chain.cli import make_zoom_data as tool

    assert tool.DEFAULTS["min_pixels"] == LO and tool.DEFAULTS["max_pixels"] == HI
    assert tool.DEFAULTS["family"] == "qwen2_5_vl"


def test_every_input_becomes_a_chain_or_a_counted_skip(demo):
    recs, skips = demo["recs"], demo["skips"]
    n_in = len(demo["zoom"]) + len(demo["det"])
    assert len(recs) + sum(skips.values()) == n_in
    assert set(skips) <= {"no_question"}  # detection scenes without objects
    ids = [r["id"] for r in recs]
    assert len(set(ids)) == len(ids)
    assert {r["id"] for r in recs if r["zoom_chain"]["source_task"] == "zoom_vqa"} == \
        {f"{r['id']}-chain" for r in demo["zoom"]}
    assert sum(r["zoom_chain"]["source_task"] == "detection" for r in recs) >= len(demo["det"]) // 2


def test_crops_are_original_pixels_not_an_upsampled_overview(demo):
    out, root = demo["out"], demo["root"]
    recs = [r for r in demo["recs"] if r["zoom_chain"]["source_task"] == "zoom_vqa"]
    src = root / recs[0]["zoom_chain"]["image"]
    full = tifffile.imread(src)  # independent route: the whole file decoded by tifffile
    w, h = recs[0]["zoom_chain"]["image_size"]
    ov = Image.open(out / recs[0]["images"][0]["path"]).convert("RGB")
    upsampled = np.asarray(ov.resize((w, h), Image.BICUBIC)).astype(int)
    n = 0
    with open_uhr(src) as im:
        for rec in recs:
            for img, win in zip(rec["images"][1:], rec["zoom_chain"]["windows"]):
                x0, y0, x1, y1 = win
                crop = np.asarray(Image.open(out / img["path"]))
                assert crop.shape == (y1 - y0, x1 - x0, 3) == (img["height"], img["width"], 3)
                np.testing.assert_array_equal(crop, full[y0:y1, x0:x1])
                np.testing.assert_array_equal(crop, np.asarray(im.read_window(x0, y0, x1, y1)))
                # the overview's detail blown up to the window is visibly different (mean |diff| in levels)
                assert np.abs(crop.astype(int) - upsampled[y0:y1, x0:x1]).mean() > 2.0
                n += 1
    assert n >= len(recs)


def test_overview_is_written_at_the_model_size_and_the_engine_keeps_it(demo):
    out = demo["out"]
    cfg = load_config(RECIPE)
    fam = get_family("qwen2_5_vl")
    builder = SampleBuilder(ChatEncoder(build_offline_processor("qwen2_5_vl"), fam), fam, cfg.data)
    ds = dataclasses.replace(next(d for d in cfg.data.datasets if d.name == "zoom_chain"), image_root=str(out))
    ld = LoadedDataset(ds, demo["recs"])
    seen = set()
    for i, rec in enumerate(demo["recs"]):
        w, h = rec["zoom_chain"]["image_size"]
        ov = rec["images"][0]
        assert (ov["width"], ov["height"]) == _hf_size(w, h)
        assert Image.open(out / ov["path"]).size == _hf_size(w, h)
        conv = builder.conversation(rec, ld, 0, i)
        assert conv.images[0]["resized_wh"] == [ov["width"], ov["height"]]  # smart_resize is the identity on it
        for img, native in zip(conv.images[1:], rec["zoom_chain"]["native"]):
            rw, rh = _hf_size(img["width"], img["height"])
            assert img["resized_wh"] == [rw, rh]
            assert native == ((rw, rh) == (img["width"], img["height"]))
        if ov["path"] not in seen and len(seen) < 3:
            seen.add(ov["path"])
            pixels = builder.load_pixels(conv)[0]
            np.testing.assert_array_equal(np.asarray(pixels), np.asarray(Image.open(out / ov["path"]).convert("RGB")))
    # one overview file per source image
    assert len({r["images"][0]["path"] for r in demo["recs"]}) == len({r["zoom_chain"]["image"] for r in demo["recs"]})


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen2_vl"])
def test_tool_calls_in_the_built_conversation_map_back_to_the_windows(demo, family, tmp_path):
    fam = get_family(family)
    codec = BoxCodec.for_family(fam)
    recs, _ = build_chain_records(demo["zoom"], demo["root"], tmp_path, family=family, min_pixels=LO, max_pixels=HI)
    assert recs
    calls = 0
    for i, rec in enumerate(recs):
        w, h = rec["zoom_chain"]["image_size"]
        sizes = [tuple(reversed(_hf_size(img["width"], img["height"]))) for img in rec["images"]]
        conv = build_conversation(rec, image_root=tmp_path, resized_sizes=sizes, codec=codec, seed=0, epoch=0,
                                  index=i, box_format="hbb")
        rw, rh = sizes[0][1], sizes[0][0]
        said = [m for m in conv.messages if m["role"] == "assistant"]
        texts = ["".join(p["text"] for p in m["content"] if p["type"] == "text") for m in said]
        assert P.parse_tool_call(texts[-1]).kind == "answer" and texts[-1] == rec["zoom_chain"]["answer"]
        assert len(texts) - 1 == len(rec["zoom_chain"]["windows"])
        for text, win in zip(texts[:-1], rec["zoom_chain"]["windows"]):
            call = P.parse_tool_call(text)
            assert call.kind == "zoom", text
            # hand-derived numbers of the model's convention for the overview
            if fam.box_convention == "abs":
                unit = (w / rw, h / rh)
                want = [np.floor(win[0] * rw / w + 0.5), np.floor(win[1] * rh / h + 0.5),
                        np.floor(win[2] * rw / w + 0.5), np.floor(win[3] * rh / h + 0.5)]
            else:
                unit = (w / 1000, h / 1000)
                want = [min(999, np.floor(v * 1000 / s + 0.5)) for v, s in zip(win, (w, h, w, h))]
            assert np.abs(np.array(call.values) - np.array(want)).max() <= 1
            back, notes = P.overview_to_original(call.values, codec, (w, h), (rw, rh))
            assert back is not None and "outside" not in notes
            tol = [unit[0] + 1, unit[1] + 1, unit[0] + 1, unit[1] + 1]
            assert all(abs(b - v) <= t for b, v, t in zip(back, win, tol)), (back, win)
            calls += 1
        # crops follow their calls: user turn k+1 shows image k+1
        users = [m for m in conv.messages if m["role"] == "user"]
        assert [[p["index"] for p in m["content"] if p["type"] == "image"] for m in users] == \
            [[k] for k in range(len(rec["images"]))]
    assert calls >= len(recs)


def test_several_regions_several_calls_each_window_covers_its_regions(demo, tmp_path):
    base = demo["zoom"][0]
    w, h = base["images"][0]["width"], base["images"][0]["height"]
    assert (w, h) == (2048, 2048)
    far = [[100, 100, 120, 120], [1900, 100, 1920, 120], [1000, 1900, 1020, 1920]]
    near = [[180, 180, 200, 200]]  # its 224 px window overlaps the first region's: shares a zoom
    rec = {**base, "id": "multi", "question": "How many things?", "answer": "4",
           "regions": [{"hbb": r} for r in far + near]}
    rec.pop("choices", None)
    validate_record(rec)

    def contains(win, r):
        return win[0] <= r[0] and win[1] <= r[1] and win[2] >= r[2] and win[3] >= r[3]

    for steps, n_calls in ((3, 3), (2, 2), (1, 1), (5, 3)):
        out, skips = build_chain_records([rec], demo["root"], tmp_path, family="qwen2_5_vl", min_pixels=LO,
                                         max_pixels=HI, max_steps=steps)
        assert not skips
        wins = out[0]["zoom_chain"]["windows"]
        assert len(wins) == n_calls == len(out[0]["boxes"])
        assert sum(t["text"].startswith("<tool_call>") for t in out[0]["turns"]) == n_calls
        for r in far + near:
            assert any(contains(win, r) for win in wins), (r, wins)
        if steps >= 3:
            # the two top-left regions share one window; the far ones have their own
            assert sum(contains(win, far[0]) and contains(win, near[0]) for win in wins) == 1
            assert all(sum(contains(win, r) for r in far) == 1 for win in wins)
        side = P.default_min_side(HI, 28)  # 224: the largest whole-block square within max_pixels
        assert side == 224 and all(min(x1 - x0, y1 - y0) >= side for x0, y0, x1, y1 in wins)


def test_records_validate_and_encode_within_the_recipe_length(demo, tmp_path):
    path = tmp_path / "chains.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in demo["recs"]))
    recs = read_records(path)  # schema check of every record, as training does
    cfg = load_config(RECIPE)
    fam = get_family("qwen2_5_vl")
    builder = SampleBuilder(ChatEncoder(build_offline_processor("qwen2_5_vl"), fam), fam, cfg.data)
    ds = dataclasses.replace(next(d for d in cfg.data.datasets if d.name == "zoom_chain"), image_root=str(demo["out"]))
    ld = LoadedDataset(ds, recs)
    tok = builder.encoder.tokenizer
    longest = max(range(len(recs)), key=lambda i: len(recs[i]["images"]) * 1000 + len(json.dumps(recs[i]["turns"])))
    for i in sorted({0, longest, len(recs) - 1}):
        sample = builder.build(recs[i], ld, 0, i)  # raises BadRecordError(too_long) if over max_length
        assert len(sample["input_ids"]) <= cfg.data.max_length
        assert int(sample["image_grid_thw"].shape[0]) == len(recs[i]["images"])
        trained = tok.decode([t for t in sample["labels"].tolist() if t >= 0])
        n_calls = len(recs[i]["boxes"])
        assert trained.count("<tool_call>") == n_calls  # every tool call is supervised, not only the answer
        assert recs[i]["zoom_chain"]["answer"] in trained
        assert "Zoomed region" not in trained and P.ZOOM_INSTRUCTION not in trained


def test_missing_corrupt_and_unsupported_inputs_are_counted_skips(demo, tmp_path):
    good = demo["zoom"][0]
    bad_file = tmp_path / "broken.tif"
    data = (demo["root"] / good["images"][0]["path"]).read_bytes()
    bad_file.write_bytes(data[: len(data) // 3])  # truncated TIFF
    missing = {**good, "id": "gone", "images": [{**good["images"][0], "path": "images/large/nope.tif"}]}
    corrupt = {**good, "id": "broken", "images": [{**good["images"][0], "path": str(bad_file)}]}
    resized = {**good, "id": "wrong-size", "images": [{**good["images"][0], "width": 1000}],
               "regions": [{"hbb": [10, 10, 20, 20]}]}
    cls = {"id": "c", "task": "classification", "label": "x", "images": good["images"]}
    Image.new("RGB", (2, 900)).save(tmp_path / "strip.png")  # aspect ratio 450: beyond the model's 200
    strip = {**good, "id": "strip", "images": [{"path": str(tmp_path / "strip.png"), "modality": "rgb", "width": 2,
                                               "height": 900}], "regions": [{"hbb": [0, 10, 2, 20]}]}
    recs, skips = build_chain_records([missing, good, corrupt, resized, cls, strip], demo["root"], tmp_path / "o",
                                      family="qwen2_5_vl", min_pixels=LO, max_pixels=HI)
    assert [r["id"] for r in recs] == [f"{good['id']}-chain"]
    assert skips == {"image_missing": 1, "image_corrupt": 1, "size_mismatch": 1, "unsupported_task": 1,
                     "image_size": 1}


def test_output_is_deterministic_for_a_seed(demo, tmp_path):
    inputs = demo["zoom"][:4] + demo["det"]
    a, _ = build_chain_records(inputs, demo["root"], tmp_path / "a", family="qwen2_5_vl", min_pixels=LO,
                               max_pixels=HI, seed=3)
    b, _ = build_chain_records(inputs, demo["root"], tmp_path / "b", family="qwen2_5_vl", min_pixels=LO,
                               max_pixels=HI, seed=3)
    c, _ = build_chain_records(inputs, demo["root"], tmp_path / "c", family="qwen2_5_vl", min_pixels=LO,
                               max_pixels=HI, seed=4)
    assert json.dumps(a) == json.dumps(b)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert files_a == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.png"))
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files_a)
    assert [r["zoom_chain"]["question"] for r in a] != [r["zoom_chain"]["question"] for r in c]


def _det_record(tmp_path):
    """900 x 900 image: two small vehicles in the top-left ninth, a plane in the centre, a ship
    straddling the top / top-right border."""
    Image.effect_noise((900, 900), 30).convert("RGB").save(tmp_path / "det.png")
    objs = [{"label": "small-vehicle", "hbb": [50, 60, 70, 80]},
            {"label": "small-vehicle", "hbb": [200, 210, 220, 230]},
            {"label": "plane", "hbb": [420, 430, 480, 470]}, {"label": "ship", "hbb": [580, 100, 640, 120]}]
    return validate_record({"id": "d0", "task": "detection", "objects": objs,
                            "classes": ["plane", "ship", "small-vehicle"],
                            "images": [{"path": "det.png", "modality": "rgb", "width": 900, "height": 900}]})


def test_detection_questions_are_about_specific_objects(tmp_path):
    rec = _det_record(tmp_path)
    tl, c = "the top-left part of the image", "the centre of the image"
    sv, pl = [[50, 60, 70, 80], [200, 210, 220, 230]], [[420, 430, 480, 470]]
    # every question that may be asked, derived by hand: (question) -> (answer, regions)
    allowed = {
        f"How many small vehicles are there in {tl}?": ("2", sv),
        f"How many planes are there in {c}?": ("1", pl),
        f"Is there any small vehicle in {tl}?": ("yes", sv),
        f"Is there any plane in {c}?": ("yes", pl),
        f"Is there any plane in {tl}?": ("no", sv),
        f"Is there any ship in {tl}?": ("no", sv),
        f"Is there any small vehicle in {c}?": ("no", pl),
        f"Is there any ship in {c}?": ("no", pl),
    }
    seen = set()
    for s in range(60):
        q = detection_question(rec, np.random.default_rng(s))
        assert q["question"] in allowed, q["question"]
        answer, regions = allowed[q["question"]]
        assert q["answer"] == answer and sorted(r["hbb"] for r in q["regions"]) == sorted(regions)
        seen.add(q["question"])
    assert len(seen) >= 6  # both kinds, yes and no, several parts
    assert detection_question({**rec, "objects": []}, np.random.default_rng(0)) is None
    # the chain on a small image: one zoom whose window holds the regions, overview at the model size
    out, skips = build_chain_records([rec], tmp_path, tmp_path / "o", family="qwen2_5_vl", min_pixels=LO,
                                     max_pixels=HI, seed=1)
    assert not skips and out[0]["id"] == "d0-chain"
    assert (out[0]["images"][0]["width"], out[0]["images"][0]["height"]) == _hf_size(900, 900)
    q, a = out[0]["zoom_chain"]["question"], out[0]["zoom_chain"]["answer"]
    assert allowed[q][0] == a and out[0]["turns"][-1]["text"] == a
    crop = np.asarray(Image.open(tmp_path / "o" / out[0]["images"][1]["path"]))
    x0, y0, x1, y1 = out[0]["zoom_chain"]["windows"][0]
    np.testing.assert_array_equal(crop, np.asarray(Image.open(tmp_path / "det.png"))[y0:y1, x0:x1])
