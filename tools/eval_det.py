#!/usr/bin/env python
"""Shim for ``cotrain eval-det`` (detection/cli.py)."""
import sys

from detection.cli import main

if __name__ == "__main__":
    sys.exit(main())
