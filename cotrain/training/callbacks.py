"""What a run counts and logs beside the loss: per-task accounting, the epoch hand-off, the live log.

``RunAccounting`` keeps the run's numbers: skipped samples by reason, samples and tokens per
dataset and per task, the token-mean loss per task between two log steps (logged as
``loss/<task>``), and per-step throughput fields (tokens, supervised tokens, samples, fill). The
Trainer feeds it each batch; it never touches the optimised loss. ``EpochCallback`` tells the
dataset which epoch starts; ``LiveLog`` appends every log line to a JSONL file as it happens, so a
killed run keeps its curve.

Must not compute the loss or change what the model sees.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

from transformers import TrainerCallback

COUNTERS = ("samples_by_dataset", "samples_by_task", "tokens_by_dataset", "label_tokens_by_task", "skip_counts")
"""The per-rank counters a run sums across ranks for its summary."""


class RunAccounting:
    """Counters of one rank; see the module docstring."""

    def __init__(self):
        self.skip_counts: Counter = Counter()
        self.samples_seen = 0
        self.samples_by_dataset: Counter = Counter()
        self.samples_by_task: Counter = Counter()
        self.tokens_by_dataset: Counter = Counter()
        self.label_tokens_by_task: Counter = Counter()
        self.task_loss_history: list[dict] = []
        self._task_loss: Counter = Counter()
        self._task_tokens: Counter = Counter()
        self._window: Counter = Counter(steps=0, samples=0, tokens=0, label_tokens=0, slots=0)
        self._weights: list[float] = []

    def count_step(self, batches: list[dict]) -> int:
        """Account the micro-batches of one optimizer step; returns the step's sample count."""
        from cotrain.data.collate import token_samples

        n = sum(len(b.get("dataset") or []) for b in batches)
        self._window["steps"] += 1
        self._window["samples"] += n
        for b in batches:
            self._window["tokens"] += int((token_samples(b) >= 0).sum())
            self._window["label_tokens"] += int((b["labels"][:, 1:] != -100).sum())
            self._window["slots"] += int(b["input_ids"].numel())
        return n

    def count_batch(self, inputs: dict, owner) -> None:
        """Account one micro-batch (pops its skip records); ``owner`` = sample number of each token."""
        import torch

        for reason, _ds, _rid in inputs.pop("skipped", []):
            self.skip_counts[reason] += 1
        names = inputs.get("dataset", [])
        self.samples_seen += len(names)
        self.samples_by_dataset.update(names)
        self.samples_by_task.update(inputs.get("task", []))
        counts = torch.bincount(owner[owner >= 0].reshape(-1).cpu(), minlength=len(names)).tolist()
        for name, n in zip(names, counts):
            self.tokens_by_dataset[name] += int(n)

    def count_task_losses(self, tasks: list, sums: list[float], tokens: list[int]) -> None:
        """Add per-sample loss sums and supervised token counts to their tasks."""
        for task, total, n in zip(tasks, sums, tokens):
            self._task_loss[task] += total
            self._task_tokens[task] += int(n)
            self.label_tokens_by_task[task] += int(n)

    def count_weights(self, weights: list[float]) -> None:
        """Per-sample loss weights of a micro-batch (their mean is logged as ``loss_weight_mean``)."""
        self._weights.extend(weights)

    def log_fields(self, step: int) -> dict:
        """Fields to add to a loss log line (then reset the window): ``loss/<task>`` and throughput."""
        fields: dict = {}
        if self._weights:
            fields["loss_weight_mean"] = round(sum(self._weights) / len(self._weights), 4)
            self._weights.clear()
        if self._task_tokens:
            per_task = {t: self._task_loss[t] / n for t, n in self._task_tokens.items() if n}
            fields.update({f"loss/{t}": round(v, 4) for t, v in sorted(per_task.items())})
            self.task_loss_history.append({"step": step, **per_task})
            self._task_loss.clear()
            self._task_tokens.clear()
        w = self._window
        if w["steps"]:
            # per rank: tokens (real, not padding) and supervised tokens per optimizer step
            fields["tokens_per_step"] = round(w["tokens"] / w["steps"], 1)
            fields["label_tokens_per_step"] = round(w["label_tokens"] / w["steps"], 1)
            fields["samples_per_step"] = round(w["samples"] / w["steps"], 2)
            fields["fill"] = round(w["tokens"] / max(w["slots"], 1), 4)
            for key in w:  # (Counter.update would add, not reset)
                w[key] = 0
        return fields

    def counters(self) -> dict[str, Counter]:
        return {name: getattr(self, name) for name in COUNTERS}


class EpochCallback(TrainerCallback):
    """Tell the dataset which epoch starts: fresh fractional draws, templates and resizes."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        # floor, not round: a mid-epoch checkpoint resumes with a fractional state.epoch (0.6 -> 0)
        self.dataset.set_epoch(math.floor((state.epoch or 0) + 1e-9))


class LiveLog(TrainerCallback):
    """Append every log line, with its step, to a JSONL file (main process only; a resumed run appends)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and args.should_save:
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": state.global_step, **logs}) + "\n")
