"""The comparison table end to end: records -> oracle responses / simulated detector -> eval_det CLI."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cotrain.data.synthetic import generate_demo_data
from cotrain.dota.formats import write_task1_dir
from cotrain.dota.types import GT, Det
from detection.records import gts_from_records, oracle_responses
from detection.synthetic import simulate_detector
from detection.report import compare_methods, table_markdown

ROOT = Path(__file__).resolve().parents[2]


def _sq(x, y, s=10.0):
    return np.array([x, y, x + s, y, x + s, y + s, x, y + s], dtype=float)


def test_hand_checkable_rows():
    # one class, two images, three GT. VLM: one TP then one FP in image a, nothing in b.
    gts = {"a": [GT("ship", _sq(0, 0)), GT("ship", _sq(50, 50))], "b": [GT("ship", _sq(0, 0))]}
    vlm = {"a": [Det("ship", _sq(0, 0)), Det("ship", _sq(200, 200))]}
    # detector: scores rank the FP first; a threshold of 0.5 removes it
    det = {"a": [Det("ship", _sq(200, 200), 0.3), Det("ship", _sq(0, 0), 0.9), Det("ship", _sq(50, 50), 0.8)],
           "b": [Det("ship", _sq(0, 0), 0.7)]}
    rows, _ = compare_methods(gts, ["ship"], vlms={"v": vlm}, detectors={"d": det},
                              calib_gts=gts, calib_detectors={"d": det}, thresholds=(0.2, 0.5))
    by = {(r.method, r.setting): r for r in rows}
    # VLM: ranks TP (precision 1 at recall 1/3) then FP; 11-point AP = 4/11 (recall points 0, .1, .2, .3)
    assert by[("v", "all scores = 1")].ap50 == pytest.approx(4 / 11)
    # detector with scores: TP, TP, TP (recall 1, precision 1) then FP: AP = 1
    assert by[("d", "real scores")].ap50 == pytest.approx(1.0)
    # threshold 0.5 keeps the 3 TPs -> APnc 1; threshold 0.2 keeps the FP ranked by emitted order first
    assert by[("d", "oracle")].threshold == 0.5 and by[("d", "oracle")].ap50 == pytest.approx(1.0)
    assert by[("d", "transfer")].threshold == 0.5
    md = table_markdown(rows, ["ship"])
    assert "| v | all scores = 1 | - | 36.4 |" in md and "SH" in md


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("det")
    generate_demo_data(root, seed=5, n_scenes=20, n_large=0, progress=False, workers=1)
    out = root / "det"
    out.mkdir()
    for split in ("val", "test"):
        gts, classes, by_id = gts_from_records(str(root / "records" / f"syn_det_{split}.jsonl"))
        sizes = {k: (r["images"][0]["width"], r["images"][0]["height"]) for k, r in by_id.items()}
        write_task1_dir(out / f"det_{split}", simulate_detector(gts, classes, sizes, seed=1), classes)
        if split == "test":
            rows = oracle_responses(by_id)
            rows[0]["response"] += "\n[1, 2, 3] plane\nnonsense line\n```"  # malformed lines are counted
            (out / "oracle.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n")
    return root, out


def test_eval_det_cli_on_demo_split(demo, tmp_path):
    root, out = demo
    r = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "eval_det.py"), "--gt", str(root / "records" / "syn_det_test.jsonl"),
         "--vlm", f"oracle={out / 'oracle.jsonl'}", "--detector", f"sim={out / 'det_test'}",
         "--calib-gt", str(root / "records" / "syn_det_val.jsonl"), "--calib-detector", f"sim={out / 'det_val'}",
         "--out", str(tmp_path / "ev"), "--n-overlays", "2"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "ev" / "results.json").read_text())
    rows = {(x["method"], x["setting"]): x for x in res["rows"]}
    assert rows[("oracle", "all scores = 1")]["ap50"] == pytest.approx(1.0)  # GT written as answers
    assert {("sim", "real scores"), ("sim", "transfer"), ("sim", "oracle")} <= set(rows)
    diag = rows[("oracle", "all scores = 1")]["diagnostics"]
    assert diag["malformed"] >= 2 and diag["bad_lines"] == 1
    for name in ("report.md", "per_class_ap50.png", "pr_curves.png"):
        assert (tmp_path / "ev" / name).is_file()
    assert len(list((tmp_path / "ev" / "overlays").glob("*.png"))) == 2


def test_eval_det_cli_errors(demo, tmp_path):
    root, out = demo
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "eval_det.py"), "--gt", str(tmp_path / "missing"),
                        "--out", str(tmp_path / "ev")], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "eval_det.py"),
                        "--gt", str(root / "records" / "syn_det_test.jsonl"),
                        "--calib-detector", f"x={out / 'det_val'}", "--out", str(tmp_path / "ev")],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2 and "--calib-gt" in r.stderr


def _cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "eval_det.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.fixture()
def dota_gt(tmp_path):
    gt = tmp_path / "labelTxt"
    gt.mkdir()
    (gt / "a.txt").write_text("imagesource:GoogleEarth\ngsd:0.5\n"
                              "10 10 40 10 40 40 10 40 plane 0\n100 100 150 100 150 130 100 130 ship\n")
    (gt / "b.txt").write_text("200 200 260 200 260 220 200 220 ship 0\n")
    return gt


def test_mmrotate_pickle_uses_dota_label_order(dota_gt, tmp_path):
    import pickle

    # perfect boxes as (cx, cy, w, h, theta); labels are DOTA-v1.0 indices: plane 0, ship 6
    results = [
        {"img_id": "a", "pred_instances": {"bboxes": np.array([[25, 25, 30, 30, 0.0], [125, 115, 50, 30, 0.0]]),
                                           "scores": np.array([0.9, 0.8]), "labels": np.array([0, 6])}},
        {"img_id": "b", "pred_instances": {"bboxes": np.array([[230, 210, 60, 20, 0.0]]),
                                           "scores": np.array([0.7]), "labels": np.array([6])}},
        {"img_id": "zzz", "pred_instances": {"bboxes": np.array([[5, 5, 4, 4, 0.0]]),
                                             "scores": np.array([0.99]), "labels": np.array([0])}},
    ]
    pkl = tmp_path / "res.pkl"
    pkl.write_bytes(pickle.dumps(results))
    r = _cli("--gt", dota_gt, "--detector", f"rot={pkl}", "--out", tmp_path / "ev")
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "ev" / "results.json").read_text())
    rows = {x["setting"]: x for x in res["rows"]}
    # the extra image "zzz" is dropped and counted instead of turning into a false positive
    assert rows["real scores"]["ap50"] == pytest.approx(1.0)
    assert rows["real scores"]["diagnostics"]["extra_ids"] == 1
    assert "ids not in GT" in (tmp_path / "ev" / "report.md").read_text()
    # a label index beyond the class table is a clear error, not a silent relabel
    results[0]["pred_instances"]["labels"] = np.array([0, 40])
    pkl.write_bytes(pickle.dumps(results))
    r = _cli("--gt", dota_gt, "--detector", f"rot={pkl}", "--out", tmp_path / "ev2")
    assert r.returncode == 2 and "different dataset" in r.stderr


def test_transfer_can_differ_from_oracle():
    gts = {"a": [GT("ship", _sq(0, 0)), GT("ship", _sq(50, 50))]}
    # eval split: FP 0.3, TPs 0.4 and 0.9. Kept score > t, ranked by emitted order:
    #   t=0.2 -> FP, TP, TP: AP 2/3; t=0.35 -> TP, TP: AP 1; t=0.5 -> one TP, recall 1/2: AP 6/11
    det_eval = {"a": [Det("ship", _sq(200, 200), 0.3), Det("ship", _sq(0, 0), 0.4), Det("ship", _sq(50, 50), 0.9)]}
    # calibration split: FP 0.45, TPs 0.9 -> 2/3, 2/3, 1: calibration picks t = 0.5
    det_calib = {"a": [Det("ship", _sq(200, 200), 0.45), Det("ship", _sq(0, 0), 0.9), Det("ship", _sq(50, 50), 0.9)]}
    rows, extras = compare_methods(gts, ["ship"], detectors={"d": det_eval}, calib_gts=gts,
                                   calib_detectors={"d": det_calib}, thresholds=(0.2, 0.35, 0.5))
    by = {r.setting: r for r in rows}
    assert by["transfer"].threshold == 0.5 and by["transfer"].ap50 == pytest.approx(6 / 11)
    assert by["oracle"].threshold == 0.35 and by["oracle"].ap50 == pytest.approx(1.0)
    assert dict(extras["sweeps"]["d"]["eval"])[0.2] == pytest.approx(2 / 3)


def test_eval_det_refuses_bad_inputs(dota_gt, demo, tmp_path):
    root, out = demo
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("")
    r = _cli("--gt", empty, "--out", tmp_path / "ev")
    assert r.returncode == 2 and ("no objects" in r.stderr or "empty" in r.stderr)
    r = _cli("--gt", dota_gt, "--vlm", f"x={tmp_path / 'nope.jsonl'}", "--out", tmp_path / "ev")
    assert r.returncode == 2 and "no such file" in r.stderr
    resp = tmp_path / "r.jsonl"
    resp.write_text(json.dumps({"id": "a", "response": "[1, 1, 5, 5] plane", "resized": [50, 50],
                                "orig_wh": [50, 50], "box_convention": "norm1000"}) + "\n")
    r = _cli("--gt", dota_gt, "--vlm", f"x={resp}", "--out", tmp_path / "ev")
    assert r.returncode == 2 and "box convention 'norm1000'" in r.stderr
    r = _cli("--gt", dota_gt, "--vlm", f"x={resp}", "--family", "qwen2_vl", "--out", tmp_path / "ev")
    assert r.returncode == 0, r.stderr


def test_package_exports_the_stable_functions():
    import detection
    from detection.evaluate import evaluate
    from detection.metrics import apnc
    from detection.parse import parse_response

    assert (detection.parse_response, detection.apnc, detection.evaluate) == (parse_response, apnc, evaluate)
    with pytest.raises(AttributeError):
        detection.no_such_function  # noqa: B018
