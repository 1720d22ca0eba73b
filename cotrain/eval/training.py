"""Evaluation inside a training run, through the same harness as ``cotrain eval``.

``benchmarks_for`` turns the recipe's ``data.eval_datasets`` into benchmarks (with the training
class lists, pixel limits and prompt options, so prompts are the ones the model trains on);
``live_backend`` wraps the model being trained in the HF backend; ``PeriodicEval`` runs them every
``eval.every_steps`` optimizer steps and logs the headline numbers next to the loss
(``eval/<dataset>/<metric>`` in ``log_history``). Under torchrun every rank answers its share.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cotrain.eval.harness import EvalOptions, evaluate, read_rows
from cotrain.eval.registry import TASK_METRIC, Benchmark
from cotrain.eval.summary import LOGGED_KEYS
from cotrain.resolution import PixelLimits

log = logging.getLogger(__name__)

MIN_NEW_TOKENS = {"detection": 256, "captioning": 64, "mixed": 256}
"""Generation limit at least this long for tasks whose answers are long."""

def benchmarks_for(eval_sets, eval_cfg) -> list[Benchmark]:
    """One benchmark per eval dataset: its records, options and the class list shared with training."""
    out = []
    for ld in eval_sets:
        # the whole file decides (the harness declares the task to load_dataset, which checks every record)
        tasks = {ld.cfg.task} if ld.cfg.task else {r["task"] for r in ld.records}
        task = next(iter(tasks)) if len(tasks) == 1 else "mixed"
        if task not in TASK_METRIC:
            log.warning("eval dataset %r: task %r has no metric; not evaluated", ld.cfg.name, task)
            continue
        limit = min(eval_cfg.max_samples, ld.cfg.max_samples or eval_cfg.max_samples)
        # long answers (object lists, captions) need room, or every answer is scored cut off
        tokens = max([eval_cfg.max_new_tokens, *(MIN_NEW_TOKENS.get(t, 0) for t in ({task} | tasks))])
        options = {"box_format": ld.cfg.box_format, "prompt_style": ld.cfg.prompt_style,
                   "max_new_tokens": tokens, "max_samples": limit}
        if ld.classes:
            options["classes"] = list(ld.classes)
        for key in ("min_pixels", "max_pixels", "composite"):
            if getattr(ld.cfg, key) is not None:
                options[key] = getattr(ld.cfg, key)
        if ld.cfg.sensor_branch is not None:
            options["sensor_branch"] = asdict(ld.cfg.sensor_branch)
        out.append(Benchmark(name=ld.cfg.name, records=ld.cfg.records, image_root=ld.cfg.image_root, task=task,
                             options=options, description="held-out split of the recipe", source="recipe"))
    return out


def live_backend(model, processor, family, data_cfg, batch_size: int):
    """HF backend on the in-memory model, with the recipe's pixel limits (what training used)."""
    from cotrain.inference.hf import HFBackend

    limits = PixelLimits(data_cfg.min_pixels, data_cfg.max_pixels, family.factor)
    return HFBackend(model, processor, family, batch_size=batch_size, limits=limits)


def headline(metrics: dict[str, dict]) -> dict[str, float]:
    """``{"eval/<bench>/<key>": value}`` for the numbers worth a log line."""
    out = {}
    for name, m in metrics.items():
        groups = m["by_task"].items() if "by_task" in m else [("", m)]
        for task, sub in groups:
            prefix = f"eval/{name}/" + (f"{task}/" if task else "")
            out.update({prefix + k: float(sub[k]) for k in LOGGED_KEYS if isinstance(sub.get(k), (int, float))})
    return out


def run_eval(model, processor, family, data_cfg, eval_cfg, eval_sets, out_dir: Path, *, rank: int = 0,
             world_size: int = 1, max_samples: int | None = None, tag: str = "final",
             progress: bool = True) -> dict[str, dict]:
    """Evaluate the live model on the recipe's eval datasets; metrics on rank 0 ({} elsewhere)."""
    benches = benchmarks_for(eval_sets, eval_cfg)
    if max_samples is not None:
        for b in benches:
            b.options["max_samples"] = min(max_samples, b.options["max_samples"])
    backend = live_backend(model, processor, family, data_cfg, eval_cfg.batch_size)
    # the model changes between calls: never reuse answers cached by an earlier evaluation
    opts = EvalOptions(max_new_tokens=eval_cfg.max_new_tokens, seed=data_cfg.seed, overwrite=True, progress=progress,
                       model_key={"model": f"live model ({tag})"})
    return evaluate(benches, backend, out_dir, opts, rank=rank, world_size=world_size)


@dataclass
class Prediction:
    """One evaluated record, as the run report draws it."""

    dataset: str
    record_id: str
    task: str
    prompt: str
    response: str
    correct: bool | None
    details: dict = field(default_factory=dict)


def predictions_of(out_dir: Path, metrics: dict[str, dict]) -> list[Prediction]:
    """The harness rows as the run report's ``Prediction`` objects (what it draws on images)."""
    preds = []
    for name in metrics:
        for r in read_rows(Path(out_dir) / name / "results.jsonl"):
            if r.get("error"):
                continue
            s = r.get("score", {})
            correct = s.get("correct") if "correct" in s else (s["iou"] >= 0.5 if "iou" in s else None)
            details = dict(s)
            preds.append(Prediction(name, r["id"], r["task"], r["prompt"], r["response"], correct, details))
    return preds


def _trainer_callback_base():
    from transformers import TrainerCallback

    return TrainerCallback


class PeriodicEval(_trainer_callback_base()):
    """Every ``every_steps`` optimizer steps: evaluate on the eval datasets and log next to the loss."""

    def __init__(self, trainer, processor, family, data_cfg, eval_cfg, eval_sets, out_dir: Path):
        self.trainer, self.processor, self.family = trainer, processor, family
        self.data_cfg, self.eval_cfg, self.eval_sets, self.out_dir = data_cfg, eval_cfg, eval_sets, Path(out_dir)

    def on_step_end(self, args, state, control, **kwargs):
        every = self.eval_cfg.every_steps
        if not every or state.global_step % every:
            return control
        step = state.global_step
        metrics = run_eval(self.trainer.model, self.processor, self.family, self.data_cfg, self.eval_cfg,
                           self.eval_sets, self.out_dir / f"step-{step}", rank=args.process_index,
                           world_size=args.world_size, max_samples=self.eval_cfg.every_steps_max_samples,
                           tag=f"step {step}", progress=False)
        if args.process_index == 0 and metrics:
            numbers = headline(metrics)
            log.info("eval at step %d: %s", step, {k: round(v, 4) for k, v in numbers.items()})
            # Trainer.log clears control.should_log (its on_log event does), which would drop this
            # step's loss line: keep the flags the flow callback set for this step
            flags = (control.should_log, control.should_save, control.should_evaluate)
            self.trainer.log(numbers)
            control.should_log, control.should_save, control.should_evaluate = flags
        return control
