"""Logits at supervised positions only: same loss and gradients as the model's own full-logit loss."""

import pytest
import torch

from cotrain.data.collate import PaddingCollator, model_inputs
from cotrain.data.collate import PackCollator
from cotrain.model.selective_logits import loss_positions, output_head, supervised_logits
from cotrain.model.tiny import build_tiny_model



@pytest.mark.parametrize("layout", ["padded", "packed"])
def test_loss_and_grads_equal_full_logits(layout, encoded_samples):
    processor, samples = encoded_samples("qwen2_5_vl")
    model = build_tiny_model("qwen2_5_vl", processor=processor, hidden_size=64)
    model.train()
    pad = processor.tokenizer.pad_token_id
    batch = (PaddingCollator(pad_token_id=pad)(samples) if layout == "padded"
             else PackCollator(pad_token_id=pad, spatial_merge_size=2)([samples[:3], samples[3:]]))
    inputs = model_inputs(batch)

    model.zero_grad()
    full = model(**inputs).loss  # transformers' own shifted token-mean cross-entropy over all logits
    full.backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.zero_grad()
    labels = inputs.pop("labels")
    need, target = loss_positions(labels)
    with supervised_logits(model, need):
        out = model(**inputs)
    assert out.logits.shape[:2] == (1, int(need.sum()))  # only the needed rows were computed
    mine = torch.nn.functional.cross_entropy(out.logits[0].float(), target)
    mine.backward()
    torch.testing.assert_close(mine, full, rtol=1e-5, atol=1e-6)
    for name, g in ref.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, g, rtol=1e-4, atol=1e-6, msg=name)
    # the hook is gone afterwards: a plain forward gives full logits again
    assert model(**inputs).logits.shape[1] == labels.shape[1]


def test_positions_mask_and_errors():
    labels = torch.tensor([[-100, 5, 6, -100], [-100, -100, 7, -100]])
    need, target = loss_positions(labels)
    assert need.tolist() == [[True, True, False, False], [False, True, False, False]]
    assert target.tolist() == [5, 6, 7]
    with pytest.raises(TypeError, match="no output embedding"):
        output_head(torch.nn.Linear(2, 2))
