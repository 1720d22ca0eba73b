"""torchrun worker for tests/cotrain/test_distributed.py (2 CPU processes, gloo).

Usage: ``torchrun --standalone --nproc_per_node 2 dist_worker.py MODE SPEC_JSON``

* ``recipe``: ``cotrain.training.recipe.run`` on the recipe dict in SPEC_JSON; prints the logged
  per-step losses and ``all_reduce_counts`` of the trainer's per-rank sample counts.
* ``clip``: ``cotrain.contrastive.recipe.run`` on the recipe dict; rank 0 prints the logged losses and
  the logged global batch sizes.
* ``textonly``: drives cotrain's Trainer class directly on a hand-built dataset whose order is
  fixed (a SequentialSampler), so one rank is known to get micro-batches without any image;
  SPEC_JSON gives ``deepspeed`` (preset or null = DDP), ``max_steps`` and ``output_dir``.

Each rank prints one line ``DIST_RESULT {json}``; the test parses those instead of trusting the
exit code. Every path ends with a barrier and ``destroy_process_group`` (gloo otherwise may
abort at exit).
"""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist

PREFIX = "DIST_RESULT "


def _count_keepalive() -> dict:
    """Count text-only micro-batches and dummy vision passes on this rank.

    train.py imports ``vision_keepalive`` at call time and both keep-alive paths call
    ``_dummy_features`` through the module, so wrapping the module attributes sees every use.
    """
    import cotrain.distributed as cd

    stats = {"micro_batches": 0, "text_only_batches": 0, "loss_terms": 0, "dummy_vision_runs": 0}
    real_term, real_dummy = cd.vision_keepalive, cd._dummy_features

    def term(model, inputs):
        extra = real_term(model, inputs)
        stats["micro_batches"] += 1
        stats["text_only_batches"] += int(inputs.get("pixel_values") is None)
        stats["loss_terms"] += int(extra is not None)
        return extra

    def dummy(tower):
        stats["dummy_vision_runs"] += 1
        return real_dummy(tower)

    cd.vision_keepalive, cd._dummy_features = term, dummy
    return stats


def run_recipe(spec: dict) -> dict:
    from cotrain.config import load_config
    from cotrain.distributed import all_reduce_counts
    import cotrain.training.trainer as ct
    from cotrain.training.recipe import run as run_training

    stats = _count_keepalive()
    trainers = []
    real = ct.CotrainTrainer

    class Spy(real):  # keep the trainer to read its per-rank counters after the run
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            trainers.append(self)

    ct.CotrainTrainer = Spy
    run_training(load_config(raw=spec["recipe"]))  # rank > 0 returns no summary
    trainer = trainers[0]
    history = trainer.state.log_history
    local = dict(trainer.accounting.samples_by_dataset)
    plugin = trainer.accelerator.state.deepspeed_plugin if trainer.is_deepspeed_enabled else None
    return {"losses": [h["loss"] for h in history if "loss" in h],
            "steps": trainer.state.global_step, "zero_stage": plugin.zero_stage if plugin else 0,
            "local_samples": local, "summed_samples": all_reduce_counts(local),
            "keepalive": stats}


def run_clip(spec: dict) -> dict:
    """``cotrain.contrastive.recipe.run`` on the recipe of SPEC_JSON; the logged losses and global batches."""
    from cotrain.config import load_config
    from cotrain.contrastive.recipe import run as run_clip_training

    cfg = load_config(raw=spec["recipe"])
    run_clip_training(cfg)
    rows = [json.loads(x) for x in open(os.path.join(cfg.train.output_dir, "log_history.jsonl"))] \
        if int(os.environ.get("RANK", 0)) == 0 else []
    return {"losses": [r["loss"] for r in rows if "loss" in r],
            "global_batch": sorted({r["global_batch"] for r in rows if "global_batch" in r})}


def _samples(encoder, family) -> tuple[list[dict], list[dict]]:
    """(samples with one image, text-only samples), encoded as the training dataset would."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    side = 2 * family.factor  # 2x2 merged tokens
    with_image, text_only = [], []
    for i in range(6):
        im = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
        conv = [{"role": "user", "content": [{"type": "image", "index": 0},
                                             {"type": "text", "text": f"What is in scene {i}?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "farmland" if i % 2 else "harbour"}]}]
        s = encoder.encode(conv, [im])
        with_image.append({**s, "dataset": "img", "task": "vqa", "skipped": []})
        conv = [{"role": "user", "content": [{"type": "text", "text": f"Say a word about item {i}."}]},
                {"role": "assistant", "content": [{"type": "text", "text": "river" if i % 2 else "road"}]}]
        s = encoder.encode(conv, [])
        text_only.append({**s, "dataset": "txt", "task": "conversation", "skipped": []})
    return with_image, text_only


def run_textonly(spec: dict) -> dict:
    from torch.utils.data import SequentialSampler
    from transformers import TrainingArguments

    from cotrain.config import ModelConfig, RunConfig, TinyModelConfig, TrainConfig
    from cotrain.data.encoder import ChatEncoder
    from cotrain.distributed import install_vision_keepalive, resolve_deepspeed_config
    from cotrain.data.collate import make_collate, pad_id_of
    from cotrain.model.build import build_model
    from cotrain.training.trainer import CotrainTrainer

    # dataclasses directly: load_config insists on datasets, and this run brings its own samples
    cfg = RunConfig(model=ModelConfig(tiny=TinyModelConfig(hidden_size=64)),
                    train=TrainConfig(output_dir=spec["output_dir"], batch_size=2, max_steps=spec["max_steps"]))
    torch.manual_seed(0)
    model, processor, family = build_model(cfg)
    img, txt = _samples(ChatEncoder(processor, family), family)
    # global batches of 2 in this order; rank r gets batches r, r+2, ...: rank 1 gets two text-only
    # batches (1 and 3), rank 0 image batches and one mixed batch (2)
    order = [img[0], img[1], txt[0], txt[1], img[2], txt[2], txt[3], txt[4]]

    class Fixed(list):
        pass

    data = Fixed(order)
    data.sampler = SequentialSampler(data)
    stats = _count_keepalive()
    ds = resolve_deepspeed_config(spec["deepspeed"], cfg.train) if spec["deepspeed"] else None
    args = TrainingArguments(
        output_dir=spec["output_dir"], deepspeed=ds, per_device_train_batch_size=2, gradient_accumulation_steps=1,
        learning_rate=1e-3, lr_scheduler_type="constant", max_steps=spec["max_steps"], logging_steps=1,
        save_strategy="no", seed=0, use_cpu=True, dataloader_pin_memory=False, remove_unused_columns=False,
        report_to="none", disable_tqdm=True)
    if spec.get("hook", True):
        install_vision_keepalive(model)  # the wiring train.py needs under DeepSpeed (see the report)
    trainer = CotrainTrainer(model=model, args=args, train_dataset=data, run_cfg=cfg,
                             data_collator=make_collate(pad_id_of(processor)))
    trainer.train()
    return {"losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
            "steps": trainer.state.global_step, "keepalive": stats,
            "datasets_seen": dict(trainer.accounting.samples_by_dataset)}


def main() -> None:
    mode, spec = sys.argv[1], json.loads(sys.argv[2])
    result = {"mode": mode, "rank": int(os.environ.get("RANK", 0))}
    try:
        modes = {"recipe": run_recipe, "clip": run_clip, "textonly": run_textonly}
        result.update(modes[mode](spec))
        result["ok"] = True
    except Exception as e:  # report the failure on the result line; the test shows it
        import traceback

        traceback.print_exc()
        result.update(ok=False, error=f"{type(e).__name__}: {e}")
    print(PREFIX + json.dumps(result), flush=True)
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
