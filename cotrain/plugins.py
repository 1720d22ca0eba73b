"""Packages that build on cotrain plug into it through entry points, so cotrain never imports them.

Two groups, declared in pyproject.toml:

* ``cotrain.plugins``: a function called once, before the first lookup of something a plugin
  provides (``detection`` registers its harness summary with ``cotrain.eval.scoring.register_summary``);
* ``cotrain.commands``: ``cotrain SUBCOMMAND`` -> ``main(argv) -> int`` of that package's CLI.

Entry points exist once the repository is installed (``pip install -e .``), which the README's two
commands do.
"""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points

log = logging.getLogger(__name__)

PLUGIN_GROUP = "cotrain.plugins"
COMMAND_GROUP = "cotrain.commands"
_loaded = False


def load_plugins() -> None:
    """Call every ``cotrain.plugins`` entry point once per process."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for ep in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        log.debug("loading cotrain plugin %s (%s)", ep.name, ep.value)
        ep.load()()


def plugin_commands() -> dict[str, EntryPoint]:
    """Subcommands other packages add to ``cotrain``, by name (not imported until run)."""
    return {ep.name: ep for ep in entry_points(group=COMMAND_GROUP)}
