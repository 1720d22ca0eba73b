"""Evaluate a saved model on benchmarks: per-task metrics, results JSONL, metrics JSON, report.md.

    cotrain eval --model outputs/demo/final --bench demo
    cotrain eval --model CKPT --bench syn_cls,syn_vqa --max-samples 50 --out outputs/eval_demo
    cotrain eval --model CKPT --bench my_suite.yaml --backend vllm          # GPU machine with vLLM
    cotrain eval --model BASE --adapter outputs/run/adapter --bench aid --data-root /data/AID
    torchrun --nproc_per_node 8 -m cotrain eval --model CKPT --bench demo            # HF backend, one shard per rank

Resumable: answers are cached per sample under --out; rerunning the same command continues where it
stopped (--overwrite starts over). Benchmarks: ``demo`` (every synthetic split), ``syn_*`` names,
public names (``aid``, ``rsvqa_lr_test``, ... read from their standard files under --data-root), or a
YAML file (see README "Evaluation").
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from cotrain.errors import CotrainError


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="saved model directory (config.json + weights + processor files)")
    p.add_argument("--bench", required=True, help="benchmark name(s), comma-separated, or a YAML file")
    p.add_argument("--backend", default="hf", choices=("hf", "vllm"))
    p.add_argument("--adapter", default=None, help="LoRA adapter directory written by a cotrain LoRA run")
    p.add_argument("--out", default=None, help="output directory (default outputs/eval/<model name>)")
    p.add_argument("--data-root", default=None,
                   help="root of the demo data (default outputs/demo_data) or of a public benchmark's standard files")
    p.add_argument("--split", default="test", help="demo split to evaluate (test or val)")
    p.add_argument("--max-samples", type=int, default=None, help="first N records of each benchmark")
    p.add_argument("--batch-size", type=int, default=16, help="prompts per generate call (HF backend)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="default answer length limit")
    p.add_argument("--min-pixels", type=int, default=None, help="override the checkpoint's pixel budget")
    p.add_argument("--max-pixels", type=int, default=None, help="override the checkpoint's pixel budget")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16", "auto"))
    p.add_argument("--attn", default="sdpa", help="attention implementation (HF backend): sdpa | eager | flash_attention_2 | auto")
    p.add_argument("--seed", type=int, default=0, help="template seed of the prompt builders")
    p.add_argument("--overwrite", action="store_true", help="discard cached answers under --out")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s")
    from cotrain.eval.harness import EvalOptions, evaluate, weights_fingerprint
    from cotrain.eval.registry import resolve_benchmarks
    from cotrain.inference import load_backend, override_limits

    try:
        if world > 1:
            if args.backend != "hf":
                raise CotrainError("torchrun sharding is for the HF backend; vLLM batches on its own (tensor "
                                   "parallel inside one process): run it without torchrun")
            import torch
            import torch.distributed as dist

            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
            if torch.cuda.is_available():
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        def resolve():
            return resolve_benchmarks(args.bench, data_root=args.data_root or "outputs/demo_data", split=args.split,
                                      public_root=args.data_root,
                                      cache_dir=Path(args.out or "outputs/eval") / "_prepared")

        if world > 1:  # rank 0 converts public benchmarks once; the others then read its cache
            import torch.distributed as dist

            benches = resolve() if rank == 0 else None
            dist.barrier()
            benches = benches or resolve()
        else:
            benches = resolve()
        from cotrain.contrastive.model import is_clip_checkpoint

        out = Path(args.out or Path("outputs/eval") / Path(args.model).resolve().name)
        if is_clip_checkpoint(args.model):  # embeddings, not generation: the tri-modal retrieval route
            if world > 1:
                raise CotrainError("a CLIP checkpoint is evaluated in one process (embeddings are computed once); "
                                   "run cotrain eval without torchrun")
            from cotrain.contrastive.evaluate import evaluate_clip

            results = evaluate_clip(benches, args.model, out, max_samples=args.max_samples,
                                    batch_size=args.batch_size, progress=not args.no_progress)
            return _print_results(results, out)
        kwargs = {"adapter": args.adapter, "dtype": args.dtype, "batch_size": args.batch_size}
        if args.backend == "hf":
            kwargs["attn_implementation"] = args.attn
            if world > 1:
                import torch

                kwargs["device"] = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
        backend = load_backend(args.backend, args.model, **kwargs)
        override_limits(backend, args.min_pixels, args.max_pixels)
        opts = EvalOptions(max_samples=args.max_samples, max_new_tokens=args.max_new_tokens, seed=args.seed,
                           overwrite=args.overwrite, progress=not args.no_progress,
                           model_key={"model": weights_fingerprint(args.model),
                                      "adapter": weights_fingerprint(args.adapter), "backend": args.backend,
                                      "dtype": args.dtype})
        results = evaluate(benches, backend, out, opts, rank=rank, world_size=world)
    except CotrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        try:
            from cotrain.distributed import close_process_group

            close_process_group()
        except Exception:  # noqa: BLE001 - never mask the real outcome at shutdown
            pass
    return _print_results(results, out) if rank == 0 else 0


def _print_results(results: dict, out: Path) -> int:
    from cotrain.eval.summary import flat_results

    print(f"wrote {out / 'report.md'}, {out / 'metrics.json'}")
    print("EVAL_RESULT " + json.dumps({k: {m: v for m, v in r.items() if isinstance(v, (int, float))}
                                      for k, r in flat_results(results).items()}))
    return 0
