"""The FusionRS recipes carry the paper's settings; the CLIP benchmarks stay out of the VLM demo suite."""

from pathlib import Path

import pytest

from cotrain.config import load_config
from cotrain.errors import ConfigError
from cotrain.eval.registry import resolve_benchmarks

RECIPES = Path(__file__).resolve().parents[3] / "data_recipes"


@pytest.mark.parametrize("name,datasets", [
    ("fusionrs_vlm", ["fusionrs_ir"]),
    ("fusionrs_vlm_original", ["fusionrs_ir_original"]),
    ("fusionrs_vlm_mixed", ["fusionrs_ir_original", "fusionrs_ir", "fusionrs_rgb", "fusionrs_dual"]),
])
def test_fusionrs_vlm_recipes_have_the_papers_settings(name, datasets):
    cfg = load_config(RECIPES / f"{name}.yaml")
    lora, t = cfg.model.lora, cfg.train
    assert (lora.enabled, lora.r, lora.alpha, lora.dropout) == (True, 32, 64, 0.05)
    assert (t.learning_rate, t.lr_scheduler, t.warmup_ratio, t.bf16, t.batch_size, t.grad_accum, t.epochs) == \
        (2e-4, "cosine", 0.03, True, 1, 8, 1.0)
    assert [d.name for d in cfg.data.datasets] == datasets and cfg.model.kind == "vlm"


def test_clip_recipes_load():
    demo = load_config(RECIPES / "fusionrs_clip_demo.yaml")
    assert demo.model.kind == "clip" and demo.model.path is None and demo.data.synthetic is not None
    real = load_config(RECIPES / "fusionrs_clip.yaml")
    assert real.model.kind == "clip" and real.model.clip.supervision == "mixed"


def test_clip_settings_are_checked():
    with pytest.raises(ConfigError, match="supervision"):
        load_config(raw={"model": {"kind": "clip", "clip": {"supervision": "thermal"}}})
    with pytest.raises(ConfigError, match="model.kind"):
        load_config(raw={"model": {"kind": "siglip"}})
    with pytest.raises(ConfigError, match="Qwen-VL settings"):
        load_config(raw={"model": {"kind": "clip", "lora": {"enabled": True}}})
    with pytest.raises(ConfigError, match="report_to"):
        load_config(raw={"train": {"report_to": "wandb"}})


def test_triplet_retrieval_is_not_in_the_vlm_demo_suite(tmp_path):
    names = [b.name for b in resolve_benchmarks("demo", data_root=tmp_path)]
    assert "syn_triplet_retrieval" not in names and "syn_cls" in names
    (b,) = resolve_benchmarks("syn_triplet_retrieval", data_root=tmp_path, split="val")
    assert b.metric == "triplet_retrieval" and b.records.endswith("syn_triplet_val.jsonl")
