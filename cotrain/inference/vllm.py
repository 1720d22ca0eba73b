"""vLLM backend: the same ``generate(requests) -> responses`` as the HF backend, on a CUDA machine.

What it owns: turning a :class:`~cotrain.inference.base.GenerationRequest` into a vLLM prompt
(:func:`build_vllm_inputs`, plain data that CPU tests check), our :class:`SamplingParams` into
vLLM's (:func:`vllm_sampling_kwargs`), the checks that refuse a checkpoint or LoRA adapter vLLM
would serve wrongly (before vLLM starts), and mapping vLLM's outputs back to
:class:`GenerationResponse` in request order.

Why the prompt is built here and not by vLLM's chat template: the chat text is the training
``ChatEncoder``'s (same system message, same image spans), the images are handed over already at
the size fixed in the request (:func:`load_request_images`, the HF backend's pixels), and the
pixel limits travel per prompt in ``mm_processor_kwargs`` so that vLLM's Qwen-VL processor, whose
``smart_resize`` runs again on every image, finds nothing to change (a multiple of the factor
inside the budget is a fixed point). A checkpoint whose processor config carries another budget
therefore cannot move the boxes rendered into the prompt.

It must not import vLLM at module import (CPU machines cannot install it), build prompts from
records, score answers, or merge adapters (a LoRA run's merged ``final/`` directory is the
supported way to serve anything an adapter cannot express to vLLM).

vLLM API relied on (offline ``LLM`` class), from the vLLM documentation and source:
- ``vllm.LLM(model, *, tokenizer, dtype, tensor_parallel_size, gpu_memory_utilization,
  trust_remote_code, max_model_len, limit_mm_per_prompt, enable_lora, max_lora_rank, ...)``;
  unknown keywords go to ``EngineArgs`` (docs.vllm.ai ``vllm/entrypoints/llm.py``).
- ``LLM.generate(prompts, sampling_params, *, use_tqdm, lora_request)``: ``sampling_params`` may be
  one object or one per prompt; outputs come back in prompt order.
- Text prompt dict (``vllm.inputs.TextPrompt``): ``prompt``, ``multi_modal_data``
  (``{"image": [PIL images]}``, one per ``<|image_pad|>`` placeholder, in order) and
  ``mm_processor_kwargs`` (forwarded to the HF processor; Qwen2-VL family accepts ``min_pixels`` /
  ``max_pixels``), docs.vllm.ai "LLM Inputs".
- Qwen2-VL/2.5-VL processing (``vllm/model_executor/models/qwen2_vl.py``): the HF image processor
  runs with the merged kwargs and each ``<|image_pad|>`` is replaced by ``grid_thw.prod() //
  merge**2`` tokens, i.e. ``(h/f)*(w/f)`` as in our encoder.
- ``vllm.lora.request.LoRARequest(lora_name, lora_int_id, lora_path)``, ``lora_int_id >= 1``
  (docs.vllm.ai ``vllm/lora/request``); LoRA is applied by ``generate(..., lora_request=)``.
- ``RequestOutput.prompt_token_ids`` and ``RequestOutput.outputs[0]`` (``CompletionOutput``:
  ``text``, ``token_ids``, ``finish_reason`` in {"stop", "length", ...}), docs.vllm.ai
  ``vllm.outputs``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from PIL import Image

from cotrain.errors import BadRecordError, ConfigError, ModelLoadError
from cotrain.inference.base import (GenerationRequest, GenerationResponse, SamplingParams, load_request_images,
                                    request_error)
from cotrain.resolution import PixelLimits, resized_wh_of

log = logging.getLogger(__name__)

INSTALL_HINT = ("pip install -e '.[vllm]' on a CUDA machine; or use --backend hf (runs anywhere, CPU "
                "included)")

_VISION_PROBES = tuple(f"model.visual.blocks.0.{leaf}" for leaf in (
    "attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2", "mlp.linear_fc1", "mlp.linear_fc2", "mlp.gate_proj",
    "mlp.up_proj", "mlp.down_proj"))
"""Names of adaptable linears inside the ViT of every family: an adapter whose target_modules
match one of them adapts the vision tower (a plain ``["gate_proj", ...]`` list does, for
Qwen2.5-VL, whose ViT MLP reuses those names)."""


# -- plain data (CPU-testable) -----------------------------------------------------------------

def _image_order(request: GenerationRequest) -> list[int]:
    """Image indices in the order their parts appear in the chat (the order placeholders appear)."""
    order = []
    for m in request.messages:
        content = m.get("content", [])
        for part in [] if isinstance(content, str) else content:
            if part.get("type") == "image":
                idx = int(part["index"])
                if not 0 <= idx < len(request.images):
                    raise BadRecordError(f"record {request.id!r}: image part refers to image {idx} but "
                                         f"{len(request.images)} image(s) were given.", reason="image_index",
                                         record_id=request.id)
                order.append(idx)
    return order


def build_vllm_inputs(request: GenerationRequest, encoder, limits: PixelLimits) -> dict:
    """The vLLM prompt dict of one request (raises BadRecordError for a missing/corrupt image).

    ``prompt`` is ``encoder.render(..., add_generation_prompt=True)``: the text the HF backend
    tokenizes, with one ``<|vision_start|><|image_pad|><|vision_end|>`` per image part, which vLLM
    expands to ``(h/f)*(w/f)`` image tokens. ``multi_modal_data["image"]`` holds one RGB image per
    image part, in part order, at the request's ``resized`` size (omitted without images);
    ``mm_processor_kwargs`` pins vLLM's pixel budget to ``limits`` so it cannot resize again.

    vLLM tokenizes the whole text at once, which gives the encoder's ids except where the encoder
    deliberately differs from plain tokenization: content that quotes a structural token such as
    ``<|im_end|>`` (the encoder keeps it as text) or content that starts with a newline.
    """
    order = _image_order(request)
    conv = {"messages": request.messages, "meta": {"id": request.id}}
    prompt = encoder.render(conv, add_generation_prompt=True)
    out: dict[str, Any] = {"prompt": prompt}
    if order:
        pil = load_request_images(request)
        if any(not isinstance(im, Image.Image) for im in pil):
            raise ConfigError(f"request {request.id!r}: its ms / sar images enter through a sensor branch (more than 3 "
                              "input channels), which vLLM cannot feed; use --backend hf")
        out["multi_modal_data"] = {"image": [pil[i] for i in order]}
    # The request's sizes may come from a benchmark's own limits, not the backend's: pin vLLM's
    # budget to the sizes actually sent (each is a multiple of the factor, so its resize is the identity).
    areas = [w * h for w, h in (resized_wh_of(img) for img in request.images)]
    lo = min([int(limits.min_pixels), *areas])
    hi = max([int(limits.max_pixels), *areas])
    out["mm_processor_kwargs"] = {"min_pixels": lo, "max_pixels": hi}
    return out


def vllm_sampling_kwargs(sampling: SamplingParams, stop_token_ids: list[int]) -> dict:
    """Keyword arguments of ``vllm.SamplingParams`` equivalent to ``sampling`` (HF backend semantics).

    Greedy is ``temperature=0`` (vLLM then ignores top_p); a seed is set only when sampling, where
    vLLM gives the request its own generator. Generation ends at ``stop_token_ids`` (the
    ``<|im_end|>`` that closes the assistant turn), and special tokens are left out of the text.
    """
    return {
        "temperature": 0.0 if sampling.greedy else float(sampling.temperature),
        "top_p": 1.0 if sampling.greedy else float(sampling.top_p),
        "max_tokens": int(sampling.max_new_tokens),
        "seed": None if sampling.greedy else int(sampling.seed),
        "stop_token_ids": [int(t) for t in stop_token_ids],
        "skip_special_tokens": True,
    }


# -- checks before vLLM starts -----------------------------------------------------------------

def _target_matches(target, name: str) -> bool:
    """peft's rule: a string is a regex (full match), a list entry matches the name or a suffix."""
    if isinstance(target, str):
        return re.fullmatch(target, name) is not None
    return any(name == t or name.endswith("." + t) for t in target or ())


def check_adapter_for_vllm(adapter_dir: str | os.PathLike, model_path: str | os.PathLike) -> dict:
    """Raise ModelLoadError for an adapter vLLM cannot serve as trained; return adapter_config.json.

    Refused: a directory without ``adapter_config.json``; an adapter with
    ``trained_parts.safetensors`` (full weights next to the LoRA matrices, which vLLM has no way to
    load); one that adapts the vision tower (vLLM applies LoRA to the language model); one whose
    ``cotrain_adapter.json`` names another base model (family, widths) than the checkpoint at
    ``model_path`` (its config only is read, the way transformers builds it).
    """
    from cotrain.model.trainable import ADAPTER_META_FILE, TRAINED_PARTS_FILE

    path = Path(adapter_dir)
    fix = "Serve the merged model instead: use the merged final/ directory of the LoRA run as the model path."
    config_file = path / "adapter_config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{config_file} is missing: {str(path)!r} is not a LoRA adapter directory. Point "
                             "at the 'adapter' directory a LoRA run wrote (save_adapter).")
    try:
        adapter_config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{config_file} cannot be read as JSON ({exc}). Re-copy the adapter.") from None
    if (path / TRAINED_PARTS_FILE).is_file():
        raise ModelLoadError(f"{path / TRAINED_PARTS_FILE} exists: this adapter also trained full weights (e.g. the "
                             f"merger), which vLLM cannot load next to a LoRA adapter. {fix}")
    vision = _vision_adapted(path, adapter_config)
    if vision:
        raise ModelLoadError(f"adapter {path} adapts vision-tower modules ({vision}); vLLM applies LoRA to the "
                             f"language model only. {fix}")
    meta_file = path / ADAPTER_META_FILE
    if meta_file.is_file():
        from cotrain.model.trainable import _base_facts  # the same facts load_with_adapter compares

        import transformers

        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        base_config = transformers.AutoConfig.from_pretrained(str(model_path), local_files_only=True,
                                                              trust_remote_code=False)
        facts = _base_facts(SimpleNamespace(config=base_config))
        wrong = {k: (meta[k], facts[k]) for k in facts if k in meta and meta[k] != facts[k]}
        if wrong:
            detail = "; ".join(f"{k}: adapter {a!r}, base {b!r}" for k, (a, b) in wrong.items())
            raise ModelLoadError(f"adapter {path} was trained on a different base model ({detail}; see "
                                 f"{meta_file}). Load it onto the base checkpoint it was trained from.")
    return adapter_config


def _vision_adapted(path: Path, adapter_config: dict) -> str | None:
    """A description of the vision modules the adapter touches, or None."""
    weights = path / "adapter_model.safetensors"
    if weights.is_file():  # the saved tensors are the ground truth
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as f:
            names = [k for k in f.keys() if ".visual." in f".{k}"]
        if names:
            return f"e.g. {names[0]} in {weights.name}"
    target = adapter_config.get("target_modules")
    hits = [n for n in _VISION_PROBES if _target_matches(target, n)]
    if hits:
        return f"target_modules {target!r} in adapter_config.json matches {hits[0]}"
    return None


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# -- backend -----------------------------------------------------------------------------------

class VLLMBackend:
    """``generate(requests) -> responses`` with a vLLM ``LLM`` engine (CUDA machines)."""

    name = "vllm"

    def __init__(self, llm, processor, family, *, limits: PixelLimits | None = None, lora_request=None,
                 max_images: int = 8, sampling_params_class=None):
        from cotrain.data.encoder import ChatEncoder

        self.llm = llm
        self.processor = processor
        self.family = family
        self.encoder = ChatEncoder(processor, family)
        self.limits = limits or PixelLimits.of_processor(processor, family)
        self.lora_request = lora_request
        self.max_images = max_images
        self.end_id = self.encoder.im_end_id
        if sampling_params_class is None:
            from vllm import SamplingParams as sampling_params_class
        self._sampling_class = sampling_params_class

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, adapter: str | os.PathLike | None = None,
                        limits: PixelLimits | None = None, dtype: str = "bfloat16", max_model_len: int | None = None,
                        gpu_memory_utilization: float = 0.85, tensor_parallel_size: int = 1,
                        batch_size: int | None = None, max_lora_rank: int = 64, max_images: int = 8,
                        enforce_eager: bool = False, **ignored) -> VLLMBackend:
        """Start vLLM on a saved checkpoint (optionally with a LoRA adapter dir of a cotrain LoRA run).

        ``batch_size`` is accepted for interface parity and ignored (vLLM schedules its own batches);
        other HF-only keywords (``attn_implementation``, ``device``) are ignored too. Raises
        ModelLoadError, before any GPU work, for a bad directory or adapter, a missing vLLM or CUDA.
        """
        from cotrain.model.families import FAMILIES, get_family
        from cotrain.model.loader import _check_directory, _load_processor

        path = Path(path)
        config = _check_directory(path)
        model_type = config.get("model_type")
        if model_type not in FAMILIES:
            raise ModelLoadError(f"{path / 'config.json'}: model_type {model_type!r} is not supported; supported: "
                                 f"{', '.join(sorted(FAMILIES))}. Use a Qwen2-VL, Qwen2.5-VL or Qwen3-VL checkpoint.")
        family = get_family(model_type)
        adapter_config = check_adapter_for_vllm(adapter, path) if adapter is not None else None
        if ignored or batch_size is not None:
            log.debug("vLLM backend ignores %s", sorted(ignored) + (["batch_size"] if batch_size else []))
        try:
            import vllm
            from vllm.lora.request import LoRARequest
        except ImportError as exc:
            raise ModelLoadError(f"vLLM is not installed ({exc}); {INSTALL_HINT}.") from None
        if not _cuda_available():
            raise ModelLoadError(f"vLLM needs a CUDA GPU and none is visible; run on a GPU machine or use "
                                 f"--backend hf. (model: {path})")
        processor = _load_processor(path, family)
        lora_request = None
        llm_kwargs: dict[str, Any] = dict(
            model=str(path), tokenizer=str(path), dtype=dtype, trust_remote_code=False,
            tensor_parallel_size=int(tensor_parallel_size), gpu_memory_utilization=float(gpu_memory_utilization),
            limit_mm_per_prompt={"image": int(max_images), "video": 0}, enable_lora=adapter is not None,
            enforce_eager=bool(enforce_eager))
        if max_model_len is not None:
            llm_kwargs["max_model_len"] = int(max_model_len)
        if adapter is not None:
            rank = int(adapter_config.get("r", 0) or 0)
            if rank > max_lora_rank:
                raise ModelLoadError(f"adapter {adapter} has rank r={rank} > max_lora_rank={max_lora_rank}; pass "
                                     f"max_lora_rank={rank} (or more) to the vLLM backend.")
            llm_kwargs["max_lora_rank"] = int(max_lora_rank)
            lora_request = LoRARequest(Path(adapter).name or "adapter", 1, str(Path(adapter).resolve()))
        log.info("vLLM backend: %s (dtype %s, tp %d%s)", path.name, dtype, tensor_parallel_size,
                 f", adapter {adapter}" if adapter is not None else "")
        llm = vllm.LLM(**llm_kwargs)
        return cls(llm, processor, family, limits=limits, lora_request=lora_request, max_images=max_images,
                   sampling_params_class=vllm.SamplingParams)

    def _inputs(self, request: GenerationRequest) -> dict:
        n = len(_image_order(request))
        if n > self.max_images:
            raise BadRecordError(f"record {request.id!r}: {n} images > max_images {self.max_images} of the vLLM "
                                 "engine; start the backend with a larger max_images.", reason="too_many_images",
                                 record_id=request.id)
        return build_vllm_inputs(request, self.encoder, self.limits)

    def generate(self, requests: list[GenerationRequest], *, progress: bool = False) -> list[GenerationResponse]:
        """Answers in request order; every usable request goes to vLLM in one ``generate`` call."""
        responses: dict[int, GenerationResponse] = {}
        prompts, index = [], []
        for i, r in enumerate(requests):
            try:
                prompts.append(self._inputs(r))
                index.append(i)
            except BadRecordError as e:
                log.warning("request %r skipped (%s): %s", r.id, e.reason, e)
                responses[i] = request_error(r, e)
        if prompts:
            cache: dict[SamplingParams, Any] = {}
            params = []
            for i in index:
                s = requests[i].sampling
                if s not in cache:
                    cache[s] = self._sampling_class(**vllm_sampling_kwargs(s, [self.end_id]))
                params.append(cache[s])
            outputs = self.llm.generate(prompts, params, use_tqdm=progress, lora_request=self.lora_request)
            if len(outputs) != len(prompts):  # pragma: no cover - guards a vLLM behaviour change
                raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(prompts)} prompts")
            for i, out in zip(index, outputs):
                responses[i] = self._response(requests[i], out)
        return [responses[i] for i in range(len(requests))]

    def _response(self, request: GenerationRequest, out) -> GenerationResponse:
        completion = out.outputs[0]
        ids = list(completion.token_ids or [])
        if ids and ids[-1] == self.end_id:  # the HF backend does not count the end-of-turn token either
            ids = ids[:-1]
        reason = completion.finish_reason
        if reason not in ("stop", "length"):
            log.warning("request %r: vLLM finish_reason %r", request.id, reason)
            return GenerationResponse(id=request.id, text="", finish_reason="error",
                                      prompt_tokens=len(out.prompt_token_ids or []), generated_tokens=len(ids),
                                      error=f"vllm_{reason}")
        return GenerationResponse(id=request.id, text=(completion.text or "").strip(), finish_reason=reason,
                                  prompt_tokens=len(out.prompt_token_ids or []), generated_tokens=len(ids))


__all__ = ["VLLMBackend", "build_vllm_inputs", "vllm_sampling_kwargs", "check_adapter_for_vllm", "INSTALL_HINT"]
