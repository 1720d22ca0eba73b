"""Collators: hand-built padding cases, image order, padded == unpadded logits, and packed == padded loss and gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cotrain.data.collate import PackCollator, PaddingCollator, model_inputs
from cotrain.data.encoder import ChatEncoder
from cotrain.model.processor import build_offline_processor
from cotrain.model.tiny import build_tiny_model

PAD = 9


def _sample(ids, labels, image_rows=0, grid=None, **meta):
    ids = torch.tensor(ids)
    sample = {"input_ids": ids, "labels": torch.tensor(labels), "attention_mask": torch.ones_like(ids),
              "mm_token_type_ids": (ids == 7).long(),
              "pixel_values": torch.full((image_rows, 4), float(image_rows)),
              "image_grid_thw": torch.tensor(grid if grid else [], dtype=torch.long).reshape(-1, 3)}
    sample.update(meta)
    return sample


def test_right_padding_by_hand():
    batch = PaddingCollator(PAD)([_sample([1, 7, 7, 2], [-100, -100, -100, 2], 4, [[1, 2, 2]], task="vqa"),
                                  _sample([3, 4], [3, -100], task="mcq")])
    assert batch["input_ids"].tolist() == [[1, 7, 7, 2], [3, 4, PAD, PAD]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, -100, -100, 2], [3, -100, -100, -100]]
    assert batch["mm_token_type_ids"].tolist() == [[0, 1, 1, 0], [0, 0, 0, 0]]
    assert batch["pixel_values"].shape == (4, 4)
    assert batch["image_grid_thw"].tolist() == [[1, 2, 2]]
    assert batch["task"] == ["vqa", "mcq"]


def test_left_padding_by_hand():
    batch = PaddingCollator(PAD, padding_side="left")([_sample([3, 4], [3, -100], dataset="a"),
                                                       _sample([1, 7, 2], [-100, -100, 2], 2, [[1, 2, 1]])])
    assert batch["input_ids"].tolist() == [[PAD, 3, 4], [1, 7, 2]]
    assert batch["attention_mask"].tolist() == [[0, 1, 1], [1, 1, 1]]
    assert batch["labels"].tolist() == [[-100, 3, -100], [-100, -100, 2]]
    assert batch["mm_token_type_ids"].tolist() == [[0, 0, 0], [0, 1, 0]]
    assert batch["dataset"] == ["a", None]  # a key missing in one sample becomes None there


def test_images_concatenate_in_sample_order():
    batch = PaddingCollator(PAD)([_sample([7], [-100], 2, [[1, 1, 2]]), _sample([1], [1]),
                                  _sample([7], [-100], 3, [[1, 3, 1]])])
    assert batch["pixel_values"][:, 0].tolist() == [2, 2, 3, 3, 3]
    assert batch["image_grid_thw"].tolist() == [[1, 1, 2], [1, 3, 1]]


def test_no_images_no_pixel_keys_and_multiple_of():
    batch = PaddingCollator(PAD, pad_to_multiple_of=8)([_sample([1, 2, 3], [1, 2, 3], n=1)])
    assert "pixel_values" not in batch and "image_grid_thw" not in batch
    assert batch["input_ids"].shape == (1, 8)
    assert batch["n"] == [1]
    assert set(model_inputs(batch)) == {"input_ids", "attention_mask", "labels", "mm_token_type_ids"}


def test_bad_arguments():
    with pytest.raises(ValueError, match="padding_side"):
        PaddingCollator(PAD, padding_side="middle")
    with pytest.raises(ValueError, match="empty"):
        PaddingCollator(PAD)([])


@pytest.mark.parametrize("side", ["right", "left"])
def test_padded_batch_gives_the_unpadded_logits(side):
    # Independent route: each sample run alone (no padding) through the tiny model.
    processor = build_offline_processor("qwen2_5_vl")
    encoder = ChatEncoder(processor, "qwen2_5_vl")
    model = build_tiny_model("qwen2_5_vl", processor=processor, seed=2)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (56, 84, 3), dtype=np.uint8))
    with_image = encoder.encode({"messages": [
        {"role": "user", "content": [{"type": "image", "index": 0}, {"type": "text", "text": "Describe."}]},
        {"role": "assistant", "content": "Fields and a road."}]}, [image])
    text_only = encoder.encode({"messages": [{"role": "user", "content": "Hi"}]}, [])
    samples = [text_only, with_image]
    batch = PaddingCollator(processor.tokenizer.pad_token_id, padding_side=side)(samples)
    with torch.no_grad():
        padded = model(**model_inputs(batch)).logits
        for row, sample in enumerate(samples):
            alone = model(**model_inputs(PaddingCollator(0)([sample]))).logits[0]
            n = alone.shape[0]
            got = padded[row, :n] if side == "right" else padded[row, padded.shape[1] - n:]
            torch.testing.assert_close(got, alone, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
@pytest.mark.parametrize("flatten, attn", [(False, "sdpa"), (True, "sdpa"), (False, "varlen"), (True, "varlen")])
def test_packed_loss_and_gradients_equal_unpacked(family, flatten, attn, encoded_samples):
    """Token-mean loss over the same supervised tokens: packed rows (block-diagonal sdpa) == padded batch.

    Tolerance: float32, rtol 1e-4 / atol 1e-6 on the loss and every gradient; the only
    differences are summation order inside attention and the loss.
    """
    processor, samples = encoded_samples(family)
    torch.manual_seed(0)
    model = build_tiny_model(family, processor=processor, hidden_size=64)
    model.set_attn_implementation("sdpa")
    model.train()  # dropout is 0 in the tiny config, so train mode is deterministic
    pad_id = processor.tokenizer.pad_token_id
    merge = model.config.vision_config.spatial_merge_size

    def loss_and_grads(batch):
        model.zero_grad()
        loss = model(**model_inputs(batch)).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    padded = PaddingCollator(pad_token_id=pad_id)(samples)
    packed = PackCollator(pad_token_id=pad_id, spatial_merge_size=merge, flatten=flatten)(
        [samples[:2], samples[2:4], samples[4:]])
    assert "attention_mask" not in packed
    assert packed["input_ids"].shape[0] == (1 if flatten else 3)
    # the same supervised tokens in both layouts
    assert int((packed["labels"] != -100).sum()) == int((padded["labels"][:, 1:] != -100).sum())
    loss_a, grads_a = loss_and_grads(padded)
    if attn == "varlen":  # cotrain's per-sample sdpa (cotrain.model.varlen_sdpa) instead of the block mask
        from cotrain.model.varlen_sdpa import register

        model.set_attn_implementation(register())
    loss_b, grads_b = loss_and_grads(packed)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-4, atol=1e-6)
    assert grads_a.keys() == grads_b.keys() and any(n.startswith("model.visual") for n in grads_a)
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-4, atol=1e-6, msg=name)


def test_packing_isolates_samples(encoded_samples):
    """Changing one sample's tokens changes nothing in the logits of the other samples of its row."""
    processor, samples = encoded_samples("qwen2_5_vl")
    model = build_tiny_model("qwen2_5_vl", processor=processor, hidden_size=64).eval()
    collate = PackCollator(pad_token_id=processor.tokenizer.pad_token_id, spatial_merge_size=2)
    first = collate([samples[:3]])
    changed = dict(samples[0])
    changed["input_ids"] = samples[0]["input_ids"].clone()
    changed["input_ids"][3:6] = torch.tensor([65, 66, 67])  # text tokens of sample 0
    second = collate([[changed] + samples[1:3]])
    with torch.no_grad():
        a = model(**model_inputs(first)).logits
        b = model(**model_inputs(second)).logits
    n0 = samples[0]["input_ids"].numel()
    assert not torch.allclose(a[0, :n0], b[0, :n0])
    torch.testing.assert_close(a[0, n0:], b[0, n0:], rtol=0, atol=1e-6)


def test_pack_collator_layout(encoded_samples):
    processor, samples = encoded_samples("qwen2_5_vl")
    batch = PackCollator(pad_token_id=7, spatial_merge_size=2)([samples[:2], samples[2:3]])
    n = [s["input_ids"].numel() for s in samples]
    assert batch["input_ids"].shape == (2, max(n[0] + n[1], n[2]))
    ts = batch["token_sample"]
    assert ts[0, :n[0]].eq(0).all() and ts[0, n[0]:n[0] + n[1]].eq(1).all() and ts[1, :n[2]].eq(2).all()
    pos = batch["position_ids"]
    assert pos.shape == (4, 2, batch["input_ids"].shape[1])
    assert pos[0, 0, n[0]] == 0 and pos[0, 0, n[0] - 1] == n[0] - 1  # text positions restart per sample
    assert batch["labels"][0, n[0]] == -100  # first label of each sample masked
    assert batch["image_grid_thw"].shape[0] == 1 + 2  # images of samples 0 and 2, in order
    assert batch["num_image_tokens"] == [s["num_image_tokens"] for s in samples[:3]]  # metadata per sample
    assert batch["use_cache"] is False
    with pytest.raises(ValueError, match="without samples"):
        PackCollator(pad_token_id=7, spatial_merge_size=2)([[], []])
