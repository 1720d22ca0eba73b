"""Loader: tiny checkpoints round-trip with identical logits; bad directories give ModelLoadError."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from cotrain.data.encoder import ChatEncoder
from cotrain.errors import ModelLoadError
from cotrain.model import loader
from cotrain.model.loader import load_model_and_processor, save_model_and_processor
from cotrain.model.tiny import create_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return create_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny25", "qwen2_5_vl", seed=5)


def _logits(model, processor, family):
    encoder = ChatEncoder(processor, family)
    factor = family.factor
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (2 * factor, 3 * factor, 3), dtype=np.uint8))
    conv = {"messages": [{"role": "user", "content": [{"type": "image", "index": 0},
                                                      {"type": "text", "text": "What is it?"}]},
                         {"role": "assistant", "content": "A port."}]}
    sample = encoder.encode(conv, [image])
    batch = {k: sample[k][None] for k in ("input_ids", "attention_mask", "mm_token_type_ids")}
    with torch.no_grad():
        return model(**batch, pixel_values=sample["pixel_values"], image_grid_thw=sample["image_grid_thw"]).logits


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_save_reload_gives_identical_logits(tmp_path, family, caplog):
    src = create_tiny_checkpoint(tmp_path / "a", family, seed=11)
    with caplog.at_level(logging.INFO, logger="cotrain.model.loader"):
        model, processor, spec = load_model_and_processor(src, attn_implementation="auto")
    assert spec.name == family and model.config._attn_implementation == "sdpa"
    assert "'auto' -> sdpa" in caplog.text
    if not hasattr(processor, "video_processor"):  # no torchvision here: the fallback must say so
        assert "building the processor from its tokenizer" in caplog.text
    before = _logits(model, processor, spec)

    dst = save_model_and_processor(model, processor, tmp_path / "b")
    model2, processor2, spec2 = load_model_and_processor(dst, family=family)
    after = _logits(model2, processor2, spec2)
    assert torch.equal(before, after)
    assert processor2.tokenizer.get_vocab() == processor.tokenizer.get_vocab()
    assert processor2.chat_template == processor.chat_template


def test_bfloat16_and_eager(checkpoint):
    model, _, _ = load_model_and_processor(checkpoint, attn_implementation="eager", dtype="bfloat16")
    assert model.dtype == torch.bfloat16
    assert model.config._attn_implementation == "eager"


def test_missing_directory(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist.*model.path"):
        load_model_and_processor(tmp_path / "nope")


def test_file_instead_of_directory(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="is a file"):
        load_model_and_processor(tmp_path / "weights.bin")


def test_no_config_json(tmp_path):
    with pytest.raises(ModelLoadError, match="config.json is missing"):
        load_model_and_processor(tmp_path)


def test_unsupported_model_type(tmp_path, checkpoint):
    shutil.copytree(checkpoint, tmp_path / "c")
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    config["model_type"] = "llava"
    (tmp_path / "c" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"model_type 'llava' is not supported; supported: qwen2_5_vl"):
        load_model_and_processor(tmp_path / "c")


def test_family_mismatch(checkpoint):
    with pytest.raises(ModelLoadError, match="model.family is 'qwen3_vl'"):
        load_model_and_processor(checkpoint, family="qwen3_vl")


@pytest.mark.parametrize("remove, expect", [
    (("tokenizer.json", "tokenizer_config.json"), "tokenizer.json \\(or vocab.json"),
    (("processor_config.json",), "preprocessor_config.json"),
])
def test_no_processor_files(tmp_path, checkpoint, remove, expect):
    shutil.copytree(checkpoint, tmp_path / "c")
    for name in remove:
        (tmp_path / "c" / name).unlink()
    with pytest.raises(ModelLoadError, match=f"no processor files: missing {expect}.*Copy them from the base"):
        load_model_and_processor(tmp_path / "c")


def test_flash_attention_unavailable(checkpoint, monkeypatch):
    monkeypatch.setattr(loader, "flash_attention_available", lambda: False)
    with pytest.raises(ModelLoadError, match="flash_attention_2.*'torch_varlen'.*'sdpa'"):
        load_model_and_processor(checkpoint, attn_implementation="flash_attention_2")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the real capability probe on a CPU machine")
def test_flash_attention_probe_on_cpu(checkpoint):
    assert not loader.flash_attention_available()
    with pytest.raises(ModelLoadError, match="flash_attention_2"):
        load_model_and_processor(checkpoint, attn_implementation="flash_attention_2")


def test_bad_options(checkpoint):
    with pytest.raises(ModelLoadError, match="attn_implementation 'flash'"):
        load_model_and_processor(checkpoint, attn_implementation="flash")
    with pytest.raises(ModelLoadError, match="dtype 'fp8'"):
        load_model_and_processor(checkpoint, dtype="fp8")


def test_missing_weights(tmp_path, checkpoint):
    shutil.copytree(checkpoint, tmp_path / "c")
    (tmp_path / "c" / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="weights"):
        load_model_and_processor(tmp_path / "c")
