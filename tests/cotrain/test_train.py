"""End to end: tiny synthetic data -> training with bad images -> final model, metrics and report."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cotrain.config import load_config
from cotrain.data.synthetic import generate_demo_data
from cotrain.errors import RecordError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    generate_demo_data(root, seed=3, n_scenes=30, n_large=0, progress=False, workers=1)
    return root


def _recipe(data_root, out_dir, **train):
    ds = lambda name, split, **kw: {"name": name, "records": f"${{data_root}}/records/{name}_{split}.jsonl",  # noqa: E731
                                    "image_root": "${data_root}", **kw}
    return {
        "run_name": "e2e",
        "data": {"data_root": str(data_root), "max_pixels": 16 * 28 * 28, "max_length": 1536,
                 # grounding from the test split: other scenes than the corrupted train images
                 "datasets": [ds("syn_cls", "train", max_samples=8), ds("syn_grounding", "test", weight=0.25)],
                 "eval_datasets": [ds("syn_cls", "val", max_samples=4), ds("syn_grounding", "val", box_format="hbb")]},
        "model": {"tiny": {"hidden_size": 64}},
        "train": {"output_dir": str(out_dir), "batch_size": 4, "logging_steps": 1, **train},
        "eval": {"max_samples": 4, "batch_size": 4, "max_new_tokens": 12, "n_visualise": 3},
    }


def _corrupt_two_train_images(data_root):
    recs = [json.loads(x) for x in (data_root / "records" / "syn_cls_train.jsonl").read_text().splitlines()]
    (data_root / recs[1]["images"][0]["path"]).unlink()
    p = data_root / recs[5]["images"][0]["path"]
    p.write_bytes(p.read_bytes()[:200])
    return recs[1]["id"], recs[5]["id"]


def test_run_training_end_to_end(data_root, tmp_path):
    from cotrain.model.loader import load_model_and_processor
    from cotrain.training.recipe import run as run_training

    _corrupt_two_train_images(data_root)
    out = tmp_path / "run"
    raw = _recipe(data_root, out, epochs=1)
    raw["eval"].update(every_steps=2, every_steps_max_samples=2)
    cfg = load_config(raw=raw)
    result = run_training(cfg)
    s = result["summary"]
    # periodic evaluation through the harness, logged next to the loss (which must still be logged)
    live = [json.loads(x) for x in (out / "log_history.jsonl").read_text().splitlines()]
    evals = [h for h in live if "eval/syn_cls/accuracy" in h]
    assert [h["step"] for h in evals] == list(range(2, s["steps"] + 1, 2))
    assert all("eval/syn_grounding/miou" in h for h in evals)
    assert {h["step"] for h in live if "loss" in h} == set(range(1, s["steps"] + 1))
    assert (out / "evals" / "step-2" / "syn_cls" / "results.jsonl").is_file()
    # every training index is visited once in one epoch, so both bad images are met exactly once
    assert s["skipped"] == {"image_missing": 1, "image_corrupt": 1}
    assert s["steps"] > 0 and s["first_loss"] is not None
    for name in ("metrics.json", "report.md", "loss_curve.png", "predictions.jsonl", "train.log", "config.yaml"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["summary"]["skipped_total"] == 2
    n_val = len((data_root / "records" / "syn_cls_val.jsonl").read_text().splitlines())
    assert metrics["eval"]["syn_cls"]["n"] == min(4, n_val)
    assert metrics["eval"]["syn_cls"]["chance"] == pytest.approx(1 / 8)
    assert 0.0 <= metrics["eval"]["syn_grounding"]["miou"] <= 1.0
    assert (out / "eval" / "syn_cls" / "results.jsonl").is_file()  # the harness of tools/eval.py ran it
    assert len(list((out / "predictions").glob("*.png"))) == 3
    report = (out / "report.md").read_text()
    assert "skipped samples: 2" in report and f"| syn_cls | classification | {min(4, n_val)} |" in report
    # accounting: samples and tokens per dataset / task, per-task loss logged next to the loss
    assert sum(s["samples_by_task"].values()) == s["samples_seen"]
    # the MixtureSampler drives the Trainer: one epoch = each cls record once + a 25% draw of grounding
    n_ground = len((data_root / "records" / "syn_grounding_test.jsonl").read_text().splitlines())
    assert s["samples_by_dataset"] == {"syn_cls": 8, "syn_grounding": round(0.25 * n_ground)}
    assert s["tokens_by_dataset"]["syn_cls"] > 66 * s["samples_by_dataset"]["syn_cls"] // 2
    assert s["label_tokens_by_task"]["classification"] > 0
    assert s["last_loss_by_task"] and all(v > 0 for k, v in s["last_loss_by_task"].items() if k != "step")
    model, processor, family = load_model_and_processor(out / "final")
    assert family.name == "qwen2_5_vl"
    assert sum(p.numel() for p in model.parameters()) == s["parameters"]


def test_malformed_record_stops_before_model_load(data_root, tmp_path):
    from cotrain.training.recipe import run as run_training

    bad = data_root / "records" / "bad.jsonl"
    good = (data_root / "records" / "syn_cls_val.jsonl").read_text().splitlines()
    rec = json.loads(good[1])
    del rec["label"]
    bad.write_text("\n".join([good[0], json.dumps(rec)]) + "\n")
    raw = _recipe(data_root, tmp_path / "run")
    raw["data"]["datasets"] = [{"name": "bad", "records": str(bad), "image_root": str(data_root)}]
    with pytest.raises(RecordError, match=r"bad.jsonl:2.*'label'"):
        run_training(load_config(raw=raw))
    assert not (tmp_path / "run" / "final").exists()


def _cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), *args], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


def test_cli_rejects_unknown_override_with_suggestion():
    r = _cli("data_recipes/demo.yaml", "train.lerning_rate=1e-3", "--validate")
    assert r.returncode == 2
    assert "unknown key 'train.lerning_rate'" in r.stderr and "learning_rate" in r.stderr


def test_cli_validate(data_root, tmp_path):
    import yaml

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(_recipe(data_root, tmp_path / "run")))
    r = _cli(str(recipe), "--validate")
    assert r.returncode == 0, r.stderr
    assert "syn_cls" in r.stdout and "8 records" in r.stdout
    r = _cli(str(recipe), "data.max_pixel=10", "--validate")
    assert r.returncode == 2 and "Did you mean 'max_pixels'" in r.stderr


def test_per_task_loss_equals_the_logged_loss_for_one_task(data_root, tmp_path):
    from cotrain.training.recipe import run as run_training

    raw = _recipe(data_root, tmp_path / "one", max_steps=3)
    raw["data"]["datasets"] = [raw["data"]["datasets"][1]]  # grounding only: the per-task mean is the loss
    raw["eval"]["enabled"] = False
    summary = run_training(load_config(raw=raw))["summary"]
    assert summary["samples_by_task"] == {"grounding": summary["samples_seen"]}
    steps = [h for h in json.loads((tmp_path / "one" / "log_history.json").read_text()) if "loss" in h]
    assert len(steps) == 3
    # HF logs the token-mean loss it optimised; ours is recomputed from the logits, by task
    for h in steps:
        assert h["loss/grounding"] == pytest.approx(h["loss"], rel=1e-3)


def test_dataset_rounding_to_no_samples_is_refused_before_model_load(data_root, tmp_path):
    from cotrain.errors import ConfigError
    from cotrain.training.recipe import run as run_training

    raw = _recipe(data_root, tmp_path / "zero")
    raw["data"]["datasets"][0]["weight"] = 0.01  # 8 records x 0.01 -> 0 samples per epoch
    with pytest.raises(ConfigError, match="rounds to 0 samples per epoch"):
        run_training(load_config(raw=raw))
    assert not (tmp_path / "zero" / "final").exists()
