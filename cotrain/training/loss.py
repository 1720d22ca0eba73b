"""The training loss: per-token cross-entropy where a supervised label follows, and its two reductions.

``token_losses`` runs the model with logits computed only at supervised positions
(``cotrain.model.selective_logits``) and returns the per-token losses with the sample each belongs
to. ``reduce_losses`` turns them into the optimised scalar:

- ``token``: HF's convention, the sum over the step's supervised tokens divided by their number
  across every micro-batch (and every rank with ``average_tokens_across_devices``; DDP then
  averages over ranks, which is why the loss is multiplied back by the number of processes);
- ``sample``: the mean over the step's samples of each sample's token-mean loss; the divisor is
  the step's sample count across its micro-batches, so gradient accumulation adds up to the step
  mean.

Per-sample weights w (the curriculum's lesson-2 weights, IRGPT eq. 6) multiply each sample's losses
in both reductions: ``token`` sums w_s(t) * l_t over the tokens and divides by the same token count
as without weights; ``sample`` averages w_i * mean_t l_i,t over the same sample count. Weights enter
per token through the token's sample number, so a packed batch and a padded batch of the same
samples give the same weighted loss.

Must not count, log or know about the Trainer; it gets tensors and returns tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cotrain.data.collate import model_inputs


@dataclass
class TokenLosses:
    """Per-token losses of one micro-batch and their per-sample sums."""

    per_token: torch.Tensor
    """(n,) cross-entropy of every supervised token, in batch order."""
    sums: torch.Tensor
    """(samples,) sum of each sample's token losses."""
    counts: torch.Tensor
    """(samples,) supervised tokens of each sample."""
    owner: torch.Tensor | None = None
    """(n,) sample number of every supervised token (index into sums / counts / weights)."""


def token_losses(model, inputs: dict, owner: torch.Tensor, n_samples: int) -> tuple[TokenLosses, object]:
    """(losses, model outputs) from logits computed only where a supervised label follows.

    ``owner`` is the (rows, L) sample number of every token (``cotrain.data.collate.token_samples``).
    """
    from cotrain.model.selective_logits import loss_positions, supervised_logits

    batch = model_inputs(inputs)
    labels = batch.pop("labels")
    need, target = loss_positions(labels)
    with supervised_logits(model, need):
        outputs = model(**batch)
    logits = outputs.logits.reshape(-1, outputs.logits.shape[-1]).float()
    per_token = torch.nn.functional.cross_entropy(logits, target.to(logits.device), reduction="none")
    own = owner[:, 1:][need[:, :-1]].to(per_token.device)
    sums = torch.zeros(max(n_samples, 1), device=per_token.device).index_add(0, own, per_token)
    counts = torch.bincount(own, minlength=max(n_samples, 1)).to(sums.dtype)
    return TokenLosses(per_token, sums, counts, own), outputs


def reduce_losses(losses: TokenLosses, reduction: str, *, step_samples: int, num_items_in_batch=None,
                  processes: int = 1, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The optimised loss of one micro-batch (see the module docstring for the two reductions).

    ``step_samples``: samples in the whole optimizer step (0 = this micro-batch's); ``processes``:
    the factor that undoes DDP's averaging when token counts are already summed across ranks (1
    otherwise); ``weights``: (samples,) per-sample loss weights, or None.
    """
    if weights is not None:
        weights = weights.to(losses.sums.device, losses.sums.dtype)
    if reduction == "sample":
        has = losses.counts > 0
        n = step_samples or losses.sums.numel()
        means = losses.sums[has] / losses.counts[has]
        if weights is not None:
            means = means * weights[has]
        return means.sum() / max(n, 1)
    if reduction != "token":
        raise ValueError(f"loss reduction must be 'token' or 'sample', got {reduction!r}")
    per_token = losses.per_token if weights is None else losses.per_token * weights[losses.owner]
    if num_items_in_batch is not None:
        return per_token.sum() / num_items_in_batch * processes
    return per_token.sum() / max(per_token.numel(), 1)
