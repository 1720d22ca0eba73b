"""Padding-free packed attention through PyTorch's own FlashAttention varlen (no flash-attn package).

``torch.nn.attention.varlen.varlen_attn`` (PyTorch >= 2.10, CUDA kernels only) runs FlashAttention
over one flattened token stream cut into sequences by ``cu_seqlens``. This module registers it with
transformers' attention interface as ``attn_implementation="torch_varlen"``:

* text attention of a packed batch (no ``attention_mask``): every row is flattened into one stream
  and ``cu_seqlens`` are the offsets where the text positions restart at their minimum, exactly the
  rule of transformers' flash_attention_2 path (``prepare_fa_kwargs_from_position_ids``);
* a padded batch (2-D ``attention_mask``, right or left padding): the kept tokens of each row are one
  sequence, gathered, attended and scattered back (what FA2's unpad path does);
* everything else (the vision tower's bidirectional windows, cached decoding, a single query) goes
  to transformers' sdpa with an explicit mask, so generation with a torch_varlen model is correct.

The API changed between releases: 2.10 takes ``is_causal=True``; later releases take
``window_size=(-1, 0)`` and ``enable_gqa``. :func:`_varlen_call` adapts to the installed signature.
Must not import the varlen module at import time (it is absent before 2.10); :func:`availability`
says why it cannot run, for the loader's error message.
"""

from __future__ import annotations

import inspect
from functools import lru_cache

import torch

NAME = "torch_varlen"


def availability() -> str | None:
    """None when torch_varlen can run here, else the reason (names the fix)."""
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError:
        return (f"torch {torch.__version__} has no torch.nn.attention.varlen.varlen_attn (added in PyTorch 2.10); "
                "upgrade torch, install flash-attn and use flash_attention_2, or use sdpa")
    if not torch.cuda.is_available():
        return "torch.nn.attention.varlen has CUDA kernels only and no CUDA device is visible; use sdpa on CPU"
    return None


def cu_seqlens_from_positions(position_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(int32 offsets of every sequence start plus the total, longest sequence) of flattened positions.

    A sequence starts wherever the text position equals its minimum over the batch (0 for packed
    rows, which restart at 0 per sample, padding included), as transformers' FA2 path decides.
    """
    pos = position_ids.reshape(-1)
    starts = torch.nonzero(pos == pos.min()).reshape(-1).to(torch.int32)
    total = torch.tensor([pos.numel()], dtype=torch.int32, device=pos.device)
    cu = torch.cat([starts, total])
    return cu, int(cu.diff().max())


def cu_seqlens_from_mask(attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(flat indices of kept tokens, int32 cu_seqlens with one sequence per row, longest row)."""
    keep = attention_mask.bool()
    counts = keep.sum(dim=1, dtype=torch.int32)
    cu = torch.nn.functional.pad(torch.cumsum(counts, 0, dtype=torch.int32), (1, 0))
    return torch.nonzero(keep.reshape(-1)).reshape(-1), cu, int(counts.max())


@lru_cache(maxsize=1)
def _signature() -> frozenset[str]:
    from torch.nn.attention.varlen import varlen_attn

    return frozenset(inspect.signature(varlen_attn).parameters)


def _kernel():
    from torch.nn.attention.varlen import varlen_attn

    return varlen_attn


def _varlen_call(q, k, v, cu, max_len, scale):
    """Causal varlen attention of (T, H, D) streams, on any torch that has the API."""
    params = _signature()
    kwargs = {"scale": scale}
    if "window_size" in params:
        kwargs["window_size"] = (-1, 0)
    elif "is_causal" in params:
        kwargs["is_causal"] = True
    else:  # pragma: no cover - a future API we have not seen
        raise RuntimeError(f"torch.nn.attention.varlen.varlen_attn{tuple(params)} has neither window_size nor "
                           "is_causal; cotrain does not know how to request causal attention from it")
    groups = q.shape[1] // k.shape[1]
    if groups > 1:
        if "enable_gqa" in params:
            kwargs["enable_gqa"] = True
        else:
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    return _kernel()(q, k, v, cu, cu, max_len, max_len, **kwargs)


def _sdpa_fallback(module, query, key, value, attention_mask, scaling, dropout, is_causal, **kwargs):
    """transformers' sdpa for the cases varlen does not cover; a 2-D padding mask becomes a 4-D one."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if attention_mask is not None and attention_mask.dim() == 2:
        lq, lk = query.shape[2], key.shape[2]
        keys = torch.arange(lk, device=query.device)
        visible = keys[None, :] <= torch.arange(lq, device=query.device)[:, None] + (lk - lq) if is_causal \
            else torch.ones(lq, lk, dtype=torch.bool, device=query.device)
        attention_mask = visible[None, None] & attention_mask[:, None, None, -lk:].bool()
    return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                  is_causal=is_causal if attention_mask is None else None, **kwargs)


def torch_varlen_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, position_ids=None,
                         is_causal=None, **kwargs):
    """transformers attention function: (B, H, L, D) in, ((B, L, H, D) out, None)."""
    causal = getattr(module, "is_causal", True) if is_causal is None else bool(is_causal)
    batch, heads, length, dim = query.shape
    if not causal or length == 1 or key.shape[2] != length:
        return _sdpa_fallback(module, query, key, value, attention_mask, scaling, dropout, causal, **kwargs)
    if dropout and module.training:
        raise ValueError(f"attn_implementation '{NAME}' has no attention dropout (got {dropout}); set the model's "
                         "attention_dropout to 0 or use sdpa")
    q, k, v = (t.transpose(1, 2).reshape(batch * length, t.shape[1], dim) for t in (query, key, value))
    if attention_mask is not None and attention_mask.dim() == 2:
        keep, cu, longest = cu_seqlens_from_mask(attention_mask)
        out = query.new_zeros(batch * length, heads, dim)
        out[keep] = _varlen_call(q[keep], k[keep], v[keep], cu, longest, scaling)
    elif attention_mask is not None:
        raise ValueError(f"attn_implementation '{NAME}' got a {attention_mask.dim()}-D attention mask; it needs "
                         "packed positions or a 2-D padding mask (its mask function returns those)")
    else:
        if position_ids is None:
            position_ids = torch.arange(length, device=query.device).expand(batch, length)
        cu, longest = cu_seqlens_from_positions(position_ids[..., -length:])
        out = _varlen_call(q, k, v, cu, longest, scaling)
    return out.reshape(batch, length, heads, dim), None


def register() -> str:
    """Make ``NAME`` a valid ``attn_implementation`` (attention and mask functions); idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(NAME, torch_varlen_forward)
    # FA2's mask function: None for packed / unpadded batches, the 2-D padding mask otherwise
    AttentionMaskInterface.register(NAME, ALL_MASK_ATTENTION_FUNCTIONS["flash_attention_2"])
    return NAME
