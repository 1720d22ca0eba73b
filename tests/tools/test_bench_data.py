"""Smoke tests of tools/bench_data.py on tiny sizes (the figures themselves live in docs/benchmarks.md)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "bench_data.py"), *args], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


def test_coldstart_small():
    r = _run("coldstart", "--records", "3000", "--reads", "100")
    assert r.returncode == 0, r.stderr
    assert "index" in r.stdout and "json" in r.stdout.lower()


def test_loader_small_counts_agree():
    r = _run("loader", "--images", "4", "--side", "256", "--max-tokens", "16")
    assert r.returncode == 0, r.stderr
    assert "same token counts: True" in r.stdout and "exact: True" in r.stdout
