"""Packing: per-sample M-RoPE positions, the pack plan, and packed-vs-unpacked loss/gradient parity."""

import numpy as np
import pytest
import torch
from PIL import Image

from cotrain.data.collator import PaddingCollator, model_inputs
from cotrain.data.encoder import ChatEncoder
from cotrain.data.packing import PackCollator, mrope_positions, pack_fill, plan_packs
from cotrain.model.processor import build_offline_processor
from cotrain.model.tiny import build_tiny_model


def _image(h, w, seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _conv(question, answer, n_images):
    content = [{"type": "image", "index": i} for i in range(n_images)] + [{"type": "text", "text": question}]
    return {"messages": [{"role": "user", "content": content},
                         {"role": "assistant", "content": [{"type": "text", "text": answer}]}],
            "images": [], "meta": {"id": question[:8]}}


SHAPES = [[(56, 84)], [], [(112, 56), (56, 56)], [(84, 112)], []]
"""Images per sample: one, none, two of different grids, one, none (text-only samples pack too)."""


def _samples(family):
    processor = build_offline_processor(family)
    encoder = ChatEncoder(processor, family)
    factor = 32 if family == "qwen3_vl" else 28
    out = []
    for k, shapes in enumerate(SHAPES):
        imgs = [_image(h // 28 * factor, w // 28 * factor, 10 * k + j) for j, (h, w) in enumerate(shapes)]
        s = encoder.encode(_conv(f"Question {k}: what is at {k * 7}?", f"answer {k} " * (k + 1), len(imgs)), imgs)
        out.append(s)
    return processor, out


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_positions_equal_the_models_rope_index(family):
    processor, samples = _samples(family)
    model = build_tiny_model(family, processor=processor, hidden_size=64)
    merge = model.config.vision_config.spatial_merge_size
    for s in samples:
        ids = s["input_ids"][None]
        grid = s["image_grid_thw"] if s["image_grid_thw"].shape[0] else None
        mine = mrope_positions(s["mm_token_type_ids"], grid, merge)
        if grid is None:  # the model's rule for text-only input: plain 0..n-1 on all three axes
            assert torch.equal(mine, torch.arange(ids.shape[1]).expand(3, -1))
            continue
        ref, _ = model.model.get_rope_index(ids, mm_token_type_ids=s["mm_token_type_ids"][None], image_grid_thw=grid)
        assert torch.equal(mine, ref[:, 0]), family


def test_positions_reject_inconsistent_grids():
    types = torch.tensor([0, 1, 1, 1, 1, 0])
    with pytest.raises(ValueError, match="grid"):
        mrope_positions(types, torch.tensor([[1, 4, 6]]), 2)  # 6 merged tokens, block has 4
    with pytest.raises(ValueError, match="image grids"):
        mrope_positions(types, None, 2)


def test_plan_is_a_partition_within_budget_and_deterministic():
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 900, 500).tolist()
    packs = plan_packs(lengths, 1024, seed=1, epoch=0)
    assert sorted(i for p in packs for i in p) == list(range(500))
    assert all(sum(lengths[i] for i in p) <= 1024 for p in packs)
    assert all(p == sorted(p) for p in packs)
    assert packs == plan_packs(lengths, 1024, seed=1, epoch=0)
    assert packs != plan_packs(lengths, 1024, seed=1, epoch=1)  # pack order reshuffled per epoch
    # no packing beats ceil(total / max_length) packs; lengths up to 900 of 1024 leave gaps
    assert len(packs) <= int(np.ceil(sum(lengths) / 1024)) * 1.05 + 1
    short = rng.integers(40, 400, 2000).tolist()  # a mix dominated by shorter samples packs tightly
    assert pack_fill(short, plan_packs(short, 1024, seed=1, epoch=0), 1024) > 0.98


def test_plan_refuses_items_over_budget():
    with pytest.raises(ValueError, match="item 1 has length 2000"):
        plan_packs([10, 2000], 1024, seed=0, epoch=0)


def test_plan_hand_case():
    # best fit decreasing: 6 -> A (room 4), 5 -> B (room 5), 4 -> A (fits exactly), 3 -> B (room 2),
    # 2 -> B (the only open pack), so two full packs
    packs = plan_packs([4, 6, 2, 5, 3], 10, seed=0, epoch=0)
    assert sorted(map(tuple, packs)) == [(0, 1), (2, 3, 4)]
    # best fit, not first fit: 3 goes to the pack with room 4, not the older one with room 5
    packs = plan_packs([5, 6, 3], 10, seed=0, epoch=0)
    assert sorted(map(tuple, packs)) == [(0,), (1, 2)]


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
@pytest.mark.parametrize("flatten, attn", [(False, "sdpa"), (True, "sdpa"), (False, "varlen"), (True, "varlen")])
def test_packed_loss_and_gradients_equal_unpacked(family, flatten, attn):
    """Token-mean loss over the same supervised tokens: packed rows (block-diagonal sdpa) == padded batch.

    Tolerance: float32, rtol 1e-4 / atol 1e-6 on the loss and every gradient; the only
    differences are summation order inside attention and the loss.
    """
    processor, samples = _samples(family)
    torch.manual_seed(0)
    model = build_tiny_model(family, processor=processor, hidden_size=64)
    model.set_attn_implementation("sdpa")
    model.train()  # dropout is 0 in the tiny config, so train mode is deterministic
    pad_id = processor.tokenizer.pad_token_id
    merge = model.config.vision_config.spatial_merge_size

    def loss_and_grads(batch):
        model.zero_grad()
        loss = model(**model_inputs(batch)).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    padded = PaddingCollator(pad_token_id=pad_id)(samples)
    packed = PackCollator(pad_token_id=pad_id, spatial_merge_size=merge, flatten=flatten)(
        [samples[:2], samples[2:4], samples[4:]])
    assert "attention_mask" not in packed
    assert packed["input_ids"].shape[0] == (1 if flatten else 3)
    # the same supervised tokens in both layouts
    assert int((packed["labels"] != -100).sum()) == int((padded["labels"][:, 1:] != -100).sum())
    loss_a, grads_a = loss_and_grads(padded)
    if attn == "varlen":  # cotrain's per-sample sdpa (cotrain.model.varlen_sdpa) instead of the block mask
        from cotrain.model.varlen_sdpa import register

        model.set_attn_implementation(register())
    loss_b, grads_b = loss_and_grads(packed)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-4, atol=1e-6)
    assert grads_a.keys() == grads_b.keys() and any(n.startswith("model.visual") for n in grads_a)
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-4, atol=1e-6, msg=name)


def test_packing_isolates_samples():
    """Changing one sample's tokens changes nothing in the logits of the other samples of its row."""
    processor, samples = _samples("qwen2_5_vl")
    model = build_tiny_model("qwen2_5_vl", processor=processor, hidden_size=64).eval()
    collate = PackCollator(pad_token_id=processor.tokenizer.pad_token_id, spatial_merge_size=2)
    first = collate([samples[:3]])
    changed = dict(samples[0])
    changed["input_ids"] = samples[0]["input_ids"].clone()
    changed["input_ids"][3:6] = torch.tensor([65, 66, 67])  # text tokens of sample 0
    second = collate([[changed] + samples[1:3]])
    with torch.no_grad():
        a = model(**model_inputs(first)).logits
        b = model(**model_inputs(second)).logits
    n0 = samples[0]["input_ids"].numel()
    assert not torch.allclose(a[0, :n0], b[0, :n0])
    torch.testing.assert_close(a[0, n0:], b[0, n0:], rtol=0, atol=1e-6)


def test_pack_collator_layout():
    processor, samples = _samples("qwen2_5_vl")
    batch = PackCollator(pad_token_id=7, spatial_merge_size=2)([samples[:2], samples[2:3]])
    n = [s["input_ids"].numel() for s in samples]
    assert batch["input_ids"].shape == (2, max(n[0] + n[1], n[2]))
    ts = batch["token_sample"]
    assert ts[0, :n[0]].eq(0).all() and ts[0, n[0]:n[0] + n[1]].eq(1).all() and ts[1, :n[2]].eq(2).all()
    pos = batch["position_ids"]
    assert pos.shape == (4, 2, batch["input_ids"].shape[1])
    assert pos[0, 0, n[0]] == 0 and pos[0, 0, n[0] - 1] == n[0] - 1  # text positions restart per sample
    assert batch["labels"][0, n[0]] == -100  # first label of each sample masked
    assert batch["image_grid_thw"].shape[0] == 1 + 2  # images of samples 0 and 2, in order
    assert batch["num_image_tokens"] == [s["num_image_tokens"] for s in samples[:3]]  # metadata per sample
    assert batch["use_cache"] is False
    with pytest.raises(ValueError, match="without samples"):
        PackCollator(pad_token_id=7, spatial_merge_size=2)([[], []])
