"""The synthetic localisation set: deterministic, valid records, boxes that enclose the painted objects."""

import json

import numpy as np
import pytest

from cotrain.data.synthetic.localize import (
    GROUNDS, LOC_KINDS, SPAN, ensure_localize_data, generate_localize_data, render_localize_image)
from cotrain.errors import ConfigError
from cotrain.records import validate_record


@pytest.fixture(scope="module")
def loc_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("loc")
    generate_localize_data(root, seed=5, n_images=40, progress=False)
    return root


def _read(root, name):
    return [json.loads(x) for x in (root / "records" / f"{name}.jsonl").read_text().splitlines()]


def test_same_seed_same_pixels_and_objects():
    a, oa = render_localize_image(3, 7)
    b, ob = render_localize_image(3, 7)
    c, _ = render_localize_image(4, 7)
    assert np.array_equal(a, b) and oa == ob
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_records_are_valid_and_split_by_image(loc_root):
    det = {s: _read(loc_root, f"loc_det_{s}") for s in ("train", "val", "test")}
    assert [len(det[s]) for s in ("train", "val", "test")] == [32, 4, 4]
    manifest = json.loads((loc_root / "manifest.json").read_text())
    assert [(d["name"], d["counts"]) for d in manifest["datasets"]][1] == ("loc_det", {"train": 32, "val": 4, "test": 4})
    for split, recs in det.items():
        for r in recs:
            validate_record(r, path="loc_det")
    grounding = _read(loc_root, "loc_grounding_train")
    for r in grounding:
        validate_record(r, path="loc_grounding")
    # one grounding record per object, named by its kind alone (kinds are distinct within an image)
    assert len(grounding) == sum(len(r["objects"]) for r in det["train"])
    for r in det["train"]:
        labels = [o["label"] for o in r["objects"]]
        assert 1 <= len(labels) <= 3 and len(set(labels)) == len(labels) and set(labels) <= set(LOC_KINDS)


def test_boxes_enclose_the_painted_object_and_do_not_overlap(loc_root):
    ground_colours = np.asarray(list(GROUNDS.values()), np.float32)
    for r in _read(loc_root, "loc_det_train")[:10]:
        arr, objects = render_localize_image(5, int(r["id"][3:8]))
        h, w = arr.shape[:2]
        assert (r["images"][0]["width"], r["images"][0]["height"]) == (w, h)
        boxes = [o["hbb"] for o in r["objects"]]
        for x1, y1, x2, y2 in boxes:
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
            assert SPAN[0] * min(w, h) * 0.2 <= max(x2 - x1, y2 - y1) <= min(w, h)
            # the box interior differs from the ground somewhere (the object is painted there) ...
            inner = arr[int(y1) + 1:int(y2), int(x1) + 1:int(x2)].astype(np.float32)
            dist = np.abs(inner[..., None, :] - ground_colours).sum(-1).min(-1)
            assert dist.max() > 60
        for i in range(len(boxes)):  # ... and boxes are apart (expressions never share pixels)
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def test_ensure_reuses_and_regenerates_on_other_parameters(loc_root, tmp_path):
    m = ensure_localize_data(loc_root, seed=5, n_images=40, progress=False)
    assert m["params"] == {"seed": 5, "n_images": 40}
    stamp = (loc_root / "manifest.json").stat().st_mtime_ns
    ensure_localize_data(loc_root, seed=5, n_images=40, progress=False)
    assert (loc_root / "manifest.json").stat().st_mtime_ns == stamp  # reused, not rewritten
    other = tmp_path / "o"
    ensure_localize_data(other, seed=6, n_images=20, progress=False)
    assert json.loads((other / "manifest.json").read_text())["params"] == {"seed": 6, "n_images": 20}


def test_too_few_images_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="n_scenes=5.*>= 20"):
        generate_localize_data(tmp_path, n_images=5, progress=False)


def test_recipe_kind_is_checked():
    from cotrain.config import SyntheticConfig

    with pytest.raises(ConfigError, match="synthetic.kind='localise'.*localize"):
        SyntheticConfig(kind="localise")
