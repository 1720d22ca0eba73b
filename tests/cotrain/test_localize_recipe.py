"""A very short run of data_recipes/localize_demo.yaml: its report has the learning curve and the baselines."""

import json
from pathlib import Path

from cotrain.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_short_localize_run_reports_curve_and_fixed_box_baselines(tmp_path):
    from cotrain.training.recipe import run as run_training

    out = tmp_path / "run"
    cfg = load_config(ROOT / "data_recipes" / "localize_demo.yaml", overrides=[
        f"data.data_root={tmp_path / 'data'}", "data.synthetic.n_scenes=20", f"train.output_dir={out}",
        "train.max_steps=4", "train.batch_size=2", "train.logging_steps=1", "eval.every_steps=2",
        "eval.every_steps_max_samples=2", "eval.max_samples=3", "eval.max_new_tokens=24", "eval.n_visualise=1"])
    result = run_training(cfg)  # the data is generated on first use (kind: localize)
    assert result["summary"]["steps"] == 4
    assert (tmp_path / "data" / "records" / "loc_grounding_val.jsonl").is_file()
    metrics = json.loads((out / "metrics.json").read_text())["eval"]
    ground, det = metrics["loc_grounding"], metrics["loc_det"]
    assert set(ground["fixed_box_baseline"]) >= {"acc@0.5", "miou", "box"}
    assert set(det["fixed_box_baseline"]) == {"APnc50", "mF1"}
    assert "mF1" in det and det["parse"]["responses"] == det["n"]
    history = [json.loads(x) for x in (out / "log_history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history if "eval/loc_grounding/acc@0.5" in h] == [2, 4]
    assert (out / "learning_curve.png").is_file()
    report = (out / "report.md").read_text()
    assert "## Learning curve" in report and "| step | loc_det/APnc50 |" in report
    assert "fixed box acc@0.5" in report and "fixed box APnc50" in report
    assert "malformed lines" in report
