"""Variable-length causal attention for packed rows on machines without FlashAttention (CPU).

With packing, transformers' sdpa path builds a block-diagonal mask over the whole row and computes
all L x L scores, most of them masked away; FlashAttention-2 varlen computes only the blocks. This
attention function gives sdpa the varlen behaviour: it finds the samples of each row from the text
positions (they restart at 0 per sample, as ``PackCollator`` writes them) and runs causal sdpa per
sample, so the work is sum(n_i^2) instead of L^2, and no mask is needed. Rows without packed
positions (ordinary padded batches, the vision tower, generation) go to transformers' own sdpa.

Registered under ``cotrain_varlen_sdpa`` (``register()``); ``cotrain.training.recipe`` selects it for packed
training when the model runs sdpa. A test checks logits and gradients against the masked path.
"""

from __future__ import annotations

import torch

NAME = "cotrain_varlen_sdpa"


def segments(position_ids: torch.Tensor) -> list[int]:
    """Start offsets of the samples of one row (a position that does not continue the previous one)."""
    pos = position_ids.reshape(-1)
    breaks = torch.nonzero(pos[1:] != pos[:-1] + 1).reshape(-1) + 1
    return [0] + breaks.tolist() + [int(pos.numel())]


def varlen_sdpa_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, position_ids=None,
                        **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    packed = (position_ids is not None and position_ids.dim() == 2 and query.shape[2] > 1
              and getattr(module, "is_causal", True) and position_ids.shape[-1] == query.shape[2])
    if not packed:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    p = dropout if module.training else 0.0
    rows = []
    for b in range(query.shape[0]):
        bounds = segments(position_ids[b])
        parts = [torch.nn.functional.scaled_dot_product_attention(
            query[b:b + 1, :, s:e], key[b:b + 1, :, s:e], value[b:b + 1, :, s:e], is_causal=True, dropout_p=p,
            scale=scaling) for s, e in zip(bounds[:-1], bounds[1:])]
        rows.append(torch.cat(parts, dim=2))
    out = torch.cat(rows, dim=0)  # (B, H, L, D)
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    """Make ``NAME`` a valid ``attn_implementation`` (attention and mask functions); idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(NAME, varlen_sdpa_forward)
    # ordinary padded batches still need sdpa's mask; packed rows ignore it
    AttentionMaskInterface.register(NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    return NAME
