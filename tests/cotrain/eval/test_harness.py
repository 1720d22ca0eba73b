"""Evaluation harness: scripted backends (exact numbers), resume, skips, garbage answers, report; torchrun sharding."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cotrain.data.synthetic import generate_demo_data
from cotrain.errors import ConfigError, RecordError
from cotrain.eval.harness import EvalOptions, evaluate, run_benchmark
from cotrain.eval.registry import Benchmark, load_benchmark_file, resolve_benchmarks
from cotrain.inference.base import GenerationResponse, load_request_images
from cotrain.resolution import PixelLimits
from cotrain.model.families import get_family
from cotrain.records import read_records

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    generate_demo_data(root, seed=4, n_scenes=80, n_large=0, progress=False, workers=1)
    return root


class Scripted:
    """A backend whose answers come from a function of the request (and that counts its calls)."""

    name = "scripted"

    def __init__(self, answer, family="qwen2_5_vl", fail_after=None):
        self.family = get_family(family)
        self.limits = PixelLimits(3136, 50176, self.family.factor)
        self.answer, self.fail_after = answer, fail_after
        self.seen: list[str] = []
        self.calls = 0

    def generate(self, requests, *, progress=False):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.calls += 1
        out = []
        for r in requests:
            try:
                load_request_images(r)  # like the real backends: unreadable images are error responses
            except Exception as e:  # noqa: BLE001
                out.append(GenerationResponse(r.id, "", "error", error=getattr(e, "reason", "bad")))
                continue
            self.seen.append(r.id)
            out.append(GenerationResponse(r.id, self.answer(r), "stop", 10, 2))
        return out


def _bench(data_root, name, task, **options):
    return Benchmark(name=name, records=str(data_root / "records" / f"{name}_test.jsonl"), image_root=str(data_root),
                     task=task, options=options)


def _truth(records, key):
    return [r[key] for r in records]


def test_classification_numbers_by_hand(data_root, tmp_path):
    bench = _bench(data_root, "syn_cls", "classification")
    records = read_records(bench.records)
    labels = _truth(records, "label")
    # answer right on even indices, garbage / empty / decorated text on the others
    wrong = ["", "🤖🤖🤖", "It is " + labels[0], "\x00garbage"]

    def answer(req):
        i = int(req.id)
        return labels[i].upper().replace("_", " ") + "." if i % 2 == 0 else wrong[i % len(wrong)]

    m = run_benchmark(bench, Scripted(answer), tmp_path / "out", EvalOptions(progress=False))
    expected = sum(1 for i in range(len(records)) if i % 2 == 0) / len(records)
    assert m["n"] == len(records) and m["accuracy"] == pytest.approx(expected)
    assert m["empty_responses"] == sum(1 for i in range(len(records)) if i % 2 == 1 and i % 4 == 0)
    assert "accuracy_contains (lenient)" not in m  # only when asked


def test_lenient_variant_is_labelled_and_only_when_asked(data_root, tmp_path):
    bench = _bench(data_root, "syn_cls", "classification", lenient=True)
    records = read_records(bench.records)
    m = run_benchmark(bench, Scripted(lambda r: f"This looks like {records[int(r.id)]['label']} to me"),
                      tmp_path / "out", EvalOptions(progress=False))
    assert m["accuracy"] == 0.0
    assert m["accuracy_contains (lenient)"] == pytest.approx(1.0)


def test_vqa_mcq_grounding_numbers(data_root, tmp_path):
    vqa = _bench(data_root, "syn_vqa", "vqa")
    vrec = read_records(vqa.records)
    m = run_benchmark(vqa, Scripted(lambda r: str(vrec[int(r.id)]["answer"])), tmp_path / "o", EvalOptions(progress=False))
    assert m["accuracy"] == 1.0 and m.get("counting_mae", 0.0) == 0.0
    mcq = _bench(data_root, "syn_mcq", "mcq")
    mrec = read_records(mcq.records)
    letters = "ABCDEFG"
    m = run_benchmark(mcq, Scripted(lambda r: letters[mrec[int(r.id)]["answer"]] if int(r.id) % 3 else "no idea"),
                      tmp_path / "o", EvalOptions(progress=False))
    n_ans = sum(1 for i in range(len(mrec)) if i % 3)
    assert m["accuracy"] == pytest.approx(n_ans / len(mrec))
    assert m["instruction_following"] == pytest.approx(n_ans / len(mrec))

    # grounding: the answer is the GT box rendered for the resized image -> IoU ~1 after mapping back
    g = _bench(data_root, "syn_grounding", "grounding", box_format="hbb")
    grec = read_records(g.records)

    def box_answer(req):
        rec = grec[int(req.id)]
        x1, y1, x2, y2 = rec["target"]["hbb"] if "hbb" in rec["target"] else _hbb_of(rec["target"]["quad"])
        w, h = req.images[0]["resized_wh"]
        sx, sy = w / req.images[0]["width"], h / req.images[0]["height"]
        return f"[{round(x1 * sx)}, {round(y1 * sy)}, {round(x2 * sx)}, {round(y2 * sy)}]"

    m = run_benchmark(g, Scripted(box_answer), tmp_path / "o", EvalOptions(progress=False))
    assert m["parse_rate"] == 1.0
    rows = [json.loads(x) for x in (tmp_path / "o" / "syn_grounding" / "results.jsonl").read_text().splitlines()]
    from shapely.geometry import box

    assert m["acc@0.5"] == 1.0  # a gold answer is right for rotated targets too
    for r in rows:  # expected IoU by shapely, from the answer mapped back to original pixels by hand
        t = grec[r["index"]]["target"]
        img = r["images"][0]
        sx, sy = img["resized_wh"][0] / img["width"], img["resized_wh"][1] / img["height"]
        x1, y1, x2, y2 = (float(v) for v in r["response"].strip("[]").split(","))
        pred = box(x1 / sx, y1 / sy, x2 / sx, y2 / sy)
        # box_format hbb: a rotated target is scored as its enclosing axis-aligned box (what training teaches)
        poly = box(*_hbb_of(t["quad"])) if "quad" in t else box(*t["hbb"])
        assert r["score"]["iou"] == pytest.approx(poly.intersection(pred).area / poly.union(pred).area, abs=1e-6)
    m = run_benchmark(g, Scripted(lambda r: "somewhere on the left"), tmp_path / "o2", EvalOptions(progress=False))
    assert (m["acc@0.5"], m["miou"], m["parse_rate"]) == (0.0, 0.0, 0.0)


def _hbb_of(q):
    xs, ys = q[0::2], q[1::2]
    return min(xs), min(ys), max(xs), max(ys)


def test_resume_continues_and_matches_uninterrupted(data_root, tmp_path):
    bench = _bench(data_root, "syn_vqa", "vqa")
    answer = lambda r: "yes" if int(r.id) % 2 else "3"  # noqa: E731
    full = run_benchmark(bench, Scripted(answer), tmp_path / "full", EvalOptions(chunk_size=4, progress=False))
    killed = Scripted(answer, fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(bench, killed, tmp_path / "part", EvalOptions(chunk_size=4, progress=False))
    assert len(killed.seen) == 8
    # a half-written last line (killed during a write) is ignored, its sample redone
    with open(tmp_path / "part" / "syn_vqa" / "cache-rank0.jsonl", "a") as f:
        f.write('{"index": 99, "respo')
    again = Scripted(answer)
    resumed = run_benchmark(bench, again, tmp_path / "part", EvalOptions(chunk_size=4, progress=False))
    n = len(read_records(bench.records))
    assert len(again.seen) == n - 8 and not set(again.seen) & set(killed.seen)
    strip = lambda m: {k: v for k, v in m.items() if k != "samples_per_s_this_run"}  # noqa: E731
    assert strip(resumed) == strip(full)
    rows = [json.loads(x) for x in (tmp_path / "part" / "syn_vqa" / "results.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(n))
    # a finished benchmark reruns without any generation
    idle = Scripted(answer)
    run_benchmark(bench, idle, tmp_path / "part", EvalOptions(chunk_size=4, progress=False))
    assert idle.calls == 0


def test_cache_of_another_evaluation_is_refused(data_root, tmp_path):
    bench = _bench(data_root, "syn_vqa", "vqa")
    run_benchmark(bench, Scripted(lambda r: "1"), tmp_path, EvalOptions(progress=False, model_key={"model": "a"}))
    with pytest.raises(ConfigError, match="different evaluation.*model.*--overwrite"):
        run_benchmark(bench, Scripted(lambda r: "1"), tmp_path, EvalOptions(progress=False, model_key={"model": "b"}))
    again = Scripted(lambda r: "2")
    m = run_benchmark(bench, again, tmp_path, EvalOptions(progress=False, model_key={"model": "b"}, overwrite=True))
    assert again.calls > 0 and m["n"] == len(read_records(bench.records))


def test_missing_images_are_counted_skips_in_metrics_and_report(data_root, tmp_path):
    bench = _bench(data_root, "syn_cls", "classification")
    records = read_records(bench.records)
    moved = {records[0]["images"][0]["path"], records[2]["images"][0]["path"]}
    for p in moved:
        os.rename(data_root / p, data_root / (p + ".away"))
    try:
        res = evaluate([bench], Scripted(lambda r: records[int(r.id)]["label"]), tmp_path, EvalOptions(progress=False))
    finally:
        for p in moved:
            os.rename(data_root / (p + ".away"), data_root / p)
    m = res["syn_cls"]
    n_missing = sum(1 for r in records if r["images"][0]["path"] in moved)
    assert m["skipped"] == {"image_missing": n_missing}
    assert m["n"] == len(records) - n_missing and m["accuracy"] == 1.0
    report = (tmp_path / "report.md").read_text()
    assert f"image_missing: {n_missing}" in report
    assert json.loads((tmp_path / "metrics.json").read_text())["syn_cls"]["skipped"] == {"image_missing": n_missing}


def test_benchmark_definitions_and_errors(data_root, tmp_path):
    assert [b.name for b in resolve_benchmarks("demo", data_root=data_root)][:2] == ["syn_cls", "syn_vqa"]
    with pytest.raises(ConfigError, match="did you mean 'syn_cls'"):
        resolve_benchmarks("syn_clss", data_root=data_root)
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"benchmarks:\n  - {{name: a, records: {data_root}/records/syn_cls_test.jsonl, "
                     f"image_root: {data_root}, task: classification, lenient: true}}\n")
    (b,) = load_benchmark_file(suite)
    assert b.metric == "classification" and b.options == {"lenient": True}
    bad_suites = [  # (the benchmark's task and extra line, what the error must say)
        ("classification\nbox_fromat: hbb", "(?i)did you mean 'box_format'"),
        ("classification\noptions: {max_new_tokenz: 8}",
         "(?i)unknown config key .*max_new_tokenz.*did you mean 'max_new_tokens'"),
        ("classification\nmax_new_tokens: many", "max_new_tokens: expected an integer, got 'many'"),
        ("grounding\nbox_format: rbox", "box_format='rbox'; use hbb, obb, quad or point"),
    ]
    for tail, message in bad_suites:
        suite.write_text(f"name: a\nrecords: r.jsonl\ntask: {tail}\n")
        with pytest.raises(ConfigError, match=message):
            load_benchmark_file(suite)
    wrong_task = Benchmark(name="x", records=str(data_root / "records" / "syn_vqa_test.jsonl"),
                           image_root=str(data_root), task="classification")
    with pytest.raises(RecordError, match="task 'vqa' but dataset 'x' declares task 'classification'"):
        run_benchmark(wrong_task, Scripted(lambda r: ""), tmp_path / "w", EvalOptions(progress=False))
    with pytest.raises(ConfigError, match="does not exist"):
        run_benchmark(Benchmark(name="y", records=str(tmp_path / "nope.jsonl"), image_root=".", task="vqa"),
                      Scripted(lambda r: ""), tmp_path / "w", EvalOptions(progress=False))


@pytest.mark.slow
def test_torchrun_two_ranks_equal_one_process(data_root, tmp_path):
    from cotrain.model.tiny import create_tiny_checkpoint

    ckpt = create_tiny_checkpoint(tmp_path / "ckpt", "qwen2_5_vl", seed=2, hidden_size=64)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    common = [str(ROOT / "tools" / "eval.py"), "--model", str(ckpt), "--bench", "syn_cls,syn_grounding",
              "--data-root", str(data_root), "--max-samples", "10", "--max-new-tokens", "8", "--no-progress"]
    one = subprocess.run([sys.executable, *common, "--out", str(tmp_path / "one")], env=env, capture_output=True,
                         text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          *common, "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True,
                         timeout=600)
    assert "EVAL_RESULT" in two.stdout, two.stderr[-3000:]
    for name in ("syn_cls", "syn_grounding"):
        a = [json.loads(x) for x in (tmp_path / "one" / name / "results.jsonl").read_text().splitlines()]
        b = [json.loads(x) for x in (tmp_path / "two" / name / "results.jsonl").read_text().splitlines()]
        assert [r["response"] for r in a] == [r["response"] for r in b]
        assert [r["score"] for r in a] == [r["score"] for r in b]
    ma = json.loads((tmp_path / "one" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "two" / "metrics.json").read_text())
    drop = lambda m: {k: v for k, v in m.items() if k != "samples_per_s_this_run"}  # noqa: E731
    assert {k: drop(v) for k, v in ma.items()} == {k: drop(v) for k, v in mb.items()}


def test_cache_survives_prose_changes_and_smaller_max_samples(data_root, tmp_path):
    bench = _bench(data_root, "syn_cls", "classification")
    records = read_records(bench.records)
    run_benchmark(bench, Scripted(lambda r: records[int(r.id)]["label"]), tmp_path, EvalOptions(progress=False))
    bench.description = "converted 10 records (cached)"  # public benchmarks change their prose between runs
    idle = Scripted(lambda r: "x")
    m = run_benchmark(bench, idle, tmp_path, EvalOptions(progress=False))
    assert idle.calls == 0 and m["accuracy"] == 1.0
    m = run_benchmark(bench, idle, tmp_path, EvalOptions(progress=False, max_samples=3))
    assert idle.calls == 0 and m["n"] == 3 and m["records"] == 3
    with pytest.raises(ConfigError, match="max_samples=0"):
        run_benchmark(bench, idle, tmp_path, EvalOptions(progress=False, max_samples=0))


def test_mixed_benchmark_scores_each_task_and_skips_unscored_ones(data_root, tmp_path):
    from cotrain.eval.summary import flat_results

    rows = []
    for name in ("syn_cls", "syn_det", "syn_conv"):
        rows += [json.loads(x) for x in (data_root / "records" / f"{name}_test.jsonl").read_text().splitlines()[:3]]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    bench = Benchmark(name="mix", records=str(path), image_root=str(data_root), task="mixed")
    res = evaluate([bench], Scripted(lambda r: "There are none."), tmp_path / "out", EvalOptions(progress=False))
    m = res["mix"]
    assert set(m["by_task"]) == {"classification", "detection"}
    n_conv = sum(r["task"] == "conversation" for r in rows)
    assert n_conv > 0 and m["skipped"] == {"no_metric": n_conv}  # the conversation records: counted, not a crash
    assert m["by_task"]["classification"]["accuracy"] == 0.0
    assert m["by_task"]["detection"]["APnc50"] == 0.0 and m["by_task"]["detection"]["objects_parsed"] == 0
    flat = flat_results(res)
    assert {"mix/classification", "mix/detection"} <= set(flat)
    report = (tmp_path / "out" / "report.md").read_text()
    n_det = sum(r["task"] == "detection" for r in rows)
    assert f"| mix/detection | detection | detection | {n_det} | 0 | APnc50 0.0000 |" in report and "None" not in report


def test_vllm_inputs_cover_a_benchmark_budget_above_the_backends(data_root, tmp_path):
    from cotrain.data.encoder import ChatEncoder
    from cotrain.inference.vllm import build_vllm_inputs
    from cotrain.model.processor import build_offline_processor

    fam = get_family("qwen2_5_vl")
    bench = _bench(data_root, "syn_cls", "classification", max_pixels=200704)  # 4x the backend's budget
    backend = Scripted(lambda r: "")
    from cotrain.eval.harness import build_request, prepare

    p = prepare(bench, backend, EvalOptions(max_samples=2, progress=False))
    req, _ = build_request(p, 0, p.records[0])
    w, h = req.images[0]["resized_wh"]
    assert h * w > backend.limits.max_pixels  # the request really is bigger than the backend's budget
    inputs = build_vllm_inputs(req, ChatEncoder(build_offline_processor("qwen2_5_vl"), fam), backend.limits)
    kw = inputs["mm_processor_kwargs"]
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        smart_resize as hf_smart_resize,
    )

    assert hf_smart_resize(h, w, factor=28, min_pixels=kw["min_pixels"], max_pixels=kw["max_pixels"]) == (h, w)


class ScriptedScorer(Scripted):
    """Retrieval: a caption scores 0 given its own image, -1 given any other (by matching the prompt's image)."""

    def __init__(self, records):
        super().__init__(lambda r: "")
        self.caption_owner = {}
        for i, rec in enumerate(records):
            for c in rec["captions"]:
                self.caption_owner.setdefault(c, set()).add(rec["images"][0]["path"])

    def loglikelihood(self, requests, answers, *, progress=False):
        out = []
        for r, a in zip(requests, answers):
            try:
                load_request_images(r)
            except Exception:  # noqa: BLE001
                out.append(None)
                continue
            mine = any(str(r.images[0]["abs_path"]).endswith(p) for p in self.caption_owner[a])
            out.append(0.0 if mine else -1.0)
        return out


def test_retrieval_by_caption_likelihood(data_root, tmp_path):
    bench = Benchmark(name="ret", records=str(data_root / "records" / "syn_cap_rgb_test.jsonl"),
                      image_root=str(data_root), task="captioning", metric="retrieval", options={"max_samples": 6})
    records = read_records(bench.records)[:6]
    m = run_benchmark(bench, ScriptedScorer(records), tmp_path, EvalOptions(progress=False))
    assert m["n"] == 6 and m["texts"] == 6
    assert m["txt_r@1"] == 100.0 and m["img_r@1"] == 100.0 and m["mean_recall"] == 100.0
    # chance by hand for 6 images, 1 caption each: R@1 = 1/6, R@5 = 5/6, R@10 = 1 (both directions)
    assert m["chance_mean_recall"] == pytest.approx(100 * (1 / 6 + 5 / 6 + 1) / 3)
    # a missing image is a counted skip, and its caption leaves the pool
    p = records[1]["images"][0]["path"]
    os.rename(data_root / p, data_root / (p + ".away"))
    try:
        m = run_benchmark(bench, ScriptedScorer(records), tmp_path / "b", EvalOptions(progress=False))
    finally:
        os.rename(data_root / (p + ".away"), data_root / p)
    assert m["skipped"] == {"image_missing": 1} and m["n"] == 5 and m["texts"] == 5 and m["mean_recall"] == 100.0
    # a backend that cannot score likelihoods (vLLM here) is refused up front
    with pytest.raises(ConfigError, match="does not provide; use --backend hf"):
        run_benchmark(bench, Scripted(lambda r: ""), tmp_path / "c", EvalOptions(progress=False))
