"""Padding collator: encoded samples -> one batch the Qwen-VL model accepts.

Owns padding of the per-token tensors (``input_ids`` with the pad id, ``attention_mask`` and
``mm_token_type_ids`` with 0, ``labels`` with -100) on the right (training) or left (batched
generation), the concatenation of image patches and grids in sample order (the model consumes
images in that order), and keeping per-sample metadata (dataset name, task, ...) as lists.
``mm_token_type_ids`` must reach the model: without it transformers silently uses 1-D positions.

Must not cut, pack or reorder samples (a packer owns that), nor move tensors to a device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cotrain.data.encoder import IGNORE_INDEX

TOKEN_KEYS: dict[str, int | None] = {
    "input_ids": None,  # None = the collator's pad_token_id
    "attention_mask": 0,
    "labels": IGNORE_INDEX,
    "mm_token_type_ids": 0,
}
"""Per-token 1-D keys and their padding values."""

IMAGE_KEYS = ("pixel_values", "image_grid_thw")
"""Keys concatenated along dim 0 across the batch."""

MODEL_INPUT_KEYS = tuple(TOKEN_KEYS) + IMAGE_KEYS + ("position_ids", "use_cache")
"""Keys of a batch that are model inputs; every other key is metadata to pop before forward."""


@dataclass
class PaddingCollator:
    """Pads a list of :class:`cotrain.data.encoder.ChatEncoder` samples into a batch."""

    pad_token_id: int
    """Id written into padded ``input_ids`` positions (Qwen: ``<|endoftext|>``)."""
    padding_side: str = "right"
    """"right" for training, "left" for batched generation (prompts end at the same column)."""
    pad_to_multiple_of: int | None = None
    """Round the padded length up to this multiple (tensor-core friendly shapes on GPU)."""

    def __post_init__(self):
        if self.padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {self.padding_side!r}")
        if self.pad_to_multiple_of is not None and self.pad_to_multiple_of < 1:
            raise ValueError(f"pad_to_multiple_of must be >= 1, got {self.pad_to_multiple_of}")

    def __call__(self, samples: list[dict]) -> dict:
        if not samples:
            raise ValueError("cannot collate an empty list of samples")
        length = max(int(s["input_ids"].numel()) for s in samples)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch: dict = {}
        for key, pad in TOKEN_KEYS.items():
            if not all(key in s for s in samples):
                if key == "input_ids" or any(key in s for s in samples):
                    raise ValueError(f"key {key!r} is present in some samples only; encode every sample "
                                     "with the same ChatEncoder.")
                continue
            value = self.pad_token_id if pad is None else pad
            out = torch.full((len(samples), length), value, dtype=torch.long)
            for row, s in enumerate(samples):
                seq = s[key].reshape(-1).long()
                if self.padding_side == "right":
                    out[row, :seq.numel()] = seq
                else:
                    out[row, length - seq.numel():] = seq
            batch[key] = out

        with_images = [s for s in samples if s.get("pixel_values") is not None and s["pixel_values"].shape[0] > 0]
        # No key at all when no sample has an image: the model then skips the vision tower
        # instead of running it on an empty tensor.
        if with_images:
            batch["pixel_values"] = torch.cat([s["pixel_values"] for s in with_images], dim=0)
            batch["image_grid_thw"] = torch.cat([s["image_grid_thw"].reshape(-1, 3) for s in with_images], dim=0)

        extra = dict.fromkeys(k for s in samples for k in s if k not in TOKEN_KEYS and k not in IMAGE_KEYS)
        for key in extra:  # first-seen order; a sample without the key contributes None
            batch[key] = [s.get(key) for s in samples]
        return batch


def model_inputs(batch: dict) -> dict:
    """The part of ``batch`` that goes to ``model(**...)``; metadata lists are left out."""
    return {k: v for k, v in batch.items() if k in MODEL_INPUT_KEYS}
