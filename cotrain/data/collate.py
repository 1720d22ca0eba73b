"""Collators: encoded samples (padded) or packs of samples (packed) -> one batch the Qwen-VL model accepts.

``PaddingCollator`` pads the per-token tensors (``input_ids`` with the pad id, ``attention_mask``
and ``mm_token_type_ids`` with 0, ``labels`` with -100) on the right (training) or left (batched
generation). ``PackCollator`` lays packs out with no attention mask and ``position_ids`` of shape
``(4, rows, L)``: row 0 the per-sample text positions (0..n-1 for each sample, which is how
transformers finds the sample boundaries), rows 1..3 the M-RoPE positions
(``cotrain.model.mrope``). With no ``attention_mask``, transformers builds a block-diagonal causal
mask (sdpa / eager) or runs FlashAttention-2 varlen with ``cu_seqlens`` from those boundaries, so
attention never crosses samples. A packed batch carries ``use_cache=False``: with a cache object
transformers does not look for packed sequences at all. The first label of each packed sample is
masked, so the last token of one sample is never trained to predict the first of the next.

Both share one key list (``TOKEN_KEYS``, ``IMAGE_KEYS``): image patches and grids are concatenated
in sample order (the model consumes images in that order), every other key is per-sample metadata
kept as a list. ``mm_token_type_ids`` must reach the model: without it transformers silently uses
1-D positions. ``make_collate`` / ``make_pack_collate`` are what the trainer uses: the collators
plus the flattening of per-sample skip records.

Must not cut, plan or reorder samples (``cotrain.data.packing`` plans packs), nor move tensors to
a device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cotrain.data.encoder import IGNORE_INDEX
from cotrain.model.mrope import mrope_positions

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

PACKMETA_KEYS = ("token_sample",)
"""Per-token metadata of a packed batch (sample number of each token, -1 on padding); never a model input."""

META_KEYS = ("dataset", "task", "skipped")
"""Per-sample metadata the training collators always carry as lists (never reaches the model)."""


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


@dataclass
class PackCollator:
    """Packs (lists of encoded samples) -> one batch; see the module docstring for the layout.

    ``flatten``: put every pack of the micro-batch into ONE row (what FlashAttention-2 varlen wants:
    no padding at all); otherwise one row per pack, right-padded (what sdpa / eager want: the
    block-diagonal mask is per row, so its cost stays at rows x max_length^2).
    """

    pad_token_id: int
    spatial_merge_size: int
    flatten: bool = False

    def __call__(self, packs: list[list[dict]]) -> dict:
        packs = [p for p in packs if p]
        if not packs:
            raise ValueError("cannot collate a micro-batch without samples")
        rows = [[s for p in packs for s in p]] if self.flatten else packs
        n_samples = sum(len(r) for r in rows)
        width = max(sum(int(s["input_ids"].numel()) for s in r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        mm_types = torch.zeros((len(rows), width), dtype=torch.long)
        token_sample = torch.full((len(rows), width), -1, dtype=torch.long)
        positions = torch.zeros((4, len(rows), width), dtype=torch.long)
        pixels, grids, meta = [], [], {}
        k = 0
        for row, samples in enumerate(rows):
            col = 0
            for s in samples:
                n = int(s["input_ids"].numel())
                types = s["mm_token_type_ids"].reshape(-1).long()
                grid = s.get("image_grid_thw")
                has_image = s.get("pixel_values") is not None and s["pixel_values"].shape[0] > 0
                input_ids[row, col:col + n] = s["input_ids"].reshape(-1)
                lab = s["labels"].reshape(-1).clone()
                lab[0] = IGNORE_INDEX
                labels[row, col:col + n] = lab
                mm_types[row, col:col + n] = types
                token_sample[row, col:col + n] = k
                positions[0, row, col:col + n] = torch.arange(n)
                positions[1:, row, col:col + n] = mrope_positions(
                    types, grid.reshape(-1, 3) if has_image else None, self.spatial_merge_size)
                if has_image:
                    pixels.append(s["pixel_values"])
                    grids.append(grid.reshape(-1, 3))
                for key, value in s.items():
                    if key not in TOKEN_KEYS and key not in IMAGE_KEYS:
                        meta.setdefault(key, [None] * n_samples)[k] = value
                col += n
                k += 1
            # padding is one more "sample" with its own positions from 0: attends only to itself, no loss
            positions[0, row, col:] = torch.arange(width - col)
            positions[1:, row, col:] = torch.arange(width - col).expand(3, -1)
        # use_cache=False: with a KV cache object transformers skips the packed-sequence mask and
        # lets every token attend to the whole row (found by test_packing_isolates_samples)
        batch: dict = {"input_ids": input_ids, "labels": labels, "mm_token_type_ids": mm_types,
                       "position_ids": positions, "use_cache": False, "token_sample": token_sample}
        if pixels:
            batch["pixel_values"] = torch.cat(pixels, dim=0)
            batch["image_grid_thw"] = torch.cat(grids, dim=0)
        batch.update(meta)
        return batch


def model_inputs(batch: dict) -> dict:
    """The part of ``batch`` that goes to ``model(**...)``; metadata lists are left out."""
    return {k: v for k, v in batch.items() if k in MODEL_INPUT_KEYS}


def token_samples(inputs: dict):
    """(rows, L) sample number of every token (-1 on padding): from a packed batch, or one sample per row."""
    if "token_sample" in inputs:
        return inputs["token_sample"]
    mask = inputs["attention_mask"]
    rows = torch.arange(mask.shape[0], device=mask.device)[:, None].expand_as(mask)
    return torch.where(mask.bool(), rows, torch.full_like(rows, -1))


def pad_id_of(processor) -> int:
    """Padding id of the processor's tokenizer (Qwen: ``<|endoftext|>``; eos when no pad token)."""
    tok = processor.tokenizer
    return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id


def make_collate(pad_token_id: int):
    """Padding collator that moves per-sample metadata (dataset, task, skips) aside as lists."""
    pad = PaddingCollator(pad_token_id=pad_token_id, padding_side="right")

    def collate(samples: list[dict]) -> dict:
        meta = {k: [s.get(k) for s in samples] for k in META_KEYS}
        batch = pad([{k: v for k, v in s.items() if k not in META_KEYS} for s in samples])
        batch["skipped"] = [x for lst in meta["skipped"] if lst for x in lst]
        batch["dataset"] = meta["dataset"]
        batch["task"] = meta["task"]
        return batch

    return collate


def make_pack_collate(pad_token_id: int, spatial_merge_size: int, flatten: bool):
    """Collator of packs (``PackedTrainingDataset`` items): ``PackCollator`` plus the skip accounting."""
    pack = PackCollator(pad_token_id=pad_token_id, spatial_merge_size=spatial_merge_size, flatten=flatten)

    def collate(items: list[dict]) -> dict:
        skipped = [x for it in items for x in it["skipped"]]
        batch = pack([it["samples"] for it in items])
        per_sample = batch.pop("skipped", None) or []
        batch["skipped"] = skipped + [x for lst in per_sample if lst for x in lst]
        return batch

    return collate
