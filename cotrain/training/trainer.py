"""``CotrainTrainer``: the HF Trainer with our data order, optimizer groups, loss and atomic checkpoints.

Configured entirely through its constructor (``run_cfg`` plus the usual Trainer arguments). What
it changes in the HF Trainer, and nothing else:

- the sampler is the dataset's own (the weighted, seeded mixture or the pack plan) and an epoch
  has that sampler's length;
- the optimizer uses ``cotrain.model.trainable.optimizer_param_groups`` (per-part learning rates,
  no decay on biases and norms) with the class HF would pick;
- the loss is ``cotrain.training.loss`` (selective logits, ``token`` or ``sample`` reduction), or
  the model's own with Liger's fused cross-entropy; batches are stripped of metadata first and
  accounted by ``cotrain.training.callbacks.RunAccounting``;
- checkpoints are staged and renamed into place with ``cotrain_state.json``
  (``cotrain.training.checkpoint``), and resume reads weights through the same module;
- under DeepSpeed or several ranks, batches without images still run the vision tower
  (``cotrain.distributed.install_vision_keepalive``).

Must not build data, models or reports (``cotrain.training.recipe`` does).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from transformers import Trainer

from cotrain.config import RunConfig
from cotrain.data.collate import model_inputs, token_samples
from cotrain.errors import ConfigError
from cotrain.training.callbacks import RunAccounting
from cotrain.training.loss import reduce_losses, token_losses

log = logging.getLogger("cotrain")


class CotrainTrainer(Trainer):
    """See the module docstring. ``run_cfg``: the run's config (loss, optimizer groups, checkpoint state)."""

    needs_vision_keepalive = True
    """Whether batches may lack images (a subclass whose batches always hold them sets False)."""

    def __init__(self, *args: Any, run_cfg: RunConfig, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.run_cfg = run_cfg
        self.loss_reduction = run_cfg.train.loss_reduction
        self.model_computes_loss = run_cfg.model.liger  # Liger's fused cross-entropy returns no logits
        if self.loss_reduction == "sample":
            self.loss_is_scaled_for_ga = True  # compute_loss divides by the step's sample count itself
        self.accounting = RunAccounting()
        self._step_samples = 0
        self._staging_root: Path | None = None
        self.vision_keepalive = self.needs_vision_keepalive and (bool(self.args.deepspeed) or self.args.world_size > 1)
        if self.vision_keepalive:
            # a batch without images must still run the vision tower (ZeRO-3 gathers its weights
            # collectively, in execution order; DDP expects its gradients): a zero-contribution
            # dummy image enters the language model's input where real images would
            from cotrain.distributed import install_vision_keepalive

            install_vision_keepalive(self.model)

    # --- data order -------------------------------------------------------------------------
    def num_examples(self, dataloader) -> int:
        # samples per epoch are the weighted mixture's, not the number of records
        sampler = getattr(self.train_dataset, "sampler", None)
        if sampler is not None and dataloader is not None and dataloader.dataset is self.train_dataset:
            return len(sampler)
        return super().num_examples(dataloader)

    def _get_train_sampler(self, train_dataset=None):
        # the weighted, seeded, resumable mixture (cotrain.data.mixture); HF calls its set_epoch.
        # Under torchrun accelerate shards its global order by batches across ranks.
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        sampler = getattr(dataset, "sampler", None)
        return sampler if sampler is not None else super()._get_train_sampler(train_dataset)

    def sampler_state(self) -> dict:
        """What cotrain_state.json records of the data order at this step."""
        ds = self.train_dataset
        mixture = ds.base.sampler if hasattr(ds, "base") else ds.sampler
        state = {"epoch": int(ds.epoch), "seed": int(mixture.seed), "fingerprint": mixture.fingerprint,
                 "samples_per_epoch": len(mixture), "items_per_epoch": len(ds.sampler)}
        if hasattr(ds, "fill"):
            state.update(packed=True, fill=round(float(ds.fill), 6))
        return state

    # --- optimizer --------------------------------------------------------------------------
    def create_optimizer(self, model=None):
        # a DeepSpeed config may not bring its own optimizer (cotrain.distributed refuses that),
        # so these groups are what DeepSpeed wraps too
        if self.optimizer is None:
            from cotrain.model.trainable import optimizer_param_groups

            target = self.model if model is None else model
            cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, target)
            groups = optimizer_param_groups(target, self.run_cfg.train)
            for g in groups:
                log.info("optimizer group %-18s lr=%.3g weight_decay=%g tensors=%d", g.get("name"), g["lr"],
                         g["weight_decay"], len(g["params"]))
            self.optimizer = cls(groups, **kwargs)
        return self.optimizer

    # --- loss and accounting ----------------------------------------------------------------
    def get_batch_samples(self, epoch_iterator, num_batches, device):
        # the micro-batches of one optimizer step: counted (logged, and the sample-mean divisor)
        batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        self._step_samples = self.accounting.count_step(batches)
        return batches, num_items

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        owner = token_samples(inputs)
        self.accounting.count_batch(inputs, owner)
        if self.model_computes_loss:
            # Liger: fused linear cross-entropy inside the model, no logits to account per task
            if inputs.get("loss_weight") is not None:
                raise ConfigError("curriculum loss weights need per-token losses, which Liger's fused cross-entropy "
                                  "does not expose; set model.liger=false or curriculum.loss_weights=false")
            if self.loss_reduction == "sample":
                raise ConfigError("train.loss_reduction=sample needs per-token losses, which Liger's fused "
                                  "cross-entropy does not expose; use loss_reduction=token or model.liger=false")
            loss, outputs = super().compute_loss(model, model_inputs(inputs), return_outputs=True,
                                                 num_items_in_batch=num_items_in_batch)
        else:
            loss, outputs = self._supervised_loss(model, inputs, owner, num_items_in_batch)
        if self.vision_keepalive:
            # with the forward hooks installed this returns None; without them (a model the
            # hooks cannot reach) it adds the zero term or names the fix
            from cotrain.distributed import vision_keepalive

            extra = vision_keepalive(model, inputs)
            if extra is not None:
                loss = loss + extra
        return (loss, outputs) if return_outputs else loss

    def _supervised_loss(self, model, inputs, owner, num_items_in_batch):
        import torch

        names, tasks = inputs.get("dataset", []), inputs.get("task", [])
        losses, outputs = token_losses(model, inputs, owner, len(names))
        processes = self.accelerator.num_processes if self.args.average_tokens_across_devices else 1
        weights = inputs.get("loss_weight")
        if weights is not None:  # curriculum loss weights (cotrain.curriculum.alignment), one per sample
            weights = torch.tensor([1.0 if w is None else float(w) for w in weights])
            self.accounting.count_weights(weights.tolist())
        loss = reduce_losses(losses, self.loss_reduction, step_samples=self._step_samples,
                             num_items_in_batch=num_items_in_batch, processes=processes, weights=weights)
        self.accounting.count_task_losses(tasks, losses.sums.tolist(), losses.counts.tolist())
        outputs.loss = loss
        return loss, outputs

    def log(self, logs: dict, *args: Any, **kwargs: Any) -> None:
        if "loss" in logs:
            logs.update(self.accounting.log_fields(self.state.global_step))
        super().log(logs, *args, **kwargs)

    # --- checkpoints ------------------------------------------------------------------------
    def _get_output_dir(self, trial):
        return str(self._staging_root) if self._staging_root is not None else super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial):
        from cotrain.training.checkpoint import save_checkpoint_atomically

        parent_save = super()._save_checkpoint
        save_checkpoint_atomically(self, lambda: parent_save(model, trial))

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        if self.is_deepspeed_enabled:  # DeepSpeed restores its own shards by parameter name
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        from cotrain.training.checkpoint import load_checkpoint_weights

        load_checkpoint_weights(self.model if model is None else model, Path(resume_from_checkpoint))
