#!/usr/bin/env python
"""Training throughput on the demo mix: packed vs padded, in one run, on the same samples.

    cotrain bench train [--samples 320] [--batch 8] [--repeats 2]

Builds the demo recipe's data and tiny model, encodes the first ``--samples`` samples of epoch 0
once (data loading is not timed), then times forward + backward + AdamW step over all of them in
three layouts:

  baseline  padded micro-batches of ``--batch`` samples, the model's own loss over full logits
            (what a plain HF Trainer does)
  +logits   the same padded batches, logits only at supervised positions (cotrain's loss path)
  packed+mask  packs of <= data.max_length tokens (cotrain's plan), ``--batch`` packs per micro-batch,
            transformers' block-diagonal sdpa mask, logits only at supervised positions
  packed    the same packs with cotrain's per-sample sdpa (cotrain.model.varlen_sdpa): what
            ``data.packing=true`` runs on a machine without FlashAttention-2

and prints real (non-padding) tokens per second, the share of computed slots holding real tokens
(fill), and each layout's ratio to the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default=str(ROOT / "data_recipes" / "demo.yaml"))
    p.add_argument("--samples", type=int, default=320)
    p.add_argument("--batch", type=int, default=8, help="samples (padded) or packs (packed) per micro-batch")
    p.add_argument("--repeats", type=int, default=2, help="timed passes per layout (best is reported)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)

    import torch

    from cotrain.config import load_config
    from cotrain.data.collate import PaddingCollator, model_inputs
    from cotrain.data.dataset import SampleBuilder, TrainingDataset
    from cotrain.data.encoder import ChatEncoder
    from cotrain.data.collate import PackCollator
    from cotrain.data.packing import pack_fill, plan_packs
    from cotrain.model.selective_logits import loss_positions, supervised_logits
    from cotrain.data.collate import pad_id_of
    from cotrain.model.build import build_model
    from cotrain.training.recipe import setup_data

    torch.set_num_threads(args.threads)
    cfg = load_config(args.recipe)
    train_sets, _ = setup_data(cfg)
    model, processor, family = build_model(cfg)
    builder = SampleBuilder(ChatEncoder(processor, family), family, cfg.data)
    ds = TrainingDataset(train_sets, builder, cfg.data)
    samples = []
    for i in ds.sampler.epoch_order(0).tolist():
        sample, _ = ds.build_exact(i)
        if sample is not None:
            samples.append(sample)
        if len(samples) == args.samples:
            break
    lengths = [int(s["input_ids"].numel()) for s in samples]
    pad = pad_id_of(processor)
    merge = int(model.config.vision_config.spatial_merge_size)
    padded = [PaddingCollator(pad_token_id=pad)(samples[i:i + args.batch]) for i in range(0, len(samples), args.batch)]
    plan = plan_packs(lengths, cfg.data.max_length, seed=0, epoch=0)
    packs = [[samples[j] for j in p] for p in plan]
    pack_collate = PackCollator(pad_token_id=pad, spatial_merge_size=merge)
    packed = [pack_collate(packs[i:i + args.batch]) for i in range(0, len(packs), args.batch)]
    real = sum(lengths)

    def full_loss(batch):
        return model(**model_inputs(batch)).loss

    def selective_loss(batch):
        inputs = model_inputs(batch)
        need, target = loss_positions(inputs.pop("labels"))
        with supervised_logits(model, need):
            logits = model(**inputs).logits[0].float()
        return torch.nn.functional.cross_entropy(logits, target)

    def timed(batches, loss_fn):
        model.load_state_dict(state)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        best = float("inf")
        for _ in range(args.repeats + 1):  # the first pass warms up allocator and kernels
            t0 = time.perf_counter()
            for b in batches:
                loss = loss_fn(b)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            best = min(best, time.perf_counter() - t0)
        return best

    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    from cotrain.model.varlen_sdpa import register

    n_pad, n_pack = (sum(b["input_ids"].numel() for b in bs) for bs in (padded, packed))
    slots = {"baseline": n_pad, "+logits": n_pad, "packed+mask": n_pack, "packed": n_pack}
    seconds = {"baseline": timed(padded, full_loss), "+logits": timed(padded, selective_loss),
               "packed+mask": timed(packed, selective_loss)}
    model.set_attn_implementation(register())
    seconds["packed"] = timed(packed, selective_loss)
    print(f"{len(samples)} samples of the demo mix, {real} real tokens, max_length {cfg.data.max_length}; "
          f"{len(padded)} padded batches of {args.batch} vs {len(plan)} packs "
          f"(plan fill {pack_fill(lengths, plan, cfg.data.max_length):.3f}) in {len(packed)} batches of {args.batch}")
    print(f"{'layout':<12} {'seconds':>8} {'tokens/s':>9} {'fill':>6} {'vs baseline':>12}")
    out = {}
    for name in ("baseline", "+logits", "packed+mask", "packed"):
        tps = real / seconds[name]
        ratio = seconds["baseline"] / seconds[name]
        out[name] = {"seconds": seconds[name], "tokens_per_s": tps, "fill": real / slots[name], "ratio": ratio}
        print(f"{name:<12} {seconds[name]:>8.2f} {tps:>9.0f} {real / slots[name]:>6.3f} {ratio:>11.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
