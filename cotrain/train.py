"""The training run: config -> data -> model -> HF Trainer -> final model -> held-out eval -> report.

``run_training(cfg)`` is what ``tools/train.py`` calls. Order matters and is deliberate:
everything that can be wrong with the user's input (config keys, files, every record) is checked
before a model is built, so a typo costs seconds, not a model load. Bad images at train time
are counted skips (``data.on_bad_record``) reported in the run summary.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from cotrain.config import RunConfig, check_budgets, check_files, config_to_dict
from cotrain.data.dataset import (
    LoadedDataset,
    SampleBuilder,
    TrainingDataset,
    load_dataset,
)
from cotrain.errors import ConfigError
from cotrain.model.families import get_family

log = logging.getLogger("cotrain")

_META_KEYS = ("dataset", "task", "skipped")
"""Per-sample metadata that the collator keeps aside as lists (never reaches the model)."""


def setup_logging(out_dir: Path) -> None:
    """Log to stderr and to ``out_dir/train.log``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger("cotrain")
    root.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    for h in list(root.handlers):
        root.removeHandler(h)
    sh = logging.StreamHandler(sys.stderr)
    sh.setFormatter(fmt)
    root.addHandler(sh)
    rank = int(os.environ.get("RANK", 0))
    if rank == 0:
        fh = logging.FileHandler(out_dir / "train.log")
        fh.setFormatter(fmt)
        root.addHandler(fh)
    else:  # under torchrun, the other ranks only speak up for warnings and errors
        sh.setLevel(logging.WARNING)


def prepare_data(cfg: RunConfig) -> tuple[list[LoadedDataset], list[LoadedDataset]]:
    """Generate synthetic data if configured and missing, then check files and validate every record."""
    if cfg.data.synthetic is not None:
        from cotrain.data.synthetic import ensure_demo_data

        s = cfg.data.synthetic
        ensure_demo_data(cfg.data.data_root, seed=s.seed, n_scenes=s.n_scenes, n_large=s.n_large,
                         large_size=s.large_size)
    check_files(cfg)
    check_budgets(cfg, resolve_family(cfg).factor)
    # under torchrun, one rank per filesystem builds the memory-mapped index of a large records file and the
    # others wait (cotrain.distributed.index_builder_ranks)
    from cotrain.distributed import index_builder_ranks

    dist = index_builder_ranks(cfg.data.shared_filesystem)
    train = [load_dataset(ds, **dist) for ds in cfg.data.datasets]
    evals = [load_dataset(ds, **dist) for ds in cfg.data.eval_datasets]
    share_class_lists(train, evals)
    for ld in train:
        whole, frac = divmod(ld.cfg.weight, 1.0)
        if int(whole) == 0 and round(frac * len(ld.records)) == 0:
            raise ConfigError(f"data.datasets {ld.cfg.name!r}: weight {ld.cfg.weight} x {len(ld.records)} records "
                              "rounds to 0 samples per epoch; raise its weight or drop the dataset")
    return train, evals


def resolve_family(cfg: RunConfig):
    """The model family, known before any model is loaded (tiny config or the checkpoint's config.json)."""
    if not cfg.model.path:
        if cfg.model.arch:
            from cotrain.model.archs import get_arch

            return get_family(get_arch(cfg.model.arch).family)
        return get_family(cfg.model.tiny.family)
    cfg_file = Path(cfg.model.path) / "config.json"
    if not cfg_file.is_file():
        raise ConfigError(f"model.path={cfg.model.path!r} has no config.json; point it at a local HF checkpoint "
                          "directory")
    try:
        model_type = json.loads(cfg_file.read_text()).get("model_type")
    except json.JSONDecodeError as e:
        raise ConfigError(f"{cfg_file}: not valid JSON ({e})") from None
    return get_family(str(model_type))


def share_class_lists(train: list[LoadedDataset], evals: list[LoadedDataset]) -> None:
    """Held-out prompts list the classes of the same-named training dataset, as training did."""
    by_name = {ld.cfg.name: ld for ld in train}
    for ld in evals:
        src = by_name.get(ld.cfg.name)
        if src is None or src.classes is None or ld.classes is None:
            continue
        if set(ld.classes) <= set(src.classes):
            ld.classes = src.classes
        else:
            extra = sorted(set(ld.classes) - set(src.classes))
            log.warning("eval dataset %r has classes unseen in training: %s", ld.cfg.name, extra)
            ld.classes = sorted(set(src.classes) | set(ld.classes))


def build_model(cfg: RunConfig):
    """(model, processor, family) from model.path, or the tiny random model when path is None."""
    if cfg.model.path:
        from cotrain.model.loader import load_model_and_processor

        return load_model_and_processor(cfg.model.path, attn_implementation=cfg.model.attn_implementation,
                                        dtype=cfg.model.dtype)
    from cotrain.model.processor import build_offline_processor
    from cotrain.model.tiny import build_tiny_model

    t = cfg.model.tiny
    family = resolve_family(cfg)
    processor = build_offline_processor(family.name, min_pixels=cfg.data.min_pixels, max_pixels=cfg.data.max_pixels)
    if cfg.model.arch:
        import torch

        from cotrain.model.archs import build_arch_model
        from cotrain.model.loader import DTYPES
        from cotrain.model.processor import special_token_ids

        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = DTYPES[cfg.model.dtype] if cfg.model.dtype != "auto" else torch.bfloat16
        model = build_arch_model(cfg.model.arch, special_token_ids(processor.tokenizer), device=device, dtype=dtype,
                                 seed=t.seed)
        log.info("random-init %s (%s, %s) on %s", cfg.model.arch, family.name, dtype, device)
    else:
        model = build_tiny_model(t.family, seed=t.seed, processor=processor, hidden_size=t.hidden_size,
                                 num_layers=t.num_layers, vision_depth=t.vision_depth)
    from cotrain.model.loader import resolve_attn_implementation

    model.set_attn_implementation(resolve_attn_implementation(cfg.model.attn_implementation))
    return model, processor, family


def configure_training_model(model, family, cfg: RunConfig):
    """Liger kernels, what trains (freeze per part), LoRA adapters; in that order, before any wrapping."""
    from cotrain.model.trainable import apply_freeze, apply_lora

    if cfg.model.liger:
        from cotrain.model.kernels import apply_liger

        log.info(apply_liger(model, family.name))
    apply_freeze(model, cfg.model)
    if cfg.model.lora.enabled:
        model = apply_lora(model, cfg.model)
    return model


def pad_id_of(processor) -> int:
    """Padding id of the processor's tokenizer (Qwen: ``<|endoftext|>``; eos when no pad token)."""
    tok = processor.tokenizer
    return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id


def make_collate(pad_token_id: int):
    """Padding collator that moves per-sample metadata (dataset, task, skips) aside as lists."""
    from cotrain.data.collator import PaddingCollator

    pad = PaddingCollator(pad_token_id=pad_token_id, padding_side="right")

    def collate(samples: list[dict]) -> dict:
        meta = {k: [s.get(k) for s in samples] for k in _META_KEYS}
        batch = pad([{k: v for k, v in s.items() if k not in _META_KEYS} for s in samples])
        batch["skipped"] = [x for lst in meta["skipped"] if lst for x in lst]
        batch["dataset"] = meta["dataset"]
        batch["task"] = meta["task"]
        return batch

    return collate


def make_pack_collate(pad_token_id: int, spatial_merge_size: int, flatten: bool):
    """Collator of packs (``PackedTrainingDataset`` items): ``PackCollator`` plus the skip accounting."""
    from cotrain.data.packing import PackCollator

    pack = PackCollator(pad_token_id=pad_token_id, spatial_merge_size=spatial_merge_size, flatten=flatten)

    def collate(items: list[dict]) -> dict:
        skipped = [x for it in items for x in it["skipped"]]
        batch = pack([it["samples"] for it in items])
        per_sample = batch.pop("skipped", None) or []
        batch["skipped"] = skipped + [x for lst in per_sample if lst for x in lst]
        return batch

    return collate


def token_samples(inputs: dict):
    """(rows, L) sample number of every token (-1 on padding): from a packed batch, or one sample per row."""
    import torch

    if "token_sample" in inputs:
        return inputs["token_sample"]
    mask = inputs["attention_mask"]
    rows = torch.arange(mask.shape[0], device=mask.device)[:, None].expand_as(mask)
    return torch.where(mask.bool(), rows, torch.full_like(rows, -1))


def _trainer_class():
    import torch
    from transformers import Trainer

    from cotrain.data.collator import model_inputs

    class CotrainTrainer(Trainer):
        """HF Trainer that strips our metadata from batches and keeps the run's accounting.

        Counts skipped samples by reason, samples and supervised tokens per dataset and per task,
        and the token-mean loss per task between two log steps (logged as ``loss/<task>``). The
        optimised loss is untouched: the per-task numbers are recomputed from the logits without
        gradients.
        """

        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.skip_counts: Counter = Counter()
            self.samples_seen = 0
            self.samples_by_dataset: Counter = Counter()
            self.samples_by_task: Counter = Counter()
            self.tokens_by_dataset: Counter = Counter()
            self.label_tokens_by_task: Counter = Counter()
            self._task_loss: Counter = Counter()
            self._task_tokens: Counter = Counter()
            self.task_loss_history: list[dict] = []
            self.vision_keepalive = bool(self.args.deepspeed) or self.args.world_size > 1
            if self.vision_keepalive:
                # a batch without images must still run the vision tower (ZeRO-3 gathers its weights
                # collectively, in execution order; DDP expects its gradients): a zero-contribution
                # dummy image enters the language model's input where real images would
                from cotrain.distributed import install_vision_keepalive

                install_vision_keepalive(self.model)
            self.loss_reduction = "token"
            self.model_computes_loss = False  # True with Liger's fused linear cross-entropy
            self._window: Counter = Counter(steps=0, samples=0, tokens=0, label_tokens=0, slots=0)
            self._step_samples = 0
            self.live_log: Path | None = None
            self.run_cfg = None

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

        def _get_output_dir(self, trial):
            staging = getattr(self, "_staging_root", None)
            return str(staging) if staging is not None else super()._get_output_dir(trial)

        def _save_checkpoint(self, model, trial):
            """Write checkpoint-<step> under a staging name, add cotrain_state.json, rename into place.

            A SIGKILL while saving leaves only ``.staging-*`` (ignored and removed on the next run);
            a ``checkpoint-<step>`` directory is always complete.
            """
            from transformers.trainer import rotate_checkpoints

            from cotrain.checkpoint import STAGING_PREFIX, write_state

            step = self.state.global_step
            run_dir = Path(self.args.output_dir)
            staging = run_dir / f"{STAGING_PREFIX}{step}"
            if self.args.should_save and staging.exists():
                shutil.rmtree(staging)
            self.accelerator.wait_for_everyone()
            self._staging_root = staging
            try:
                super()._save_checkpoint(model, trial)
            finally:
                self._staging_root = None
            self.accelerator.wait_for_everyone()  # every rank's shards are written
            if self.args.should_save:
                staged = staging / f"checkpoint-{step}"
                write_state(staged, self.run_cfg, self.sampler_state(), step)
                if hasattr(self.model, "peft_config"):
                    from cotrain.checkpoint import save_trained_parts

                    save_trained_parts(self.model, staged)
                final = run_dir / staged.name
                if final.exists():
                    shutil.rmtree(final)
                os.replace(staged, final)
                shutil.rmtree(staging, ignore_errors=True)
                rotate_checkpoints(output_dir=str(run_dir), save_total_limit=self.args.save_total_limit,
                                   best_model_checkpoint=None, use_mtime=False)
            self.accelerator.wait_for_everyone()

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            if self.is_deepspeed_enabled:  # DeepSpeed restores its own shards by parameter name
                return super()._load_from_checkpoint(resume_from_checkpoint, model)
            from cotrain.checkpoint import load_checkpoint_weights

            load_checkpoint_weights(self.model if model is None else model, Path(resume_from_checkpoint))

        def sampler_state(self) -> dict:
            """What cotrain_state.json records of the data order at this step."""
            ds = self.train_dataset
            mixture = ds.base.sampler if hasattr(ds, "base") else ds.sampler
            state = {"epoch": int(ds.epoch), "seed": int(mixture.seed), "fingerprint": mixture.fingerprint,
                     "samples_per_epoch": len(mixture), "items_per_epoch": len(ds.sampler)}
            if hasattr(ds, "fill"):
                state.update(packed=True, fill=round(float(ds.fill), 6))
            return state

        def create_optimizer(self, model=None):
            # our parameter groups (per-part learning rates, no decay on biases and norms) with the
            # optimizer class HF would pick; a DeepSpeed config may not bring its own optimizer
            # (cotrain.distributed refuses that), so these groups are what DeepSpeed wraps too
            if self.optimizer is None:
                from cotrain.model.trainable import optimizer_param_groups

                target = self.model if model is None else model
                cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, target)
                groups = optimizer_param_groups(target, self.train_cfg)
                for g in groups:
                    log.info("optimizer group %-18s lr=%.3g weight_decay=%g tensors=%d", g.get("name"), g["lr"],
                             g["weight_decay"], len(g["params"]))
                self.optimizer = cls(groups, **kwargs)
            return self.optimizer

        def get_batch_samples(self, epoch_iterator, num_batches, device):
            # the micro-batches of one optimizer step: count what the step holds (logged, and the
            # divisor of the sample-mean loss)
            batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
            self._step_samples = sum(len(b.get("dataset") or []) for b in batches)
            self._window["steps"] += 1
            self._window["samples"] += self._step_samples
            for b in batches:
                self._window["tokens"] += int((token_samples(b) >= 0).sum())
                self._window["label_tokens"] += int((b["labels"][:, 1:] != -100).sum())
                self._window["slots"] += int(b["input_ids"].numel())
            return batches, num_items

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            for reason, _ds, _rid in inputs.pop("skipped", []):
                self.skip_counts[reason] += 1
            names = inputs.get("dataset", [])
            tasks = inputs.get("task", [])
            self.samples_seen += len(names)
            self.samples_by_dataset.update(names)
            self.samples_by_task.update(tasks)
            owner = token_samples(inputs)
            counts = torch.bincount(owner[owner >= 0].reshape(-1).cpu(), minlength=len(names)).tolist()
            for name, n in zip(names, counts):
                self.tokens_by_dataset[name] += int(n)
            if self.model_computes_loss:
                # Liger: fused linear cross-entropy inside the model, no logits to account per task
                loss, outputs = super().compute_loss(model, model_inputs(inputs), return_outputs=True,
                                                     num_items_in_batch=num_items_in_batch)
                if self.loss_reduction == "sample":
                    raise ConfigError("train.loss_reduction=sample needs per-token losses, which Liger's fused "
                                      "cross-entropy does not expose; use loss_reduction=token or model.liger=false")
            else:
                loss, outputs = self._supervised_loss(model, inputs, owner, len(names), tasks, num_items_in_batch)
            if self.vision_keepalive:
                # with the forward hooks installed this returns None; without them (a model the
                # hooks cannot reach) it adds the zero term or names the fix
                from cotrain.distributed import vision_keepalive

                extra = vision_keepalive(model, inputs)
                if extra is not None:
                    loss = loss + extra
            return (loss, outputs) if return_outputs else loss

        def _supervised_loss(self, model, inputs, owner, n_samples, tasks, num_items_in_batch):
            """Cross-entropy from logits computed only where a supervised label follows."""
            from cotrain.model.selective_logits import loss_positions, supervised_logits

            batch = model_inputs(inputs)
            labels = batch.pop("labels")
            need, target = loss_positions(labels)
            with supervised_logits(model, need):
                outputs = model(**batch)
            logits = outputs.logits.reshape(-1, outputs.logits.shape[-1]).float()
            per_token = torch.nn.functional.cross_entropy(logits, target.to(logits.device), reduction="none")
            own = owner[:, 1:][need[:, :-1]].to(per_token.device)
            sums = torch.zeros(max(n_samples, 1), device=per_token.device).index_add(0, own, per_token)
            n_tok = torch.bincount(own, minlength=max(n_samples, 1)).to(sums.dtype)
            if self.loss_reduction == "sample":
                # mean over the step's samples of each sample's token-mean loss; the step's sample
                # count spans its micro-batches, so accumulation adds up to the step mean
                has = n_tok > 0
                loss = (sums[has] / n_tok[has]).sum() / max(self._step_samples or n_samples, 1)
            elif num_items_in_batch is not None:
                # HF's convention: divide by the step's supervised tokens (all micro-batches, all
                # ranks when average_tokens_across_devices); DDP then averages over ranks
                loss = per_token.sum() / num_items_in_batch
                if self.args.average_tokens_across_devices:
                    loss = loss * self.accelerator.num_processes
            else:
                loss = per_token.sum() / max(per_token.numel(), 1)
            with torch.no_grad():
                for task, total, n in zip(tasks, sums.tolist(), n_tok.tolist()):
                    self._task_loss[task] += total
                    self._task_tokens[task] += int(n)
                    self.label_tokens_by_task[task] += int(n)
            outputs.loss = loss
            return loss, outputs

        def log(self, logs: dict, *args: Any, **kwargs: Any) -> None:
            if "loss" in logs and self._task_tokens:
                per_task = {t: self._task_loss[t] / n for t, n in self._task_tokens.items() if n}
                logs.update({f"loss/{t}": round(v, 4) for t, v in sorted(per_task.items())})
                self.task_loss_history.append({"step": self.state.global_step, **per_task})
                self._task_loss.clear()
                self._task_tokens.clear()
            if "loss" in logs and self._window["steps"]:
                w = self._window
                # per rank: tokens (real, not padding) and supervised tokens per optimizer step
                logs["tokens_per_step"] = round(w["tokens"] / w["steps"], 1)
                logs["label_tokens_per_step"] = round(w["label_tokens"] / w["steps"], 1)
                logs["samples_per_step"] = round(w["samples"] / w["steps"], 2)
                logs["fill"] = round(w["tokens"] / max(w["slots"], 1), 4)
                for key in self._window:  # (Counter.update would add, not reset)
                    self._window[key] = 0
            super().log(logs, *args, **kwargs)
            if self.live_log is not None and self.args.should_save:
                # appended as it happens: a killed run keeps its curve (a resumed run appends again)
                with open(self.live_log, "a") as f:
                    f.write(json.dumps({"step": self.state.global_step, **logs}) + "\n")

    return CotrainTrainer


def _epoch_callback(dataset: TrainingDataset):
    from transformers import TrainerCallback

    class EpochCallback(TrainerCallback):
        """Tell the dataset which epoch starts: fresh fractional draws, templates and resizes."""

        def on_epoch_begin(self, args, state, control, **kwargs):
            # floor, not round: a mid-epoch checkpoint resumes with a fractional state.epoch (0.6 -> 0)
            dataset.set_epoch(math.floor((state.epoch or 0) + 1e-9))

    return EpochCallback()


def save_final(model, processor, out_dir: Path) -> Path:
    """Save the final model + processor atomically: write to a temp dir, then rename into place."""
    from cotrain.model.loader import save_model_and_processor

    final = out_dir / "final"
    tmp = out_dir / "final.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    save_model_and_processor(model, processor, tmp)
    return _replace_dir(tmp, final)


def finish_model(trainer, processor, cfg: RunConfig, out_dir: Path):
    """(model to evaluate, final artefact path) after training; every rank calls it.

    LoRA: the adapter is saved apart and, with ``merge_on_save``, merged for the final model.
    DeepSpeed: the engine gathers the weights (ZeRO-3: 16-bit gather on save) through the
    Trainer's own ``save_model``; otherwise rank 0 saves. Rank 0 then renames into place.
    """
    model = trainer.model
    main = trainer.args.should_save
    lora = cfg.model.lora
    if lora.enabled:
        from cotrain.model.trainable import merge_lora, save_adapter

        if main:
            from cotrain.model.processor import save_processor

            log.info("LoRA adapter saved to %s", save_adapter(model, out_dir / "adapter"))
            # with the processor (training pixel budget), so tools/eval.py --adapter sees training-sized images
            save_processor(processor, out_dir / "adapter", model.get_base_model().config.model_type)
        if not lora.merge_on_save:
            trainer.accelerator.wait_for_everyone()
            return model, out_dir / "adapter"
        model = merge_lora(model)
    if trainer.is_deepspeed_enabled and not lora.enabled:
        from cotrain.model.processor import save_processor

        tmp = out_dir / "final.tmp"
        if main and tmp.exists():
            shutil.rmtree(tmp)
        trainer.accelerator.wait_for_everyone()
        trainer.save_model(str(tmp))  # collective under ZeRO-3; writes on rank 0
        if main:
            save_processor(processor, tmp, model.config.model_type)
            final = _replace_dir(tmp, out_dir / "final")
    elif main:
        final = save_final(model, processor, out_dir)
    trainer.accelerator.wait_for_everyone()
    final = out_dir / "final"
    log.info("final model saved to %s", final)
    return model, final


def _replace_dir(tmp: Path, final: Path) -> Path:
    """Move ``tmp`` to ``final``, replacing an existing ``final`` without a moment where neither exists."""
    if final.exists():
        old = final.with_name(final.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    return final


def run_training(cfg: RunConfig) -> dict:
    """Train, evaluate and report; returns the run summary (also in ``metrics.json``)."""
    import torch
    from transformers import TrainingArguments

    out_dir = Path(cfg.train.output_dir)
    setup_logging(out_dir)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    t0 = time.time()
    train_sets, eval_sets = prepare_data(cfg)
    from cotrain.checkpoint import clean_staging, resolve_resume

    clean_staging(out_dir / "checkpoints")
    resume = resolve_resume(cfg)  # checked (files, recipe) before the model is loaded
    if resume is not None:
        log.info("resuming from %s", resume)
    for ld in train_sets:
        log.info("dataset %-16s task=%-14s records=%d weight=%.2f", ld.cfg.name, ld.cfg.task or "(per record)",
                 len(ld.records), ld.cfg.weight)

    torch.manual_seed(cfg.train.seed)
    model, processor, family = build_model(cfg)
    model = configure_training_model(model, family, cfg)
    from cotrain.data.encoder import ChatEncoder

    encoder = ChatEncoder(processor, family)
    builder = SampleBuilder(encoder, family, cfg.data)
    train_ds = TrainingDataset(train_sets, builder, cfg.data)
    attn = getattr(model.config, "_attn_implementation", "sdpa")
    if cfg.data.packing:
        from cotrain.data.packed import PackedTrainingDataset

        train_ds = PackedTrainingDataset(train_ds)
        if attn == "sdpa":
            # per-sample causal sdpa instead of an L x L block-diagonal mask (same math, less work)
            from cotrain.model.varlen_sdpa import register

            model.set_attn_implementation(register())
            log.info("packing with sdpa: attention runs per packed sample (%s)", model.config._attn_implementation)
        merge = int(model.config.vision_config.spatial_merge_size)
        # FlashAttention varlen (flash-attn or torch's) wants one padding-free row; sdpa/eager get one row per pack
        collate = make_pack_collate(pad_id_of(processor), merge, flatten=attn in ("flash_attention_2", "torch_varlen"))
        unit = "packs"
    else:
        collate = make_collate(pad_id_of(processor))
        unit = "samples"
    mixture = train_ds.base.sampler if cfg.data.packing else train_ds.sampler
    for name, m in mixture.realised_mix(0).items():
        log.info("mix %-16s records=%-7d weight=%.2f samples=%-7d share=%.1f%%", name, m["records"], m["weight"],
                 m["samples"], 100 * m["share"])
    log.info("mixture: %d samples per epoch from %d datasets", len(mixture), len(train_sets))
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model: %s, %.2fM parameters, attention %s", family.name, n_params / 1e6,
             getattr(model.config, "_attn_implementation", "?"))

    use_cpu = not torch.cuda.is_available()
    deepspeed = None
    if cfg.train.deepspeed:
        from cotrain.distributed import resolve_deepspeed_config

        deepspeed = resolve_deepspeed_config(cfg.train.deepspeed, cfg.train)
        log.info("DeepSpeed config %r: ZeRO stage %s", cfg.train.deepspeed,
                 deepspeed.get("zero_optimization", {}).get("stage", 0))
    args = TrainingArguments(
        deepspeed=deepspeed,
        save_total_limit=cfg.train.save_total_limit,
        output_dir=str(out_dir / "checkpoints"),
        per_device_train_batch_size=cfg.train.batch_size,
        gradient_accumulation_steps=cfg.train.grad_accum,
        learning_rate=cfg.train.learning_rate,
        weight_decay=cfg.train.weight_decay,
        warmup_steps=cfg.train.warmup_ratio,  # a float in [0, 1) is a ratio of total steps in transformers 5
        lr_scheduler_type=cfg.train.lr_scheduler,
        num_train_epochs=cfg.train.epochs,
        max_steps=cfg.train.max_steps,
        logging_steps=cfg.train.logging_steps,
        save_strategy="steps" if cfg.train.save_steps > 0 else "no",
        save_steps=cfg.train.save_steps if cfg.train.save_steps > 0 else 500,
        seed=cfg.train.seed,
        data_seed=cfg.data.seed,
        bf16=cfg.train.bf16,
        gradient_checkpointing=cfg.train.gradient_checkpointing,
        # non-reentrant: works when the embeddings are frozen (LoRA, train_language=false)
        gradient_checkpointing_kwargs={"use_reentrant": False} if cfg.train.gradient_checkpointing else None,
        dataloader_num_workers=cfg.data.num_workers,
        dataloader_pin_memory=not use_cpu,
        remove_unused_columns=False,
        report_to="none",
        use_cpu=use_cpu,
        disable_tqdm=False,
    )
    trainer = _trainer_class()(model=model, args=args, train_dataset=train_ds, data_collator=collate,
                               callbacks=[_epoch_callback(train_ds)])
    if cfg.eval.every_steps and eval_sets:
        # the resolved stage (a JSON path may hold any stage): ZeRO-3 partitions the weights across ranks
        if trainer.is_deepspeed_enabled and trainer.accelerator.state.deepspeed_plugin.zero_stage == 3:
            log.warning("eval.every_steps ignored: the ZeRO-3 model is partitioned across ranks; evaluate "
                        "checkpoints with tools/eval.py")
        else:
            from cotrain.eval.training import PeriodicEval

            trainer.add_callback(PeriodicEval(trainer, processor, family, cfg.data, cfg.eval, eval_sets,
                                              out_dir / "evals"))
    trainer.loss_reduction = cfg.train.loss_reduction
    trainer.train_cfg = cfg.train
    trainer.run_cfg = cfg
    trainer.live_log = out_dir / "log_history.jsonl"
    if resume is None and trainer.live_log.exists():
        trainer.live_log.unlink()  # a fresh run starts a fresh curve
    if resume is not None:
        saved = json.loads((resume / "cotrain_state.json").read_text())["sampler"]
        now = trainer.sampler_state()
        if saved["fingerprint"] != now["fingerprint"]:
            raise ConfigError(f"checkpoint {resume} was written for another mixture (fingerprint {saved['fingerprint']} "
                              f"vs {now['fingerprint']}: the records files changed size or order); restore them or "
                              "start a new run")
    trainer.model_computes_loss = cfg.model.liger  # Liger's fused cross-entropy returns no logits
    if cfg.train.loss_reduction == "sample":
        trainer.loss_is_scaled_for_ga = True  # compute_loss divides by the step's sample count itself
    world = args.world_size
    log.info("an optimizer step = %d %s x %d accumulation x %d ranks; loss = %s", cfg.train.batch_size, unit,
             cfg.train.grad_accum, world,
             "mean over the step's supervised tokens" if cfg.train.loss_reduction == "token"
             else "mean over the step's samples of each sample's token-mean loss (per rank, averaged over ranks)")
    if cfg.data.packing:
        log.info("packing: %d packs of <= %d tokens per epoch (fill %.3f), about %d tokens per optimizer step",
                 len(train_ds), cfg.data.max_length, train_ds.fill,
                 int(cfg.train.batch_size * cfg.train.grad_accum * world * cfg.data.max_length * train_ds.fill))
    t_train = time.time()
    trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    train_seconds = time.time() - t_train
    model, final = finish_model(trainer, processor, cfg, out_dir)
    # under torchrun every rank counted its own micro-batches: sum them for the run summary
    from cotrain.distributed import all_reduce_counts

    counters = {name: Counter(all_reduce_counts(getattr(trainer, name))) for name in (
        "samples_by_dataset", "samples_by_task", "tokens_by_dataset", "label_tokens_by_task", "skip_counts")}
    counters = {k: Counter({key: int(v) for key, v in c.items()}) for k, c in counters.items()}
    if not trainer.args.should_save:  # rank > 0: rank 0 evaluates and writes the report
        trainer.accelerator.wait_for_everyone()
        return {"summary": None, "eval": {}}

    history = trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    summary = {
        "run_name": cfg.run_name,
        "model": cfg.model.path or (f"random-init {cfg.model.arch}" if cfg.model.arch
                                    else f"tiny random {family.name} (hidden {cfg.model.tiny.hidden_size})"),
        "parameters": n_params,
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "steps": trainer.state.global_step,
        "samples_seen": sum(counters["samples_by_task"].values()),
        "samples_by_dataset": dict(counters["samples_by_dataset"]),
        "samples_by_task": dict(counters["samples_by_task"]),
        "tokens_by_dataset": dict(counters["tokens_by_dataset"]),
        "label_tokens_by_task": dict(counters["label_tokens_by_task"]),
        "last_loss_by_task": trainer.task_loss_history[-1] if trainer.task_loss_history else {},
        "train_seconds": train_seconds,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "skipped": dict(counters["skip_counts"]),
        "skipped_total": sum(counters["skip_counts"].values()),
        "final_model": str(final),
    }
    if summary["skipped_total"]:
        log.warning("skipped %d bad samples during training: %s", summary["skipped_total"], summary["skipped"])

    metrics: dict = {}
    predictions: list = []
    zero3 = trainer.is_deepspeed_enabled and trainer.accelerator.state.deepspeed_plugin.zero_stage == 3
    if cfg.eval.enabled and eval_sets and zero3:
        log.warning("held-out evaluation skipped: the ZeRO-3 model is partitioned across ranks; evaluate %s with "
                    "tools/predict.py or tools/eval.py", final)
    elif cfg.eval.enabled and eval_sets:
        from cotrain.eval.training import predictions_of, run_eval

        # the same harness as tools/eval.py; rank 0 alone (the other ranks have returned)
        metrics = run_eval(model, processor, family, cfg.data, cfg.eval, eval_sets, out_dir / "eval")
        predictions = predictions_of(out_dir / "eval", metrics)
        for name, m in metrics.items():
            log.info("eval %-16s %s", name, {k: v for k, v in m.items() if k != "skipped" or v})
    summary["total_seconds"] = time.time() - t0

    from cotrain.report import write_report

    wanted = {(p.dataset, p.record_id) for p in predictions}  # only what the report draws: no full pass
    records_by_id = {(ld.cfg.name, str(r["id"])): r for ld in eval_sets
                     for r in ld.records[:cfg.eval.max_samples] if (ld.cfg.name, str(r["id"])) in wanted}
    write_report(out_dir, summary=summary, metrics=metrics, log_history=history, predictions=predictions,
                 records_by_id=records_by_id, image_roots={ld.cfg.name: ld.cfg.image_root for ld in eval_sets},
                 n_visualise=cfg.eval.n_visualise)
    log.info("report written to %s (%.0f s in all)", out_dir / "report.md", summary["total_seconds"])
    trainer.accelerator.wait_for_everyone()
    return {"summary": summary, "eval": metrics}


def validate_only(cfg: RunConfig) -> list[LoadedDataset]:
    """Check config, files and records without building a model (``tools/train.py --validate``)."""
    train_sets, _ = prepare_data(cfg)
    if not train_sets:
        raise ConfigError("no training datasets")
    return train_sets
