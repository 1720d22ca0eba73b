"""vLLM backend: prompts/pixels equal to the HF path, sampling mapping, engine glue, adapter refusals.

vLLM cannot be installed on CPU machines, so the engine is a fake ``vllm`` module put into
``sys.modules``: its ``LLM`` records what the backend hands it and answers with objects shaped
like vLLM's ``RequestOutput`` (``prompt_token_ids``, ``outputs[0].text/.token_ids/.finish_reason``).
Golden values come from independent routes: transformers' own Qwen2-VL ``smart_resize`` and image
processor, the processor's chat template, the tokenizer on the expanded prompt, peft's module
matching. The ``gpu`` test runs both real backends on a tiny checkpoint (GPU machine with vLLM).
"""

from __future__ import annotations

import json
import shutil
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

try:  # transformers' Qwen2-VL smart_resize; the PIL module holds a copy that needs no torchvision
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf_smart_resize
except ImportError:  # pragma: no cover - transformers < 5
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as hf_smart_resize

from cotrain.data.encoder import ChatEncoder
from cotrain.errors import BadRecordError, ModelLoadError
from cotrain.inference import load_backend
from cotrain.inference import vllm as vb
from cotrain.inference.base import GenerationRequest, SamplingParams
from cotrain.resolution import PixelLimits
from cotrain.model.families import get_family
from cotrain.model.processor import build_offline_processor
from cotrain.model.tiny import build_tiny_model, create_tiny_checkpoint

IM_END = 151645  # <|im_end|> in every real Qwen2/2.5/3-VL tokenizer (shared/PLATFORM.md)
TINY_IM_END = build_offline_processor("qwen2_5_vl").tokenizer.convert_tokens_to_ids("<|im_end|>")
"""<|im_end|> of the tiny checkpoints' byte-level tokenizer (a compact id, not 151645)."""
IMAGE_PAD = "<|image_pad|>"


# ------------------------------------------------------------------ helpers

def _png(path: Path, w: int, h: int, seed: int = 0) -> Path:
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def _limits(family: str) -> PixelLimits:
    f = get_family(family).factor
    return PixelLimits(min_pixels=4 * f * f, max_pixels=48 * f * f, factor=f)


def _image_entry(limits: PixelLimits, w: int, h: int, **src) -> dict:
    # target size from transformers' smart_resize, not from cotrain's
    rh, rw = hf_smart_resize(h, w, factor=limits.factor, min_pixels=limits.min_pixels, max_pixels=limits.max_pixels)
    return {"width": w, "height": h, "resized_wh": [rw, rh], **src}


def _request(rid: str, images: list[dict], question: str, order: list[int] | None = None,
             sampling: SamplingParams | None = None) -> GenerationRequest:
    order = list(range(len(images))) if order is None else order
    content = [{"type": "image", "index": i} for i in order] + [{"type": "text", "text": question}]
    return GenerationRequest(id=rid, messages=[{"role": "user", "content": content}], images=images,
                             sampling=sampling or SamplingParams(max_new_tokens=8))


def _hf_messages(request: GenerationRequest) -> list[dict]:
    """The request in the processor chat template's own message format."""
    return [{"role": m["role"], "content": [{"type": "image"} if p["type"] == "image" else
                                            {"type": "text", "text": p["text"]} for p in m["content"]]}
            for m in request.messages]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return create_tiny_checkpoint(tmp_path_factory.mktemp("vllm") / "tiny", "qwen2_5_vl")


# ------------------------------------------------------------------ plain data

@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_inputs_match_hf_path_and_cannot_be_resized_again(family, tmp_path):
    processor = build_offline_processor(family)
    encoder = ChatEncoder(processor, family)
    limits = _limits(family)
    spec = get_family(family)
    f, p = spec.factor, spec.patch_size
    pil = Image.fromarray(np.random.default_rng(3).integers(0, 256, (150, 410, 3), dtype=np.uint8))
    images = [_image_entry(limits, 301, 197, abs_path=str(_png(tmp_path / "a.png", 301, 197))),
              _image_entry(limits, 410, 150, pil=pil),
              _image_entry(limits, 1200, 900, abs_path=str(_png(tmp_path / "c.png", 1200, 900, seed=1)))]
    # parts refer to the images out of index order: multi_modal_data must follow the parts
    req = _request("r1", images, "Count the ships.", order=[2, 0, 1])
    out = vb.build_vllm_inputs(req, encoder, limits)

    # the prompt: the training encoder's text == the checkpoint's chat template
    conv = {"messages": req.messages, "meta": {"id": req.id}}
    assert out["prompt"] == encoder.render(conv, add_generation_prompt=True)
    assert out["prompt"] == processor.apply_chat_template(_hf_messages(req), tokenize=False,
                                                          add_generation_prompt=True)
    assert out["prompt"].count(IMAGE_PAD) == 3

    # the pixels: at the request's resized size, in part order
    sent = out["multi_modal_data"]["image"]
    expected_hw = [tuple(images[i]["resized_wh"][::-1]) for i in (2, 0, 1)]
    assert [(im.height, im.width) for im in sent] == expected_hw
    assert all(im.mode == "RGB" for im in sent)
    assert out["mm_processor_kwargs"] == {"min_pixels": limits.min_pixels, "max_pixels": limits.max_pixels}

    # vLLM's processor re-runs smart_resize with these kwargs: a fixed point, so no second resize
    kw = out["mm_processor_kwargs"]
    for im in sent:
        assert hf_smart_resize(im.height, im.width, factor=f, **kw) == (im.height, im.width)
    # ... and the HF image processor itself (resizing on) yields each image's own grid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # min_pixels/max_pixels call kwargs, see the report
        grid = processor.image_processor(images=sent, return_tensors="pt", **kw)["image_grid_thw"].tolist()
    assert grid == [[1, h // p, w // p] for h, w in expected_hw]

    # token level: vLLM expands each <|image_pad|> to grid.prod() // merge**2 tokens; the
    # tokenizer on that text must give exactly the HF backend's input ids
    n_tokens = [(h // f) * (w // f) for h, w in expected_hw]
    hf_sample = encoder.encode(conv, [im for _, im in sorted(zip((2, 0, 1), sent))], add_generation_prompt=True)
    assert hf_sample["num_image_tokens"] == sum(n_tokens)
    pieces = out["prompt"].split(IMAGE_PAD)
    expanded = pieces[0] + "".join(IMAGE_PAD * n + rest for n, rest in zip(n_tokens, pieces[1:]))
    ids = processor.tokenizer.encode(expanded, add_special_tokens=False)
    assert ids == hf_sample["input_ids"].tolist()


def test_text_only_request_has_no_multimodal_data():
    processor = build_offline_processor("qwen2_5_vl")
    req = _request("t", [], "What is remote sensing?")
    out = vb.build_vllm_inputs(req, ChatEncoder(processor, "qwen2_5_vl"), _limits("qwen2_5_vl"))
    assert "multi_modal_data" not in out and IMAGE_PAD not in out["prompt"]
    assert out["prompt"].endswith("What is remote sensing?<|im_end|>\n<|im_start|>assistant\n")


def test_bad_images_raise_bad_record(tmp_path):
    processor = build_offline_processor("qwen2_5_vl")
    encoder, limits = ChatEncoder(processor, "qwen2_5_vl"), _limits("qwen2_5_vl")
    missing = _request("m", [_image_entry(limits, 64, 64, abs_path=str(tmp_path / "nope.png"))], "q")
    with pytest.raises(BadRecordError) as e:
        vb.build_vllm_inputs(missing, encoder, limits)
    assert e.value.reason == "image_missing"
    dangling = _request("d", [], "q", order=[0])
    with pytest.raises(BadRecordError) as e:
        vb.build_vllm_inputs(dangling, encoder, limits)
    assert e.value.reason == "image_index"


def test_sampling_kwargs():
    greedy = vb.vllm_sampling_kwargs(SamplingParams(max_new_tokens=7), [IM_END])
    assert greedy == {"temperature": 0.0, "top_p": 1.0, "max_tokens": 7, "seed": None, "stop_token_ids": [IM_END],
                      "skip_special_tokens": True}
    sampled = vb.vllm_sampling_kwargs(SamplingParams(max_new_tokens=3, temperature=0.7, top_p=0.9, seed=5), [IM_END])
    assert sampled == {"temperature": 0.7, "top_p": 0.9, "max_tokens": 3, "seed": 5, "stop_token_ids": [IM_END],
                       "skip_special_tokens": True}


# ------------------------------------------------------------------ engine glue (fake vllm)

class _FakeSamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


class _FakeLoRARequest:
    def __init__(self, lora_name, lora_int_id, lora_path=""):
        self.lora_name, self.lora_int_id, self.lora_path = lora_name, lora_int_id, lora_path


class _FakeLLM:
    instances: list = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.calls = []
        _FakeLLM.instances.append(self)

    def generate(self, prompts, sampling_params=None, *, use_tqdm=True, lora_request=None):
        self.calls.append({"prompts": prompts, "sampling_params": sampling_params, "use_tqdm": use_tqdm,
                           "lora_request": lora_request})
        outs = []
        for k, p in enumerate(prompts):
            # answer = the prompt's question, so the test can tell which prompt an answer belongs to
            question = p["prompt"].rsplit("<|im_start|>user\n", 1)[1].split("<|im_end|>")[0].split(">")[-1]
            length = k % 2 == 1
            tokens = [11, 12, 13] if length else [11, 12, TINY_IM_END]
            completion = types.SimpleNamespace(index=0, text=f" {question} ", token_ids=tokens,
                                               finish_reason="length" if length else "stop",
                                               stop_reason=None if length else TINY_IM_END)
            outs.append(types.SimpleNamespace(request_id=str(k), prompt=p["prompt"],
                                              prompt_token_ids=list(range(100 + k)), outputs=[completion],
                                              finished=True))
        return outs


@pytest.fixture
def fake_vllm(monkeypatch):
    mod = types.ModuleType("vllm")
    mod.LLM, mod.SamplingParams = _FakeLLM, _FakeSamplingParams
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = _FakeLoRARequest
    lora.request = request
    mod.lora = lora
    for name, m in (("vllm", mod), ("vllm.lora", lora), ("vllm.lora.request", request)):
        monkeypatch.setitem(sys.modules, name, m)
    monkeypatch.setattr(vb, "_cuda_available", lambda: True)
    _FakeLLM.instances = []
    return mod


def test_engine_arguments_and_ordered_responses(ckpt, fake_vllm, tmp_path):
    limits = _limits("qwen2_5_vl")
    backend = load_backend("vllm", str(ckpt), limits=limits, attn_implementation="sdpa", batch_size=4,
                           max_model_len=2048, max_images=2)
    assert backend.name == "vllm" and backend.family.name == "qwen2_5_vl" and backend.limits == limits
    (llm,) = _FakeLLM.instances
    assert llm.kwargs == {"model": str(ckpt), "tokenizer": str(ckpt), "dtype": "bfloat16", "trust_remote_code": False,
                          "tensor_parallel_size": 1, "gpu_memory_utilization": 0.85,
                          "limit_mm_per_prompt": {"image": 2, "video": 0}, "enable_lora": False,
                          "enforce_eager": False, "max_model_len": 2048}

    img = str(_png(tmp_path / "ok.png", 120, 90))
    sampled = SamplingParams(max_new_tokens=5, temperature=0.5, seed=1)
    requests = [
        _request("a", [_image_entry(limits, 120, 90, abs_path=img)], "Q-a"),
        _request("b", [_image_entry(limits, 120, 90, abs_path=str(tmp_path / "gone.png"))], "Q-b"),
        _request("c", [], "Q-c", sampling=sampled),
        _request("d", [_image_entry(limits, 120, 90, abs_path=img)] * 3, "Q-d"),  # over max_images
        _request("e", [_image_entry(limits, 120, 90, abs_path=img)], "Q-e"),
    ]
    responses = backend.generate(requests)
    assert [r.id for r in responses] == ["a", "b", "c", "d", "e"]
    assert [(r.finish_reason, r.error) for r in responses] == [
        ("stop", None), ("error", "image_missing"), ("length", None), ("error", "too_many_images"), ("stop", None)]
    assert [r.text for r in responses] == ["Q-a", "", "Q-c", "", "Q-e"]
    # prompt tokens = len(prompt_token_ids); the end-of-turn token is not counted (as in the HF backend)
    assert [(r.prompt_tokens, r.generated_tokens) for r in responses if r.error is None] == [(100, 2), (101, 3),
                                                                                              (102, 2)]

    (call,) = llm.calls
    assert [p["prompt"].count(IMAGE_PAD) for p in call["prompts"]] == [1, 0, 1]
    assert [len(p.get("multi_modal_data", {}).get("image", [])) for p in call["prompts"]] == [1, 0, 1]
    assert [sp.kwargs for sp in call["sampling_params"]] == [
        vb.vllm_sampling_kwargs(r.sampling, [TINY_IM_END]) for r in (requests[0], requests[2], requests[4])]
    assert call["lora_request"] is None and call["use_tqdm"] is False


def test_all_requests_bad_skips_engine(ckpt, fake_vllm, tmp_path):
    backend = vb.VLLMBackend.from_checkpoint(ckpt)
    limits = backend.limits
    out = backend.generate([_request("x", [_image_entry(limits, 50, 50, abs_path=str(tmp_path / "no.png"))], "q")])
    assert out[0].finish_reason == "error" and _FakeLLM.instances[0].calls == []


def test_not_installed_and_no_cuda(ckpt, monkeypatch, fake_vllm):
    monkeypatch.setattr(vb, "_cuda_available", lambda: False)
    with pytest.raises(ModelLoadError, match="CUDA"):
        vb.VLLMBackend.from_checkpoint(ckpt)
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(ModelLoadError) as e:
        vb.VLLMBackend.from_checkpoint(ckpt)
    assert "vLLM is not installed" in str(e.value) and "pip install -e '.[vllm]'" in str(e.value)
    assert "--backend hf" in str(e.value)


def test_directory_checked_before_vllm(ckpt, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    broken = tmp_path / "noproc"
    shutil.copytree(ckpt, broken)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (broken / name).unlink()
    with pytest.raises(ModelLoadError, match="no processor files"):
        vb.VLLMBackend.from_checkpoint(broken)
    with pytest.raises(ModelLoadError, match="does not exist"):
        vb.VLLMBackend.from_checkpoint(tmp_path / "absent")


# ------------------------------------------------------------------ LoRA adapters

def _save_lora(out: Path, family="qwen2_5_vl", *, vision=False, train_merger=False, r=4) -> Path:
    from cotrain.config import LoraConfig, ModelConfig
    from cotrain.model.trainable import apply_lora, save_adapter

    cfg = ModelConfig(train_vision=vision, train_merger=train_merger,
                      lora=LoraConfig(enabled=True, r=r, alpha=8, dropout=0.0, language=True, vision=vision))
    return save_adapter(apply_lora(build_tiny_model(family), cfg), out)


def test_language_lora_is_served(ckpt, fake_vllm, tmp_path):
    adapter = _save_lora(tmp_path / "adapter")
    backend = vb.VLLMBackend.from_checkpoint(ckpt, adapter=adapter, max_lora_rank=8)
    (llm,) = _FakeLLM.instances
    assert llm.kwargs["enable_lora"] is True and llm.kwargs["max_lora_rank"] == 8
    lr = backend.lora_request
    assert (lr.lora_name, lr.lora_int_id, lr.lora_path) == ("adapter", 1, str(adapter.resolve()))
    backend.generate([_request("t", [], "hi")])
    assert llm.calls[0]["lora_request"] is lr
    with pytest.raises(ModelLoadError, match="max_lora_rank"):
        vb.VLLMBackend.from_checkpoint(ckpt, adapter=adapter, max_lora_rank=2)


def test_adapters_vllm_cannot_serve_are_refused(ckpt, fake_vllm, tmp_path):
    with_parts = _save_lora(tmp_path / "parts", train_merger=True)
    assert (with_parts / "trained_parts.safetensors").is_file()
    with pytest.raises(ModelLoadError, match=r"trained_parts\.safetensors.*merged final/ directory"):
        vb.VLLMBackend.from_checkpoint(ckpt, adapter=with_parts)

    vision = _save_lora(tmp_path / "vision", vision=True)
    with pytest.raises(ModelLoadError, match=r"vision.*merged final/ directory"):
        vb.VLLMBackend.from_checkpoint(ckpt, adapter=vision)

    other = _save_lora(tmp_path / "other", family="qwen2_vl")  # adapter of another family
    with pytest.raises(ModelLoadError, match="different base model.*model_type"):
        vb.VLLMBackend.from_checkpoint(ckpt, adapter=other)

    with pytest.raises(ModelLoadError, match="adapter_config.json is missing"):
        vb.VLLMBackend.from_checkpoint(ckpt, adapter=tmp_path)
    assert _FakeLLM.instances == []  # every refusal came before the engine started


@pytest.mark.parametrize("targets", [["q_proj", "v_proj"], ["q_proj", "gate_proj"], ["qkv"],
                                     r".*language_model.*\.(q_proj|o_proj)", r".*\.(q_proj|qkv)"])
def test_vision_check_agrees_with_peft(ckpt, tmp_path, targets):
    """target_modules alone (no weights file) decide like peft does on the real model."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(build_tiny_model("qwen2_5_vl"), LoraConfig(r=2, target_modules=targets))
    peft_adapts_vision = any(".visual." in n and ".lora_A." in n for n, _ in model.named_parameters())
    model.save_pretrained(str(tmp_path / "a"))
    (tmp_path / "a" / "adapter_model.safetensors").unlink()
    if peft_adapts_vision:
        with pytest.raises(ModelLoadError, match="vision"):
            vb.check_adapter_for_vllm(tmp_path / "a", ckpt)
    else:
        assert vb.check_adapter_for_vllm(tmp_path / "a", ckpt)["r"] == 2


def test_base_width_mismatch_is_refused(ckpt, tmp_path):
    adapter = _save_lora(tmp_path / "adapter")
    meta_file = adapter / "cotrain_adapter.json"
    meta = json.loads(meta_file.read_text())
    meta["text_hidden_size"] = meta["text_hidden_size"] * 2
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="text_hidden_size"):
        vb.check_adapter_for_vllm(adapter, ckpt)


# ------------------------------------------------------------------ GPU: both real backends

@pytest.mark.gpu
def test_greedy_exact_match_with_hf_backend(tmp_path):
    pytest.importorskip("vllm")
    from cotrain.inference.hf import HFBackend

    path = create_tiny_checkpoint(tmp_path / "tiny", "qwen2_5_vl")
    limits = _limits("qwen2_5_vl")
    greedy = SamplingParams(max_new_tokens=16)
    requests = []
    for k, (w, h, question) in enumerate([(640, 480, "How many ships are in this image?"),
                                          (300, 900, "Describe the scene."),
                                          (1024, 1024, "Locate the airplane."),
                                          (0, 0, "What is a harbour?")]):
        images = []
        if w:
            pil = Image.fromarray(np.random.default_rng(k).integers(0, 256, (h, w, 3), dtype=np.uint8))
            images = [_image_entry(limits, w, h, pil=pil)]
        requests.append(_request(f"q{k}", images, question, sampling=greedy))

    # float32 on both sides: a random tiny model's logits are nearly tied, bf16 noise would flip argmaxes
    hf = HFBackend.from_checkpoint(path, dtype="float32", device="cuda", limits=limits)
    hf_out = hf.generate(requests)
    del hf
    import torch

    torch.cuda.empty_cache()
    engine = vb.VLLMBackend.from_checkpoint(path, dtype="float32", limits=limits, gpu_memory_utilization=0.3,
                                            enforce_eager=True, max_model_len=4096)
    vl_out = engine.generate(requests)
    assert all(r.error is None for r in hf_out + vl_out)
    assert [r.prompt_tokens for r in vl_out] == [r.prompt_tokens for r in hf_out]
    matches = [(a.text, a.generated_tokens) == (b.text, b.generated_tokens) for a, b in zip(hf_out, vl_out)]
    assert sum(matches) / len(matches) == 1.0, list(zip([r.text for r in hf_out], [r.text for r in vl_out]))
