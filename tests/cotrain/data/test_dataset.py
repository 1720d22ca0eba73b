"""Record -> sample path: weight expansion, bad images and over-long samples become counted skips."""

import json
from collections import Counter

import pytest

from cotrain.config import DataConfig, DatasetConfig
from cotrain.data.dataset import LoadedDataset, SampleBuilder, TrainingDataset, load_dataset
from cotrain.data.mixture import MixtureSampler
from cotrain.data.encoder import ChatEncoder
from cotrain.errors import BadRecordError, ConfigError, RecordError
from cotrain.model.families import get_family
from cotrain.model.processor import build_offline_processor
from PIL import Image


def _pairs(lds, seed, epoch=0):
    """(dataset index, record index) of one epoch of the mixture, in visiting order."""
    s = MixtureSampler([len(ld.records) for ld in lds], [ld.cfg.weight for ld in lds], [ld.cfg.name for ld in lds],
                       seed=seed)
    return [s.locate(int(i)) for i in s.rank_indices(epoch)]


def _ld(name, n, weight):
    recs = [{"id": f"{name}{i}", "task": "classification", "label": "a"} for i in range(n)]
    return LoadedDataset(DatasetConfig(name=name, records="x", weight=weight), recs)


def test_weight_semantics():
    pairs = _pairs([_ld("two", 10, 2.0), _ld("half", 10, 0.5), _ld("one_half", 10, 1.5)], seed=0)
    c = Counter(pairs)
    assert all(c[(0, i)] == 2 for i in range(10))
    half = [i for (d, i) in pairs if d == 1]
    assert len(half) == 5 and len(set(half)) == 5  # without replacement
    one_half = Counter(i for (d, i) in pairs if d == 2)
    assert sum(one_half.values()) == 15 and set(one_half.values()) <= {1, 2}


def test_weights_are_a_function_of_seed_and_epoch():
    ds = [_ld("half", 40, 0.5)]
    assert _pairs(ds, seed=1, epoch=0) == _pairs(ds, seed=1, epoch=0)
    assert sorted(_pairs(ds, seed=1, epoch=0)) != sorted(_pairs(ds, seed=1, epoch=1))
    assert sorted(_pairs(ds, seed=1, epoch=0)) != sorted(_pairs(ds, seed=2, epoch=0))


@pytest.fixture()
def cls_dataset(tmp_path):
    """Six classification records; record 1's JPEG missing, record 3's PNG and record 4's JPEG truncated."""
    (tmp_path / "img").mkdir()
    lines = []
    for i in range(6):
        ext = "png" if i == 3 else "jpg"
        im = Image.effect_noise((300, 200), 40 + i).convert("RGB")
        im.save(tmp_path / "img" / f"{i}.{ext}")
        lines.append(json.dumps({"id": f"r{i}", "task": "classification", "label": ["water", "forest"][i % 2],
                                 "images": [{"path": f"img/{i}.{ext}", "modality": "rgb", "width": 300,
                                             "height": 200}]}))
    (tmp_path / "img" / "1.jpg").unlink()
    for name in ("3.png", "4.jpg"):
        data = (tmp_path / "img" / name).read_bytes()
        (tmp_path / "img" / name).write_bytes(data[: len(data) // 2])
    (tmp_path / "recs.jsonl").write_text("\n".join(lines) + "\n")
    return DatasetConfig(name="cls", records=str(tmp_path / "recs.jsonl"), image_root=str(tmp_path))


def _builder(data_cfg):
    fam = get_family("qwen2_5_vl")
    proc = build_offline_processor("qwen2_5_vl")
    return SampleBuilder(ChatEncoder(proc, fam), fam, data_cfg)


def test_bad_images_are_counted_skips(cls_dataset):
    data_cfg = DataConfig(max_pixels=64 * 28 * 28)
    ld = load_dataset(cls_dataset)
    assert ld.classes == ["forest", "water"]
    ds = TrainingDataset([ld], _builder(data_cfg), data_cfg)
    reasons = Counter()
    used = []
    for i in range(len(ds)):
        s = ds[i]
        reasons.update(r for r, _, _ in s["skipped"])
        assert s["input_ids"].ndim == 1 and s["dataset"] == "cls"
        used.append(int(s["pixel_values"].shape[0]))
    assert reasons == {"image_missing": 1, "image_corrupt": 2}
    skipped_ids = {rid for i in range(len(ds)) for _, _, rid in ds[i]["skipped"]}
    assert skipped_ids == {"r1", "r3", "r4"}


def test_on_bad_record_raise(cls_dataset):
    data_cfg = DataConfig(on_bad_record="raise", max_pixels=64 * 28 * 28)
    ds = TrainingDataset([load_dataset(cls_dataset)], _builder(data_cfg), data_cfg)
    ds[0]
    with pytest.raises(BadRecordError, match=r"r1.*does not exist"):
        ds[1]
    with pytest.raises(BadRecordError, match=r"r3.*3.png.*cannot be decoded"):
        ds[3]
    with pytest.raises(BadRecordError, match=r"r4.*4.jpg.*cannot be decoded"):
        ds[4]


def test_too_long_is_checked_before_decoding(cls_dataset):
    data_cfg = DataConfig(max_length=40, on_bad_record="raise", max_pixels=64 * 28 * 28)
    ds = TrainingDataset([load_dataset(cls_dataset)], _builder(data_cfg), data_cfg)
    # record 1's image is missing: the length check must fire first (no decode attempted)
    with pytest.raises(BadRecordError, match="max_length=40") as e:
        ds[1]
    assert e.value.reason == "too_long"


def test_image_size_mismatch(cls_dataset, tmp_path):
    Image.new("RGB", (100, 100)).save(tmp_path / "img" / "0.jpg")
    data_cfg = DataConfig(on_bad_record="raise", max_pixels=64 * 28 * 28)
    ds = TrainingDataset([load_dataset(cls_dataset)], _builder(data_cfg), data_cfg)
    with pytest.raises(BadRecordError, match="100x100 but the record says 300x200"):
        ds[0]


def test_dataset_task_mismatch_names_file_and_record(cls_dataset):
    cls_dataset.task = "vqa"
    with pytest.raises(RecordError, match=r"recs.jsonl.*record 'r0'.*declares task 'vqa'"):
        load_dataset(cls_dataset)


def test_set_epoch_redraws_fractions_and_reseeds(cls_dataset):
    data_cfg = DataConfig(max_pixels=64 * 28 * 28)
    ld = load_dataset(cls_dataset)
    ld.cfg.weight = 0.5
    ds = TrainingDataset([ld], _builder(data_cfg), data_cfg)
    first = list(ds.pairs)
    ds.set_epoch(1)
    assert len(ds.pairs) == len(first) == 3
    ds.set_epoch(0)
    assert ds.pairs == first  # a pure function of (seed, epoch)
    drawn = {tuple(sorted(_pairs([ld], seed=0, epoch=e))) for e in range(8)}
    assert len(drawn) > 1  # a fresh subset across epochs
    # the dataset's epoch reaches its sampler (accelerate's resume path relies on it)
    seen = set()
    for e in range(8):
        ds.set_epoch(e)
        assert ds.sampler.epoch == e
        seen.add(tuple(sorted(ds.pairs)))
    assert len(seen) > 1


def test_eval_prompts_use_the_training_class_list(tmp_path):
    from cotrain.training.recipe import share_class_lists

    train = LoadedDataset(DatasetConfig(name="c", records="x"), [], ["a", "b", "c"])
    ev = LoadedDataset(DatasetConfig(name="c", records="y"), [], ["a", "c"])
    other = LoadedDataset(DatasetConfig(name="d", records="z"), [], ["q"])
    share_class_lists([train], [ev, other])
    assert ev.classes == ["a", "b", "c"] and other.classes == ["q"]
    ev2 = LoadedDataset(DatasetConfig(name="c", records="y"), [], ["a", "z"])
    share_class_lists([train], [ev2])
    assert ev2.classes == ["a", "b", "c", "z"]


def test_large_files_are_read_lazily_through_the_index(cls_dataset):
    from pathlib import Path

    from cotrain.data.dataset import LazyRecords

    # append a record with a NaN box-free but missing label: invalid, found only when read
    path = Path(cls_dataset.records)
    bad = json.loads(path.read_text().splitlines()[0])
    bad["id"] = "broken"
    del bad["label"]
    path.write_text(path.read_text() + json.dumps(bad) + "\n")
    # lazily read classification records without a 'classes' list need the class list in the recipe
    with pytest.raises(ConfigError, match=r"read lazily.*'classes: \[\.\.\.\]'"):
        load_dataset(cls_dataset, lazy_above_mb=0)
    cls_dataset.classes = ["forest", "water"]
    ld = load_dataset(cls_dataset, lazy_above_mb=0)  # force the memory-mapped path
    assert ld.classes == ["forest", "water"]
    assert isinstance(ld.records, LazyRecords) and len(ld.records) == 7
    assert Path(str(path) + ".cotrain-index.npy").is_file()
    assert ld.records[0]["id"] == "r0" and [r["id"] for r in ld.records[1:3]] == ["r1", "r2"]
    with pytest.raises(RecordError, match=r"recs.jsonl:7.*'label'"):
        ld.records[6]
    data_cfg = DataConfig(max_pixels=64 * 28 * 28)
    ds = TrainingDataset([ld], _builder(data_cfg), data_cfg)
    reasons = Counter(r for i in range(len(ds)) for r, _, _ in ds[i]["skipped"])
    assert reasons == {"image_missing": 1, "image_corrupt": 2, "bad_record": 1}


# ---------------------------------------------------------------- length rule ----

import math  # noqa: E402
import re  # noqa: E402



def test_too_long_option_is_validated():
    assert DataConfig().too_long == "skip"
    with pytest.raises(ConfigError, match="data.too_long='truncate'.*skip.*downscale"):
        DataConfig(too_long="truncate")


@pytest.fixture()
def long_grounding(tmp_path):
    """A 2240x1120 image (80x40 factor units) whose ship box spans x 10%..50%, y 10%..50%; record
    'far' has so much text that no image size can fit."""
    Image.new("RGB", (2240, 1120), (30, 90, 140)).save(tmp_path / "big.png")
    img = [{"path": "big.png", "modality": "rgb", "width": 2240, "height": 1120}]
    recs = [{"id": "big", "task": "grounding", "images": img, "expression": "the ship",
             "target": {"hbb": [224, 112, 1120, 560]}},
            {"id": "far", "task": "grounding", "images": img, "expression": "the ship " * 80,
             "target": {"hbb": [224, 112, 1120, 560]}}]
    (tmp_path / "g.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    return DatasetConfig(name="g", records=str(tmp_path / "g.jsonl"), image_root=str(tmp_path), box_format="hbb")


def _half_up(v):
    return int(math.floor(v + 0.5))


def _length_cfg(**kw):
    # max_pixels lets the whole 2240x1120 image through: 3200 visual tokens, far over 600.
    return DataConfig(max_pixels=3200 * 28 * 28, max_length=600, on_bad_record="raise", **kw)


def test_downscale_fits_and_rerenders_the_box(long_grounding):
    cfg = _length_cfg(too_long="downscale")
    builder = _builder(cfg)
    ld = load_dataset(long_grounding)
    big = ld.records[0]
    assert builder.target_sizes(big, ld.cfg, 0, 0) == [(1120, 2240)]  # it would not fit as is
    conv, n_tokens = builder.fitted_conversation(big, ld, 0, 0)
    rw, rh = conv.images[0]["resized_wh"]
    assert (rh, rw) != (1120, 2240) and rh % 28 == 0 and rw % 28 == 0
    assert abs(rw - 2 * rh) <= 28  # aspect kept up to one factor step
    # The answer's box is the record's box scaled to the NEW size (hand rule: x * rw / 2240, half up).
    answer = conv.messages[-1]["content"][-1]["text"]
    assert [int(v) for v in re.findall(r"\d+", answer)] == [
        _half_up(224 * rw / 2240), _half_up(112 * rh / 1120), _half_up(1120 * rw / 2240), _half_up(560 * rh / 1120)]
    sample = builder.build(big, ld, 0, 0)
    ids = sample["input_ids"].tolist()
    visual = (rh // 28) * (rw // 28)
    assert len(ids) <= 600 and n_tokens == len(ids)  # the count build() reuses is the real one
    text_tokens = len(ids) - visual
    assert visual >= 0.8 * (600 - text_tokens)  # shrunk to fit, not far below it
    assert sample["image_grid_thw"].tolist() == [[1, rh // 14, rw // 14]]  # pixels decoded at that size
    # Never truncated: one whole vision span, every image slot present, nothing cut after it.
    enc = builder.encoder
    start, end = ids.index(enc.vision_start_id), ids.index(enc.vision_end_id)
    assert ids.count(enc.vision_start_id) == ids.count(enc.vision_end_id) == 1
    assert ids[start + 1:end] == [enc.image_token_id] * visual and ids.count(enc.image_token_id) == visual
    assert ids[-2:] == enc.tokenizer.encode("<|im_end|>\n", add_special_tokens=False)


def test_skip_leaves_the_sample_whole_and_names_the_fix(long_grounding):
    cfg = _length_cfg()
    ld = load_dataset(long_grounding)
    with pytest.raises(BadRecordError, match=r"'big'.*> data.max_length=600; .*too_long=downscale") as e:
        _builder(cfg).build(ld.records[0], ld, 0, 0)
    assert e.value.reason == "too_long"


def test_unfittable_sample_is_a_counted_skip_under_downscale(long_grounding):
    cfg = _length_cfg(too_long="downscale")
    ld = load_dataset(long_grounding)
    builder = _builder(cfg)
    with pytest.raises(BadRecordError, match=r"'far'.*even with its images at min_pixels") as e:
        builder.build(ld.records[1], ld, 0, 1)
    assert e.value.reason == "too_long"
    cfg.on_bad_record = "skip"
    ds = TrainingDataset([ld], builder, cfg)
    reasons = Counter(reason for i in range(len(ds)) for reason, _, _ in ds[i]["skipped"])
    assert reasons == {"too_long": 1}
    assert all(len(ds[i]["input_ids"]) <= 600 for i in range(len(ds)))


def test_downscale_shrinks_every_image_of_a_multi_image_record(tmp_path):
    for name, size in (("a.png", (1120, 1120)), ("b.png", (560, 1120))):
        Image.new("RGB", size).save(tmp_path / name)
    rec = {"id": "pair", "task": "vqa", "question": "Which image shows more water?", "answer": "the first",
           "images": [{"path": "a.png", "modality": "rgb", "width": 1120, "height": 1120},
                      {"path": "b.png", "modality": "ir", "width": 560, "height": 1120}]}
    (tmp_path / "p.jsonl").write_text(json.dumps(rec) + "\n")
    ld = load_dataset(DatasetConfig(name="p", records=str(tmp_path / "p.jsonl"), image_root=str(tmp_path)))
    cfg = _length_cfg(too_long="downscale")
    conv, _ = _builder(cfg).fitted_conversation(ld.records[0], ld, 0, 0)
    (aw, ah), (bw, bh) = (img["resized_wh"] for img in conv.images)
    assert ah < 1120 and bh < 1120 and abs(ah - aw) <= 28 and abs(bh - 2 * bw) <= 28
    assert _builder(cfg).build(ld.records[0], ld, 0, 0)["input_ids"].numel() <= 600


def test_empty_dataset_is_a_clear_error(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(RecordError, match=r"empty.jsonl.*dataset 'e' has no records"):
        load_dataset(DatasetConfig(name="e", records=str(tmp_path / "empty.jsonl")))
    with pytest.raises(RecordError, match=r"dataset 'e' has no records"):
        load_dataset(DatasetConfig(name="e", records=str(tmp_path / "empty.jsonl")), lazy_above_mb=0)
