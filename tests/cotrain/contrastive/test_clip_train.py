"""Contrastive training end to end on synthetic triplets: the run, its report, exact resume, the eval CLI, bad input."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from cotrain.config import load_config
from cotrain.contrastive.model import load_clip
from cotrain.contrastive.recipe import run
from cotrain.data.synthetic import generate_demo_data
from cotrain.errors import ConfigError, ModelLoadError


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip_data")
    generate_demo_data(root, seed=4, n_scenes=30, n_large=0, progress=False, workers=1)
    return root


def _recipe(data_root, out, *, supervision="original", records="syn_triplet", **train):
    raw = {
        "run_name": "clip_test",
        "data": {"data_root": str(data_root), "datasets": [
            {"name": records, "records": f"${{data_root}}/records/{records}_train.jsonl", "image_root": "${data_root}"}],
            "eval_datasets": [{"name": "syn_triplet", "records": "${data_root}/records/syn_triplet_val.jsonl",
                               "image_root": "${data_root}"}]},
        "model": {"kind": "clip", "clip": {"supervision": supervision, "max_text_tokens": 64, "image_size": 32,
                                           "hidden_size": 32, "num_layers": 1, "projection_dim": 16}},
        "train": {"output_dir": str(out), "batch_size": 4, "max_steps": 4, "logging_steps": 1, "learning_rate": 1e-3,
                  "lr_scheduler": "constant", "warmup_ratio": 0.0, **train},
    }
    return load_config(raw=raw)


def _losses(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "log_history.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


@pytest.mark.parametrize("supervision", ["original", "mixed"])
def test_run_trains_saves_and_reports(data_root, tmp_path, supervision):
    out = tmp_path / "run"
    result = run(_recipe(data_root, out, supervision=supervision, report_to="tensorboard"))
    s = result["summary"]
    assert s["steps"] == 4 and s["samples_seen"] == 16 and s["skipped_total"] == 0
    m = result["eval"]["syn_triplet"]
    assert m["n"] == 3 and 0 <= m["mean_recall"] <= 100 and m["ir_text_field"] == "ir_captions"
    logged = [json.loads(x) for x in (out / "log_history.jsonl").read_text().splitlines()]
    first = next(r for r in logged if "loss" in r)
    for key in ("loss/rgb_text", "loss/ir_text", "loss/rgb_ir", "logit_scale", "global_batch"):
        assert key in first, key
    assert first["global_batch"] == 4
    report = (out / "report.md").read_text()
    assert "IR->Text R@1" in report and f"supervision `{supervision}`" in report
    assert list((out / "checkpoints" / "runs").rglob("events.out.tfevents.*")), "no tensorboard log"
    model, processor = load_clip(out / "final")
    assert processor.max_text_tokens == 64 and model.config.projection_dim == 16


def test_resume_continues_exactly(data_root, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    # 24 train triplets at batch 4: an epoch is 6 steps, so steps 4..8 cross an epoch boundary
    run(_recipe(data_root, a, max_steps=8, save_steps=3))
    ckpt = a / "checkpoints" / "checkpoint-3"
    assert (ckpt / "cotrain_state.json").is_file()
    run(_recipe(data_root, b, max_steps=8, save_steps=3, resume_from=str(ckpt)))
    la, lb = _losses(a), _losses(b)
    assert min(lb) == 4  # b really started from the checkpoint
    assert [lb[s] for s in range(4, 9)] == [la[s] for s in range(4, 9)]
    wa, wb = load_file(str(a / "final" / "model.safetensors")), load_file(str(b / "final" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_eval_cli_on_a_clip_checkpoint(data_root, tmp_path):
    from cotrain.cli import main

    out = tmp_path / "run"
    run(_recipe(data_root, out, max_steps=2))
    ev = tmp_path / "eval"
    assert main(["eval", "--model", str(out / "final"), "--bench", "syn_triplet_retrieval", "--data-root",
                 str(data_root), "--split", "val", "--out", str(ev), "--no-progress"]) == 0
    m = json.loads((ev / "metrics.json").read_text())["syn_triplet_retrieval"]
    assert m["n"] == 3 and "text2rgb_r@10" in m
    assert "FusionRS table" in (ev / "report.md").read_text()


def test_bad_inputs(data_root, tmp_path):
    with pytest.raises(ConfigError, match="global batch of 1"):
        run(_recipe(data_root, tmp_path / "one", batch_size=1))
    with pytest.raises(ConfigError, match="triplet records"):
        run(_recipe(data_root, tmp_path / "cls", records="syn_cls"))
    # a records file whose triplets lack IR-aware captions, with a setting that needs them
    recs = [json.loads(x) for x in (Path(data_root) / "records" / "syn_triplet_train.jsonl").read_text().splitlines()]
    bare = tmp_path / "records" / "bare_train.jsonl"
    bare.parent.mkdir()
    bare.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "ir_captions"}) + "\n" for r in recs))
    cfg = _recipe(data_root, tmp_path / "bare", supervision="ir_aware")
    cfg.data.datasets[0].records = str(bare)
    with pytest.raises(ConfigError, match="no ir_captions"):
        run(cfg)


def test_checkpoint_without_processor_files_is_named(data_root, tmp_path):
    out = tmp_path / "run"
    run(_recipe(data_root, out, max_steps=1))
    (out / "final" / "preprocessor_config.json").unlink()
    with pytest.raises(ModelLoadError, match="preprocessor_config.json"):
        load_clip(out / "final")


def test_a_vlm_recipe_refuses_triplet_records(data_root, tmp_path):
    from cotrain.training.recipe import validate_only

    raw = yaml.safe_load(yaml.safe_dump({"data": {"data_root": str(data_root), "datasets": [
        {"name": "t", "records": f"{data_root}/records/syn_triplet_train.jsonl", "image_root": str(data_root)}]},
        "train": {"output_dir": str(tmp_path)}}))
    with pytest.raises(ConfigError, match="model.kind: clip"):
        validate_only(load_config(raw=raw))
