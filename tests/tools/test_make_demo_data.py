"""tools/make_demo_data.py: runs on a tiny config, prints the summary table, reports bad input cleanly."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "make_demo_data.py"


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


def test_cli_writes_data_and_prints_one_row_per_dataset(tmp_path):
    out = tmp_path / "demo"
    r = _run("--out", str(out), "--seed", "4", "--n-scenes", "12", "--n-large", "1", "--large-size", "512",
             "--no-progress")
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["seed"] == 4 and manifest["params"]["n_scenes"] == 12
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["dataset", "task", "train", "val", "test"]
    rows = {ln.split()[0]: ln.split() for ln in lines[2:] if ln.startswith("syn_")}
    assert set(rows) == {d["name"] for d in manifest["datasets"]}
    for d in manifest["datasets"]:
        assert rows[d["name"]][1] == d["task"]
        assert [int(v) for v in rows[d["name"]][2:]] == [d["counts"][s] for s in ("train", "val", "test")]
        n_lines = len((out / d["files"]["train"]).read_text().splitlines())
        assert n_lines == d["counts"]["train"]
    assert "progress" not in r.stderr and "scene/s" not in r.stderr


def test_cli_reports_bad_parameters_without_traceback(tmp_path):
    r = _run("--out", str(tmp_path / "x"), "--n-scenes", "1", "--no-progress")
    assert r.returncode == 2
    assert r.stderr.startswith("error:") and "n_scenes" in r.stderr and "Traceback" not in r.stderr
