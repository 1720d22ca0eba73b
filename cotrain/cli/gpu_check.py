"""One prepared GPU check (<= 8 min on one H100): environment, numerics, throughput / MFU / memory, generation.

    cotrain gpu-check --out $OUT          # on the GPU machine
    cotrain gpu-check --dry-run --out /tmp/gc   # every section on tiny shapes (CPU, < 1 min; CI runs it)

Writes gpu_check.json and gpu_check.md to --out (default: $OUT, else outputs/gpu_check) and prints the
summary table. What each section measures and the MFU formula: cotrain/gpu_check.py.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path



def main(argv: list[str] | None = None) -> int:
    from cotrain.gpu_check import BUDGET_S, run_gpu_check

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("OUT") or "outputs/gpu_check")
    p.add_argument("--dry-run", action="store_true", help="tiny shapes on whatever device there is")
    p.add_argument("--budget-s", type=float, default=BUDGET_S, help="internal time budget (default %(default)s)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    result = run_gpu_check(args.out, dry_run=args.dry_run, budget_s=args.budget_s)
    print((Path(args.out) / "gpu_check.md").read_text())
    bad = [n for n, s in result["sections"].items() if s.get("status") == "error"]
    return 1 if bad else 0
