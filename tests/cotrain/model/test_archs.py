"""Released architectures as data: meta-device parameter counts against the model cards, the config wiring."""

import pytest
import torch

from cotrain.config import load_config
from cotrain.errors import ConfigError
from cotrain.model.archs import ARCHS, arch_config, build_arch_model, count_parameters, get_arch
from cotrain.model.processor import build_offline_processor, special_token_ids

IDS = special_token_ids(build_offline_processor("qwen2_5_vl").tokenizer)


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_meta_parameter_count_matches_the_model_card(name):
    """The card states billions to 2 decimals: the count must round to it (tied embeddings counted once)."""
    model = build_arch_model(name, IDS, device="meta")
    assert all(p.is_meta for p in model.parameters())
    billions = count_parameters(model) / 1e9
    assert round(billions, 2) == pytest.approx(ARCHS[name].card_params_b, abs=1e-9), f"{name}: {billions:.4f}B"


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_shapes_are_self_consistent(name):
    cfg = arch_config(name, IDS)
    text = cfg.text_config
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2
    out = getattr(cfg.vision_config, "out_hidden_size", None) or cfg.vision_config.hidden_size
    assert out == text.hidden_size  # the merger feeds the language model
    assert cfg.image_token_id == IDS["image_token_id"]


def test_reduced_depth_keeps_widths_and_special_layers():
    cfg = arch_config("qwen2_5_vl_7b", IDS, num_layers=2, vision_depth=10)
    assert cfg.text_config.num_hidden_layers == 2 and cfg.text_config.hidden_size == 3584
    assert cfg.vision_config.depth == 10 and cfg.vision_config.fullatt_block_indexes == [7]
    assert arch_config("qwen3_vl_8b", IDS, vision_depth=4).vision_config.deepstack_visual_indexes == [3]
    full = count_parameters(build_arch_model("qwen2_5_vl_7b", IDS, device="meta"))
    small = count_parameters(build_arch_model("qwen2_5_vl_7b", IDS, device="meta", num_layers=2, vision_depth=2))
    assert small < full / 5


def test_unknown_arch_suggests_the_closest_name():
    with pytest.raises(ConfigError, match="'qwen2_5_vl_7b'"):
        get_arch("qwen25_vl_7b")


def _recipe(**model):
    return {"data": {"datasets": [{"name": "a", "records": "a.jsonl", "image_root": "."}]}, "model": model}


def test_recipe_arch_key(monkeypatch):
    with pytest.raises(ConfigError, match="Did you mean 'qwen2_5_vl_3b'"):
        load_config(raw=_recipe(arch="qwen2_5_vl_3"))
    with pytest.raises(ConfigError, match="both set"):
        load_config(raw=_recipe(arch="qwen2_5_vl_3b", path="/ckpt"))
    import cotrain.model.archs as archs
    from cotrain.model.build import build_model, resolve_family

    cfg = load_config(raw=_recipe(arch="qwen3_vl_4b", dtype="bfloat16"))
    assert resolve_family(cfg).name == "qwen3_vl"
    real = archs.build_arch_model
    seen = {}

    def on_meta(name, ids, **kw):
        seen.update(kw, name=name)
        return real(name, ids, **{**kw, "device": "meta"})

    monkeypatch.setattr(archs, "build_arch_model", on_meta)
    model, processor, family = build_model(cfg)
    assert seen["name"] == "qwen3_vl_4b" and seen["dtype"] == torch.bfloat16 and seen["device"] == "cpu"
    assert type(model).__name__ == "Qwen3VLForConditionalGeneration" and family.name == "qwen3_vl"
    assert model.config.image_token_id == special_token_ids(processor.tokenizer)["image_token_id"]
    assert round(count_parameters(model) / 1e9, 2) == 4.44
