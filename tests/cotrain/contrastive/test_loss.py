"""InfoNCE and the tri-modal loss against hand-computed values, the clamp, and the bad inputs."""

import math

import numpy as np
import pytest
import torch

from cotrain.contrastive.loss import gather, info_nce, logit_scale_value, tri_modal_loss


def _np_info_nce(a, b, s):
    """Independent route: numpy logsumexp over rows and columns."""
    logits = s * np.asarray(a, float) @ np.asarray(b, float).T
    n = len(logits)

    def ce(m):
        m = m - m.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(m).sum(axis=1)) - m[np.arange(n), np.arange(n)]))

    return (ce(logits) + ce(logits.T)) / 2


def test_info_nce_hand_computed():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # identical pairs, scale 1: each row is CE([1, 0], 0) = log(1 + e^-1), both directions alike
    assert info_nce(a, a, torch.tensor(1.0)).item() == pytest.approx(math.log(1 + math.exp(-1)))
    # logits [[0.6, 1.0], [0.8, 0.0]]: rows give log(1+e^0.4), log(1+e^0.8); columns log(1+e^0.2), log(1+e^1)
    b = torch.tensor([[0.6, 0.8], [1.0, 0.0]])
    rows = (math.log(1 + math.exp(0.4)) + math.log(1 + math.exp(0.8))) / 2
    cols = (math.log(1 + math.exp(0.2)) + math.log(1 + math.exp(1.0))) / 2
    assert info_nce(a, b, torch.tensor(1.0)).item() == pytest.approx((rows + cols) / 2)


def test_info_nce_matches_numpy_route_at_scale():
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(7, 5, generator=g), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(7, 5, generator=g), dim=-1)
    assert info_nce(a, b, torch.tensor(14.3)).item() == pytest.approx(_np_info_nce(a, b, 14.3), rel=1e-5)


def test_logit_scale_is_clamped_at_100_without_gradient_beyond():
    t = torch.tensor(math.log(500.0), requires_grad=True)
    s = logit_scale_value(t)
    assert s.item() == pytest.approx(100.0)
    s.backward()
    assert t.grad.item() == 0.0
    t2 = torch.tensor(math.log(10.0), requires_grad=True)
    logit_scale_value(t2).backward()
    assert t2.grad.item() == pytest.approx(10.0)  # d exp(t) / dt


@pytest.mark.parametrize("supervision", ["original", "ir_aware", "mixed"])
def test_tri_modal_loss_is_the_mean_of_its_three_terms(supervision):
    g = torch.Generator().manual_seed(1)
    rgb, ir, text, ir_text = (torch.nn.functional.normalize(torch.randn(4, 3, generator=g), dim=-1) for _ in range(4))
    s = 5.0
    loss, terms = tri_modal_loss(rgb, ir, text, ir_text, torch.tensor(s), supervision)
    ir_term = {"original": _np_info_nce(ir, text, s), "ir_aware": _np_info_nce(ir, ir_text, s),
               "mixed": (_np_info_nce(ir, text, s) + _np_info_nce(ir, ir_text, s)) / 2}[supervision]
    want = {"rgb_text": _np_info_nce(rgb, text, s), "ir_text": ir_term, "rgb_ir": _np_info_nce(rgb, ir, s)}
    for k, v in want.items():
        assert terms[k].item() == pytest.approx(v, rel=1e-5), k
    assert loss.item() == pytest.approx(sum(want.values()) / 3, rel=1e-5)


def test_bad_inputs():
    one = torch.ones(1, 2) / math.sqrt(2)
    with pytest.raises(ValueError, match="N >= 2"):
        info_nce(one, one, torch.tensor(1.0))  # a global batch of 1: no negative
    x = torch.eye(2)
    with pytest.raises(ValueError, match="IR-aware"):
        tri_modal_loss(x, x, x, None, torch.tensor(1.0), "ir_aware")
    with pytest.raises(ValueError, match="unknown supervision"):
        tri_modal_loss(x, x, x, x, torch.tensor(1.0), "both")
    assert gather(x) is x  # one process: the local batch is the global one
