"""Scoring end to end on the synthetic IR difficulty set: generator, warm-up, score file, Spearman, inspect."""

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from cotrain.curriculum.check import knob_agreement, read_knobs, spearman
from cotrain.curriculum.score import pair_texts, run_warmup, score_difficulty
from cotrain.data.synthetic import generate_demo_data
from cotrain.data.synthetic.ir_difficulty import make_ir_difficulty_set
from cotrain.errors import ConfigError
from cotrain.records import read_records


def test_spearman_hand_cases():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks [0, 1, 2] vs [0, 2, 1]: Pearson of centred ranks (-1, 0, 1) . (-1, 1, 0) / 2 = 0.5
    assert spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)


@pytest.fixture(scope="module")
def difficulty_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("irdiff")
    generate_demo_data(root / "demo", seed=1, n_scenes=30, n_large=0, progress=False, workers=1)
    path = make_ir_difficulty_set(root / "demo", root, seed=0)
    return root, path


def test_generator_degrades_by_its_knobs(difficulty_set):
    root, path = difficulty_set
    recs, knobs = read_records(path), read_knobs(root / "knobs.jsonl")
    assert len(recs) == 24 and set(knobs) == {r["id"] for r in recs}
    src = {r["id"]: r for r in read_records(root / "demo" / "records" / "syn_triplet_train.jsonl")}
    change, k = [], []
    for r in recs:
        new = np.asarray(Image.open(root / r["images"][1]["path"]).convert("RGB"), float)
        vis = np.asarray(Image.open(root / "demo" / src[r["id"]]["images"][0]["path"]).convert("RGB"), float)
        change.append(np.abs(new - vis).mean())  # the knob moves the image away from its visible twin
        k.append(knobs[r["id"]]["image"])
        assert (root / r["images"][0]["path"]).is_file()  # the RGB twin is reachable from the set's root
    assert spearman(change, k) > 0.9
    words = [(sum(a != b for a, b in zip(r["ir_captions"][0].split(), src[r["id"]]["ir_captions"][0].split()))
              / len(r["ir_captions"][0].split()), knobs[r["id"]]["caption"]) for r in recs]
    assert spearman(*zip(*words)) > 0.8


def _warmup_recipe(tmp_path, root):
    raw = {"data": {"data_root": str(root), "datasets": [
        {"name": "d", "records": f"{root}/records/syn_ir_difficulty.jsonl", "image_root": str(root)}]},
        "model": {"kind": "clip", "clip": {"supervision": "ir_aware", "max_text_tokens": 64, "image_size": 32,
                                           "hidden_size": 32, "num_layers": 1, "projection_dim": 16}},
        "train": {"batch_size": 8, "max_steps": 3, "logging_steps": 1}, "eval": {"enabled": False}}
    path = tmp_path / "warmup.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_score_both_lessons_and_use_the_file(difficulty_set, tmp_path):
    root, path = difficulty_set
    before, after = run_warmup(_warmup_recipe(tmp_path, root), [], tmp_path / "wu")
    assert (before / "config.json").is_file() and (after / "config.json").is_file()
    recs = read_records(path)
    rows, summary = score_difficulty(recs, root, encoder=before, before=before, after=after, progress=False)
    assert summary["scored"] == len(rows) == 24 and summary["mmd2"] > 0
    assert set(rows[0]) == {"id", "transfer", "alignment", "weight"}
    assert all(0 < r["weight"] < 2 for r in rows)
    first, _ = score_difficulty(recs, root, before=before, after=after, texts="first", progress=False)
    assert [r["alignment"] for r in first] != pytest.approx([r["alignment"] for r in rows])  # 5 texts vs 1
    agreement = knob_agreement(rows, read_knobs(root / "knobs.jsonl"))
    assert agreement["n"] == 24 and set(agreement) >= {"transfer_vs_image", "alignment_vs_caption"}
    # the file drives a curriculum
    from types import SimpleNamespace

    from cotrain.curriculum.schedule import build_curriculum

    scores = tmp_path / "scores.jsonl"
    scores.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = SimpleNamespace(scores=str(scores), tiers=3, schedule="ascending", merge="mean_rank", loss_weights=True)
    cur = build_curriculum("d", [r["id"] for r in recs], cfg)
    assert np.bincount(cur.tiers).tolist() == [8, 8, 8] and cur.weights is not None


def test_score_bad_inputs(difficulty_set, tmp_path):
    root, path = difficulty_set
    recs = read_records(path)
    with pytest.raises(ConfigError, match="give encoder"):
        score_difficulty(recs, root)
    with pytest.raises(ConfigError, match="both CLIP checkpoints"):
        score_difficulty(recs, root, before=tmp_path)
    with pytest.raises(ConfigError, match="ids repeat"):
        score_difficulty(recs + recs[:1], root, encoder=tmp_path)
    with pytest.raises(ConfigError, match="texts='some'; use one of all, ir, first"):
        score_difficulty(recs, root, before=tmp_path, after=tmp_path, texts="some")


def test_pair_texts_choices():
    rec = {"id": "r", "captions": ["a", "b"], "ir_captions": ["x"]}
    assert pair_texts(rec) == ["x", "a", "b"]
    assert pair_texts(rec, "ir") == ["x"] and pair_texts(rec, "first") == ["x"]
    assert pair_texts({"id": "r", "captions": ["a", "b"]}, "ir") == ["a", "b"]
    with pytest.raises(ConfigError, match="record 'r' has no caption"):
        pair_texts({"id": "r", "captions": []})


def test_inspect_shows_the_curriculum(difficulty_set, tmp_path, capsys):
    from cotrain.cli import main

    root, path = difficulty_set
    rng = np.random.default_rng(0)
    scores = tmp_path / "s.jsonl"
    scores.write_text("".join(json.dumps({"id": r["id"], "transfer": float(rng.normal())}) + "\n"
                              for r in read_records(path)))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "data": {"data_root": str(root), "datasets": [{"name": "d", "records": str(path), "image_root": str(root),
                                                       "curriculum": {"scores": str(scores), "tiers": 4}}]},
        "model": {"kind": "clip"}, "train": {"batch_size": 3, "output_dir": str(tmp_path / "o")}}))
    assert main(["inspect", str(recipe), "--no-image-check"]) == 0
    out = capsys.readouterr().out
    assert "curriculum d: ascending_stratified_random, 4 tiers of [6, 6, 6, 6] records" in out
    assert "tier of the first steps: 0 0" in out


def test_ensure_ir_difficulty_data_reuses_and_follows_its_source(tmp_path):
    from cotrain.data.synthetic.ir_difficulty import ensure_ir_difficulty_data

    path = ensure_ir_difficulty_data(tmp_path, seed=2, n_scenes=20)
    stamp = path.stat().st_mtime_ns
    assert ensure_ir_difficulty_data(tmp_path, seed=2, n_scenes=20) == path
    assert path.stat().st_mtime_ns == stamp  # fresh: not rewritten
    n = len(read_records(path))
    ensure_ir_difficulty_data(tmp_path, seed=2, n_scenes=30)  # other source scenes: the set follows them
    assert len(read_records(path)) > n
