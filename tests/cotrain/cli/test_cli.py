"""The ``cotrain`` command line: dispatch, plugin commands, the convert table, thin tools/ shims."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from cotrain.cli import COMMANDS, command, main
from cotrain.cli.convert import FORMATS, build_parser
from cotrain.converters import CONVERTERS

ROOT = Path(__file__).resolve().parents[3]
PLUGIN_COMMANDS = {"eval-det", "make-demo-detections", "zoom", "eval-zoom", "make-zoom-data"}


def test_every_subcommand_resolves_to_a_main():
    for name in [*COMMANDS, *PLUGIN_COMMANDS]:
        fn = command(name)
        assert callable(fn), name
    assert command("no-such-thing") is None


def test_help_lists_own_and_plugin_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in [*COMMANDS, *PLUGIN_COMMANDS]:
        assert f"  {name}" in out
    assert main([]) == 2  # no subcommand: usage, and a failing exit code


def test_unknown_subcommand_suggests_the_nearest(capsys):
    assert main(["trian"]) == 2
    assert "did you mean 'train'" in capsys.readouterr().err


def test_convert_has_one_entry_per_registered_converter():
    assert set(FORMATS) == set(CONVERTERS)
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["no_such_format"])


def test_bench_lists_and_refuses_unknown(capsys):
    assert main(["bench", "--help"]) == 0
    assert "det" in capsys.readouterr().out
    assert main(["bench", "nope"]) == 2
    assert "no benchmark 'nope'" in capsys.readouterr().err


def test_python_dash_m_runs_a_subcommand():
    r = subprocess.run([sys.executable, "-m", "cotrain", "convert", "dota", "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "--labels" in r.stdout


def test_tools_are_thin_shims_and_nothing_edits_sys_path():
    """tools/*.py: benchmarks and docs generators, or a shim of at most two statements; no sys.path edits."""
    for path in sorted((ROOT / "tools").glob("*.py")):
        tree = ast.parse(path.read_text())
        body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
        if not path.name.startswith(("bench_", "gen_")):
            assert len(body) <= 2, f"{path.name}: a shim holds an import and one call"
    for pkg in ("cotrain", "detection", "zoom_chain", "tools"):
        for path in (ROOT / pkg).rglob("*.py"):
            assert "sys.path.insert" not in path.read_text(), path
