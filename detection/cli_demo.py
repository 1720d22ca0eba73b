"""Make the inputs of the detection demo from the synthetic data (`cotrain make-demo-data`):

- ``responses_oracle.jsonl``: the test-split ground truth written as a VLM answer at original
  resolution. It must score APnc50 = 1.000: a hand check of the parse -> IoU -> AP path;
- ``responses_tiny.jsonl``: responses of a trained model (``--model``, e.g. outputs/demo/final);
- ``detector_val/`` and ``detector_test/``: DOTA Task1 files of a simulated scored detector
  (jittered true positives, misses, false positives), val for threshold calibration, test for eval.

    cotrain make-demo-detections --data-root outputs/demo_data --model outputs/demo/final --out outputs/det_demo
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cotrain.errors import CotrainError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default="outputs/demo_data")
    p.add_argument("--model", default=None, help="saved model for VLM responses (skipped when absent)")
    p.add_argument("--max-pixels", type=int, default=50176, help="pixel budget the model was trained with")
    p.add_argument("--max-samples", type=int, default=120)
    p.add_argument("--out", default="outputs/det_demo")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from cotrain.dota.formats import write_task1_dir
    from detection.records import gts_from_records, oracle_responses
    from detection.synthetic import simulate_detector

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    recs = Path(args.data_root) / "records"
    try:
        for split in ("val", "test"):
            gts, classes, by_id = gts_from_records(str(recs / f"syn_det_{split}.jsonl"))
            sizes = {k: (r["images"][0]["width"], r["images"][0]["height"]) for k, r in by_id.items()}
            dets = simulate_detector(gts, classes, sizes, seed=args.seed + (split == "test"))
            write_task1_dir(out / f"detector_{split}", dets, classes)
            print(f"detector_{split}: {sum(map(len, dets.values()))} detections on {len(dets)} images")
            if split == "test":
                rows = oracle_responses(by_id)
                (out / "responses_oracle.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
                print(f"responses_oracle.jsonl: {len(rows)} responses")
        if args.model:
            from cotrain.eval.harness import predict_records

            n = predict_records(args.model, str(recs / "syn_det_test.jsonl"), args.data_root,
                                 str(out / "responses_tiny.jsonl"), box_format="quad", max_pixels=args.max_pixels,
                                 max_samples=args.max_samples, max_new_tokens=192)
            print(f"responses_tiny.jsonl: {n} responses from {args.model}")
    except CotrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
