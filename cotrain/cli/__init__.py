"""The ``cotrain`` command line: ``cotrain SUBCOMMAND [args ...]``, one thin shell per library function.

Subcommands are looked up in ``COMMANDS`` (cotrain's own, each a module with ``main(argv) -> int``
imported only when run, so ``cotrain --help`` stays fast) and in the ``cotrain.commands`` entry
points of packages that build on cotrain (``detection``: eval-det, make-demo-detections;
``zoom_chain``: zoom, eval-zoom, make-zoom-data), which cotrain never imports by name.
``tools/*.py`` are two-line shims over ``run``; under torchrun use ``torchrun ... -m cotrain train``.

Must not hold logic of its own beyond dispatch: each command module parses arguments and calls
one library function.
"""

from __future__ import annotations

import difflib
import sys
from importlib import import_module
from typing import Callable

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("cotrain.cli.train", "train on a data recipe (default: the CPU demo)"),
    "eval": ("cotrain.cli.eval", "evaluate a saved model on benchmarks"),
    "predict": ("cotrain.cli.predict", "write model responses for a records file"),
    "inspect": ("cotrain.cli.inspect", "check a recipe and print its realised mix, no model"),
    "convert": ("cotrain.cli.convert", "convert a public dataset format to canonical records"),
    "make-demo-data": ("cotrain.cli.make_demo_data", "generate the synthetic remote-sensing demo data"),
    "bench": ("cotrain.cli.bench", "run a speed benchmark from tools/bench_NAME.py"),
    "gpu-check": ("cotrain.cli.gpu_check", "the prepared GPU check (or --dry-run on CPU)"),
    "curriculum": ("cotrain.cli.curriculum", "IR curriculum difficulty scores (IRGPT lessons 1 and 2)"),
    "sensors": ("cotrain.cli.sensors", "per-band statistics of multispectral / SAR images"),
}
"""cotrain's own subcommands: name -> (module with ``main(argv)``, one-line help)."""


def _plugins() -> dict:
    from cotrain.plugins import plugin_commands

    return {name: ep for name, ep in plugin_commands().items() if name not in COMMANDS}


def _usage(plugins: dict) -> str:
    lines = ["usage: cotrain SUBCOMMAND [args ...]   (cotrain SUBCOMMAND --help for its options)", "",
             "subcommands:"]
    for name, (_, text) in COMMANDS.items():
        lines.append(f"  {name:<22}{text}")
    for name, ep in sorted(plugins.items()):
        lines.append(f"  {name:<22}(from {ep.value.split(':')[0]})")
    return "\n".join(lines)


def command(name: str) -> Callable[[list[str]], int] | None:
    """The ``main(argv)`` of subcommand ``name``, or None when there is no such subcommand."""
    if name in COMMANDS:
        return import_module(COMMANDS[name][0]).main
    ep = _plugins().get(name)
    return ep.load() if ep is not None else None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(_plugins()))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    fn = command(name)
    if fn is None:
        known = [*COMMANDS, *_plugins()]
        near = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        print(f"error: unknown subcommand {name!r}{hint} (known: {', '.join(known)})", file=sys.stderr)
        return 2
    sys.argv[0] = f"cotrain {name}"  # argparse's prog in usage and errors
    return int(fn(rest) or 0)


def run(name: str) -> None:
    """Entry of a ``tools/*.py`` shim: ``cotrain NAME`` with the script's arguments."""
    sys.exit(main([name, *sys.argv[1:]]))
