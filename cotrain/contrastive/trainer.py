"""``ContrastiveTrainer``: ``CotrainTrainer`` (data order, staged checkpoints, exact resume) with the CLIP loss.

What it changes in ``CotrainTrainer``:

- the loss is ``cotrain.contrastive.loss.tri_modal_loss`` on the global batch; the CLIP model runs
  once per micro-batch on the RGB and IR images together and on both kinds of captions together
  (through the DDP wrapper, so gradients synchronise);
- the optimizer has two groups (weight decay on matrices; none on biases, norms, embeddings and
  the logit scale) with the class HF would pick;
- the log adds ``loss/rgb_text``, ``loss/ir_text``, ``loss/rgb_ir`` (means since the last log line),
  ``logit_scale``, ``global_batch`` and ``truncated_captions``;
- no vision keep-alive (every batch has images).

With ``train.grad_accum`` > 1 the negatives of a term are those of one micro-batch (across ranks),
not of the whole optimizer step.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from transformers import Trainer

from cotrain.contrastive.loss import gather, logit_scale_value, tri_modal_loss
from cotrain.contrastive.model import _unwrap
from cotrain.training.trainer import CotrainTrainer

log = logging.getLogger("cotrain")


class ContrastiveTrainer(CotrainTrainer):
    """See the module docstring. ``processor``: the ClipProcessor (its truncation count is logged)."""

    needs_vision_keepalive = False

    def __init__(self, *args: Any, processor=None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.processor = processor
        self.clip_cfg = self.run_cfg.model.clip
        self._terms: Counter = Counter()
        self._term_batches = 0
        self._global_batch = 0

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        batches, num_items = Trainer.get_batch_samples(self, epoch_iterator, num_batches, device)
        self._step_samples = sum(len(b.get("dataset") or []) for b in batches)
        return batches, num_items

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            target = self.model if model is None else model
            decay, no_decay = [], []
            for name, p in target.named_parameters():
                if p.requires_grad:
                    flat = p.ndim < 2 or "embedding" in name or name.endswith("logit_scale")
                    (no_decay if flat else decay).append(p)
            cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, target)
            groups = [{"params": decay, "weight_decay": float(self.run_cfg.train.weight_decay), "name": "decay"},
                      {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]
            self.optimizer = cls([g for g in groups if g["params"]], **kwargs)
        return self.optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        acc = self.accounting
        for reason, _ds, _rid in inputs.pop("skipped", []):
            acc.skip_counts[reason] += 1
        names = inputs.pop("dataset")
        acc.samples_seen += len(names)
        acc.samples_by_dataset.update(names)
        acc.samples_by_task.update(inputs.pop("task"))
        has_ir_text = inputs.pop("has_ir_text")
        n = len(names)
        out = model(pixel_values=inputs["pixel_values"], input_ids=inputs["input_ids"],
                    attention_mask=inputs["attention_mask"], return_dict=True)
        images, texts = out.image_embeds, out.text_embeds  # L2-normalised by CLIPModel
        rgb, ir = gather(images[:n]), gather(images[n:])
        text = gather(texts[:n])
        ir_text = gather(texts[n:]) if has_ir_text else None
        scale = logit_scale_value(_unwrap(model).logit_scale, self.clip_cfg.logit_scale_max)
        loss, terms = tri_modal_loss(rgb, ir, text, ir_text, scale, self.clip_cfg.supervision)
        for k, v in terms.items():
            self._terms[k] += float(v.detach())
        self._term_batches += 1
        self._global_batch = rgb.shape[0]
        return (loss, out) if return_outputs else loss

    def log(self, logs: dict, *args: Any, **kwargs: Any) -> None:
        if "loss" in logs and self._term_batches:
            logs.update({f"loss/{k}": round(v / self._term_batches, 4) for k, v in sorted(self._terms.items())})
            log_scale = _unwrap(self.model).logit_scale.detach()
            logs["logit_scale"] = round(float(logit_scale_value(log_scale, self.clip_cfg.logit_scale_max)), 3)
            logs["global_batch"] = self._global_batch
            if self.processor is not None:
                logs["truncated_captions"] = self.processor.truncated
            self._terms.clear()
            self._term_batches = 0
        Trainer.log(self, logs, *args, **kwargs)
