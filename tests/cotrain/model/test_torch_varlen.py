"""attn_implementation 'torch_varlen': cu_seqlens, the auto dispatch, API adaptation and the wiring.

PyTorch's varlen kernel runs on CUDA only. On CPU the wiring (flattening, cu_seqlens, GQA, the
padded and fallback paths, transformers registration) is checked by swapping in a reference kernel
written here (causal sdpa per sequence), so packed torch_varlen must equal padded sdpa in loss and
gradients. The real kernel is checked against sdpa by the gpu-marked tests at the end.
"""

import sys

import pytest
import torch

from cotrain.data.collate import PaddingCollator, model_inputs
from cotrain.data.collate import PackCollator
from cotrain.errors import ModelLoadError
from cotrain.model import loader, torch_varlen
from cotrain.model.tiny import build_tiny_model


def reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None, window_size=(-1, -1), is_causal=False,
                     enable_gqa=False):
    """Independent route: causal sdpa on each sequence of a (T, H, D) stream."""
    assert torch.equal(cu_q, cu_k) and cu_q.dtype == torch.int32 and int(cu_q[-1]) == q.shape[0]
    assert max_q == max_k == int(cu_q.diff().max())
    causal = is_causal or tuple(window_size) == (-1, 0)
    assert causal, "cotrain asks for causal attention"
    if k.shape[1] != q.shape[1]:
        assert enable_gqa
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    out = []
    for s, e in zip(cu_q[:-1].tolist(), cu_q[1:].tolist()):
        qs, ks, vs = (t[s:e].transpose(0, 1) for t in (q, k, v))
        out.append(torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scale)
                   .transpose(0, 1))
    return torch.cat(out)


@pytest.fixture
def cpu_kernel(monkeypatch):
    """torch_varlen with the reference kernel on CPU (new-style signature: window_size, enable_gqa)."""
    calls = []

    def kernel(*args, **kwargs):
        calls.append(kwargs)
        return reference_varlen(*args, **kwargs)

    monkeypatch.setattr(torch_varlen, "_kernel", lambda: kernel)
    monkeypatch.setattr(torch_varlen, "_signature", lambda: frozenset({"scale", "window_size", "enable_gqa"}))
    torch_varlen.register()
    return calls


def test_cu_seqlens_from_positions_match_transformers_fa2_rule():
    from transformers.modeling_flash_attention_utils import prepare_fa_kwargs_from_position_ids

    pos = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3, 0]])  # three samples and one padding token
    cu, longest = torch_varlen.cu_seqlens_from_positions(pos)
    assert cu.tolist() == [0, 3, 5, 9, 10] and cu.dtype == torch.int32 and longest == 4
    (ref, _), (ref_max, _) = prepare_fa_kwargs_from_position_ids(pos)
    assert torch.equal(cu, ref) and longest == int(ref_max)
    # rows of a non-flattened pack batch flatten into one stream: each row restarts at 0
    cu2, _ = torch_varlen.cu_seqlens_from_positions(torch.tensor([[0, 1, 0, 1, 2], [0, 1, 2, 3, 0]]))
    assert cu2.tolist() == [0, 2, 5, 9, 10]


def test_cu_seqlens_from_mask_right_and_left_padding():
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1], [1, 1, 1, 1]])
    keep, cu, longest = torch_varlen.cu_seqlens_from_mask(mask)
    assert keep.tolist() == [0, 1, 2, 5, 6, 7, 8, 9, 10, 11]
    assert cu.tolist() == [0, 3, 6, 10] and cu.dtype == torch.int32 and longest == 4


def test_api_adaptation_torch_2_10_style(monkeypatch):
    """2.10: is_causal=True and no enable_gqa (keys repeated); later: window_size=(-1, 0) + enable_gqa."""
    seen = []
    monkeypatch.setattr(torch_varlen, "_kernel", lambda: lambda *a, **kw: (seen.append((a, kw)), a[0])[1])
    q, k = torch.zeros(5, 4, 8), torch.zeros(5, 2, 8)
    cu = torch.tensor([0, 5], dtype=torch.int32)
    monkeypatch.setattr(torch_varlen, "_signature", lambda: frozenset({"is_causal"}))
    torch_varlen._varlen_call(q, k, k, cu, 5, 0.5)
    args, kwargs = seen[-1]
    assert kwargs == {"scale": 0.5, "is_causal": True} and args[1].shape == (5, 4, 8)
    monkeypatch.setattr(torch_varlen, "_signature", lambda: frozenset({"scale", "window_size", "enable_gqa"}))
    torch_varlen._varlen_call(q, k, k, cu, 5, 0.5)
    args, kwargs = seen[-1]
    assert kwargs == {"scale": 0.5, "window_size": (-1, 0), "enable_gqa": True} and args[1].shape == (5, 2, 8)


def test_installed_torch_has_the_api():
    """torch 2.13 (our CPU pin) ships varlen_attn with the window_size signature the kernel call uses."""
    params = torch_varlen._signature()
    assert {"window_size", "scale"} <= params


def test_requesting_torch_varlen_without_cuda_names_the_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelLoadError, match="torch_varlen.*CUDA kernels only.*sdpa"):
        loader.resolve_attn_implementation("torch_varlen")


def test_old_torch_without_the_module_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.nn.attention.varlen", None)  # import fails as on torch < 2.10
    assert "added in PyTorch 2.10" in torch_varlen.availability()


@pytest.mark.parametrize("flash, varlen, expected", [(True, True, "flash_attention_2"),
                                                     (False, True, "torch_varlen"), (False, False, "sdpa")])
def test_auto_dispatch_order_is_logged(monkeypatch, caplog, flash, varlen, expected):
    monkeypatch.setattr(loader, "flash_attention_available", lambda: flash)
    monkeypatch.setattr(torch_varlen, "availability", lambda: None if varlen else "no CUDA")
    with caplog.at_level("INFO", logger="cotrain.model.loader"):
        assert loader.resolve_attn_implementation("auto") == expected
    assert f"'auto' -> {expected}" in caplog.text


def test_unknown_attn_implementation_lists_torch_varlen():
    with pytest.raises(ModelLoadError, match="torch_varlen"):
        loader.resolve_attn_implementation("varlen")


def _loss_and_grads(model, batch):
    model.zero_grad()
    loss = model(**model_inputs(batch)).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
@pytest.mark.parametrize("flatten", [True, False])
def test_packed_torch_varlen_equals_padded_sdpa_on_cpu_reference_kernel(cpu_kernel, family, flatten, encoded_samples):
    """Float32, rtol 1e-4 / atol 1e-6 on the loss and every gradient (summation order only)."""
    processor, samples = encoded_samples(family)
    model = build_tiny_model(family, processor=processor, hidden_size=64).train()
    model.set_attn_implementation("sdpa")
    pad_id = processor.tokenizer.pad_token_id
    loss_a, grads_a = _loss_and_grads(model, PaddingCollator(pad_token_id=pad_id)(samples))
    packed = PackCollator(pad_token_id=pad_id, spatial_merge_size=2, flatten=flatten)(
        [samples[:2], samples[2:4], samples[4:]])
    model.set_attn_implementation(torch_varlen.NAME)
    loss_b, grads_b = _loss_and_grads(model, packed)
    assert cpu_kernel and all(kw["window_size"] == (-1, 0) for kw in cpu_kernel)
    n_layers = model.config.text_config.num_hidden_layers
    assert len(cpu_kernel) == n_layers  # text layers only: the vision tower is not causal
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-4, atol=1e-6)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-4, atol=1e-6, msg=name)


def test_padded_batch_and_generation_with_torch_varlen(cpu_kernel, encoded_samples):
    """A padded batch goes through the unpad path; greedy generation (cache, left padding) matches sdpa."""
    processor, samples = encoded_samples("qwen2_5_vl")
    model = build_tiny_model("qwen2_5_vl", processor=processor, hidden_size=64).eval()
    padded = PaddingCollator(pad_token_id=processor.tokenizer.pad_token_id)(samples[:3])
    with torch.no_grad():
        model.set_attn_implementation("sdpa")
        ref = model(**model_inputs(padded)).logits
        model.set_attn_implementation(torch_varlen.NAME)
        got = model(**model_inputs(padded)).logits
    keep = padded["attention_mask"].bool()
    torch.testing.assert_close(got[keep], ref[keep], rtol=1e-4, atol=1e-5)
    assert cpu_kernel  # the padded batch used the kernel
    tok = processor.tokenizer
    tok.padding_side = "left"
    enc = tok(["a b c d e f", "g h"], return_tensors="pt", padding=True)
    outs = {}
    for attn in ("sdpa", torch_varlen.NAME):
        model.set_attn_implementation(attn)
        outs[attn] = model.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    assert torch.equal(outs["sdpa"], outs[torch_varlen.NAME])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_real_kernel_packed_equals_padded_sdpa_on_cuda(dtype, encoded_samples):
    """The real kernel: loss within 1e-2 relative, every gradient's cosine >= 0.99 (half precision)."""
    processor, samples = encoded_samples("qwen2_5_vl")
    model = build_tiny_model("qwen2_5_vl", processor=processor, hidden_size=128).to("cuda", dtype).train()
    model.set_attn_implementation("sdpa")
    pad_id = processor.tokenizer.pad_token_id
    to_cuda = lambda b: {k: v.to("cuda") if torch.is_tensor(v) else v for k, v in b.items()}  # noqa: E731
    loss_a, grads_a = _loss_and_grads(model, to_cuda(PaddingCollator(pad_token_id=pad_id)(samples)))
    model.set_attn_implementation(loader.resolve_attn_implementation("torch_varlen"))
    packed = PackCollator(pad_token_id=pad_id, spatial_merge_size=2, flatten=True)([samples])
    loss_b, grads_b = _loss_and_grads(model, to_cuda(packed))
    assert abs(float(loss_b) - float(loss_a)) <= 1e-2 * abs(float(loss_a))
    for name, g in grads_a.items():
        cos = torch.nn.functional.cosine_similarity(g.float().flatten(), grads_b[name].float().flatten(), dim=0)
        assert cos >= 0.99, name
