"""data_recipes/full.yaml on the synthetic stand-in: 2 processes under torchrun on CPU, tiny model, a few steps."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from cotrain.config import load_config
from cotrain.data.synthetic import generate_demo_data
from cotrain.data.synthetic.full_layout import FULL_STANDINS, link_full_layout

ROOT = Path(__file__).resolve().parents[2]


def test_full_recipe_names_every_task_and_the_real_settings():
    cfg = load_config(ROOT / "data_recipes" / "full.yaml")
    names = {d.name for d in cfg.data.datasets}
    assert names == set(FULL_STANDINS)
    assert cfg.data.packing and cfg.model.liger and cfg.train.deepspeed == "zero2"
    assert cfg.train.gradient_checkpointing and cfg.train.bf16 and cfg.train.resume_from == "auto"
    formats = {d.name: d.box_format for d in cfg.data.datasets}
    assert formats["dior_rsvg"] == "hbb" and formats["rsvg_quad"] == "quad" and formats["dota_v1"] == "quad"


@pytest.mark.slow
def test_full_recipe_runs_under_torchrun_on_cpu(tmp_path):
    syn = tmp_path / "syn"
    generate_demo_data(syn, seed=2, n_scenes=40, n_large=1, large_size=2048, progress=False, workers=1)
    root = link_full_layout(syn, tmp_path / "full")
    out = tmp_path / "run"
    cmd = ["torchrun", "--standalone", "--nproc_per_node", "2", str(ROOT / "tools" / "train.py"),
           str(ROOT / "data_recipes" / "full.yaml"), f"data.data_root={root}", f"train.output_dir={out}",
           "model.path=null", "model.tiny.hidden_size=64", "model.liger=false", "model.dtype=float32",
           "model.attn_implementation=auto", "train.bf16=false", "train.deepspeed=null",
           "data.max_length=1024", "data.min_pixels=3136", "data.max_pixels=50176", "data.num_workers=0",
           "train.max_steps=3", "train.logging_steps=1", "train.grad_accum=2", "train.save_steps=2",
           "train.learning_rate=1e-3", "eval.max_samples=4", "eval.batch_size=4", "eval.max_new_tokens=8",
           "eval.every_steps=2", "eval.every_steps_max_samples=4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    s = metrics["summary"]
    assert s["steps"] == 3 and s["first_loss"] > 0
    # both ranks trained on different packs: every task of the mix was seen across the run
    assert {"classification", "vqa", "grounding"} <= set(s["samples_by_task"])
    assert (out / "checkpoints" / "checkpoint-2" / "cotrain_state.json").is_file()
    # periodic evaluation, sharded over both ranks through the harness, logged next to the loss
    live = [json.loads(x) for x in (out / "log_history.jsonl").read_text().splitlines()]
    evals = [h for h in live if "eval/aid/accuracy" in h]
    assert [h["step"] for h in evals] == [2] and "eval/dior_rsvg/acc@0.5" in evals[0]
    assert {h["step"] for h in live if "loss" in h} == {1, 2, 3}
    rows = (out / "evals" / "step-2" / "aid" / "results.jsonl").read_text().splitlines()
    assert sorted(json.loads(r)["index"] for r in rows) == [0, 1, 2, 3]  # each sample once across the ranks
    assert "packing epoch 0" in proc.stderr and "attn_implementation 'auto' -> sdpa" in proc.stderr
