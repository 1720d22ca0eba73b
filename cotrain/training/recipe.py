"""The training run as a recipe: config -> data -> model -> Trainer -> final model -> held-out eval -> report.

``run(cfg)`` is the whole story, in order, on one screen:

1. ``setup_data``: synthetic data generated if configured and missing; files, pixel budgets and
   every record checked before a model is built, so a typo costs seconds, not a model load;
2. the resume checkpoint resolved and checked (files, recipe fingerprint);
3. ``setup_model``: the model built and configured (Liger, freezing, LoRA), see
   ``cotrain.model.build``;
4. ``setup_train_dataset``: the weighted mixture, packed or padded, with its collator;
5. ``training_arguments`` and ``make_trainer``: HF ``TrainingArguments`` from the recipe, and
   ``CotrainTrainer`` with its callbacks (epoch hand-off, live log, periodic eval);
6. training, then ``finish_model`` (``cotrain.training.checkpoint``) on every rank;
7. ``summarise`` (counters summed across ranks) and, on rank 0, ``evaluate_and_report``.

Bad images at train time are counted skips (``data.on_bad_record``) reported in the summary.

Must not hold the Trainer's internals (``trainer.py``), the loss (``loss.py``) or checkpoint
mechanics (``checkpoint.py``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

from cotrain.config import RunConfig, check_budgets, check_files, config_to_dict
from cotrain.data.dataset import LoadedDataset, SampleBuilder, TrainingDataset, load_dataset
from cotrain.errors import ConfigError
from cotrain.model.build import build_model, configure_training_model, resolve_family

log = logging.getLogger("cotrain")


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


def setup_data(cfg: RunConfig) -> tuple[list[LoadedDataset], list[LoadedDataset]]:
    """Generate synthetic data if configured and missing, then check files and validate every record."""
    if cfg.data.synthetic is not None:
        from cotrain.data.synthetic import ensure_demo_data, ensure_localize_data

        s = cfg.data.synthetic
        if s.kind == "localize":
            ensure_localize_data(cfg.data.data_root, seed=s.seed, n_images=s.n_scenes)
        elif s.kind == "multisensor":
            from cotrain.data.synthetic.multisensor import ensure_multisensor_data

            ensure_multisensor_data(cfg.data.data_root, seed=s.seed, n_patches=s.n_scenes)
        elif s.kind == "ir_difficulty":
            from cotrain.data.synthetic.ir_difficulty import ensure_ir_difficulty_data

            ensure_ir_difficulty_data(cfg.data.data_root, seed=s.seed, n_scenes=s.n_scenes)
        else:
            ensure_demo_data(cfg.data.data_root, seed=s.seed, n_scenes=s.n_scenes, n_large=s.n_large,
                             large_size=s.large_size)
    check_files(cfg)
    if cfg.model.kind == "vlm":  # a CLIP model has a fixed input size, not a Qwen-VL pixel budget
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


def refuse_triplets(loaded: list[LoadedDataset]) -> None:
    """A vision-language recipe cannot train on triplet records (they are contrastive data)."""
    for ld in loaded:
        rec = next((r for r in ld.records if r["task"] == "triplet"), None)
        if rec is not None:
            raise ConfigError(f"dataset {ld.cfg.name!r}: record {rec['id']!r} is a triplet (RGB + IR twin + captions), "
                              "which trains a CLIP model: set model.kind: clip, or convert the data to captioning "
                              "records (cotrain convert fusionrs --kinds rgb,ir,dual)")


def validate_only(cfg: RunConfig) -> list[LoadedDataset]:
    """Check config, files and records without building a model (``cotrain train --validate``)."""
    train_sets, eval_sets = setup_data(cfg)
    if not train_sets:
        raise ConfigError("no training datasets")
    if cfg.model.kind == "clip":
        from cotrain.contrastive.data import check_triplet_sets

        check_triplet_sets(train_sets, cfg.model.clip.supervision)
        check_triplet_sets(eval_sets, "original", "data.eval_datasets")
    else:
        refuse_triplets(train_sets + eval_sets)
    return train_sets


def setup_model(cfg: RunConfig):
    """(model, processor, family), seeded by ``train.seed`` and configured for training."""
    import torch

    torch.manual_seed(cfg.train.seed)
    model, processor, family = build_model(cfg)
    widen_for_sensors(model, cfg)
    model = configure_training_model(model, family, cfg)
    return model, processor, family


def sensor_bands(cfg: RunConfig) -> list[str]:
    """Every band a sensor_branch dataset of the recipe feeds (training and held-out), in recipe order."""
    return list(dict.fromkeys(b for ds in [*cfg.data.datasets, *cfg.data.eval_datasets] if ds.sensor_branch
                              for b in ds.sensor_branch.bands))


def widen_for_sensors(model, cfg: RunConfig) -> None:
    """Give the model an input channel for each band of the recipe's sensor branches that it lacks."""
    from cotrain.model.sensor_branch import channel_layout, has_branch, widen_patch_embed

    bands = sensor_bands(cfg)
    if not bands:
        return
    had = channel_layout(model)
    new = widen_patch_embed(model, bands, cfg.model.sensor_init)
    if has_branch(had) and new != had:
        log.warning("model.path %s had a sensor branch for %s; band(s) %s are new and start from %s kernels",
                    cfg.model.path, ", ".join(had[3:]), ", ".join(new[len(had):]), cfg.model.sensor_init)


def setup_train_dataset(cfg: RunConfig, train_sets: list[LoadedDataset], model, processor, family):
    """(training dataset, collator, unit of a batch): the weighted mixture, packed or padded."""
    from cotrain.data.collate import make_collate, make_pack_collate, pad_id_of
    from cotrain.data.encoder import ChatEncoder

    from cotrain.model.sensor_branch import channel_layout

    builder = SampleBuilder(ChatEncoder(processor, family, channels=channel_layout(model)), family, cfg.data)
    train_ds = TrainingDataset(train_sets, builder, cfg.data, curriculum_step=optimizer_step_samples(cfg))
    if not cfg.data.packing:
        return train_ds, make_collate(pad_id_of(processor)), "samples"
    from cotrain.data.packing import PackedTrainingDataset

    attn = getattr(model.config, "_attn_implementation", "sdpa")
    train_ds = PackedTrainingDataset(train_ds)
    if attn == "sdpa":
        # per-sample causal sdpa instead of an L x L block-diagonal mask (same math, less work)
        from cotrain.model.varlen_sdpa import register

        model.set_attn_implementation(register())
        log.info("packing with sdpa: attention runs per packed sample (%s)", model.config._attn_implementation)
    merge = int(model.config.vision_config.spatial_merge_size)
    # FlashAttention varlen (flash-attn or torch's) wants one padding-free row; sdpa/eager get one row per pack
    collate = make_pack_collate(pad_id_of(processor), merge, flatten=attn in ("flash_attention_2", "torch_varlen"))
    return train_ds, collate, "packs"


def optimizer_step_samples(cfg: RunConfig) -> int:
    """Samples of the global order per optimizer step: batch x accumulation x ranks (curriculum tier rounding)."""
    return cfg.train.batch_size * cfg.train.grad_accum * int(os.environ.get("WORLD_SIZE", 1))


def log_data_plan(cfg: RunConfig, train_sets: list[LoadedDataset], train_ds, unit: str, world: int) -> None:
    """The datasets, the realised mix of epoch 0, and what one optimizer step holds."""
    for ld in train_sets:
        log.info("dataset %-16s task=%-14s records=%d weight=%.2f", ld.cfg.name, ld.cfg.task or "(per record)",
                 len(ld.records), ld.cfg.weight)
    mixture = train_ds.base.sampler if cfg.data.packing else train_ds.sampler
    for name, m in mixture.realised_mix(0).items():
        log.info("mix %-16s records=%-7d weight=%.2f samples=%-7d share=%.1f%%", name, m["records"], m["weight"],
                 m["samples"], 100 * m["share"])
    log.info("mixture: %d samples per epoch from %d datasets", len(mixture), len(train_sets))
    if mixture.curricula:
        from cotrain.curriculum.schedule import describe, format_description

        for d in mixture.curricula:
            log.info(format_description(describe(mixture, d)))
    t = cfg.train
    log.info("an optimizer step = %d %s x %d accumulation x %d ranks; loss = %s", t.batch_size, unit, t.grad_accum,
             world, "mean over the step's supervised tokens" if t.loss_reduction == "token"
             else "mean over the step's samples of each sample's token-mean loss (per rank, averaged over ranks)")
    if cfg.data.packing:
        log.info("packing: %d packs of <= %d tokens per epoch (fill %.3f), about %d tokens per optimizer step",
                 len(train_ds), cfg.data.max_length, train_ds.fill,
                 int(t.batch_size * t.grad_accum * world * cfg.data.max_length * train_ds.fill))


def training_arguments(cfg: RunConfig, out_dir: Path, *, drop_last: bool = False):
    """HF ``TrainingArguments`` from the recipe (DeepSpeed config resolved and checked).

    ``drop_last``: drop an epoch's incomplete last batch (contrastive training: a batch is a set of negatives).
    """
    import torch
    from transformers import TrainingArguments

    t = cfg.train
    use_cpu = not torch.cuda.is_available()
    deepspeed = None
    if t.deepspeed:
        from cotrain.distributed import resolve_deepspeed_config

        deepspeed = resolve_deepspeed_config(t.deepspeed, t)
        log.info("DeepSpeed config %r: ZeRO stage %s", t.deepspeed,
                 deepspeed.get("zero_optimization", {}).get("stage", 0))
    return TrainingArguments(
        deepspeed=deepspeed, save_total_limit=t.save_total_limit, output_dir=str(out_dir / "checkpoints"),
        per_device_train_batch_size=t.batch_size, gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.learning_rate, weight_decay=t.weight_decay,
        warmup_steps=t.warmup_ratio,  # a float in [0, 1) is a ratio of total steps in transformers 5
        lr_scheduler_type=t.lr_scheduler, num_train_epochs=t.epochs, max_steps=t.max_steps,
        logging_steps=t.logging_steps, save_strategy="steps" if t.save_steps > 0 else "no",
        save_steps=t.save_steps if t.save_steps > 0 else 500, seed=t.seed, data_seed=cfg.data.seed, bf16=t.bf16,
        gradient_checkpointing=t.gradient_checkpointing,
        # non-reentrant: works when the embeddings are frozen (LoRA, train_language=false)
        gradient_checkpointing_kwargs={"use_reentrant": False} if t.gradient_checkpointing else None,
        dataloader_num_workers=cfg.data.num_workers, dataloader_pin_memory=not use_cpu,
        remove_unused_columns=False, report_to=report_to(t.report_to), use_cpu=use_cpu, disable_tqdm=False,
        dataloader_drop_last=drop_last,  # tensorboard logs go to output_dir/checkpoints/runs/<time>
    )


def report_to(name: str) -> str:
    """The Trainer's ``report_to``; tensorboard without its package is a ConfigError naming the fix."""
    if name == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ConfigError("train.report_to=tensorboard needs the tensorboard package: pip install tensorboard, "
                              "or set train.report_to=none") from None
    return name


def zero3(trainer) -> bool:
    """Whether the model is partitioned across ranks (no single-rank generation possible)."""
    return bool(trainer.is_deepspeed_enabled and trainer.accelerator.state.deepspeed_plugin.zero_stage == 3)


def make_trainer(cfg: RunConfig, model, args, train_ds, collate, processor, family, eval_sets, out_dir: Path,
                 resume: Path | None):
    """``CotrainTrainer`` with its callbacks; a fresh run starts a fresh live log."""
    from cotrain.training.callbacks import EpochCallback, LiveLog
    from cotrain.training.checkpoint import check_resume_fingerprint
    from cotrain.training.trainer import CotrainTrainer

    live_log = out_dir / "log_history.jsonl"
    if resume is None and live_log.exists():
        live_log.unlink()
    trainer = CotrainTrainer(model=model, args=args, train_dataset=train_ds, data_collator=collate, run_cfg=cfg,
                             callbacks=[EpochCallback(train_ds), LiveLog(live_log)])
    if cfg.eval.every_steps and eval_sets:
        # the resolved stage (a JSON path may hold any stage): ZeRO-3 partitions the weights across ranks
        if zero3(trainer):
            log.warning("eval.every_steps ignored: the ZeRO-3 model is partitioned across ranks; evaluate "
                        "checkpoints with `cotrain eval`")
        else:
            from cotrain.eval.training import PeriodicEval

            trainer.add_callback(PeriodicEval(trainer, processor, family, cfg.data, cfg.eval, eval_sets,
                                              out_dir / "evals"))
    if resume is not None:
        check_resume_fingerprint(resume, trainer.sampler_state())
    return trainer


def run(cfg: RunConfig) -> dict:
    """Train, evaluate and report; returns ``{"summary", "eval"}`` (also in ``metrics.json``) on rank 0."""
    from cotrain.training.checkpoint import clean_staging, finish_model, resolve_resume

    out_dir = Path(cfg.train.output_dir)
    setup_logging(out_dir)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    t0 = time.time()
    train_sets, eval_sets = setup_data(cfg)
    refuse_triplets(train_sets + eval_sets)
    clean_staging(out_dir / "checkpoints")
    resume = resolve_resume(cfg)  # checked (files, recipe) before the model is loaded
    if resume is not None:
        log.info("resuming from %s", resume)
    model, processor, family = setup_model(cfg)
    train_ds, collate, unit = setup_train_dataset(cfg, train_sets, model, processor, family)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model: %s, %.2fM parameters, attention %s", family.name, n_params / 1e6,
             getattr(model.config, "_attn_implementation", "?"))  # after packing may have chosen varlen sdpa
    args = training_arguments(cfg, out_dir)
    trainer = make_trainer(cfg, model, args, train_ds, collate, processor, family, eval_sets, out_dir, resume)
    log_data_plan(cfg, train_sets, train_ds, unit, args.world_size)
    t_train = time.time()
    trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    train_seconds = time.time() - t_train
    model, final = finish_model(trainer, processor, cfg, out_dir)
    summary = summarise(trainer, cfg, family, n_params, final, train_seconds)  # collective: every rank
    if not trainer.args.should_save:  # rank > 0: rank 0 evaluates and writes the report
        trainer.accelerator.wait_for_everyone()
        return {"summary": None, "eval": {}}
    metrics = evaluate_and_report(trainer, model, processor, family, cfg, eval_sets, summary, t0)
    trainer.accelerator.wait_for_everyone()
    return {"summary": summary, "eval": metrics}


def summarise(trainer, cfg: RunConfig, family, n_params: int, final: Path, train_seconds: float) -> dict:
    """The run summary; under torchrun the per-rank counters are summed first (every rank calls this)."""
    from cotrain.distributed import all_reduce_counts

    acc = trainer.accounting
    counters = {k: Counter({key: int(v) for key, v in all_reduce_counts(c).items()})
                for k, c in acc.counters().items()}
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
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
        "last_loss_by_task": acc.task_loss_history[-1] if acc.task_loss_history else {},
        "train_seconds": train_seconds,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "skipped": dict(counters["skip_counts"]),
        "skipped_total": sum(counters["skip_counts"].values()),
        "final_model": str(final),
    }
    if summary["skipped_total"] and trainer.args.should_save:
        log.warning("skipped %d bad samples during training: %s", summary["skipped_total"], summary["skipped"])
    return summary


def evaluate_and_report(trainer, model, processor, family, cfg: RunConfig, eval_sets, summary: dict,
                        t0: float) -> dict:
    """Held-out evaluation (same harness as ``cotrain eval``) and ``report.md``; rank 0 alone."""
    from cotrain.report import write_report

    out_dir = Path(cfg.train.output_dir)
    metrics: dict = {}
    predictions: list = []
    if cfg.eval.enabled and eval_sets and zero3(trainer):
        log.warning("held-out evaluation skipped: the ZeRO-3 model is partitioned across ranks; evaluate %s with "
                    "`cotrain predict` or `cotrain eval`", summary["final_model"])
    elif cfg.eval.enabled and eval_sets:
        from cotrain.eval.training import predictions_of, run_eval

        metrics = run_eval(model, processor, family, cfg.data, cfg.eval, eval_sets, out_dir / "eval")
        predictions = predictions_of(out_dir / "eval", metrics)
        for name, m in metrics.items():
            log.info("eval %-16s %s", name, {k: v for k, v in m.items() if k != "skipped" or v})
    summary["total_seconds"] = time.time() - t0
    wanted = {(p.dataset, p.record_id) for p in predictions}  # only what the report draws: no full pass
    records_by_id = {(ld.cfg.name, str(r["id"])): r for ld in eval_sets
                     for r in ld.records[:cfg.eval.max_samples] if (ld.cfg.name, str(r["id"])) in wanted}
    write_report(out_dir, summary=summary, metrics=metrics, log_history=trainer.state.log_history,
                 predictions=predictions, records_by_id=records_by_id,
                 image_roots={ld.cfg.name: ld.cfg.image_root for ld in eval_sets}, n_visualise=cfg.eval.n_visualise)
    log.info("report written to %s (%.0f s in all)", out_dir / "report.md", summary["total_seconds"])
    return metrics
