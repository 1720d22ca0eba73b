"""HF backend: same answers as the stock processor + generate, batching that changes nothing, errors per request."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cotrain.errors import ConfigError, ModelLoadError
from cotrain.inference import GenerationRequest, PixelLimits, SamplingParams, load_backend, resized_size
from cotrain.inference.hf import HFBackend
from cotrain.model.families import get_family
from cotrain.model.tiny import create_tiny_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return create_tiny_checkpoint(tmp_path_factory.mktemp("hf") / "tiny", "qwen2_5_vl", seed=3, hidden_size=64)


@pytest.fixture(scope="module")
def backend(ckpt):
    return HFBackend.from_checkpoint(ckpt, batch_size=4, device="cpu")


def _image(tmp_path, name, w, h, seed):
    rng = np.random.default_rng(seed)
    path = tmp_path / name
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _request(rid, path, w, h, text, limits, max_new_tokens=6):
    rh, rw = resized_size(w, h, limits)
    return GenerationRequest(
        id=rid, messages=[{"role": "user", "content": [{"type": "image", "index": 0}, {"type": "text", "text": text}]}],
        images=[{"abs_path": str(path), "width": w, "height": h, "resized_wh": [rw, rh]}],
        sampling=SamplingParams(max_new_tokens=max_new_tokens))


def test_answer_equals_stock_processor_and_generate(backend, tmp_path):
    # independent route: transformers' processor builds the inputs from the chat template, model.generate answers
    path = _image(tmp_path, "a.png", 84, 56, 0)
    req = _request("r0", path, 84, 56, "What is in this image?", backend.limits)
    ours = backend.generate([req])[0]
    proc, model = backend.processor, backend.model
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in this image?"}]}]
    text = proc.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    with Image.open(path) as im:
        pixels = im.convert("RGB").resize((84, 56), Image.BICUBIC)  # 84x56 is already a multiple of 28
    inputs = proc(text=[text], images=[pixels], return_tensors="pt")
    end = proc.tokenizer.convert_tokens_to_ids("<|im_end|>")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=6, do_sample=False, eos_token_id=end,
                             pad_token_id=proc.tokenizer.pad_token_id)
    new = out[0, inputs["input_ids"].shape[1]:].tolist()
    new = new[:new.index(end)] if end in new else new
    assert ours.text == proc.tokenizer.decode(new, skip_special_tokens=True).strip()
    assert ours.prompt_tokens == inputs["input_ids"].shape[1]
    assert ours.generated_tokens == len(new)
    assert ours.finish_reason == ("stop" if len(new) < 6 else "length")


def test_batched_equals_one_by_one_and_keeps_order(backend, tmp_path):
    sizes = [(84, 56), (56, 56), (112, 84), (28, 56), (140, 112), (56, 84)]
    reqs = [_request(f"r{i}", _image(tmp_path, f"{i}.png", w, h, i), w, h, f"question {i} " * (i + 1), backend.limits)
            for i, (w, h) in enumerate(sizes)]
    batched = backend.generate(reqs)
    single = [backend.generate([r])[0] for r in reqs]
    assert [r.id for r in batched] == [f"r{i}" for i in range(len(sizes))]
    assert [r.text for r in batched] == [r.text for r in single]
    assert [r.prompt_tokens for r in batched] == [r.prompt_tokens for r in single]
    assert len({r.prompt_tokens for r in batched}) > 1  # the batch really mixed lengths (left padding used)


def test_missing_and_corrupt_images_are_errors_not_crashes(backend, tmp_path):
    good = _request("good", _image(tmp_path, "g.png", 56, 56, 1), 56, 56, "hi", backend.limits)
    missing = _request("missing", tmp_path / "nope.png", 56, 56, "hi", backend.limits)
    corrupt_path = tmp_path / "bad.png"
    corrupt_path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    corrupt = _request("corrupt", corrupt_path, 56, 56, "hi", backend.limits)
    out = backend.generate([missing, good, corrupt])
    assert [r.id for r in out] == ["missing", "good", "corrupt"]
    assert (out[0].finish_reason, out[0].error, out[0].text) == ("error", "image_missing", "")
    assert out[2].error == "image_corrupt"
    assert out[1].error is None and out[1].prompt_tokens > 0
    assert out[1].text == backend.generate([good])[0].text


def test_in_memory_image_matches_file(backend, tmp_path):
    path = _image(tmp_path, "m.png", 84, 56, 7)
    from_file = _request("f", path, 84, 56, "describe", backend.limits)
    with Image.open(path) as im:
        mem = GenerationRequest(id="m", messages=from_file.messages,
                                images=[{"pil": im.convert("RGB"), "width": 84, "height": 56, "resized_wh": [84, 56]}],
                                sampling=from_file.sampling)
    a, b = backend.generate([from_file, mem])
    assert a.text == b.text and a.prompt_tokens == b.prompt_tokens
    plain = mem.plain()
    json.dumps(plain)  # plain data: serialisable, the image reduced to its size
    assert plain["images"][0]["pil"] == [84, 56]


def test_pixel_limits_come_from_the_checkpoint(tmp_path):
    fam = get_family("qwen2_5_vl")
    ckpt = create_tiny_checkpoint(tmp_path / "t", "qwen2_5_vl", seed=1, hidden_size=64)
    cfg = json.loads((ckpt / "processor_config.json").read_text()) if (ckpt / "processor_config.json").is_file() else None
    be = HFBackend.from_checkpoint(ckpt, device="cpu")
    size = (cfg or {}).get("image_processor", {}).get("size") or {}
    if size:
        assert (be.limits.min_pixels, be.limits.max_pixels) == (size["shortest_edge"], size["longest_edge"])
    assert be.limits.factor == fam.factor
    # sizes follow transformers' own smart_resize with those limits
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf_smart_resize

    for w, h in [(1000, 700), (30, 3000), (4000, 4000)]:
        assert resized_size(w, h, be.limits) == tuple(hf_smart_resize(h, w, factor=28, min_pixels=be.limits.min_pixels,
                                                                      max_pixels=be.limits.max_pixels))


def test_bad_arguments():
    with pytest.raises(ConfigError):
        SamplingParams(max_new_tokens=0)
    with pytest.raises(ConfigError):
        SamplingParams(temperature=-1)
    with pytest.raises(ConfigError):
        PixelLimits(100, 10, 28)
    with pytest.raises(ConfigError, match="unknown backend"):
        load_backend("tgi", "x")


def test_checkpoint_without_processor_files_is_a_clear_error(ckpt, tmp_path):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(ckpt, bare)
    for name in ("tokenizer.json", "tokenizer_config.json", "processor_config.json", "preprocessor_config.json",
                 "vocab.json", "merges.txt"):
        (bare / name).unlink(missing_ok=True)
    with pytest.raises(ModelLoadError, match="no processor files"):
        load_backend("hf", str(bare))


def test_mismatched_lora_adapter_is_a_clear_error(ckpt, tmp_path):
    from cotrain.config import ModelConfig
    from cotrain.model.tiny import build_tiny_model
    from cotrain.model.trainable import apply_lora, save_adapter

    other = build_tiny_model("qwen2_5_vl", seed=0, hidden_size=128)  # a different base size
    cfg = ModelConfig()
    cfg.lora.enabled = True
    adapter = save_adapter(apply_lora(other, cfg), tmp_path / "adapter")
    with pytest.raises(ModelLoadError, match="different base model"):
        HFBackend.from_checkpoint(ckpt, adapter=adapter, device="cpu")


def test_predict_records_writes_responses_and_counts_skips(ckpt, tmp_path):
    from cotrain.eval.harness import predict_records

    _image(tmp_path, "a.png", 120, 90, 1)
    recs = [{"id": "a", "task": "detection", "images": [{"path": "a.png", "modality": "rgb", "width": 120, "height": 90}],
             "objects": [{"label": "plane", "hbb": [10, 10, 40, 30]}], "classes": ["plane"]},
            {"id": "gone", "task": "detection", "images": [{"path": "gone.png", "modality": "rgb", "width": 120, "height": 90}],
             "objects": [], "classes": ["plane"]}]
    (tmp_path / "det.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    out = tmp_path / "responses.jsonl"
    n = predict_records(str(ckpt), str(tmp_path / "det.jsonl"), str(tmp_path), str(out), max_new_tokens=4)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert n == 1 and [r["id"] for r in rows] == ["a"]  # the record without its image is skipped, not answered
    lim = PixelLimits(get_family("qwen2_5_vl").default_min_pixels, 256 * 28 * 28, 28)
    assert rows[0]["resized_wh"] == list(resized_size(120, 90, lim))[::-1] and rows[0]["orig_wh"] == [120, 90]
    assert rows[0]["box_convention"] == "abs"


def test_adapter_directory_carries_the_training_pixel_budget(ckpt, tmp_path):
    from cotrain.config import ModelConfig
    from cotrain.model.processor import build_offline_processor, save_processor
    from cotrain.model.tiny import build_tiny_model
    from cotrain.model.trainable import apply_lora, save_adapter

    cfg = ModelConfig()
    cfg.lora.enabled = True
    adapter = save_adapter(apply_lora(build_tiny_model("qwen2_5_vl", seed=3, hidden_size=64), cfg), tmp_path / "ad")
    save_processor(build_offline_processor("qwen2_5_vl", min_pixels=3136, max_pixels=12544), adapter, "qwen2_5_vl")
    be = HFBackend.from_checkpoint(ckpt, adapter=adapter, device="cpu")
    assert (be.limits.min_pixels, be.limits.max_pixels) == (3136, 12544)


def test_eval_config_rejects_impossible_values():
    from cotrain.config import EvalConfig

    for bad in ({"max_samples": 0}, {"every_steps": -1}, {"every_steps_max_samples": 0}, {"max_new_tokens": 0}):
        with pytest.raises(ConfigError, match=f"eval.{next(iter(bad))}="):
            EvalConfig(**bad)


def test_loglikelihood_equals_the_models_own_log_probabilities(backend, tmp_path):
    # independent route: the stock processor's chat template with the answer, one forward, log-softmax by hand
    path = _image(tmp_path, "ll.png", 84, 56, 4)
    answers = ["a harbour with ships", "x"]
    reqs = [_request(f"r{i}", path, 84, 56, "Describe the image.", backend.limits) for i in range(2)]
    ours = backend.loglikelihood(reqs, answers)
    proc, model = backend.processor, backend.model
    with Image.open(path) as im:
        pixels = im.convert("RGB")
    for answer, got in zip(answers, ours):
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the image."}]},
                    {"role": "assistant", "content": [{"type": "text", "text": answer}]}]
        text = proc.apply_chat_template(messages, tokenize=False)
        inputs = proc(text=[text], images=[pixels], return_tensors="pt")
        ids = inputs["input_ids"][0]
        n = len(proc.tokenizer.encode(answer + "<|im_end|>", add_special_tokens=False))
        end = len(ids) - 1  # the template ends with "<|im_end|>\n": the scored span stops before the "\n"
        with torch.no_grad():
            logp = torch.log_softmax(model(**inputs).logits[0].float(), -1)
        expected = float(torch.stack([logp[t - 1, ids[t]] for t in range(end - n, end)]).mean())
        assert got == pytest.approx(expected, abs=1e-4)
    missing = _request("gone", tmp_path / "gone.png", 84, 56, "Describe.", backend.limits)
    assert backend.loglikelihood([missing], ["x"]) == [None]
