"""tools/inspect_recipe.py: the realised mix from headers and templates, and clear failures."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cotrain.config import load_config
from cotrain.data.synthetic import generate_demo_data
from cotrain.recipe_report import by_task, inspect_recipe

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("insp")
    generate_demo_data(root, seed=2, n_scenes=20, n_large=0, progress=False, workers=1)
    ds = lambda n, w: {"name": n, "records": f"${{data_root}}/records/{n}_train.jsonl",  # noqa: E731
                       "image_root": "${data_root}", "weight": w}
    raw = {"data": {"data_root": str(root), "max_pixels": 64 * 28 * 28,
                    "datasets": [ds("syn_cls", 2.0), ds("syn_vqa", 0.5), ds("syn_cap_dual", 1.0)]},
           "train": {"output_dir": str(root / "out")}}
    path = root / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    return root, path


def test_realised_mix_matches_weights(recipe):
    root, path = recipe
    mix = {m.name: m for m in inspect_recipe(load_config(path))}
    cls, vqa, dual = mix["syn_cls"], mix["syn_vqa"], mix["syn_cap_dual"]
    assert cls.samples == 2 * cls.records and vqa.samples == round(0.5 * vqa.records)
    assert dual.images == 2 * dual.records  # RGB + IR per record
    total = cls.samples + vqa.samples + dual.samples
    assert cls.share == pytest.approx(cls.samples / total)
    # a classification prompt holds at most 64 visual tokens + 2 vision markers + the class list text
    assert 66 < cls.mean_tokens < 66 + 600
    # two images per dual-modal sample: more tokens than a one-image caption of the same scenes
    assert dual.mean_tokens > cls.mean_tokens
    tasks = by_task(list(mix.values()))
    assert set(tasks) == {"classification", "vqa", "captioning"}


def _cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "inspect_recipe.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_cli_prints_mix_and_fails_on_bad_images(recipe, tmp_path):
    root, path = recipe
    r = _cli(path, "--png", tmp_path / "mix.png")
    assert r.returncode == 0, r.stderr
    assert "syn_cls" in r.stdout and "classification" in r.stdout and (tmp_path / "mix.png").is_file()
    first = next((root / "images" / "rgb").iterdir())
    first.write_bytes(b"not an image")
    r = _cli(path, "--png", tmp_path / "mix2.png")
    assert r.returncode == 2 and "image problems" in r.stderr and "image_unreadable" in r.stdout
    r = _cli(path, "data.weight=2")
    assert r.returncode == 2 and "unknown key 'data.weight'" in r.stderr
