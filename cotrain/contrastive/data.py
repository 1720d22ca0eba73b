"""Triplet records -> CLIP tensors, on the same data engine as the VLM path.

``TripletBuilder.build`` has the signature ``cotrain.data.dataset.TrainingDataset`` expects of a
builder, so contrastive training reuses the weighted, seeded mixture, the epoch hand-off, the
counted skips of bad records and the exact resume of the VLM path unchanged. One sample:

    {"rgb": (3, S, S) pixels, "ir": (3, S, S) pixels of the IR twin (gray in three channels),
     "text": ids of one original caption, "ir_text": ids of one IR-aware caption (or None),
     "dataset": name, "task": "triplet", "id": record id}

The caption of each kind is picked by (seed, epoch, index), so an epoch is a pure function of them.
``collate_triplets`` stacks a batch; the texts of both kinds share one padded tensor (original
captions first), so the model runs once per batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cotrain.errors import BadRecordError, ConfigError
from cotrain.images import open_image


def check_triplet_sets(loaded: list, supervision: str, where: str = "data.datasets") -> None:
    """Every record is a triplet, and every record has IR-aware captions when the setting uses them."""
    for ld in loaded:
        for rec in ld.records:
            if rec["task"] != "triplet":
                raise ConfigError(f"{where} {ld.cfg.name!r}: record {rec['id']!r} has task {rec['task']!r}; a "
                                  "model.kind=clip recipe trains on triplet records (an RGB image, its IR twin and "
                                  "captions: cotrain convert fusionrs --kinds triplet)")
            if supervision != "original" and not rec.get("ir_captions"):
                raise ConfigError(f"{where} {ld.cfg.name!r}: record {rec['id']!r} has no ir_captions, which "
                                  f"model.clip.supervision={supervision} pairs with its IR image; convert with "
                                  "IR-aware captions or use supervision=original")


def open_record_images(record: dict, image_root: str | Path, entries: list[dict] | None = None) -> list:
    """The record's images (``entries``, default all) as 8-bit RGB at their recorded size; a missing, corrupt or
    resized image is a BadRecordError (a counted skip)."""
    rid = str(record["id"])
    return [open_image(Path(image_root) / img["path"], rid, expected_wh=(int(img["width"]), int(img["height"])))
            for img in (record["images"] if entries is None else entries)]


class TripletBuilder:
    """Record -> one contrastive sample (see the module docstring)."""

    def __init__(self, processor, supervision: str, seed: int):
        self.processor = processor
        self.supervision = supervision
        self.seed = int(seed)

    def pixels(self, record: dict, image_root: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
        """(rgb, ir) pixel tensors (``open_record_images``)."""
        px = self.processor.images(open_record_images(record, image_root))
        return px[0], px[1]

    def build(self, record: dict, ld, epoch: int, index: int, *, prompt: bool = False) -> dict:
        rng = np.random.default_rng([self.seed, int(epoch), int(index)])
        caps = record["captions"]
        text = self.processor.token_ids(caps[int(rng.integers(len(caps)))])
        ir_text = None
        if self.supervision != "original":
            ir_caps = record.get("ir_captions")
            if not ir_caps:
                raise BadRecordError(f"{ld.cfg.name}: record {record['id']!r} has no ir_captions",
                                     reason="no_ir_captions", record_id=str(record["id"]))
            ir_text = self.processor.token_ids(ir_caps[int(rng.integers(len(ir_caps)))])
        rgb, ir = self.pixels(record, ld.cfg.image_root)
        return {"rgb": rgb, "ir": ir, "text": text, "ir_text": ir_text, "dataset": ld.cfg.name, "task": "triplet",
                "id": str(record["id"])}


def collate_triplets(processor):
    """The batch collator: pixels stacked (RGB rows then IR rows), texts padded together."""

    def collate(samples: list[dict]) -> dict:
        rows = [s["text"] for s in samples]
        has_ir_text = samples[0]["ir_text"] is not None
        if has_ir_text:
            rows += [s["ir_text"] for s in samples]
        ids, mask = processor.pad(rows)
        return {"pixel_values": torch.cat([torch.stack([s["rgb"] for s in samples]),
                                           torch.stack([s["ir"] for s in samples])]),
                "input_ids": ids, "attention_mask": mask, "has_ir_text": has_ir_text,
                "dataset": [s["dataset"] for s in samples], "task": [s["task"] for s in samples],
                "skipped": [k for s in samples for k in s.get("skipped", [])]}

    return collate
