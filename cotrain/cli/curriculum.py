"""Curriculum difficulty scores: ``cotrain curriculum score --records R --image-root D --out scores.jsonl ...``.

    # both lessons, with a warm-up run of a CLIP recipe (its trained model is also lesson 1's encoder)
    cotrain curriculum score --records ir_train.jsonl --image-root /data --out scores.jsonl \\
        --warmup data_recipes/irgpt_warmup_demo.yaml
    # lesson 1 from a CLIP image tower; lesson 2 from two existing checkpoints
    cotrain curriculum score --records R --image-root D --out S --encoder /ckpt/clip --before A --after B

Writes the score file that a dataset's ``curriculum.scores`` reads (README "Curriculum") and prints
the summary (MMD^2, bandwidth, share of alpha > 0, mean weight, skips).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from cotrain.errors import CotrainError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cotrain curriculum", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("score", help="difficulty scores of IR records (both lessons)")
    s.add_argument("--records", required=True, help="IR records (triplet, or captioning with an IR image)")
    s.add_argument("--image-root", required=True)
    s.add_argument("--out", required=True, help="score file (JSON lines) to write")
    s.add_argument("--encoder", default=None, help="CLIP checkpoint whose image tower gives lesson 1's features")
    s.add_argument("--before", default=None, help="lesson 2: CLIP checkpoint before the warm-up")
    s.add_argument("--after", default=None, help="lesson 2: CLIP checkpoint after the warm-up")
    s.add_argument("--warmup", default=None, help="lesson 2: a model.kind=clip recipe to run as the warm-up "
                   "(one of its checkpoints is also the lesson 1 encoder unless --encoder is given)")
    s.add_argument("--encoder-from", choices=("after", "before"), default="after",
                   help="with --warmup and no --encoder: which warm-up checkpoint gives lesson 1's image tower "
                   "(default: after, the trained one)")
    s.add_argument("--warmup-dir", default=None, help="where the warm-up run goes (default: beside --out)")
    s.add_argument("--visible-records", default=None, help="visible references for lesson 1 (default: the RGB "
                   "images of triplet records)")
    s.add_argument("--visible-root", default=None)
    s.add_argument("--bandwidth", type=float, default=None, help="Gaussian kernel sigma (default: median heuristic x --bandwidth-scale)")
    s.add_argument("--bandwidth-scale", type=float, default=1.0,
                   help="multiplier of the median-heuristic sigma (default 1; below 1 a more local kernel)")
    s.add_argument("--max-references", type=int, default=20000)
    s.add_argument("--texts", choices=("all", "ir", "first"), default="all",
                   help="lesson 2: the texts each IR image is paired with; a record's loss is the mean over them "
                   "(all: ir_captions then captions, the default; ir: ir_captions; first: one caption)")
    s.add_argument("--pair-batch", type=int, default=256, help="lesson 2: pairs per contrastive batch (default 256)")
    s.add_argument("--knobs", default=None, help="knobs.jsonl of the synthetic IR difficulty set: also print "
                   "Spearman's rho of each lesson against each knob")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-progress", action="store_true")
    s.add_argument("overrides", nargs="*", help="key=value overrides of the --warmup recipe")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from pathlib import Path

    from cotrain.curriculum.score import run_warmup, score_difficulty
    from cotrain.files import write_jsonl_atomic
    from cotrain.records import read_records

    try:
        before, after, encoder = args.before, args.after, args.encoder
        if args.warmup:
            if before or after:
                raise CotrainError("--warmup runs the warm-up itself; drop --before / --after")
            before, after = run_warmup(args.warmup, args.overrides,
                                       args.warmup_dir or Path(args.out).with_suffix("").as_posix() + "_warmup")
            encoder = encoder or (after if args.encoder_from == "after" else before)
        visible = read_records(args.visible_records) if args.visible_records else None
        rows, summary = score_difficulty(
            read_records(args.records), args.image_root, encoder=encoder, before=before, after=after,
            visible_records=visible, visible_root=args.visible_root, bandwidth=args.bandwidth,
            bandwidth_scale=args.bandwidth_scale, texts=args.texts, pair_batch=args.pair_batch,
            max_references=args.max_references, seed=args.seed, progress=not args.no_progress)
        write_jsonl_atomic(args.out, rows)
    except CotrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.knobs:
        from cotrain.curriculum.check import knob_agreement, read_knobs

        summary["spearman"] = knob_agreement(rows, read_knobs(args.knobs))
    print(json.dumps(summary, indent=1))
    print(f"wrote {len(rows)} scores to {args.out}")
    return 0
