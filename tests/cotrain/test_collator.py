"""Padding collator: hand-built padding cases, image concatenation, and padded == unpadded logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cotrain.data.collator import PaddingCollator, model_inputs
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
