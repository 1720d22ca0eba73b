"""Exact resume: a run killed with SIGKILL mid-epoch and resumed logs the same losses as an uninterrupted run.

Also: checkpoints appear only complete (staging + rename), a checkpoint from another recipe is
refused before the model loads, and missing or truncated checkpoint files are named.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from cotrain.training.checkpoint import check_checkpoint, list_checkpoints, run_fingerprint
from cotrain.config import load_config
from cotrain.data.synthetic import generate_demo_data
from cotrain.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    generate_demo_data(root, seed=5, n_scenes=30, n_large=0, progress=False, workers=1)
    return root


def _scores(data_root, tmp_path, name: str, n: int) -> str:
    """A curriculum score file (both lessons and weights, seeded) for the first ``n`` records of ``name``."""
    rng = np.random.default_rng(7)
    lines = (Path(data_root) / "records" / f"{name}_train.jsonl").read_text().splitlines()[:n]
    path = tmp_path / f"{name}_scores.jsonl"
    path.write_text("".join(json.dumps({"id": json.loads(x)["id"], "transfer": float(rng.normal()),
                                        "alignment": float(rng.normal()), "weight": float(rng.uniform(0.2, 1.9))})
                            + "\n" for x in lines))
    return str(path)


def _recipe(data_root, tmp_path, packing=False, curriculum=False):
    ds = lambda name, **kw: {"name": name, "records": f"${{data_root}}/records/{name}_train.jsonl",  # noqa: E731
                             "image_root": "${data_root}", **kw}
    cls_kw = {"curriculum": {"scores": _scores(data_root, tmp_path, "syn_cls", 12), "tiers": 3,
                             "loss_weights": True}} if curriculum else {}
    recipe = {
        "run_name": "resume",
        "data": {"data_root": str(data_root), "max_pixels": 16 * 28 * 28, "max_length": 1024, "packing": packing,
                 # 20 samples per epoch at batch 4: the 9 compared steps cross an epoch boundary
                 "datasets": [ds("syn_cls", max_samples=12, **cls_kw), ds("syn_vqa", max_samples=8)]},
        "model": {"tiny": {"hidden_size": 64}},
        "train": {"batch_size": 4 if not packing else 1, "logging_steps": 1, "save_steps": 3, "max_steps": 1000,
                  "lr_scheduler": "constant", "warmup_ratio": 0.0, "learning_rate": 2e-3},
        "eval": {"enabled": False},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _losses(out: Path) -> dict[int, float]:
    """step -> loss from the live log; a resumed run's entries replace the killed run's."""
    rows = {}
    log = out / "log_history.jsonl"
    if log.exists():
        for line in log.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # the line being written when the process was killed
                continue
            if "loss" in row:
                rows[row["step"]] = row["loss"]
    return rows


def _run_until(recipe: Path, out: Path, stop, *extra: str, timeout: float = 240.0) -> None:
    """Start training and SIGKILL it as soon as ``stop(out)`` holds; fail if it ends or times out first."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    err = (out.parent / f"{out.name}.stderr").open("ab")
    proc = subprocess.Popen([sys.executable, str(ROOT / "tools" / "train.py"), str(recipe),
                             f"train.output_dir={out}", *extra], stdout=subprocess.DEVNULL, stderr=err, env=env)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            if stop(out):
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return
            if proc.poll() is not None:
                tail = (out.parent / f"{out.name}.stderr").read_text(errors="replace")[-3000:]
                pytest.fail(f"training ended (rc {proc.returncode}) before the kill point:\n{tail}")
            time.sleep(0.02)
        pytest.fail("training did not reach the kill point in time")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("packing,curriculum", [(False, False), (True, False), (False, True)])
def test_sigkill_and_resume_gives_identical_losses(data_root, tmp_path, packing, curriculum):
    recipe = _recipe(data_root, tmp_path, packing=packing, curriculum=curriculum)
    last = 9
    a, b = tmp_path / "a", tmp_path / "b"

    def after_first_checkpoint(out):
        return bool(list_checkpoints(out / "checkpoints")) and max(_losses(out), default=0) >= 4

    _run_until(recipe, a, after_first_checkpoint)
    killed_at = max(_losses(a))
    ckpt = list_checkpoints(a / "checkpoints")[-1]
    resumed_from = int(ckpt.name.split("-")[1])
    assert resumed_from < killed_at, "the kill must lose steps after the checkpoint"

    _run_until(recipe, a, lambda out: max(_losses(out), default=0) >= last, "train.resume_from=auto")
    _run_until(recipe, b, lambda out: max(_losses(out), default=0) >= last)
    resumed, fresh = _losses(a), _losses(b)
    compared = [s for s in range(resumed_from + 1, last + 1)]
    assert len(compared) >= 3
    for step in compared:
        assert resumed[step] == fresh[step], (step, resumed[step], fresh[step])
    assert "resuming from" in (tmp_path / "a.stderr").read_text()
    if curriculum:  # the weighted loss is what was resumed, and it is logged
        rows = [json.loads(x) for x in (b / "log_history.jsonl").read_text().splitlines() if x.strip()]
        assert any("loss_weight_mean" in r for r in rows)
        assert "curriculum syn_cls: ascending_stratified_random, 3 tiers" in (tmp_path / "b.stderr").read_text()


@pytest.fixture(scope="module")
def finished_checkpoint(data_root, tmp_path_factory):
    """A complete checkpoint from a 3-step run (in-process)."""
    from cotrain.training.recipe import run as run_training

    tmp = tmp_path_factory.mktemp("ckpt")
    recipe = _recipe(data_root, tmp)
    cfg = load_config(recipe, [f"train.output_dir={tmp / 'run'}", "train.max_steps=3"])
    run_training(cfg)
    (ckpt,) = list_checkpoints(tmp / "run" / "checkpoints")
    return cfg, ckpt


def test_checkpoint_is_complete_and_carries_state(finished_checkpoint):
    cfg, ckpt = finished_checkpoint
    state = check_checkpoint(ckpt, cfg)
    assert state["global_step"] == 3 and state["run"] == run_fingerprint(cfg)
    assert state["sampler"]["fingerprint"] and state["sampler"]["samples_per_epoch"] == 20
    assert not [p for p in ckpt.parent.iterdir() if p.name.startswith(".staging")]


def test_resume_from_another_recipe_is_refused(finished_checkpoint):
    cfg, ckpt = finished_checkpoint
    other = load_config(raw=json.loads(json.dumps(_as_raw(cfg))))
    other.data.seed = 7
    other.train.learning_rate = 1e-4
    with pytest.raises(ConfigError, match=r"different recipe: data.seed: checkpoint 0 vs now 7.*train.learning_rate"):
        check_checkpoint(ckpt, other)
    # bookkeeping may change
    relaxed = load_config(raw=json.loads(json.dumps(_as_raw(cfg))))
    relaxed.train.logging_steps = 50
    relaxed.train.max_steps = 10
    check_checkpoint(ckpt, relaxed)


def _as_raw(cfg):
    from cotrain.config import config_to_dict

    raw = config_to_dict(cfg)
    raw["data"].pop("synthetic", None)
    return raw


@pytest.mark.parametrize("damage, message", [
    ("rm rng_state.pth", "no rng_state"),
    ("rm optimizer.pt", "missing optimizer.pt"),
    ("rm cotrain_state.json", "has no cotrain_state.json"),
    ("truncate optimizer.pt", "optimizer.pt is not a complete torch.save archive"),
    ("truncate model.safetensors", "model.safetensors is truncated"),
    ("garble trainer_state.json", "trainer_state.json is corrupt"),
])
def test_missing_or_corrupt_files_are_named(finished_checkpoint, tmp_path, damage, message):
    cfg, ckpt = finished_checkpoint
    copy = tmp_path / ckpt.name
    shutil.copytree(ckpt, copy)
    action, name = damage.split()
    target = copy / name
    if action == "rm":
        target.unlink()
    elif action == "truncate":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    else:
        target.write_text("{not json")
    with pytest.raises(ConfigError, match=message):
        check_checkpoint(copy, cfg)


def test_cli_refuses_foreign_checkpoint_before_model_load(finished_checkpoint, tmp_path):
    cfg, ckpt = finished_checkpoint
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(_as_raw(cfg)))
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), str(recipe), "data.seed=3",
                           f"train.resume_from={ckpt}", f"train.output_dir={tmp_path / 'x'}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "different recipe" in proc.stderr and "data.seed" in proc.stderr
    assert "model:" not in proc.stderr  # refused before the model was built
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), str(recipe),
                           f"train.resume_from={tmp_path / 'nope'}", f"train.output_dir={tmp_path / 'y'}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "is not a directory" in proc.stderr
