"""The contrastive loss: symmetric InfoNCE, its three RGB / IR / text terms, and the global batch.

For L2-normalised embeddings a_i, b_i (i = 1..N, pair i matching) and the logit scale
s = exp(min(t, ln s_max)) (``t`` the learnable log-scale, clamped as CLIP clamps its temperature so
that logits are scaled by at most s_max = 100)::

    logits_ij = s * a_i . b_j
    InfoNCE(a, b) = ( CE(logits, diag) + CE(logits^T, diag) ) / 2       # mean over i of each CE

The tri-modal loss is the mean of three terms, RGB-text, IR-text and RGB-IR, where the text of each
term depends on the supervision setting (``cotrain.config.ClipConfig.supervision``):

=============  ====================  ============================================  ========
setting        RGB-text              IR-text                                       RGB-IR
=============  ====================  ============================================  ========
``original``   RGB, original text    IR, original text                             twins
``ir_aware``   RGB, original text    IR, IR-aware text                             twins
``mixed``      RGB, original text    (IR-original + IR-IR-aware) / 2               twins
=============  ====================  ============================================  ========

``mixed`` thus trains the four pair kinds (IR-original, IR-IR-aware, RGB-original, RGB-IR) while the
loss stays the mean of three terms, as in the other settings.

Negatives are the GLOBAL batch: under torchrun every rank gathers every rank's embeddings
(``gather``, which passes gradients back to the rank that made them) and computes the same full
loss. The gather's backward sums the gradients of all ranks' (identical) losses, and DDP averages
the parameter gradients over ranks, so the update equals that of one process holding the whole
batch (tests/cotrain/contrastive/test_clip_distributed.py checks it with 2 processes).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

TERMS = ("rgb_text", "ir_text", "rgb_ir")


def logit_scale_value(log_scale: torch.Tensor, max_scale: float = 100.0) -> torch.Tensor:
    """exp(log_scale) clamped at ``max_scale`` (no gradient beyond it, as CLIP's clipping)."""
    return log_scale.clamp(max=math.log(max_scale)).exp()


def info_nce(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of matching rows of ``a`` and ``b`` (both (N, D), L2-normalised); N >= 2."""
    n = a.shape[0]
    if n < 2 or b.shape[0] != n:
        raise ValueError(f"InfoNCE needs N >= 2 matching pairs (a {tuple(a.shape)}, b {tuple(b.shape)}): with one pair "
                         "there is no negative. Raise train.batch_size (the global batch is batch x ranks)")
    logits = scale * a @ b.T
    target = torch.arange(n, device=a.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def tri_modal_loss(rgb: torch.Tensor, ir: torch.Tensor, text: torch.Tensor, ir_text: torch.Tensor | None,
                   scale: torch.Tensor, supervision: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(loss, {term: value}) for one (global) batch; ``text`` original captions, ``ir_text`` IR-aware ones."""
    if supervision != "original" and ir_text is None:
        raise ValueError(f"supervision {supervision!r} needs the IR-aware caption embeddings (ir_text)")
    if supervision == "original":
        ir_term = info_nce(ir, text, scale)
    elif supervision == "ir_aware":
        ir_term = info_nce(ir, ir_text, scale)
    elif supervision == "mixed":
        ir_term = (info_nce(ir, text, scale) + info_nce(ir, ir_text, scale)) / 2
    else:
        raise ValueError(f"unknown supervision {supervision!r}; use original, ir_aware or mixed")
    terms = {"rgb_text": info_nce(rgb, text, scale), "ir_text": ir_term, "rgb_ir": info_nce(rgb, ir, scale)}
    return sum(terms.values()) / 3, terms


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward: the sum over ranks of the gradient of this rank's rows."""

    @staticmethod
    def forward(ctx, x):
        import torch.distributed as dist

        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, 0)

    @staticmethod
    def backward(ctx, grad):
        import torch.distributed as dist

        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # every rank's loss depends on these rows
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather(x: torch.Tensor) -> torch.Tensor:
    """The global batch of embeddings (rank order), with gradients; ``x`` itself on one process.

    Every rank must hold the same number of rows (the trainer drops incomplete last batches);
    unequal counts are a RuntimeError naming them.
    """
    if world_size() == 1:
        return x
    import torch.distributed as dist

    n = torch.tensor([x.shape[0]], device=x.device)
    counts = [torch.empty_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, n)
    if len({int(c) for c in counts}) > 1:
        raise RuntimeError(f"ranks hold different batch sizes {[int(c) for c in counts]}; the contrastive gather "
                           "needs equal ones (dataloader_drop_last)")
    return _GatherWithGrad.apply(x)
