#!/usr/bin/env python
"""Write docs/config.md, the table of every run-config option, from the dataclass field docs.

``python tools/gen_config_docs.py`` regenerates it; ``--check`` exits 1 when it is stale
(a test runs the check, so the table cannot drift from the code).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cotrain.config import DatasetConfig, iter_fields

ROOT = Path(__file__).resolve().parent.parent

OUT = ROOT / "docs" / "config.md"


def render() -> str:
    lines = ["# Run config options", "",
             "Generated from the field docs in `cotrain/config.py` by `python tools/gen_config_docs.py`;",
             "do not edit by hand. Any option can be set in the recipe YAML or as `key=value` on the",
             "command line (`python tools/train.py data_recipes/demo.yaml train.max_steps=20`).", "",
             "| key | type | default | meaning |", "|---|---|---|---|"]
    for key, tp, default, doc in iter_fields():
        lines.append(f"| `{key}` | {tp} | `{default!r}` | {doc.replace('|', '/')} |")
    lines += ["", "## Dataset entries (`data.datasets[i]`, `data.eval_datasets[i]`)", "",
              "| key | type | default | meaning |", "|---|---|---|---|"]
    for key, tp, default, doc in iter_fields(DatasetConfig):
        lines.append(f"| `{key}` | {tp} | `{default!r}` | {doc.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--check", action="store_true", help="exit 1 if docs/config.md is out of date")
    args = p.parse_args()
    text = render()
    if args.check:
        if not OUT.is_file() or OUT.read_text() != text:
            print(f"{OUT} is stale: run python tools/gen_config_docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
