"""``cotrain bench NAME [args]``: run the speed benchmark ``tools/bench_NAME.py`` of this checkout.

Benchmarks are scripts, not library code: they live in the repository's ``tools/`` (an editable
install, as the README's Quick start makes, finds them). Each prints its figures with a ratio
against a baseline measured in the same run; docs/benchmarks.md records them with the machine.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def available() -> list[str]:
    return sorted(p.stem[len("bench_"):] for p in TOOLS.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    names = available()
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: cotrain bench NAME [args ...]   (cotrain bench NAME --help for its options)\n")
        print("benchmarks: " + (", ".join(names) if names else f"none found under {TOOLS}"))
        return 0 if argv else 2
    name = argv[0]
    script = TOOLS / f"bench_{name}.py"
    if not script.is_file():
        where = f"one of: {', '.join(names)}" if names else (f"no tools/ folder at {TOOLS}: benchmarks run from a "
                                                             "checkout installed with `pip install -e .`")
        print(f"error: no benchmark {name!r}; {where}", file=sys.stderr)
        return 2
    sys.argv = [str(script), *argv[1:]]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else (print(e.code, file=sys.stderr) or 1)
    return 0
