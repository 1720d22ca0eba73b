"""Curriculum loss weights: packed == padded under both reductions, and the formulas by hand."""

import pytest
import torch

from cotrain.data.collate import PackCollator, PaddingCollator, token_samples
from cotrain.model.tiny import build_tiny_model
from cotrain.training.loss import TokenLosses, reduce_losses, token_losses

WEIGHTS = torch.tensor([0.3, 1.7, 1.0, 0.5, 1.9])


def test_weighted_reductions_by_hand():
    # two samples: tokens (1, 2) of sample 0 and (3,) of sample 1; weights 0.5 and 2
    losses = TokenLosses(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 3.0]), torch.tensor([2.0, 1.0]),
                         torch.tensor([0, 0, 1]))
    w = torch.tensor([0.5, 2.0])
    assert reduce_losses(losses, "token", step_samples=0, weights=w).item() == pytest.approx((0.5 * 3 + 2 * 3) / 3)
    assert reduce_losses(losses, "sample", step_samples=0, weights=w).item() == pytest.approx((0.5 * 1.5 + 2 * 3) / 2)
    ones = torch.ones(2)
    for red in ("token", "sample"):
        assert reduce_losses(losses, red, step_samples=0, weights=ones).item() == \
            pytest.approx(reduce_losses(losses, red, step_samples=0).item())


@pytest.mark.parametrize("reduction", ["token", "sample"])
@pytest.mark.parametrize("flatten", [False, True])
def test_packed_weighted_loss_equals_padded(reduction, flatten, encoded_samples):
    processor, samples = encoded_samples("qwen2_5_vl")
    torch.manual_seed(0)
    model = build_tiny_model("qwen2_5_vl", processor=processor, hidden_size=64)
    model.set_attn_implementation("sdpa")
    pad_id = processor.tokenizer.pad_token_id
    merge = model.config.vision_config.spatial_merge_size

    def weighted(batch):
        owner = token_samples(batch)
        losses, _ = token_losses(model, batch, owner, len(samples))
        return reduce_losses(losses, reduction, step_samples=len(samples), weights=WEIGHTS)

    padded = PaddingCollator(pad_token_id=pad_id)(samples)
    packed = PackCollator(pad_token_id=pad_id, spatial_merge_size=merge, flatten=flatten)(
        [samples[:2], samples[2:4], samples[4:]])
    with torch.no_grad():
        a, b = weighted(padded), weighted(packed)
        plain = reduce_losses(token_losses(model, padded, token_samples(padded), len(samples))[0], reduction,
                              step_samples=len(samples))
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
    assert abs(a.item() - plain.item()) > 1e-4  # the weights change the loss
