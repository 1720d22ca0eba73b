"""Tiny models: config traps, forward+backward per family, seeding, and 3-D M-RoPE positions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cotrain.data.encoder import ChatEncoder
from cotrain.model.families import get_family
from cotrain.model.processor import build_offline_processor
from cotrain.model.tiny import build_tiny_model, create_tiny_checkpoint, tiny_config

FAMILIES = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]


def _image(h: int, w: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _conversation() -> dict:
    return {"messages": [
        {"role": "user", "content": [{"type": "image", "index": 0}, {"type": "text", "text": "What is it?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A harbour."}]},
    ], "meta": {"id": "t0"}}


@pytest.fixture(scope="module", params=FAMILIES)
def family_setup(request):
    family = request.param
    processor = build_offline_processor(family)
    return family, processor, build_tiny_model(family, processor=processor), ChatEncoder(processor, family)


def _batch(encoder, family, h_tokens=2, w_tokens=3):
    f = get_family(family).factor
    sample = encoder.encode(_conversation(), [_image(h_tokens * f, w_tokens * f)])
    keys = ("input_ids", "attention_mask", "labels", "mm_token_type_ids")
    batch = {k: sample[k][None] for k in keys}
    batch.update(pixel_values=sample["pixel_values"], image_grid_thw=sample["image_grid_thw"])
    return batch


def test_config_traps_hold():
    token_ids = {"image_token_id": 1, "video_token_id": 2, "vision_start_token_id": 3,
                 "vision_end_token_id": 4, "bos_token_id": 5, "eos_token_id": 6, "pad_token_id": 5}
    for family in FAMILIES:
        for hidden in (64, 96, 128):
            cfg = tiny_config(family, hidden_size=hidden, vision_depth=3, token_ids=token_ids)
            text = cfg.text_config
            head_dim = hidden // text.num_attention_heads
            assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2
            vision = cfg.vision_config
            out = vision.hidden_size if family == "qwen2_vl" else vision.out_hidden_size
            assert out == hidden
            assert vision.depth == 3
            assert cfg.image_token_id == 1 and cfg.vision_start_token_id == 3
            assert text.vocab_size == 16  # max id 6 -> 7 rounded up to 16
        if family == "qwen2_5_vl":
            assert max(cfg.vision_config.fullatt_block_indexes) < cfg.vision_config.depth
        if family == "qwen3_vl":
            assert cfg.text_config.rope_parameters["mrope_interleaved"] is True
            assert max(cfg.vision_config.deepstack_visual_indexes) < cfg.vision_config.depth
    with pytest.raises(ValueError, match="hidden_size"):
        tiny_config("qwen2_5_vl", hidden_size=60, token_ids=token_ids)


def test_token_ids_match_tokenizer(family_setup):
    _, processor, model, _ = family_setup
    tok = processor.tokenizer
    assert model.config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert model.config.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert model.config.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert model.config.vision_end_token_id == tok.convert_tokens_to_ids("<|vision_end|>")
    assert model.config.text_config.vocab_size >= len(tok)


def test_forward_backward(family_setup):
    family, _, model, encoder = family_setup
    batch = _batch(encoder, family)
    model.train()
    model.zero_grad()
    out = model(**batch)
    model.eval()
    vocab = model.config.text_config.vocab_size
    assert out.logits.shape == (1, batch["input_ids"].shape[1], vocab)
    # Random init: the loss is near the uniform-guess value ln(vocab).
    assert torch.isfinite(out.loss) and abs(out.loss.item() - np.log(vocab)) < 1.0
    out.loss.backward()
    vision_grad = sum(p.grad.abs().sum().item() for n, p in model.named_parameters()
                      if "visual" in n and p.grad is not None)
    lm_grad = model.lm_head.weight.grad.abs().sum().item()
    assert vision_grad > 0, "the loss must reach the vision tower through the image tokens"
    assert lm_grad > 0


def test_seed_is_explicit_and_global_rng_untouched():
    processor = build_offline_processor("qwen2_5_vl")
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = build_tiny_model("qwen2_5_vl", seed=7, processor=processor)
    assert torch.equal(torch.rand(3), expected_next)
    b = build_tiny_model("qwen2_5_vl", seed=7, processor=processor)
    c = build_tiny_model("qwen2_5_vl", seed=8, processor=processor)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def _captured_positions(model, batch):
    seen = {}

    def hook(_module, _args, kwargs):
        seen["position_ids"] = kwargs["position_ids"]

    handle = model.model.language_model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            logits = model(**batch).logits
    finally:
        handle.remove()
    return seen["position_ids"], logits


def test_mrope_positions_are_3d(family_setup):
    family, _, model, encoder = family_setup
    h_tokens, w_tokens = 2, 3
    batch = _batch(encoder, family, h_tokens, w_tokens)
    positions, logits = _captured_positions(model, batch)
    ids = batch["input_ids"][0]
    is_image = (ids == model.config.image_token_id).nonzero().flatten()
    start, n = int(is_image[0]), len(is_image)
    assert n == h_tokens * w_tokens
    pos = positions[-3:, 0]  # (t, h, w) rows; some versions prepend a plain text row
    # Hand-derived Qwen M-RoPE layout: text before the image counts 0..start-1 on all axes;
    # visual token k of a (h_tokens x w_tokens) grid sits at t=start, h=start+k//w, w=start+k%w;
    # text after it resumes at start + max(h_tokens, w_tokens).
    k = torch.arange(n)
    assert torch.equal(pos[:, :start], torch.arange(start).expand(3, -1))
    assert torch.equal(pos[0, start:start + n], torch.full((n,), start))
    assert torch.equal(pos[1, start:start + n], start + k // w_tokens)
    assert torch.equal(pos[2, start:start + n], start + k % w_tokens)
    after = start + max(h_tokens, w_tokens)
    assert torch.equal(pos[:, start + n], torch.full((3,), after))

    # Without mm_token_type_ids transformers either refuses (Qwen2-VL, Qwen3-VL in 5.22) or
    # silently drops to 1-D positions (Qwen2.5-VL): that is why encoder and collator carry it.
    without = {k: v for k, v in batch.items() if k != "mm_token_type_ids"}
    try:
        flat_positions, flat_logits = _captured_positions(model, without)
    except ValueError as exc:
        assert "mm_token_type_ids" in str(exc)
        assert family != "qwen2_5_vl", "transformers changed: update PLATFORM.md and this test"
        return
    # None lets the text model count 0..L-1 on every axis.
    assert flat_positions is None or torch.equal(flat_positions[-1, 0], torch.arange(ids.numel()))
    assert not torch.allclose(flat_logits, logits, atol=1e-5)


def test_create_tiny_checkpoint_layout(tmp_path):
    out = create_tiny_checkpoint(tmp_path / "tiny", "qwen2_vl", seed=3, hidden_size=96)
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "processor_config.json", "chat_template.jinja", "video_preprocessor_config.json"} <= names
    import json

    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "qwen2_vl"
    assert config["text_config"]["hidden_size"] == 96


def test_fourier_position_grid_and_vocab_of_number_tokens():
    from cotrain.model.tiny import fourier_position_grid

    g = fourier_position_grid(8, 16)
    assert g.shape == (64, 16)
    # hand-derived: row r, column c -> sin/cos(pi k (r + .5) / 8) then the same of c, k = 1, 2, ...
    r, c = 2, 5
    k = np.arange(1, 5)
    want = np.concatenate([np.sin(np.pi * k * (r + 0.5) / 8), np.cos(np.pi * k * (r + 0.5) / 8),
                           np.sin(np.pi * k * (c + 0.5) / 8), np.cos(np.pi * k * (c + 0.5) / 8)])
    assert np.allclose(g[r * 8 + c].numpy(), want, atol=1e-6)
    assert len({tuple(row.tolist()) for row in g}) == 64  # every patch place is distinct
    processor = build_offline_processor("qwen3_vl", number_tokens=1000)
    model = build_tiny_model("qwen3_vl", processor=processor, fourier_positions=True)
    assert model.config.text_config.vocab_size >= len(processor.tokenizer)
    side = model.model.visual.num_grid_per_side
    assert torch.equal(model.model.visual.pos_embed.weight.data,
                       fourier_position_grid(side, model.model.visual.pos_embed.weight.shape[1]))
    with pytest.raises(ValueError, match="fourier_positions needs a learned vision position table"):
        build_tiny_model("qwen2_5_vl", fourier_positions=True)
