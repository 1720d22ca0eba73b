"""Lesson 2: the loss variation rate and the weights against hand-computed values; per-pair losses."""

import math

import numpy as np
import pytest
import torch

from cotrain.contrastive.loss import info_nce
from cotrain.curriculum.alignment import loss_weights, pair_losses, record_pair_losses, variation_rate


def sig(x):
    return 1 / (1 + math.exp(-x))


def test_variation_rate_and_weights_by_hand():
    alpha = variation_rate([2, 4, 1, 5], [1, 5, 1, 2.5])
    np.testing.assert_allclose(alpha, [-0.5, 0.25, 0.0, -0.5])
    # positive branch {0.25}: median 0.25; non-positive branch -alpha {0.5, 0, 0.5}: median 0.5
    want = [1 + sig(1.0), 1 - sig(1.0), 1 + sig(0.0), 1 + sig(1.0)]
    np.testing.assert_allclose(loss_weights(alpha), want)


def test_all_positive_alpha_needs_no_empty_median():
    np.testing.assert_allclose(loss_weights(np.array([0.1, 0.3])), [1 - sig(0.5), 1 - sig(1.5)])
    np.testing.assert_allclose(loss_weights(np.array([-0.2, -0.6])), [1 + sig(0.5), 1 + sig(1.5)])


def test_zero_median_of_the_non_positive_branch():
    np.testing.assert_allclose(loss_weights(np.array([0.0, 0.0, 0.4])), [1.5, 1.5, 1 - sig(1.0)])


def test_bad_inputs():
    with pytest.raises(ValueError, match="loss <= 0"):
        variation_rate([1.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="NaN"):
        variation_rate([1.0, np.nan], [1.0, 1.0])
    with pytest.raises(ValueError, match="equal-length"):
        variation_rate([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        loss_weights(np.array([np.nan]))
    with pytest.raises(ValueError, match="at least 2"):
        pair_losses(np.ones((1, 2)), np.ones((1, 2)), 1.0)


def test_pair_losses_average_to_the_batch_info_nce():
    g = torch.Generator().manual_seed(0)
    im = torch.nn.functional.normalize(torch.randn(6, 4, generator=g), dim=-1)
    tx = torch.nn.functional.normalize(torch.randn(6, 4, generator=g), dim=-1)
    per = pair_losses(im.numpy(), tx.numpy(), 3.0, batch=3)
    # two batches of 3: each batch's mean per-pair loss is that batch's symmetric InfoNCE
    for s in (0, 3):
        assert per[s:s + 3].mean() == pytest.approx(info_nce(im[s:s + 3], tx[s:s + 3], torch.tensor(3.0)).item(),
                                                     rel=1e-6)
    # a last batch of one pair joins the batch before it (7 pairs at batch 3: 3 + 4)
    per7 = pair_losses(np.vstack([im.numpy(), im.numpy()[:1]]), np.vstack([tx.numpy(), tx.numpy()[:1]]), 3.0, 3)
    assert per7[:3] == pytest.approx(per[:3]) and len(per7) == 7


def test_record_pair_losses_average_each_records_texts_slot_by_slot():
    g = torch.Generator().manual_seed(1)
    norm = torch.nn.functional.normalize
    im = norm(torch.randn(4, 5, generator=g), dim=-1).numpy()
    counts = [2, 1, 3, 2]  # texts of record 0: rows 0-1, record 1: row 2, record 2: rows 3-5, record 3: rows 6-7
    tx = norm(torch.randn(sum(counts), 5, generator=g), dim=-1).numpy()
    got = record_pair_losses(im, tx, counts, 2.0, batch=256)
    slot0 = pair_losses(im, tx[[0, 2, 3, 6]], 2.0)           # every record's first text
    slot1 = pair_losses(im[[0, 2, 3]], tx[[1, 4, 7]], 2.0)   # the records with a second text
    # slot 2 would hold record 2 alone (no negative): dropped
    want = [(slot0[0] + slot1[0]) / 2, slot0[1], (slot0[2] + slot1[1]) / 2, (slot0[3] + slot1[2]) / 2]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # one text per record is pair_losses itself
    np.testing.assert_allclose(record_pair_losses(im, tx[:4], [1] * 4, 2.0), pair_losses(im, tx[:4], 2.0))
    with pytest.raises(ValueError, match="text embeddings"):
        record_pair_losses(im, tx, [2, 1, 3, 1], 2.0)
    with pytest.raises(ValueError, match=">= 1"):
        record_pair_losses(im, tx[:7], [2, 0, 3, 2], 2.0)
