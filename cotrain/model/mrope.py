"""3-D M-RoPE positions of one sample, by the rule the Qwen-VL models use.

Text tokens advance all three axes (time, row, column) together; an image block gets (t, row,
column) offsets from the current position, and the position after it advances by the larger merged
side. Positions restart at 0 for each sample, which is what packing needs (``cotrain.data.collate``
writes them per sample into a packed row). A test checks them against each family's own
``get_rope_index``.

Must not know about batches, padding or packing; one unpadded sample in, its positions out.
"""

from __future__ import annotations

import torch


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
