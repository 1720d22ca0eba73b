"""Train a model on a data recipe: ``cotrain train [RECIPE.yaml] [key=value ...]``.

Without a recipe it runs the demo (data_recipes/demo.yaml): synthetic data is generated if
missing, a tiny random Qwen2.5-VL trains on CPU, and outputs/demo/report.md is written.
Under torchrun the same command trains on every rank.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cotrain.config import load_config
from cotrain.errors import CotrainError

DEFAULT_RECIPE = Path(__file__).resolve().parents[2] / "data_recipes" / "demo.yaml"
"""The demo recipe of this checkout (an editable install, as the README makes, keeps it beside the package)."""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", nargs="?", default=str(DEFAULT_RECIPE), help="recipe YAML (default: the demo)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.max_steps=20")
    p.add_argument("--validate", action="store_true",
                   help="check config, files and every record, then exit without training")
    args = p.parse_args(argv)
    # `cotrain train train.max_steps=5` (no recipe, only overrides) means: demo + overrides
    if "=" in args.recipe and not args.recipe.endswith((".yaml", ".yml")):
        args.overrides.insert(0, args.recipe)
        args.recipe = str(DEFAULT_RECIPE)
    try:
        cfg = load_config(args.recipe, args.overrides)
        if args.validate:
            from cotrain.training.recipe import validate_only

            for ld in validate_only(cfg):
                print(f"ok  {ld.cfg.name:<16} {len(ld.records):>7} records  {ld.cfg.records}")
            return 0
        if cfg.model.kind == "clip":  # contrastive RGB / IR / text training (cotrain.contrastive)
            from cotrain.contrastive.recipe import run as run_training
        else:
            from cotrain.training.recipe import run as run_training

        result = run_training(cfg)
    except CotrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from cotrain.distributed import close_process_group

    close_process_group()
    s = result["summary"]
    if s is None:  # a rank > 0 under torchrun: rank 0 prints the summary
        return 0
    print(f"\ndone: {s['steps']} steps in {s['train_seconds']:.0f} s, loss {s['first_loss']} -> {s['last_loss']}")
    from cotrain.eval.summary import headline_key

    for name, m in result["eval"].items():
        chance = m.get("chance", m.get("chance_mean_recall"))  # retrieval: what random scores give
        extra = f" (chance {chance:.3f})" if chance is not None else ""
        key = headline_key(m)
        if key:
            print(f"  {name:<16} {m['task']:<14} {key} {m[key]:.3f}{extra}")
    print(f"report: {Path(cfg.train.output_dir) / 'report.md'}")
    return 0
