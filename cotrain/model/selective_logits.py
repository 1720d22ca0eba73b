"""Logits only where the loss needs them: the positions followed by a supervised label.

A Qwen-VL forward multiplies every hidden state by the output matrix (vocabulary x hidden; Qwen's
vocabulary has about 152k entries). In a training step that product, its float copy for the loss
and its gradient are by far the largest tensors, yet only the positions whose next token is a
supervised label (the assistant answers: typically 5-20% of an RS sample, whose image tokens are
never trained) enter the loss. ``supervised_logits`` wraps one forward with a pre-hook on the
output embedding that keeps just those hidden states, so the model returns logits of shape
``(1, n_supervised, vocab)`` in row-major order of the position mask. The forward still goes
through the wrapped model (DDP, DeepSpeed, peft), so gradient synchronisation is untouched.

Numerically harmless: the kept rows are the same products, and a test checks that loss and
gradients equal the model's own full-logit loss. Not used with Liger, whose fused linear
cross-entropy never materialises logits at all.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


def output_head(model) -> torch.nn.Module:
    """The output embedding (lm_head) of a plain, peft- or engine-wrapped model."""
    inner = model
    for _ in range(4):  # DDP / DeepSpeed engine (.module) around a peft model around the HF model
        if hasattr(inner, "get_output_embeddings"):
            head = inner.get_output_embeddings()
            if head is not None:
                return head
        inner = getattr(inner, "module", None)
        if inner is None:
            break
    raise TypeError(f"{type(model).__name__} has no output embedding to restrict")


@contextmanager
def supervised_logits(model, positions: torch.Tensor) -> Iterator[None]:
    """Within the block, the model's lm_head sees only ``hidden[positions]`` (positions: bool, rows x L)."""
    head = output_head(model)

    def keep_positions(module, args):
        hidden = args[0]
        if hidden.shape[:2] != positions.shape:
            raise RuntimeError(f"lm_head input {tuple(hidden.shape)} does not match the position mask "
                               f"{tuple(positions.shape)}")
        return (hidden[positions.to(hidden.device)].unsqueeze(0),) + tuple(args[1:])

    handle = head.register_forward_pre_hook(keep_positions)
    try:
        yield
    finally:
        handle.remove()


def loss_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows x L mask of positions that predict a supervised label, those labels in the same order)."""
    target = labels[:, 1:]
    keep = target != -100
    need = torch.nn.functional.pad(keep, (0, 1), value=False)
    return need, target[keep]
