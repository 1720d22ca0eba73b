"""Offline processor: byte vocabulary, special ids, chat template text, save + reload."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from transformers import AutoTokenizer

from cotrain.errors import ModelLoadError
from cotrain.model.processor import (
    QWEN_SPECIAL_TOKENS,
    build_byte_tokenizer,
    build_offline_processor,
    load_offline_processor,
    save_processor,
    special_token_ids,
)

FAMILIES = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]


@pytest.fixture(scope="module")
def tokenizer():
    return build_byte_tokenizer()


def test_text_ids_are_utf8_bytes(tokenizer):
    text = "Ships in the harbour: 12 — ça va? 港口\n\n  end"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert ids == list(text.encode("utf-8"))
    assert tokenizer.decode(ids) == text


def test_special_tokens_follow_bytes_in_qwen_order(tokenizer):
    assert len(tokenizer) == 256 + 14
    ids = tokenizer.convert_tokens_to_ids(list(QWEN_SPECIAL_TOKENS))
    assert ids == list(range(256, 270))
    # Qwen's real ids are 151643.. in the same order, so the offsets must agree.
    real = {"<|im_start|>": 151644, "<|im_end|>": 151645, "<|box_start|>": 151648,
            "<|vision_start|>": 151652, "<|vision_end|>": 151653, "<|image_pad|>": 151655,
            "<|video_pad|>": 151656}
    for token, real_id in real.items():
        assert tokenizer.convert_tokens_to_ids(token) - 256 == real_id - 151643
    # Specials inside text are single tokens, and never split into bytes.
    assert tokenizer.encode("a<|im_end|>b", add_special_tokens=False) == [97, 258, 98]
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"


def test_special_token_ids_for_model_config(tokenizer):
    ids = special_token_ids(tokenizer)
    assert ids["image_token_id"] == 268 and ids["vision_start_token_id"] == 265
    assert ids["eos_token_id"] == 258 and ids["pad_token_id"] == 256


def test_special_token_ids_rejects_non_qwen_tokenizer():
    class Plain:
        def get_vocab(self):
            return {"a": 0}

    with pytest.raises(ModelLoadError, match="image_pad"):
        special_token_ids(Plain())


def test_chat_template_matches_documented_format():
    processor = build_offline_processor("qwen2_5_vl")
    messages = [
        {"role": "user", "content": [{"type": "image", "index": 0}, {"type": "text", "text": "Count ships."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "3"}]},
        {"role": "user", "content": "And planes?"},
    ]
    expected = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Count ships.<|im_end|>\n"
                "<|im_start|>assistant\n3<|im_end|>\n"
                "<|im_start|>user\nAnd planes?<|im_end|>\n")
    assert processor.apply_chat_template(messages, tokenize=False) == expected
    assert processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == \
        expected + "<|im_start|>assistant\n"
    with_system = [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]}] + messages[:1]
    assert processor.apply_chat_template(with_system, tokenize=False) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Count ships.<|im_end|>\n")


@pytest.mark.parametrize("family, patch, mean", [("qwen2_vl", 14, 0.48145466), ("qwen2_5_vl", 14, 0.48145466),
                                                 ("qwen3_vl", 16, 0.5)])
def test_processor_call_expands_image_tokens(family, patch, mean):
    processor = build_offline_processor(family, min_pixels=1024, max_pixels=1_000_000)
    ip = processor.image_processor
    assert (ip.patch_size, ip.merge_size, ip.temporal_patch_size) == (patch, 2, 2)
    assert ip.image_mean[0] == pytest.approx(mean)
    assert (ip.size["shortest_edge"], ip.size["longest_edge"]) == (1024, 1_000_000)
    factor = 2 * patch
    image = Image.fromarray(np.full((2 * factor, 5 * factor, 3), 128, dtype=np.uint8))
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image", "index": 0}, {"type": "text", "text": "hi"}]}],
        tokenize=False)
    out = processor(text=[text], images=[image], return_tensors="pt")
    assert out["image_grid_thw"].tolist() == [[1, 4, 10]]
    assert out["pixel_values"].shape == (40, 3 * 2 * patch * patch)
    assert int(out["mm_token_type_ids"].sum()) == 10  # (2 x 5) merged tokens
    assert int((out["input_ids"] == 268).sum()) == 10


@pytest.mark.parametrize("family", FAMILIES)
def test_save_reload_roundtrip(tmp_path, family):
    processor = build_offline_processor(family)
    save_processor(processor, tmp_path)
    stock = {"qwen2_vl": "Qwen2VLProcessor", "qwen2_5_vl": "Qwen2_5_VLProcessor",
             "qwen3_vl": "Qwen3VLProcessor"}[family]
    for name in ("processor_config.json", "tokenizer_config.json"):
        assert json.loads((tmp_path / name).read_text())["processor_class"] == stock
    video = json.loads((tmp_path / "video_preprocessor_config.json").read_text())
    assert video["patch_size"] == processor.image_processor.patch_size

    again = load_offline_processor(tmp_path, family)
    assert type(again) is type(processor)
    assert again.chat_template == processor.chat_template
    assert again.image_processor.patch_size == processor.image_processor.patch_size
    assert list(again.image_processor.image_mean) == pytest.approx(list(processor.image_processor.image_mean))
    text = "<|im_start|>user\nPlane at (3,4)<|im_end|>"
    assert again.tokenizer.encode(text) == processor.tokenizer.encode(text)
    # The stock tokenizer loader (what vLLM or any other tool uses) reads the same vocabulary.
    plain = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    assert plain.encode(text) == processor.tokenizer.encode(text)
    assert plain.convert_tokens_to_ids("<|image_pad|>") == 268


def test_number_tokens_make_each_coordinate_one_token(tmp_path):
    from cotrain.model.processor import build_byte_tokenizer

    plain = build_byte_tokenizer()
    tok = build_byte_tokenizer(number_tokens=1000)
    assert len(tok) == len(plain) + 990  # 10 .. 999 (single digits already are byte tokens)
    text = "[12, 345, 7, 1000] x2024"
    ids = tok.encode(text)
    pieces = [tok.decode([i]) for i in ids]
    # longest match first; numbers of N digits or more split; every piece decodes back exactly
    assert pieces == ["[", "12", ",", " ", "345", ",", " ", "7", ",", " ", "100", "0", "]", " ", "x", "202", "4"]
    assert tok.decode(ids) == text and plain.decode(plain.encode(text)) == text
    assert tok.convert_tokens_to_ids("10") == 270 and tok.convert_tokens_to_ids("999") == 1259
    # saved and reloaded, the added numbers keep their ids
    processor = build_offline_processor("qwen2_5_vl", number_tokens=1000)
    save_processor(processor, tmp_path)
    again = load_offline_processor(tmp_path, "qwen2_5_vl")
    assert again.tokenizer.encode(text) == ids
    with pytest.raises(ValueError, match="number_tokens=5"):
        build_byte_tokenizer(number_tokens=5)
