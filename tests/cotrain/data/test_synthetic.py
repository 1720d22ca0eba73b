"""Synthetic RS data: determinism, schema of every task, geometry, unique expressions, IR rule, tiled TIFF.

Golden facts come from independent routes: shapely for geometry, PIL/tifffile for what is on
disk, the IR table of the scenes docstring for the IR rule, and re-derivations of the grounding
and zoom rules written here from the detection records, not from the generator's helpers.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import shapely
import tifffile
from PIL import Image

from cotrain.data.synthetic import (
    CLASS_NAMES, COVER_NAMES, DATASETS, LABELS, ensure_demo_data, generate_demo_data, plan_scenes, render_scene)
from cotrain.data.synthetic.objects import COLOURS
from cotrain.data.synthetic.scenes import full_res_cover_map

SMALL = dict(seed=3, n_scenes=24, n_large=3, large_size=1024, size_range=(256, 640), progress=False)
SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("syn")
    return out, generate_demo_data(out, workers=1, **SMALL)


def _records(root: Path, name: str, split: str) -> list[dict]:
    return [json.loads(line) for line in (root / "records" / f"{name}_{split}.jsonl").read_text().splitlines()]


def _all(root: Path, name: str) -> list[dict]:
    return [r for s in SPLITS for r in _records(root, name, s)]


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# --- determinism ---------------------------------------------------------------------------------


def test_same_seed_same_bytes_whatever_the_workers_and_other_seed_differs(tmp_path):
    cfg = dict(SMALL, n_scenes=10, n_large=1, large_size=512)
    generate_demo_data(tmp_path / "a", workers=1, **cfg)
    generate_demo_data(tmp_path / "b", workers=2, **cfg)
    generate_demo_data(tmp_path / "c", workers=1, **dict(cfg, seed=cfg["seed"] + 1))
    a, b, c = _hashes(tmp_path / "a"), _hashes(tmp_path / "b"), _hashes(tmp_path / "c")
    assert len(a) > 30 and a == b
    images = [k for k in a if k.startswith("images/")]
    assert all(a[k] != c.get(k) for k in images)
    assert a["records/syn_cls_train.jsonl"] != c["records/syn_cls_train.jsonl"]


# --- schema and splits ---------------------------------------------------------------------------

_REQUIRED = {
    "classification": {"label": str, "classes": list}, "vqa": {"question": str, "answer": str},
    "mcq": {"question": str, "choices": list, "answer": int}, "grounding": {"expression": str, "target": dict},
    "detection": {"objects": list, "classes": list}, "captioning": {"captions": list},
    "zoom_vqa": {"question": str, "answer": str, "regions": list}, "conversation": {"turns": list},
    "triplet": {"captions": list, "ir_captions": list},
}


def _check_box(box: dict, w: int, h: int) -> None:
    assert len(box) == 1 and set(box) <= {"hbb", "quad"}
    if "hbb" in box:
        x1, y1, x2, y2 = box["hbb"]
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
    else:
        q = box["quad"]
        assert len(q) == 8 and shapely.box(0, 0, w, h).contains(shapely.Polygon(list(zip(q[0::2], q[1::2]))))


def _check_record(rec: dict, task: str) -> None:
    assert rec["task"] == task and isinstance(rec["id"], str) and rec["id"]
    assert rec["images"] and all(set(im) == {"path", "modality", "width", "height"} for im in rec["images"])
    for key, typ in _REQUIRED[task].items():
        assert isinstance(rec[key], typ), (rec["id"], key)
    w, h = rec["images"][0]["width"], rec["images"][0]["height"]
    if task == "classification":
        assert rec["label"] in rec["classes"] and rec["classes"] == list(CLASS_NAMES)
    elif task == "vqa":
        assert rec["answer_type"] in ("yes_no", "number", "word")
        if rec["answer_type"] == "yes_no":
            assert rec["answer"] in ("yes", "no")
        if rec["answer_type"] == "number":
            assert rec["answer"].isdigit()
    elif task == "mcq":
        assert len(rec["choices"]) == 4 == len(set(rec["choices"])) and 0 <= rec["answer"] < 4
    elif task == "grounding":
        _check_box(rec["target"], w, h)
    elif task == "detection":
        assert rec["classes"] == list(LABELS)
        for o in rec["objects"]:
            assert o["label"] in LABELS and o["difficult"] == 0
            _check_box({"quad": o["quad"]}, w, h)
    elif task == "captioning":
        assert all(isinstance(c, str) and c for c in rec["captions"])
        mods = [im["modality"] for im in rec["images"]]
        assert (rec["caption_style"], mods) in (("scene", ["rgb"]), ("ir_aware", ["ir"]), ("ir_aware", ["rgb", "ir"]))
    elif task == "zoom_vqa":
        for r in rec["regions"]:
            _check_box(r, w, h)
        if "choices" in rec:
            assert rec["answer"] in rec["choices"]
    elif task == "triplet":  # the RGB image and its IR twin of the same scene, scene and thermal captions
        assert [im["modality"] for im in rec["images"]] == ["rgb", "ir"]
        assert rec["images"][0]["path"].replace("/rgb/", "/ir/").rsplit(".", 1)[0] == \
            rec["images"][1]["path"].rsplit(".", 1)[0]
        assert any("thermal" in c or "infrared" in c for c in rec["ir_captions"])
    elif task == "conversation":
        roles = [t["role"] for t in rec["turns"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2)
        text = " ".join(t["text"] for t in rec["turns"])
        assert text.count("<image>") == len(rec["images"])
        refs = [int(i) for i in re.findall(r"<box>(\d+)</box>", text)]
        assert sorted(refs) == list(range(len(rec.get("boxes", []))))
        for b in rec.get("boxes", []):
            _check_box(b, w, h)


def test_every_task_in_every_split_with_valid_records(demo):
    root, manifest = demo
    assert {d["name"]: d["task"] for d in manifest["datasets"]} == DATASETS
    for ds in manifest["datasets"]:
        for split in SPLITS:
            recs = _records(root, ds["name"], split)
            assert len(recs) == ds["counts"][split] > 0, (ds["name"], split)
            assert len({r["id"] for r in recs}) == len(recs)
            for r in recs:
                _check_record(r, ds["task"])


def test_image_entries_match_the_files(demo):
    root, _ = demo
    seen = {}
    for name in DATASETS:
        for rec in _all(root, name):
            for im in rec["images"]:
                seen[im["path"]] = im
    for path, im in seen.items():
        with Image.open(root / path) as img:  # header only
            assert img.size == (im["width"], im["height"]), path
            assert img.mode == {"rgb": "RGB", "ir": "L"}[im["modality"]], path
    sizes = {(im["width"], im["height"]) for p, im in seen.items() if "large" not in p}
    assert any(w != h for w, h in sizes)
    assert all(256 <= w <= 640 and 256 <= h <= 640 for w, h in sizes)


def test_splits_are_by_scene_and_classes_balanced(demo):
    root, _ = demo
    scenes_of = {}
    for split in SPLITS:
        scenes_of[split] = {im["path"].rsplit("/", 1)[-1].split(".")[0].split("_")[0]
                            for name in DATASETS for r in _records(root, name, split) for im in r["images"]}
    assert not (scenes_of["train"] & scenes_of["val"]) and not (scenes_of["train"] & scenes_of["test"])
    assert not (scenes_of["val"] & scenes_of["test"])
    labels = Counter(r["label"] for r in _all(root, "syn_cls"))
    assert set(labels) == set(CLASS_NAMES) and max(labels.values()) - min(labels.values()) <= 1


def test_plan_sizes_cover_the_full_range_and_are_deterministic():
    a = plan_scenes(0, 400, 2, 8192, (256, 2048), (0.8, 0.1, 0.1))
    assert a == plan_scenes(0, 400, 2, 8192, (256, 2048), (0.8, 0.1, 0.1))
    small = [s for s in a if not s.large]
    assert all(256 <= s.width <= 2048 and 256 <= s.height <= 2048 for s in small)
    assert max(max(s.width, s.height) for s in small) > 1200 and sum(s.width != s.height for s in small) > 300
    assert [s.width for s in a if s.large] == [8192, 8192]
    assert Counter(s.split for s in small) == {"train": 320, "val": 40, "test": 40}


# --- geometry ------------------------------------------------------------------------------------


def _poly(q):
    return shapely.Polygon(list(zip(q[0::2], q[1::2])))


def test_objects_inside_image_non_overlapping_and_quads_ordered(demo):
    root, _ = demo
    n = 0
    for rec in _all(root, "syn_det"):
        w, h = rec["images"][0]["width"], rec["images"][0]["height"]
        polys = [_poly(o["quad"]) for o in rec["objects"]]
        assert polys, rec["id"]  # every scene has something to ask about
        frame = shapely.box(0, 0, w, h)
        for o, p in zip(rec["objects"], polys):
            assert p.is_valid and p.area > 0 and frame.contains(p)
            q = o["quad"]
            ys = q[1::2]
            top = min(range(4), key=lambda i: (q[2 * i + 1], q[2 * i]))
            assert top == 0 and ys[0] == min(ys)
            assert p.exterior.is_ccw  # in y-up maths terms, i.e. clockwise on a y-down screen
        for i in range(len(polys)):
            for j in range(i + 1, len(polys)):
                assert polys[i].distance(polys[j]) > 1.0, rec["id"]
        n += len(polys)
    assert n > 50


def test_storage_tank_quad_is_an_axis_aligned_square(demo):
    root, _ = demo
    tanks = [o["quad"] for r in _all(root, "syn_det") for o in r["objects"] if o["label"] == "storage-tank"]
    assert tanks
    for q in tanks:
        x1, y1, x2, y2 = _poly(q).bounds
        assert math.isclose(_poly(q).area, (x2 - x1) * (y2 - y1), rel_tol=1e-6)
        assert math.isclose(x2 - x1, y2 - y1, abs_tol=0.2)


# --- grounding: the expression picks out exactly one object --------------------------------------

_PHRASE = {"plane": "plane", "ship": "ship", "storage tank": "storage-tank", "tennis court": "tennis-court",
           "large vehicle": "large-vehicle", "small vehicle": "small-vehicle"}


def _referent(expr: str, objects: list[dict], w: int, h: int) -> list[int]:
    """Indices of the objects an expression can mean, by my own reading of it."""
    kinds = "|".join(_PHRASE)
    cands = {}
    for i, o in enumerate(objects):
        c = _poly(o["quad"]).centroid
        cands[i] = (o["label"], c.x, c.y, _poly(o["quad"]).area)
    patterns = [
        (rf"the (?P<k>{kinds})$", None),
        (rf"the largest (?P<k>{kinds})$", lambda v: -v[3]), (rf"the smallest (?P<k>{kinds})$", lambda v: v[3]),
        (rf"the (?P<k>{kinds}) farthest to the left$", lambda v: v[1]),
        (rf"the (?P<k>{kinds}) on the far right$", lambda v: -v[1]),
        (rf"the (?P<k>{kinds}) nearest the top edge$", lambda v: v[2]),
        (rf"the (?P<k>{kinds}) nearest the bottom edge$", lambda v: -v[2]),
        (rf"the (?P<k>{kinds}) closest to the top-left corner$", lambda v: math.hypot(v[1], v[2])),
        (rf"the (?P<k>{kinds}) closest to the top-right corner$", lambda v: math.hypot(w - v[1], v[2])),
        (rf"the (?P<k>{kinds}) closest to the bottom-left corner$", lambda v: math.hypot(v[1], h - v[2])),
        (rf"the (?P<k>{kinds}) closest to the bottom-right corner$", lambda v: math.hypot(w - v[1], h - v[2])),
    ]
    for pat, key in patterns:
        m = re.match(pat, expr)
        if m:
            same = [i for i, v in cands.items() if v[0] == _PHRASE[m.group("k")]]
            if key is None:
                return same
            best = min(key(cands[i]) for i in same)
            return [i for i in same if key(cands[i]) - best < 1e-6 * max(1.0, abs(best)) + 0.5]
    raise AssertionError(f"unexpected expression {expr!r}")


def test_grounding_expressions_are_unique_and_targets_right(demo):
    root, _ = demo
    det = {r["images"][0]["path"]: r for r in _all(root, "syn_det")}
    recs = _all(root, "syn_grounding")
    assert len(recs) >= 20 and len({r["expression"] for r in recs}) >= 5
    kinds = Counter()
    for r in recs:
        d = det[r["images"][0]["path"]]
        w, h = r["images"][0]["width"], r["images"][0]["height"]
        (i,) = _referent(r["expression"], d["objects"], w, h)
        q = d["objects"][i]["quad"]
        if "hbb" in r["target"]:
            assert r["target"]["hbb"] == pytest.approx(list(_poly(q).bounds), abs=1e-6)
        else:
            assert r["target"]["quad"] == q
        kinds[next(iter(r["target"]))] += 1
    assert kinds["hbb"] == kinds["quad"]


# --- the IR rule ---------------------------------------------------------------------------------


def test_ir_twin_follows_the_stated_rule():
    specs = [s for s in plan_scenes(7, 48, 0, 1024, (256, 384), (0.8, 0.1, 0.1))
             if s.scene_class in ("water", "forest", "urban", "bare_soil", "parking_lot")][:15]
    sums: dict[str, list[float]] = {c: [0.0, 0.0] for c in COVER_NAMES}
    hot_ok = hot_n = 0
    for spec in specs:
        sc = render_scene(spec)
        covers = full_res_cover_map(sc.cover_map, sc.scale, spec.width, spec.height)
        ir = sc.ir.astype(np.float64)
        for k, name in enumerate(COVER_NAMES):
            m = covers == k
            sums[name][0] += ir[m].sum()
            sums[name][1] += m.sum()
        for o in sc.objects:
            if o.label not in ("small-vehicle", "large-vehicle", "plane"):
                continue
            x1, y1, x2, y2 = (int(v) for v in o.hbb)
            patch = ir[y1:y2 + 1, x1:x2 + 1]
            ring = ir[max(0, y1 - 6):y2 + 7, max(0, x1 - 6):x2 + 7]
            hot_n += 1
            hot_ok += patch.max() >= 230 and patch.max() > np.median(ring) + 20
    mean = {k: s / n for k, (s, n) in sums.items() if n > 1000}
    assert mean["water"] < 70 < mean["forest"] < mean["bare_soil"] < mean["urban"]
    assert mean["forest"] < mean["asphalt"]
    assert hot_n >= 10 and hot_ok == hot_n


def test_ir_captions_and_dual_records_pair_one_scene(demo):
    root, _ = demo
    for r in _all(root, "syn_cap_dual"):
        rgb, ir = r["images"]
        assert (rgb["modality"], ir["modality"]) == ("rgb", "ir")
        assert Path(rgb["path"]).stem == Path(ir["path"]).stem
        assert (rgb["width"], rgb["height"]) == (ir["width"], ir["height"])
    for r in _all(root, "syn_cap_ir"):
        assert any(w in " ".join(r["captions"]) for w in ("bright", "dark"))


# --- large images and zoom questions -------------------------------------------------------------


def _read_window(path: Path, x0: int, y0: int, w: int, h: int) -> tuple[np.ndarray, int]:
    """Decode only the tiles that cover a window; returns the window and the tiles decoded."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        th, tw = page.tilelength, page.tilewidth
        tiles_across = -(-page.imagewidth // tw)
        out = np.zeros((h, w) + page.shape[2:], page.dtype)
        n = 0
        for ty in range(y0 // th, (y0 + h - 1) // th + 1):
            for tx in range(x0 // tw, (x0 + w - 1) // tw + 1):
                idx = ty * tiles_across + tx
                tif.filehandle.seek(page.dataoffsets[idx])
                data = tif.filehandle.read(page.databytecounts[idx])
                tile = page.decode(data, idx)[0].reshape((th, tw) + page.shape[2:])
                n += 1
                ys, xs = ty * th, tx * tw
                a0, a1 = max(y0, ys), min(y0 + h, ys + th)
                b0, b1 = max(x0, xs), min(x0 + w, xs + tw)
                out[a0 - y0:a1 - y0, b0 - x0:b1 - x0] = tile[a0 - ys:a1 - ys, b0 - xs:b1 - xs]
    return out, n


def test_large_image_is_a_tiled_tiff_readable_by_window(demo):
    root, _ = demo
    rec = _all(root, "syn_zoom")[0]
    path = root / rec["images"][0]["path"]
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert page.is_tiled and (page.tilewidth, page.tilelength) == (512, 512)
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert (page.imagewidth, page.imagelength) == (rec["images"][0]["width"], rec["images"][0]["height"])
    full = tifffile.imread(path)
    win, n = _read_window(path, 400, 100, 300, 200)  # straddles the first two tiles of row 0
    assert n == 2 and np.array_equal(win, full[100:300, 400:700])


def _nearest_colour(rgb) -> str:
    return min(COLOURS, key=lambda c: sum((a - b) ** 2 for a, b in zip(COLOURS[c], rgb)))


def test_zoom_answers_match_the_image(demo):
    root, _ = demo
    recs = _all(root, "syn_zoom")
    assert Counter(r["id"].rsplit("-", 1)[1] for r in recs).keys() >= {"colour", "count"}
    images = {}
    for r in recs:
        w, h = r["images"][0]["width"], r["images"][0]["height"]
        m = re.search(r"in the (?:(\S+) part|centre) of the image\?$", r["question"])
        name = m.group(1) or "centre"
        row = 0 if "top" in name else 2 if "bottom" in name else 1
        col = 0 if "left" in name else 2 if "right" in name else 1
        cell = shapely.box(col * w / 3, row * h / 3, (col + 1) * w / 3, (row + 1) * h / 3)
        for reg in r["regions"]:
            assert cell.contains(shapely.box(*reg["hbb"])), r["id"]
        if r["question"].startswith("How many"):
            assert int(r["answer"]) == len(r["regions"])
        if "color" in r["question"]:
            path = r["images"][0]["path"]
            if path not in images:
                images[path] = tifffile.imread(root / path)
            x1, y1, x2, y2 = r["regions"][0]["hbb"]
            cx, cy = int((x1 + x2) / 2), int((y1 + y2) / 2)
            # Median: a car's windows are a pixel from its centre, so a mean would mix in glass.
            centre = np.median(images[path][cy - 1:cy + 2, cx - 1:cx + 2].reshape(-1, 3), axis=0)
            assert _nearest_colour(centre) == r["answer"], r["id"]


# --- idempotence and learnability ----------------------------------------------------------------


def test_ensure_demo_data_regenerates_only_when_needed(tmp_path, monkeypatch):
    import cotrain.data.synthetic.generate as gen

    cfg = dict(SMALL, n_scenes=8, n_large=0)
    calls = []
    real = gen.generate_demo_data
    monkeypatch.setattr(gen, "generate_demo_data", lambda *a, **k: calls.append(k) or real(*a, **k))
    m1 = ensure_demo_data(tmp_path, workers=1, **cfg)
    m2 = ensure_demo_data(tmp_path, workers=1, **cfg)
    assert len(calls) == 1 and m1 == m2
    ensure_demo_data(tmp_path, workers=1, **dict(cfg, seed=cfg["seed"] + 1))
    assert len(calls) == 2
    (tmp_path / "records" / "syn_vqa_val.jsonl").unlink()
    ensure_demo_data(tmp_path, workers=1, **dict(cfg, seed=cfg["seed"] + 1))
    assert len(calls) == 3 and (tmp_path / "records" / "syn_vqa_val.jsonl").is_file()


def test_bad_parameters_name_the_fix(tmp_path):
    from cotrain.errors import ConfigError

    with pytest.raises(ConfigError, match="splits"):
        generate_demo_data(tmp_path, n_scenes=8, n_large=0, splits=(0.5, 0.1, 0.1), progress=False)
    with pytest.raises(ConfigError, match="size_range"):
        generate_demo_data(tmp_path, n_scenes=8, n_large=0, size_range=(512, 256), progress=False)


def test_scene_classes_are_separable_at_low_resolution(tmp_path):
    # A proxy for "a tiny model can learn it": nearest class centroid on 32x32 colour/texture features.
    generate_demo_data(tmp_path, seed=11, n_scenes=96, n_large=0, size_range=(256, 320), progress=False)

    def features(rec):
        with Image.open(tmp_path / rec["images"][0]["path"]) as im:
            a = np.asarray(im.convert("RGB").resize((32, 32), Image.BILINEAR), np.float32) / 255
        g = a.mean(2)
        return np.concatenate([a.reshape(-1, 3).mean(0), a.reshape(-1, 3).std(0),
                               [np.abs(np.diff(g, axis=0)).mean(), np.abs(np.diff(g, axis=1)).mean()]])

    train = _records(tmp_path, "syn_cls", "train")
    held = _records(tmp_path, "syn_cls", "val") + _records(tmp_path, "syn_cls", "test")
    xtr, ytr = np.stack([features(r) for r in train]), np.array([r["label"] for r in train])
    xte, yte = np.stack([features(r) for r in held]), np.array([r["label"] for r in held])
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    centroids = np.stack([((xtr - mu) / sd)[ytr == c].mean(0) for c in CLASS_NAMES])
    d = ((((xte - mu) / sd)[:, None] - centroids[None]) ** 2).sum(-1)
    acc = (np.array(CLASS_NAMES)[d.argmin(1)] == yte).mean()
    assert acc >= 0.8, acc  # chance is 1/8
