"""What trains: part classification, freezing, per-part learning rates, LoRA save/load/merge.

Golden routes: parts are derived from module objects (``model.model.visual.merger`` ...), not
from names; freezing and learning rates are judged by a real ``torch.optim.AdamW`` step, whose
first update is lr * g / (|g| + eps) ~ lr * sign(g) (hand-derived from Adam's bias correction);
LoRA round trips are judged by logits of independently rebuilt models.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cotrain.config import LoraConfig, ModelConfig, TrainConfig
from cotrain.data.encoder import ChatEncoder
from cotrain.errors import ConfigError, ModelLoadError
from cotrain.model.families import get_family
from cotrain.model.loader import load_model_and_processor, save_model_and_processor
from cotrain.model.processor import build_offline_processor
from cotrain.model.tiny import build_tiny_model
from cotrain.model.trainable import (PARTS, apply_freeze, apply_lora, load_with_adapter, merge_lora,
                                     optimizer_param_groups, part_of, save_adapter)

FAMILIES = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]


@pytest.fixture(scope="module")
def setups():
    """family -> (processor, one batch with an image), built once."""
    out = {}
    for family in FAMILIES:
        processor = build_offline_processor(family)
        f = get_family(family).factor
        image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (2 * f, 3 * f, 3), dtype=np.uint8))
        conversation = {"messages": [
            {"role": "user", "content": [{"type": "image", "index": 0}, {"type": "text", "text": "What is it?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "A harbour."}]},
        ], "meta": {"id": "t0"}}
        sample = ChatEncoder(processor, family).encode(conversation, [image])
        batch = {k: sample[k][None] for k in ("input_ids", "attention_mask", "labels", "mm_token_type_ids")}
        batch.update(pixel_values=sample["pixel_values"], image_grid_thw=sample["image_grid_thw"])
        out[family] = (processor, batch)
    return out


def _model(family, setups, **overrides):
    return build_tiny_model(family, processor=setups[family][0], **overrides)


def _core(model):
    """The transformers model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _parts_by_module(model) -> dict[int, str]:
    """id(parameter) -> part, from the module tree (independent of parameter names)."""
    core = _core(model)
    visual = core.model.visual
    mergers = [visual.merger] + list(getattr(visual, "deepstack_merger_list", []))
    parts = {}
    for p in visual.parameters():
        parts[id(p)] = "vision"
    for merger in mergers:
        for p in merger.parameters():
            parts[id(p)] = "merger"
    for module in (core.model.language_model, core.lm_head):
        for p in module.parameters():
            parts[id(p)] = "language"
    return parts


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _one_step(model, batch, optimizer):
    model.train()
    optimizer.zero_grad()
    model(**batch).loss.backward()
    optimizer.step()
    model.eval()


def _logits(model, batch):
    with torch.no_grad():
        return model.eval()(**{k: v for k, v in batch.items() if k != "labels"}).logits


# ---------------------------------------------------------------- classification


@pytest.mark.parametrize("family", FAMILIES)
def test_every_parameter_is_classified(family, setups):
    model = _model(family, setups)
    expected = _parts_by_module(model)
    named = list(model.named_parameters())
    assert len(expected) == len(named), "module-tree route missed parameters"
    got = {part: 0 for part in PARTS}
    for name, p in named:
        assert part_of(name) == expected[id(p)], name
        got[part_of(name)] += 1
    assert all(got[part] > 0 for part in PARTS), got

    # the same under peft (prefix base_model.model., lora_A/base_layer suffixes), vision adapted too
    cfg = ModelConfig(lora=LoraConfig(enabled=True, r=2, alpha=4, language=True, vision=True))
    peft_model = apply_lora(model, cfg)
    expected = _parts_by_module(peft_model)
    names = [n for n, _ in peft_model.named_parameters()]
    assert any(n.startswith("base_model.model.") and ".lora_A." in n for n in names)
    for name, p in peft_model.named_parameters():
        assert part_of(name) == expected[id(p)], name
    assert part_of("module.model.visual.merger.mlp.0.weight") == "merger"  # DDP wrapper


def test_unknown_parameter_is_named():
    with pytest.raises(ValueError, match="encoder.layer.0.weight"):
        part_of("encoder.layer.0.weight")
    with pytest.raises(ValueError, match="visual.blocks"):
        part_of("visual.blocks.0.attn.qkv.weight")  # transformers 4.x layout is not guessed at


# ---------------------------------------------------------------- freezing


FLAG_CASES = [(False, True, True), (True, False, True), (True, True, False), (False, False, True),
              (True, False, False)]


@pytest.mark.parametrize("flags", FLAG_CASES, ids=lambda f: "v%dm%dl%d" % f)
@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_freeze_flags_freeze_exactly_their_part(family, flags, setups):
    model = _model(family, setups)
    wanted = dict(zip(PARTS, flags))
    summary = apply_freeze(model, ModelConfig(train_vision=flags[0], train_merger=flags[1], train_language=flags[2]))
    parts = _parts_by_module(model)
    for part in PARTS:  # counts from the module tree, not from the code under test
        total = sum(p.numel() for p in model.parameters() if parts[id(p)] == part)
        assert summary[part] == {"trainable": total if wanted[part] else 0, "total": total}

    before = _snapshot(model)
    # every parameter goes to the optimizer: only requires_grad decides what moves
    _one_step(model, setups[family][1], torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0))
    for name, p in model.named_parameters():
        if wanted[parts[id(p)]]:
            assert not torch.equal(p, before[name]), f"{name} should have trained"
        else:
            assert torch.equal(p, before[name]), f"{name} should be frozen"


def test_nothing_trainable_is_refused(setups):
    model = _model("qwen2_vl", setups)
    with pytest.raises(ConfigError, match="train_vision.*train_merger.*train_language"):
        apply_freeze(model, ModelConfig(train_vision=False, train_merger=False, train_language=False))


# ---------------------------------------------------------------- optimizer groups


def test_param_groups_split_by_part_and_decay(setups):
    model = _model("qwen3_vl", setups)
    apply_freeze(model, ModelConfig(train_vision=False))
    groups = optimizer_param_groups(model, TrainConfig(learning_rate=1e-3, weight_decay=0.1, merger_lr=5e-4))
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"merger/decay", "merger/no_decay", "language/decay", "language/no_decay"}
    assert by_name["merger/decay"]["lr"] == 5e-4 and by_name["language/decay"]["lr"] == 1e-3
    assert by_name["language/decay"]["weight_decay"] == 0.1 and by_name["language/no_decay"]["weight_decay"] == 0.0

    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters() if p.requires_grad}
    params = dict(model.named_parameters())
    no_decay = {id(p) for g in groups if g["name"].endswith("no_decay") for p in g["params"]}
    # hand-picked: biases, RMSNorm / LayerNorm / q_norm weights -> no decay; matrices and embeddings decay
    for name in ("model.language_model.norm.weight", "model.language_model.layers.0.self_attn.q_norm.weight",
                 "model.language_model.layers.1.input_layernorm.weight", "model.visual.merger.norm.weight",
                 "model.visual.merger.norm.bias", "model.visual.merger.linear_fc1.bias"):
        assert id(params[name]) in no_decay, name
    for name in ("model.language_model.embed_tokens.weight", "lm_head.weight",
                 "model.language_model.layers.0.self_attn.q_proj.weight", "model.visual.merger.linear_fc2.weight"):
        assert id(params[name]) not in no_decay, name


def test_zero_lr_part_stays_put_in_adamw(setups):
    model = _model("qwen2_5_vl", setups)
    apply_freeze(model, ModelConfig())
    groups = optimizer_param_groups(model, TrainConfig(learning_rate=1e-3, weight_decay=0.1, language_lr=0.0))
    before = _snapshot(model)
    _one_step(model, setups["qwen2_5_vl"][1], torch.optim.AdamW(groups))
    for name, p in model.named_parameters():
        if part_of(name) == "language":
            assert torch.equal(p, before[name]), name
        else:
            assert not torch.equal(p, before[name]), name


def test_part_lrs_reach_adamw(setups):
    """Adam's first step moves each element by lr * g / (|g| + eps): ~lr wherever |g| >> eps."""
    model = _model("qwen2_vl", setups)
    apply_freeze(model, ModelConfig())
    lrs = {"vision": 1e-4, "merger": 4e-4, "language": 2e-3}
    train_cfg = TrainConfig(learning_rate=1.0, vision_lr=lrs["vision"], merger_lr=lrs["merger"],
                            language_lr=lrs["language"])
    groups = optimizer_param_groups(model, train_cfg)
    before = _snapshot(model)
    _one_step(model, setups["qwen2_vl"][1], torch.optim.AdamW(groups, betas=(0.9, 0.999), eps=1e-8))
    moved = {part: [] for part in PARTS}
    for name, p in model.named_parameters():
        delta = (p.detach() - before[name]).abs().flatten()
        grad = p.grad.abs().flatten()
        moved[part_of(name)].append(delta[grad > 1e-5])  # |g| >> eps: the step is lr to ~0.1%
    median = {part: torch.cat(v).median().item() for part, v in moved.items()}
    for part in PARTS:
        assert median[part] == pytest.approx(lrs[part], rel=0.02), (part, median)
    assert median["merger"] / median["vision"] == pytest.approx(4.0, rel=0.02)


# ---------------------------------------------------------------- LoRA


def _lora_cfg(**lora) -> ModelConfig:
    return ModelConfig(train_vision=False, lora=LoraConfig(enabled=True, r=4, alpha=8, dropout=0.0, **lora))


def _train_lora(family, setups, cfg, steps=2):
    model = _model(family, setups)
    apply_freeze(model, cfg)
    model = apply_lora(model, cfg)
    optimizer = torch.optim.AdamW(optimizer_param_groups(model, TrainConfig(learning_rate=1e-2)))
    for _ in range(steps):  # lora_B starts at zero: train so that the adapters matter
        _one_step(model, setups[family][1], optimizer)
    return model


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_trains_only_adapters_and_non_adapted_parts(family, setups):
    model = _model(family, setups)
    cfg = _lora_cfg(language=True, vision=False)
    apply_freeze(model, cfg)
    peft_model = apply_lora(model, cfg)
    parts = _parts_by_module(peft_model)
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    lora_names = {n for n, _ in peft_model.named_parameters() if ".lora_" in n}
    merger = {n for n, p in peft_model.named_parameters() if parts[id(p)] == "merger"}
    assert lora_names and all(part_of(n) == "language" for n in lora_names)
    assert trainable == lora_names | merger  # vision frozen (flag), LM base frozen (adapted)
    # the seven projections of every decoder layer carry adapters
    layers = _core(peft_model).config.text_config.num_hidden_layers
    assert len({n.split(".lora_")[0] for n in lora_names}) == 7 * layers

    # vision adapters too: every ViT block linear is adapted, the mergers are not
    model = _model(family, setups)
    block_linears = {f"model.visual.{n}" for n, m in model.model.visual.named_modules()
                     if n.startswith("blocks.") and isinstance(m, torch.nn.Linear)}
    per_block = {"qwen2_vl": 4, "qwen2_5_vl": 5, "qwen3_vl": 4}[family]  # qkv, proj + fc1/fc2 or gate/up/down
    assert len(block_linears) == per_block * model.config.vision_config.depth
    cfg = ModelConfig(lora=LoraConfig(enabled=True, r=2, alpha=4, language=False, vision=True))
    peft_model = apply_lora(model, cfg)
    adapted = {n.split(".lora_")[0].removeprefix("base_model.model.") for n, _ in peft_model.named_parameters()
               if ".lora_A." in n}
    assert adapted == block_linears
    trainable_parts = {part_of(n) for n, p in peft_model.named_parameters() if p.requires_grad and ".lora_" not in n}
    assert trainable_parts == {"merger", "language"}


def test_lora_on_frozen_part_is_refused(setups):
    model = _model("qwen2_vl", setups)
    with pytest.raises(ConfigError, match="train_language"):  # refused by the config, before any model
        ModelConfig(train_language=False, lora=LoraConfig(enabled=True, language=True))
    cfg = ModelConfig(lora=LoraConfig(enabled=True, language=True))
    cfg.train_language = False  # built past the config check: apply_lora refuses too
    with pytest.raises(ConfigError, match="train_language"):
        apply_lora(model, cfg)


def test_adapter_round_trip_and_merge(setups, tmp_path):
    family = "qwen2_5_vl"
    processor, batch = setups[family]
    model = _train_lora(family, setups, _lora_cfg(language=True))
    lora_logits = _logits(model, batch)
    base_logits = _logits(_model(family, setups), batch)
    assert not torch.allclose(lora_logits, base_logits, atol=1e-4), "training must have changed the model"

    save_adapter(model, tmp_path / "adapter")
    reloaded = load_with_adapter(_model(family, setups), tmp_path / "adapter")  # same seed = same base
    torch.testing.assert_close(_logits(reloaded, batch), lora_logits, rtol=0, atol=1e-6)

    merged = merge_lora(model)
    assert type(merged).__name__ == get_family(family).model_class
    assert not any(".lora_" in n for n, _ in merged.named_parameters())
    torch.testing.assert_close(_logits(merged, batch), lora_logits, rtol=0, atol=1e-5)

    save_model_and_processor(merged, processor, tmp_path / "merged")
    loaded, _, _ = load_model_and_processor(tmp_path / "merged")
    torch.testing.assert_close(_logits(loaded, batch), lora_logits, rtol=0, atol=1e-5)


@pytest.mark.filterwarnings("ignore:Found missing adapter keys")
def test_mismatched_adapter_is_refused(setups, tmp_path):
    model = _train_lora("qwen2_5_vl", setups, _lora_cfg(language=True), steps=1)
    save_adapter(model, tmp_path / "a")
    with pytest.raises(ModelLoadError, match="hidden_size"):
        load_with_adapter(_model("qwen2_5_vl", setups, hidden_size=96), tmp_path / "a")

    # without our side files, the peft load itself must still refuse the wrong shapes
    for side_file in ("cotrain_adapter.json", "trained_parts.safetensors"):
        (tmp_path / "a" / side_file).unlink()
    with pytest.raises(ModelLoadError, match="does not fit|disagree"):
        load_with_adapter(_model("qwen2_5_vl", setups, hidden_size=96), tmp_path / "a")

    # different family, same widths: Qwen2.5-VL vision adapters name gate/up/down, Qwen2-VL has fc1/fc2
    vision = _train_lora("qwen2_5_vl", setups, ModelConfig(lora=LoraConfig(enabled=True, r=2, alpha=4,
                                                                           language=False, vision=True)), steps=1)
    save_adapter(vision, tmp_path / "v")
    with pytest.raises(ModelLoadError, match="model_type"):
        load_with_adapter(_model("qwen2_vl", setups), tmp_path / "v")
    (tmp_path / "v" / "cotrain_adapter.json").unlink()
    (tmp_path / "v" / "trained_parts.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="does not fit|disagree"):
        load_with_adapter(_model("qwen2_vl", setups), tmp_path / "v")

    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="adapter_config.json"):
        load_with_adapter(_model("qwen2_5_vl", setups), tmp_path / "empty")
