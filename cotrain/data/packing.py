"""Sequence packing: several encoded samples share one row, each keeps its own positions and attention.

Owns three things:

1. ``mrope_positions``: the 3-D M-RoPE positions of ONE sample, restarting at 0, computed from its
   ``mm_token_type_ids`` and image grids by the rule the Qwen-VL models use (text tokens advance all
   three axes together; an image block gets (t, row, column) offsets from the current position,
   and the position after it advances by the larger merged side). A test checks it against each
   family's own ``get_rope_index``.
2. ``plan_packs``: which samples of an epoch share a row, from token counts known before any pixel is
   decoded (best-fit decreasing, then a seeded shuffle of the packs so that long and short samples do
   not cluster at the start or end of the epoch).
3. ``PackCollator``: packs -> a batch whose ``position_ids`` is ``(4, rows, L)``: row 0 the per-sample
   text positions (0..n-1 for each sample, which is how transformers finds the sample boundaries),
   rows 1..3 the M-RoPE positions. With no ``attention_mask`` in the batch, transformers then builds a
   block-diagonal causal mask (sdpa / eager) or runs FlashAttention-2 varlen with ``cu_seqlens`` taken
   from those boundaries, so attention never crosses samples. The batch carries ``use_cache=False``:
   with a cache object transformers does not look for packed sequences at all. The first label of each sample is
   masked, so the last token of one sample is never trained to predict the first of the next.

Must not decide the mixture or build samples (``cotrain.data.dataset`` does), nor truncate: a sample
longer than ``max_length`` never enters a plan (it is counted as ``too_long`` by the caller).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from cotrain.data.encoder import IGNORE_INDEX
from cotrain.seeding import stable_seed

PACK_META_KEYS = ("token_sample",)
"""Per-token metadata of a packed batch (sample number of each token, -1 on padding); never a model input."""


def mrope_positions(mm_token_type_ids: torch.Tensor, image_grid_thw: torch.Tensor | None,
                    spatial_merge_size: int) -> torch.Tensor:
    """(3, n) M-RoPE positions of one unpadded sample; its images' grids in order of appearance."""
    types = mm_token_type_ids.reshape(-1).tolist()
    grids = [] if image_grid_thw is None else [tuple(int(v) for v in g) for g in image_grid_thw.reshape(-1, 3)]
    out = torch.empty(3, len(types), dtype=torch.long)
    pos = 0
    start = 0
    n_image = 0
    m = spatial_merge_size
    while start < len(types):
        kind = types[start]
        end = start
        while end < len(types) and types[end] == kind:
            end += 1
        if kind == 0:
            out[:, start:end] = torch.arange(pos, pos + end - start).expand(3, -1)
            pos += end - start
        elif kind == 1:
            if n_image >= len(grids):
                raise ValueError(f"sample has more image blocks than image grids ({len(grids)})")
            t, h, w = grids[n_image]
            n_image += 1
            gh, gw = h // m, w // m
            if t * gh * gw != end - start:
                raise ValueError(f"image block {n_image} has {end - start} tokens but its grid {(t, h, w)} "
                                 f"with merge {m} gives {t * gh * gw}")
            tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(gh), torch.arange(gw), indexing="ij")
            out[0, start:end] = tt.reshape(-1) + pos
            out[1, start:end] = hh.reshape(-1) + pos
            out[2, start:end] = ww.reshape(-1) + pos
            pos += max(gh, gw)
        else:
            raise ValueError(f"mm_token_type {kind} (video) is not supported by packing")
        start = end
    if n_image != len(grids):
        raise ValueError(f"sample has {n_image} image blocks but {len(grids)} image grids")
    return out


def plan_packs(lengths: Sequence[int], max_length: int, *, seed: int, epoch: int) -> list[list[int]]:
    """Group item positions ``0..len(lengths)-1`` into packs whose lengths sum to <= ``max_length``.

    Best-fit decreasing (each item, longest first, goes into the open pack with the least room that
    still fits it), items inside a pack kept in their original order, then the packs shuffled by
    (seed, epoch). Deterministic: ties are broken by position. Items longer than ``max_length`` are
    refused (the caller removes them first and counts them).
    """
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    lengths = [int(x) for x in lengths]
    too_long = [i for i, n in enumerate(lengths) if n > max_length or n < 1]
    if too_long:
        i = too_long[0]
        raise ValueError(f"item {i} has length {lengths[i]}, outside 1..max_length={max_length}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    packs: list[list[int]] = []
    # open packs as a sorted list of (room left, pack number): bisect finds the best fit in O(log n)
    rooms: list[tuple[int, int]] = []
    for i in order:
        n = lengths[i]
        k = bisect.bisect_left(rooms, (n, -1))
        if k < len(rooms):
            room, p = rooms.pop(k)
            packs[p].append(i)
            room -= n
        else:
            p = len(packs)
            packs.append([i])
            room = max_length - n
        if room > 0:
            bisect.insort(rooms, (room, p))
    for pack in packs:
        pack.sort()
    rng = np.random.default_rng(stable_seed(seed, epoch, "pack-order"))
    return [packs[j] for j in rng.permutation(len(packs))]


def pack_fill(lengths: Sequence[int], packs: list[list[int]], max_length: int) -> float:
    """Share of the packs' ``max_length`` slots holding real tokens."""
    if not packs:
        return 0.0
    return sum(int(lengths[i]) for p in packs for i in p) / (len(packs) * max_length)


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
                    if key not in ("input_ids", "labels", "attention_mask", "mm_token_type_ids", "pixel_values",
                                   "image_grid_thw"):
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
