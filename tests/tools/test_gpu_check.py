"""tools/gpu_check.py: the dry run (every section on tiny shapes, what CI runs) and the time budget."""

import json
import subprocess
import sys
import time
from pathlib import Path

from cotrain.gpu_check import Budget, ratios

ROOT = Path(__file__).resolve().parents[2]


def test_dry_run_runs_every_section_and_writes_both_reports(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_check.py"), "--dry-run", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["dry_run"] is True
    sections = result["sections"]
    assert set(sections) == {"env", "throughput_plain_3b", "throughput_plain_7b", "generate_3b", "numerics",
                             "throughput_cotrain_3b", "throughput_cotrain_7b", "clip_vit_b32"}
    assert all(s["status"] == "ok" for s in sections.values()), sections
    assert sections["clip_vit_b32"]["fp32_images_per_s"] > 0
    num = sections["numerics"]
    for key in ("packed_varlen_vs_padded_sdpa", "selective_vs_full_logits"):
        assert num[key]["loss_rel_diff"] < 1e-4 and min(num[key]["grad_cosine"].values()) > 0.999, key
    assert sections["throughput_cotrain_3b"]["fill"] > sections["throughput_plain_3b"]["fill"]
    assert set(result["ratios"]) == {"3b_tokens_per_s", "7b_tokens_per_s"}
    assert "| numerics" in (tmp_path / "gpu_check.md").read_text() and "| numerics" in r.stdout


def test_a_section_that_would_overrun_is_skipped_and_says_so():
    budget = Budget(total_s=10.0)
    assert budget.run("fast", 1, lambda: {"x": 1})["status"] == "ok"
    skipped = budget.run("slow", 60, lambda: {"never": True})
    assert skipped["status"] == "skipped" and "needs ~60 s" in skipped["reason"]
    failed = budget.run("bad", 1, lambda: 1 / 0)
    assert failed["status"] == "error" and "ZeroDivisionError" in failed["reason"]
    assert time.monotonic() - budget.start < 5


def test_ratios_need_both_runs():
    sections = {"throughput_plain_3b": {"tokens_per_s": 100.0, "peak_memory_gib": 40.0},
                "throughput_cotrain_3b": {"tokens_per_s": 200.0, "peak_memory_gib": 20.0},
                "throughput_plain_7b": {"oom": True}}
    assert ratios(sections) == {"3b_tokens_per_s": 2.0, "3b_peak_memory": 0.5}
