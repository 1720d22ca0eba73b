"""Check a recipe like a training run would, and print the realised mix; no model is loaded.

    cotrain inspect data_recipes/demo.yaml [key=value ...] [--png mix.png]

Checks config keys, files, budgets, every record and every image header, then prints per
dataset and per task: records, samples this epoch, share, images, estimated tokens (from image
sizes and the chat template, not from pixels). Exit code 2 with a message naming the key or
record and the fix when something is wrong.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cotrain.config import load_config
from cotrain.errors import CotrainError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", help="recipe YAML")
    p.add_argument("overrides", nargs="*", help="key=value overrides")
    p.add_argument("--png", default=None, help="bar chart of the mix (default: <train.output_dir>/recipe_mix.png)")
    p.add_argument("--sample", type=int, default=200, help="records per dataset used for token estimates")
    p.add_argument("--no-image-check", action="store_true", help="skip reading every image header")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.recipe, args.overrides)
        from cotrain.recipe_report import format_mix, inspect_recipe, plot_mix

        mix = inspect_recipe(cfg, sample_per_dataset=args.sample, check_images=not args.no_image_check)
    except CotrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if cfg.model.kind == "clip":
        print(format_mix(mix, cfg.model.clip.max_text_tokens, "max_text_tokens"))
    else:
        print(format_mix(mix, cfg.data.max_length))
    from cotrain.curriculum.schedule import format_description

    for m in mix:
        if m.curriculum:
            print(format_description(m.curriculum))
    png = Path(args.png) if args.png else Path(cfg.train.output_dir) / "recipe_mix.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    plot_mix(mix, png)
    print(f"chart: {png}")
    bad = sum(sum(m.bad_images.values()) for m in mix)
    if bad:
        print(f"error: {bad} image problems (see notes); fix the files or the records", file=sys.stderr)
        return 2
    return 0
