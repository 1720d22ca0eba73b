"""Config binding, overrides and validation: every bad input names the key and the fix."""

import pytest

from cotrain.config import RunConfig, check_files, iter_fields, load_config, parse_override
from cotrain.errors import ConfigError

BASE = {"data": {"datasets": [{"name": "a", "records": "${data_root}/a.jsonl", "image_root": "${data_root}"}]}}


def _raw():
    import copy

    return copy.deepcopy(BASE)


def test_defaults_and_substitution():
    cfg = load_config(raw=_raw(), overrides=["data.data_root=/data/rs"])
    assert isinstance(cfg, RunConfig)
    assert cfg.data.datasets[0].records == "/data/rs/a.jsonl"
    assert cfg.data.datasets[0].image_root == "/data/rs"
    assert cfg.model.attn_implementation == "sdpa"


def test_overrides_are_typed_yaml_scalars():
    cfg = load_config(raw=_raw(), overrides=["train.max_steps=7", "train.learning_rate=3e-4",
                                             "train.bf16=true", "model.path=/ckpt/x", "data.synthetic.seed=5"])
    assert cfg.train.max_steps == 7 and isinstance(cfg.train.max_steps, int)
    assert cfg.train.learning_rate == pytest.approx(3e-4)
    assert cfg.train.bf16 is True
    assert cfg.model.path == "/ckpt/x"
    assert cfg.data.synthetic is not None and cfg.data.synthetic.seed == 5


def test_unknown_override_suggests_closest_key():
    with pytest.raises(ConfigError, match=r"unknown key 'train.max_stepz'.*Did you mean 'max_steps'"):
        load_config(raw=_raw(), overrides=["train.max_stepz=3"])


def test_override_of_missing_section():
    with pytest.raises(ConfigError, match="unknown key 'trian'.*Did you mean 'train'"):
        load_config(raw=_raw(), overrides=["trian.max_steps=3"])


def test_override_into_a_list_is_refused():
    with pytest.raises(ConfigError, match="is a list"):
        load_config(raw=_raw(), overrides=["data.datasets.weight=2"])


def test_override_without_equals():
    with pytest.raises(ConfigError, match="not key=value"):
        parse_override("train.max_steps")


def test_unknown_yaml_key(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("data:\n  datasets: []\n  max_pixel: 100\n")
    with pytest.raises(ConfigError, match=r"r.yaml.*unknown config key 'data.max_pixel'.*'max_pixels'"):
        load_config(p)


def test_unknown_dataset_key_names_the_dataset_field(tmp_path):
    raw = _raw()
    raw["data"]["datasets"][0]["wieght"] = 2
    with pytest.raises(ConfigError, match=r"data.datasets\[0\].wieght.*'weight'"):
        load_config(raw=raw)


@pytest.mark.parametrize("bad, pattern", [
    ({"weight": 0}, "weight=0.0 must be > 0"),
    ({"weight": -1}, "must be > 0"),
    ({"weight": float("nan")}, "must be > 0"),
    ({"weight": float("inf")}, "must be > 0"),
    ({"max_samples": 0}, "max_samples=0 must be >= 1"),
    ({"max_samples": -5}, "max_samples=-5 must be >= 1"),
    ({"box_format": "rbox"}, "use hbb, obb, quad or point"),
    ({"box_format": "point", "task": "detection"}, "does not apply to task 'detection'"),
    ({"prompt_style": "xml"}, "use plain or json"),
    ({"random_resize": 2}, "probability"),
    ({"records": ""}, "'records'"),
])
def test_bad_dataset_values(bad, pattern):
    raw = _raw()
    raw["data"]["datasets"][0].update(bad)
    with pytest.raises(ConfigError, match=pattern):
        load_config(raw=raw)


def test_wrong_types_and_values():
    with pytest.raises(ConfigError, match="train.batch_size: expected an integer"):
        load_config(raw=_raw(), overrides=["train.batch_size=abc"])
    with pytest.raises(ConfigError, match="on_bad_record"):
        load_config(raw=_raw(), overrides=["data.on_bad_record=ignore"])
    with pytest.raises(ConfigError, match="attn_implementation"):
        load_config(raw=_raw(), overrides=["model.attn_implementation=flash"])
    with pytest.raises(ConfigError, match="data.datasets is empty"):
        load_config(raw={"data": {"datasets": []}})


def test_duplicate_dataset_names():
    raw = _raw()
    raw["data"]["datasets"].append(dict(raw["data"]["datasets"][0]))
    with pytest.raises(ConfigError, match="duplicate dataset name 'a'"):
        load_config(raw=raw)


def test_missing_files(tmp_path):
    cfg = load_config(raw=_raw(), overrides=[f"data.data_root={tmp_path}"])
    with pytest.raises(ConfigError, match="a.jsonl.*does not exist"):
        check_files(cfg)
    (tmp_path / "a.jsonl").write_text("")
    check_files(cfg)


def test_missing_config_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_field_docs_cover_every_option():
    rows = list(iter_fields())
    keys = {r[0] for r in rows}
    assert {"data.max_pixels", "train.learning_rate", "model.tiny.family", "eval.max_new_tokens"} <= keys
    undocumented = [r[0] for r in rows if not r[3]]
    assert undocumented == [], f"fields without a docstring: {undocumented}"


def test_demo_recipe_is_valid():
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[2] / "data_recipes" / "demo.yaml")
    assert cfg.data.synthetic is not None
    assert cfg.model.path is None
    names = {d.name for d in cfg.data.datasets}
    assert "syn_cls" in names


def test_budgets_are_checked_before_model_load():
    from cotrain.config import check_budgets

    raw = _raw()
    raw["data"]["datasets"][0].update({"min_pixels": 5000, "max_pixels": 4000})
    with pytest.raises(ConfigError, match="min_pixels=5000 > max_pixels=4000"):
        load_config(raw=raw)
    raw = _raw()
    raw["data"]["datasets"][0]["min_pixels"] = -5
    with pytest.raises(ConfigError, match="min_pixels=-5 must be > 0"):
        load_config(raw=raw)
    # dataset min above the data-level max: only visible once defaults are merged
    raw = _raw()
    raw["data"]["datasets"][0]["min_pixels"] = 10**7
    cfg = load_config(raw=raw)
    with pytest.raises(ConfigError, match="effective min_pixels=10000000 > max_pixels"):
        check_budgets(cfg, 28)
    # 256 visual tokens per image cannot fit max_length=200
    cfg = load_config(raw=_raw(), overrides=["data.max_pixels=200704", "data.max_length=200"])
    with pytest.raises(ConfigError, match="258 tokens.*max_length=200"):
        check_budgets(cfg, 28)
    check_budgets(load_config(raw=_raw()), 28)


def test_include_merges_sections_and_concatenates_datasets(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "common.yaml").write_text(
        "data:\n  max_pixels: 1000000\n  datasets:\n    - {name: a, records: a.jsonl}\n"
        "train:\n  learning_rate: 0.01\n  batch_size: 4\n")
    (tmp_path / "r.yaml").write_text(
        "include: base/common.yaml\ndata:\n  datasets:\n    - {name: b, records: b.jsonl, weight: 2}\n"
        "train:\n  batch_size: 16\n")
    cfg = load_config(tmp_path / "r.yaml")
    assert [d.name for d in cfg.data.datasets] == ["a", "b"]
    assert cfg.data.max_pixels == 1000000 and cfg.train.learning_rate == 0.01 and cfg.train.batch_size == 16


def test_include_errors(tmp_path):
    (tmp_path / "x.yaml").write_text("include: y.yaml\n")
    (tmp_path / "y.yaml").write_text("include: x.yaml\n")
    with pytest.raises(ConfigError, match="include cycle"):
        load_config(tmp_path / "x.yaml")
    (tmp_path / "z.yaml").write_text("include: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"missing.yaml.*does not exist \(included from"):
        load_config(tmp_path / "z.yaml")
    (tmp_path / "w.yaml").write_text("include: {a: 1}\n")
    with pytest.raises(ConfigError, match="'include' must be a path"):
        load_config(tmp_path / "w.yaml")


def test_budget_check_follows_the_too_long_policy():
    from cotrain.config import check_budgets

    over = ["data.max_pixels=200704", "data.max_length=200"]  # 256 visual tokens per image > 200
    with pytest.raises(ConfigError, match="max_pixels=200704"):
        check_budgets(load_config(raw=_raw(), overrides=over), 28)
    # with downscale the image may shrink to min_pixels (4 tokens), which fits
    check_budgets(load_config(raw=_raw(), overrides=over + ["data.too_long=downscale"]), 28)
    with pytest.raises(ConfigError, match="min_pixels=200704"):
        check_budgets(load_config(raw=_raw(), overrides=over + ["data.too_long=downscale",
                                                                "data.min_pixels=200704"]), 28)
