"""A ``model.kind: clip`` run: triplet records -> CLIP model -> ContrastiveTrainer -> final model -> retrieval.

``run(cfg)`` in order:

1. ``cotrain.training.recipe.setup_data`` (synthetic data, files, every record validated), then
   every record checked to be a triplet (with IR-aware captions when the setting uses them);
2. the resume checkpoint resolved and checked, as for a VLM run;
3. the CLIP model: ``model.path`` (a local transformers CLIP checkpoint) or a tiny random one;
4. the weighted, seeded mixture (``cotrain.data.dataset.TrainingDataset`` with ``TripletBuilder``);
5. ``ContrastiveTrainer`` (incomplete last batches dropped: a batch is its own set of negatives);
6. the final model + processor saved atomically to ``output_dir/final``;
7. on rank 0, retrieval on every eval dataset (``cotrain.contrastive.evaluate``), ``metrics.json``
   and ``report.md``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import yaml

from cotrain.config import RunConfig, config_to_dict
from cotrain.errors import ConfigError

log = logging.getLogger("cotrain")


def _check_global_batch(cfg: RunConfig, world: int) -> None:
    if cfg.train.batch_size * world < 2:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} on {world} rank(s) gives a global batch of 1: "
                          "InfoNCE needs at least one negative. Set train.batch_size >= 2")


def save_final_clip(model, processor, out_dir: Path) -> Path:
    from cotrain.files import replace_dir

    tmp = out_dir / "final.tmp"
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    model.save_pretrained(str(tmp))
    processor.save(tmp)
    return replace_dir(tmp, out_dir / "final")


def run(cfg: RunConfig) -> dict:
    """Train and evaluate a CLIP model; returns ``{"summary", "eval"}`` on rank 0 (``summary`` None elsewhere)."""
    import torch

    from cotrain.contrastive.data import TripletBuilder, check_triplet_sets, collate_triplets
    from cotrain.contrastive.model import build_clip
    from cotrain.contrastive.trainer import ContrastiveTrainer
    from cotrain.data.dataset import TrainingDataset
    from cotrain.training.callbacks import EpochCallback, LiveLog
    from cotrain.training.checkpoint import check_resume_fingerprint, clean_staging, resolve_resume
    from cotrain.training.recipe import optimizer_step_samples, setup_data, setup_logging, training_arguments

    out_dir = Path(cfg.train.output_dir)
    setup_logging(out_dir)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    t0 = time.time()
    clip = cfg.model.clip
    train_sets, eval_sets = setup_data(cfg)
    check_triplet_sets(train_sets, clip.supervision)
    check_triplet_sets(eval_sets, "original", "data.eval_datasets")
    clean_staging(out_dir / "checkpoints")
    resume = resolve_resume(cfg)
    torch.manual_seed(cfg.train.seed)
    model, processor = build_clip(cfg)
    train_ds = TrainingDataset(train_sets, TripletBuilder(processor, clip.supervision, cfg.data.seed), cfg.data,
                               curriculum_step=optimizer_step_samples(cfg))
    args = training_arguments(cfg, out_dir, drop_last=True)
    _check_global_batch(cfg, args.world_size)
    live_log = out_dir / "log_history.jsonl"
    if resume is None and live_log.exists():
        live_log.unlink()
    trainer = ContrastiveTrainer(model=model, args=args, train_dataset=train_ds,
                                 data_collator=collate_triplets(processor), run_cfg=cfg, processor=processor,
                                 callbacks=[EpochCallback(train_ds), LiveLog(live_log)])
    if resume is not None:
        check_resume_fingerprint(resume, trainer.sampler_state())
        log.info("resuming from %s", resume)
    n_params = sum(p.numel() for p in model.parameters())
    for name, m in train_ds.sampler.realised_mix(0).items():
        log.info("mix %-16s records=%-7d weight=%.2f samples=%d", name, m["records"], m["weight"], m["samples"])
    log.info("CLIP %s: %.2fM parameters, supervision %s, global batch %d", cfg.model.path or "tiny random",
             n_params / 1e6, clip.supervision, cfg.train.batch_size * args.world_size)
    t_train = time.time()
    trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    train_seconds = time.time() - t_train
    if not trainer.args.should_save:
        trainer.accelerator.wait_for_everyone()
        return {"summary": None, "eval": {}}
    final = save_final_clip(trainer.model, processor, out_dir)
    summary = _summary(trainer, cfg, n_params, final, train_seconds)
    metrics = evaluate_sets(trainer.model, processor, eval_sets, cfg.eval.max_samples)
    summary["total_seconds"] = time.time() - t0
    write_clip_report(out_dir, summary, metrics)
    trainer.accelerator.wait_for_everyone()
    return {"summary": summary, "eval": metrics}


def _summary(trainer, cfg: RunConfig, n_params: int, final: Path, train_seconds: float) -> dict:
    acc = trainer.accounting
    history = trainer.state.log_history
    losses = [h for h in history if "loss" in h]
    return {
        "run_name": cfg.run_name, "model": cfg.model.path or f"tiny random CLIP (width {cfg.model.clip.hidden_size})",
        "kind": "clip", "supervision": cfg.model.clip.supervision, "parameters": n_params,
        "steps": trainer.state.global_step, "samples_seen": acc.samples_seen,
        "samples_by_dataset": dict(acc.samples_by_dataset), "train_seconds": train_seconds,
        "first_loss": losses[0]["loss"] if losses else None, "last_loss": losses[-1]["loss"] if losses else None,
        "last_terms": {k: v for k, v in (losses[-1] if losses else {}).items() if k.startswith("loss/")},
        "truncated_captions": trainer.processor.truncated, "skipped": dict(acc.skip_counts),
        "skipped_total": sum(acc.skip_counts.values()), "final_model": str(final),
    }


def evaluate_sets(model, processor, eval_sets: list, max_samples: int | None) -> dict:
    """Retrieval metrics of each eval dataset (its first ``max_samples`` records)."""
    from cotrain.contrastive.evaluate import evaluate_triplets

    metrics = {}
    for ld in eval_sets:
        records = list(ld.records[:max_samples] if max_samples else ld.records)
        metrics[ld.cfg.name] = evaluate_triplets(model, processor, records, ld.cfg.image_root)
        m = metrics[ld.cfg.name]
        log.info("eval %-16s n=%d mean R %.2f (random %.2f)", ld.cfg.name, m["n"], m.get("mean_recall", float("nan")),
                 m.get("chance_mean_recall", float("nan")))
    return metrics


def write_clip_report(out_dir: Path, summary: dict, metrics: dict) -> None:
    from cotrain.contrastive.evaluate import retrieval_table
    from cotrain.files import write_json_atomic, write_text_atomic

    write_json_atomic(out_dir / "metrics.json", {"summary": summary, "eval": metrics})
    lines = [f"# {summary['run_name']}: contrastive RGB / IR / text training", "",
             f"- model: {summary['model']}, {summary['parameters'] / 1e6:.2f}M parameters; supervision "
             f"`{summary['supervision']}`",
             f"- {summary['steps']} steps, {summary['samples_seen']} triplets, {summary['train_seconds']:.0f} s training; "
             f"loss {summary['first_loss']} -> {summary['last_loss']}",
             f"- last loss terms: {summary['last_terms']}",
             f"- captions cut to the text length: {summary['truncated_captions']}; skipped samples: "
             f"{summary['skipped'] or 'none'}", f"- final model: `{summary['final_model']}`", "",
             "## Held-out retrieval (percent; ties pessimistic)", "", retrieval_table(metrics)]
    write_text_atomic(out_dir / "report.md", "\n".join(lines))
