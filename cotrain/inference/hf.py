"""HF ``generate`` backend: batched, left-padded, greedy by default; runs anywhere (CPU included).

Prompts are encoded by the training ``ChatEncoder`` (same chat text, same image tokens), images
come from :func:`cotrain.inference.base.load_request_images` at the size fixed in the request.
Requests are sorted by prompt length before batching (less padding) and answered in request
order. A request whose image is missing or corrupt gets an ``error`` response; the others in its
batch are unaffected.

Must not build prompts from records (that is the task builders' job) nor score answers.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from tqdm.auto import tqdm

from cotrain.errors import BadRecordError
from cotrain.inference.base import (GenerationRequest, GenerationResponse, load_request_images, request_error)
from cotrain.resolution import PixelLimits

log = logging.getLogger(__name__)


class HFBackend:
    """``generate(requests) -> responses`` with a transformers Qwen-VL model."""

    name = "hf"

    def __init__(self, model, processor, family, *, batch_size: int = 16, limits: PixelLimits | None = None):
        from cotrain.data.encoder import ChatEncoder

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.processor = processor
        self.family = family
        self.batch_size = batch_size
        from cotrain.model.sensor_branch import channel_layout

        self.encoder = ChatEncoder(processor, family, channels=channel_layout(model))
        self.limits = limits or PixelLimits.of_processor(processor, family)
        tok = processor.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.end_id = self.encoder.im_end_id

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, adapter: str | os.PathLike | None = None,
                        attn_implementation: str = "sdpa", dtype: str = "float32", device: str | None = None,
                        batch_size: int = 16, limits: PixelLimits | None = None) -> HFBackend:
        """Load a saved model (and optionally a LoRA adapter dir written by a cotrain LoRA run)."""
        from cotrain.model.loader import load_model_and_processor

        model, processor, family = load_model_and_processor(path, attn_implementation=attn_implementation,
                                                            dtype=dtype)
        if adapter is not None:
            from cotrain.model.trainable import load_with_adapter, merge_lora

            model = merge_lora(load_with_adapter(model, adapter))
            # a cotrain LoRA run saves its processor (with the training pixel budget) beside the adapter;
            # the base checkpoint's budget would show the model other image sizes than it trained on
            if limits is None:
                from cotrain.inference.base import limits_in_directory

                limits = limits_in_directory(adapter, family)
                if limits is None:
                    log.warning("adapter %s records no pixel budget: using the base checkpoint's; pass --max-pixels "
                                "to match training", adapter)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model.to(device)
        log.info("HF backend: %s on %s (batch %d)", Path(path).name, device, batch_size)
        return cls(model, processor, family, batch_size=batch_size, limits=limits)

    def _encode(self, request: GenerationRequest) -> dict:
        images = load_request_images(request)
        conv = {"messages": request.messages, "meta": {"id": request.id}}
        return self.encoder.encode(conv, images, add_generation_prompt=True)

    @torch.no_grad()
    def _generate_batch(self, samples: list[dict], sampling) -> list[tuple[str, str, int, int]]:
        from cotrain.data.collate import PaddingCollator, model_inputs

        batch = PaddingCollator(pad_token_id=self.pad_id, padding_side="left")(samples)
        device = next(self.model.parameters()).device
        inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in model_inputs(batch).items()}
        kwargs = dict(max_new_tokens=sampling.max_new_tokens, pad_token_id=self.pad_id, eos_token_id=self.end_id)
        if sampling.greedy:
            kwargs.update(do_sample=False)
        else:
            torch.manual_seed(sampling.seed)
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
        out = self.model.generate(**inputs, **kwargs)
        new = out[:, inputs["input_ids"].shape[1]:]
        results = []
        for s, row in zip(samples, new):
            ids = row.tolist()
            stop = self.end_id in ids
            # everything after the end-of-turn token is padding of finished rows
            cut = ids.index(self.end_id) if self.end_id in ids else len(ids)
            ids = [t for t in ids[:cut] if t != self.pad_id]
            text = self.processor.tokenizer.decode(ids, skip_special_tokens=True).strip()
            results.append((text, "stop" if stop else "length", int(s["input_ids"].numel()), len(ids)))
        return results

    @torch.no_grad()
    def loglikelihood(self, requests: list[GenerationRequest], answers: list[str], *,
                      progress: bool = False) -> list[float | None]:
        """Mean log-probability per token of ``answers[i]`` as the assistant's reply to ``requests[i]``.

        The reply is encoded exactly as a training target (its text and the end-of-turn token carry
        labels), so the score is minus the training loss of that sample. ``None`` where the request's
        image cannot be read. Used for image-text retrieval with a generative model.
        """
        from cotrain.data.collate import PaddingCollator, model_inputs

        was_training = self.model.training
        self.model.eval()
        out: list[float | None] = [None] * len(requests)
        items = []
        decoded: dict[int, list | None] = {}  # retrieval scores one request against many texts: decode once
        for i, (r, answer) in enumerate(zip(requests, answers)):
            if id(r) not in decoded:
                try:
                    decoded[id(r)] = load_request_images(r)
                except BadRecordError as e:
                    log.warning("request %r skipped (%s): %s", r.id, e.reason, e)
                    decoded[id(r)] = None
            images = decoded[id(r)]
            if images is None:
                continue
            conv = {"messages": [*r.messages, {"role": "assistant", "content": [{"type": "text", "text": answer}]}],
                    "meta": {"id": r.id}}
            items.append((i, self.encoder.encode(conv, images)))
        items.sort(key=lambda t: int(t[1]["input_ids"].numel()))
        device = next(self.model.parameters()).device
        bar = tqdm(total=len(items), desc="score (hf)", disable=not progress, leave=False)
        try:
            for start in range(0, len(items), self.batch_size):
                chunk = items[start:start + self.batch_size]
                batch = PaddingCollator(pad_token_id=self.pad_id)([s for _, s in chunk])
                inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in model_inputs(batch).items()}
                inputs.pop("labels", None)
                logits = self.model(**inputs).logits.float()
                labels = batch["labels"].to(device)
                logp = torch.log_softmax(logits[:, :-1], dim=-1)
                target = labels[:, 1:]
                mask = target != -100
                picked = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
                means = (picked * mask).sum(1) / mask.sum(1).clamp(min=1)
                for (i, _), v in zip(chunk, means.tolist()):
                    out[i] = float(v)
                bar.update(len(chunk))
        finally:
            bar.close()
            if was_training:
                self.model.train()
        return out

    def generate(self, requests: list[GenerationRequest], *, progress: bool = False) -> list[GenerationResponse]:
        """Answers in request order; requests sharing sampling params are batched together."""
        was_training = self.model.training
        self.model.eval()
        responses: dict[int, GenerationResponse] = {}
        encoded: list[tuple[int, dict]] = []
        for i, r in enumerate(requests):
            try:
                encoded.append((i, self._encode(r)))
            except BadRecordError as e:
                log.warning("request %r skipped (%s): %s", r.id, e.reason, e)
                responses[i] = request_error(r, e)
        groups: dict = {}
        for i, s in encoded:
            groups.setdefault(requests[i].sampling, []).append((i, s))
        bar = tqdm(total=len(encoded), desc="generate (hf)", disable=not progress, leave=False)
        try:
            for sampling, items in groups.items():
                items.sort(key=lambda t: int(t[1]["input_ids"].numel()))  # similar lengths share a batch
                for start in range(0, len(items), self.batch_size):
                    chunk = items[start:start + self.batch_size]
                    for (i, _), (text, reason, n_in, n_out) in zip(chunk, self._generate_batch([s for _, s in chunk],
                                                                                             sampling)):
                        responses[i] = GenerationResponse(id=requests[i].id, text=text, finish_reason=reason,
                                                          prompt_tokens=n_in, generated_tokens=n_out)
                    bar.update(len(chunk))
        finally:
            bar.close()
            if was_training:
                self.model.train()
        return [responses[i] for i in range(len(requests))]
