"""Synthetic S1 / S2 patches: valid records, band grids, and the pair of classes only NIR separates."""

import numpy as np
import pytest

from cotrain.data.synthetic.multisensor import CLASSES, SIGNATURES, generate_multisensor_data
from cotrain.images import open_entry
from cotrain.records import read_records
from cotrain.sensors import composite_array, read_bands


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ms")
    return root, generate_multisensor_data(root, n_patches=40, seed=1)


def _builder():
    """The sample builder of a tiny Qwen2.5-VL at the demo recipes' pixel budget (112 px)."""
    from cotrain.config import DataConfig
    from cotrain.data.dataset import SampleBuilder
    from cotrain.data.encoder import ChatEncoder
    from cotrain.model.families import get_family
    from cotrain.model.processor import build_offline_processor

    family = get_family("qwen2_5_vl")
    return SampleBuilder(ChatEncoder(build_offline_processor("qwen2_5_vl"), family), family,
                         DataConfig(min_pixels=3136, max_pixels=12544))


def test_records_for_every_task_and_split(data):
    root, manifest = data
    counts = {d["name"]: d["counts"] for d in manifest["datasets"]}
    assert counts["ms_cls"] == {"train": 32, "val": 4, "test": 4}
    pair = read_records(root / "records" / "ms_pair_train.jsonl")
    assert len(pair) == counts["ms_pair"]["train"] > 0
    assert all(r["label"] in ("meadow", "artificial turf") and len(r["images"]) == 1 for r in pair)
    for name in ("ms_cls", "ms_vqa", "ms_mcq", "ms_cap", "ms_ref", "ms_point"):
        recs = read_records(root / "records" / f"{name}_train.jsonl")  # validated
        assert [im["modality"] for im in recs[0]["images"]] == (["ms", "sar"] if name == "ms_cls" else ["ms"])


def test_bands_read_on_the_10m_grid_and_meadow_and_turf_differ_only_beyond_rgb(data):
    root, _ = data
    recs = read_records(root / "records" / "ms_cls_train.jsonl")
    s2 = recs[0]["images"][0]
    r = read_bands(s2, root, s2["bands"])
    assert r.data.shape == (12, 120, 120) and r.valid.all()
    sar = read_bands(recs[0]["images"][1], root)
    assert sar.data.shape == (2, 120, 120) and not sar.warnings and (sar.data < 5).all()
    meadow, turf = SIGNATURES["meadow"], SIGNATURES["artificial_turf"]
    assert meadow[:4] == turf[:4] and abs(meadow[7] - turf[7]) > 2000  # B01-B04 equal, B08 far apart
    # the true-colour composite of a meadow patch and of a turf patch look the same; false colour does not
    by_label = {}
    for rec in recs:
        by_label.setdefault(rec["label"], rec)
    assert {"meadow", "artificial turf"} <= set(by_label)
    pair = ("meadow", "artificial turf")
    tc = [composite_array(by_label[c]["images"][0], root, "true_colour").mean((0, 1)) for c in pair]
    fc = [composite_array(by_label[c]["images"][0], root, "false_colour").mean((0, 1)) for c in pair]
    assert np.abs(fc[0] - fc[1]).max() > np.abs(tc[0] - tc[1]).max()
    resolved = {**s2, "abs_path": str(root / s2["path"]),  # as cotrain.tasks.build_conversation resolves it
                "band_files": {b: str(root / f) for b, f in s2["band_files"].items()}}
    im = open_entry(resolved, recs[0]["id"], target_wh=(56, 56))
    assert im.size == (56, 56)
    assert set(r["label"] for r in recs) <= {c.replace("_", " ") for c in CLASSES}


def test_the_dataset_composite_reaches_training_and_held_out_prompts(data, monkeypatch):
    from cotrain.config import DatasetConfig, EvalConfig
    from cotrain.data.dataset import load_dataset
    from cotrain.eval.training import benchmarks_for

    root, _ = data
    monkeypatch.chdir(root.parent)  # a relative image root, as recipes usually give it
    ds = DatasetConfig(name="ms_pair", records=str(root / "records" / "ms_pair_train.jsonl"), image_root=root.name,
                       composite="false_colour")
    ld = load_dataset(ds)
    builder = _builder()
    conv = builder.conversation(ld.records[0], ld, 0, 0)
    assert conv.images[0]["composite"] == "false_colour"
    (im,) = builder.load_pixels(conv)  # band files resolved against the dataset's image root
    assert im.size == tuple(conv.images[0]["resized_wh"]) and im.mode == "RGB"
    (bench,) = benchmarks_for([ld], EvalConfig())
    assert bench.options["composite"] == "false_colour"


def test_band_statistics_cli(data, tmp_path, capsys):
    import json

    from cotrain.cli import main
    from cotrain.sensors import read_statistics

    root, _ = data
    out = tmp_path / "stats.json"
    assert main(["sensors", "stats", "--records", str(root / "records" / "ms_cls_train.jsonl"), "--image-root",
                 str(root), "--max-records", "4", "--out", str(out)]) == 0
    stats = read_statistics(out)
    assert set(stats) == set(json.loads(out.read_text())["bands"]) and "B01" not in stats
    assert all(v["std"] > 0 and v["pixels"] == 4 * 120 * 120 for v in stats.values())
    assert main(["sensors", "stats", "--records", str(root / "records" / "ms_cls_train.jsonl"), "--image-root",
                 str(root), "--bands", "B99", "--out", str(out)]) == 2
    assert "unknown band" in capsys.readouterr().err


def test_ensure_reuses_fresh_data_and_regenerates_stale(data):
    from cotrain.data.synthetic.multisensor import ensure_multisensor_data

    root, manifest = data
    stamp = (root / "manifest.json").stat().st_mtime_ns
    assert ensure_multisensor_data(root, n_patches=40, seed=1) == manifest
    assert (root / "manifest.json").stat().st_mtime_ns == stamp  # fresh: nothing rewritten
    (root / "records" / "ms_pair_val.jsonl").unlink()  # a listed file is gone: generate again
    assert ensure_multisensor_data(root, n_patches=40, seed=1)["params"] == {"seed": 1, "n_patches": 40}
    assert (root / "records" / "ms_pair_val.jsonl").is_file()


def test_referring_records_and_the_bigearthnet_txt_export_round_trip(data, tmp_path):
    from cotrain.eval.public import prepare_public

    root, manifest = data
    refs = read_records(root / "records" / "ms_ref_test.jsonl")
    points = {r["id"]: r for r in read_records(root / "records" / "ms_point_test.jsonl")}
    for r in refs:  # the third class's rectangle: 16-40 px a side, its point the centre
        x1, y1, x2, y2 = r["target"]["hbb"]
        assert 16 <= x2 - x1 <= 40 and 16 <= y2 - y1 <= 40 and r["subtask"] == "RED"
        assert r["expression"].startswith("the patch of ")
        assert points[r["id"].replace("-ref", "-point")]["point"] == [(x1 + x2) / 2, (y1 + y2) / 2]
    assert manifest["bigearthnet_txt_export"] == {"rows": 16, "patches": 4}  # 4 test patches x 4 categories
    bench = prepare_public("bigearthnet_txt_referring", root, tmp_path / "cache")
    converted = {r["id"]: r for r in read_records(bench.records)}
    assert {k: (v["expression"], v["target"]) for k, v in converted.items()} == {
        r["id"]: (r["expression"], r["target"]) for r in refs}
    vqa = read_records(prepare_public("bigearthnet_txt_binary", root, tmp_path / "cache").records)
    assert {r["subtask"] for r in vqa} <= {"Pr", "A"} and all(r["answer"] in ("Yes", "No") for r in vqa)
    mcq = read_records(prepare_public("bigearthnet_txt_mcq", root, tmp_path / "cache").records)
    truth = {r["id"]: r for r in read_records(root / "records" / "ms_mcq_test.jsonl")}
    assert all((m["choices"], m["answer"]) == (truth[m["id"]]["choices"], truth[m["id"]]["answer"]) for m in mcq)


def test_inspect_checks_band_files_instead_of_the_band_folder(data, tmp_path):
    import shutil

    from cotrain.config import DatasetConfig
    from cotrain.data.dataset import load_dataset
    from cotrain.recipe_report import check_image_headers

    root, _ = data
    copy = tmp_path / "ms"
    shutil.copytree(root / "patches" / "m00002", copy / "patches" / "m00002")
    shutil.copytree(root / "records", copy / "records")
    (copy / "patches" / "m00002" / "S2_B08.tif").unlink()  # one band file of one patch gone
    ds = DatasetConfig(name="ms_cls", records=str(copy / "records" / "ms_cls_train.jsonl"), image_root=str(copy),
                       max_samples=1)
    assert read_records(copy / "records" / "ms_cls_train.jsonl")[0]["images"][0]["path"] == "patches/m00002/S2"
    assert dict(check_image_headers(load_dataset(ds))) == {"image_missing": 1}  # the S2 entry; its S1 file is there
    ds = DatasetConfig(name="ms_cls", records=str(root / "records" / "ms_cls_train.jsonl"), image_root=str(root))
    assert not +check_image_headers(load_dataset(ds))


def test_a_dataset_composite_applies_to_the_images_of_its_modality_only(data):
    from cotrain.config import DatasetConfig
    from cotrain.data.dataset import load_dataset

    root, _ = data
    ds = DatasetConfig(name="ms_cls", records=str(root / "records" / "ms_cls_train.jsonl"), image_root=str(root),
                       composite="false_colour")
    ld = load_dataset(ds)
    builder = _builder()
    conv = builder.conversation(ld.records[0], ld, 0, 0)
    assert [im.get("composite") for im in conv.images] == ["false_colour", None]  # S2, then S1 (default: sar)
    s2, s1 = builder.load_pixels(conv)
    assert s1.mode == "RGB" and s1.size == tuple(conv.images[1]["resized_wh"])
