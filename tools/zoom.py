"""Shim for ``cotrain zoom``."""
from cotrain.cli import run
if __name__ == "__main__":  # (a spawned worker re-imports this file; it must not rerun the command)
    run("zoom")
