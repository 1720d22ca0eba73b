#!/usr/bin/env python
"""HF backend throughput: batched generation vs one request at a time, on the same prompts, in one run.

    cotrain bench eval [--model outputs/demo/final] [--samples 64] [--batch 16] [--max-new-tokens 16]

Builds ``--samples`` prompts from the demo benchmarks (classification, VQA, MCQ, grounding test splits,
interleaved) exactly as ``cotrain eval`` does, then times ``HFBackend.generate`` with
``batch_size=--batch`` (left padding, prompts sorted by length) against ``batch_size=1``. Prints
samples/s of each, their ratio, and the share of answers that are identical (greedy decoding should
give the same text either way; padding can flip a near-tie in float arithmetic).
Without ``--model`` (or when it does not exist) a tiny random Qwen2.5-VL checkpoint is written to a
temporary directory (its answers are noise, but the cost of generating them is the same).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_requests(backend, data_root: str, n: int, max_new_tokens: int):
    from cotrain.eval.harness import EvalOptions, build_request, prepare
    from cotrain.eval.registry import demo_benchmark
    from cotrain.inference.base import SamplingParams

    per = []
    for name in ("syn_cls", "syn_vqa", "syn_mcq", "syn_grounding"):
        p = prepare(demo_benchmark(name, data_root), backend, EvalOptions(max_samples=n, progress=False))
        per.append([build_request(p, i, rec)[0] for i, rec in enumerate(p.records)])
    reqs = [r for group in zip(*per) for r in group][:n]
    for k, r in enumerate(reqs):
        r.id = str(k)
        r.sampling = SamplingParams(max_new_tokens=max_new_tokens)
    return reqs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "outputs" / "demo" / "final"))
    ap.add_argument("--data-root", default=str(ROOT / "outputs" / "demo_data"))
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="timed passes per mode (best is reported)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from cotrain.data.synthetic import ensure_demo_data
    from cotrain.inference.hf import HFBackend

    ensure_demo_data(args.data_root)
    model_dir = Path(args.model)
    note = str(model_dir)
    if not (model_dir / "config.json").is_file():
        from cotrain.model.tiny import create_tiny_checkpoint

        model_dir = create_tiny_checkpoint(Path(tempfile.mkdtemp()) / "tiny", "qwen2_5_vl", seed=0, hidden_size=128)
        note = "tiny random qwen2_5_vl (hidden 128), --model not found"
    backend = HFBackend.from_checkpoint(model_dir, device="cpu", batch_size=args.batch)
    reqs = build_requests(backend, args.data_root, args.samples, args.max_new_tokens)
    backend.generate(reqs[: min(4, len(reqs))])  # warm-up (first-call allocations)

    results = {}
    for mode, bs in (("one_by_one", 1), ("batched", args.batch)):
        backend.batch_size = bs
        best, out = None, None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = backend.generate(reqs)
            dt = time.perf_counter() - t0
            best = dt if best is None else min(best, dt)
        results[mode] = {"seconds": best, "samples_per_s": len(reqs) / best,
                         "generated_tokens": sum(r.generated_tokens for r in out), "texts": [r.text for r in out]}
    same = sum(a == b for a, b in zip(results["one_by_one"]["texts"], results["batched"]["texts"])) / len(reqs)
    ratio = results["batched"]["samples_per_s"] / results["one_by_one"]["samples_per_s"]
    print(f"model: {note}; {len(reqs)} prompts (cls/vqa/mcq/grounding interleaved), max_new_tokens "
          f"{args.max_new_tokens}, {args.threads} threads, best of {args.repeats}")
    for mode in ("one_by_one", "batched"):
        r = results[mode]
        print(f"  {mode:<11} batch {1 if mode == 'one_by_one' else args.batch:>3}: {r['samples_per_s']:7.2f} samples/s "
              f"({r['seconds']:.2f} s, {r['generated_tokens']} tokens generated)")
    print(f"  batched / one-by-one: {ratio:.2f}x; identical answers: {same:.1%}")
    if args.json:
        figures = {m: {k: v for k, v in r.items() if k != "texts"} for m, r in results.items()}
        Path(args.json).write_text(json.dumps({**figures, "ratio": ratio, "identical": same, "model": note}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
