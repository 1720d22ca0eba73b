"""DeepSpeed presets and their checks, the vision keep-alive, and 2-process CPU training runs.

The multi-process tests launch ``tests/cotrain/dist_worker.py`` under ``torchrun --standalone
--nproc_per_node 2`` (gloo), or as two single-process "nodes" meeting through a c10d rendezvous, and
parse the ``DIST_RESULT`` line each rank prints.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from cotrain.config import TrainConfig
from cotrain.distributed import (DEEPSPEED_PRESETS, all_reduce_counts, deepspeed_available,
                                 install_vision_keepalive, resolve_deepspeed_config, vision_keepalive,
                                 vision_tower)
from cotrain.errors import ConfigError

WORKER = Path(__file__).with_name("dist_worker.py")
ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize("name,stage", [("zero1", 1), ("zero2", 2), ("zero3", 3), ("zero3_offload", 3)])
def test_presets_leave_optimisation_to_cotrain_and_sizes_to_the_trainer(name, stage):
    raw = json.loads(DEEPSPEED_PRESETS[name].read_text())
    assert raw["zero_optimization"]["stage"] == stage
    assert "optimizer" not in raw and "scheduler" not in raw
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping"):
        assert raw[key] == "auto", key
    assert raw["bf16"]["enabled"] == "auto"
    assert raw["zero_optimization"]["reduce_bucket_size"] == "auto"
    if stage == 3:
        assert raw["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    offload = {k: v["device"] for k, v in raw["zero_optimization"].items() if k.startswith("offload_")}
    assert offload == ({"offload_optimizer": "cpu", "offload_param": "cpu"} if name == "zero3_offload" else {})
    resolved = resolve_deepspeed_config(name, TrainConfig())
    assert resolved == raw
    resolved["zero_optimization"]["stage"] = 0  # the caller's copy: the next resolve is untouched
    assert resolve_deepspeed_config(name, TrainConfig())["zero_optimization"]["stage"] == stage


def test_presets_are_filled_completely_by_the_hf_trainer():
    # HF's own "auto" filling (the route the Trainer takes) must leave no "auto" behind
    from transformers import TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    for name in DEEPSPEED_PRESETS:
        ds = resolve_deepspeed_config(name, TrainConfig(batch_size=3, grad_accum=2))
        args = TrainingArguments(output_dir="/tmp/unused", per_device_train_batch_size=3,
                                 gradient_accumulation_steps=2, use_cpu=True, report_to="none")
        hf = HfTrainerDeepSpeedConfig(ds)
        hf.trainer_config_process(args)
        # a Qwen-VL config keeps hidden_size in text_config: HF sizes the buckets from it
        model = SimpleNamespace(config=SimpleNamespace(text_config=SimpleNamespace(hidden_size=64)))
        hf.trainer_config_finalize(args, model, num_training_steps=10)
        assert "auto" not in json.dumps(hf.config), name
        assert hf.config["train_micro_batch_size_per_gpu"] == 3 and hf.config["gradient_accumulation_steps"] == 2


def _write(tmp_path, obj, name="ds.json"):
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return str(p)


def test_user_json_file_is_accepted(tmp_path):
    cfg = {"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 2,
           "train_batch_size": 16}
    assert resolve_deepspeed_config(_write(tmp_path, cfg), TrainConfig(batch_size=4, grad_accum=2)) == cfg


@pytest.mark.parametrize("content,match", [
    ({"optimizer": {"type": "AdamW"}}, r"'optimizer' section.*vision_lr.*Delete the 'optimizer' section"),
    ({"scheduler": {"type": "WarmupLR"}}, r"'scheduler' section.*train.lr_scheduler.*Delete"),
    ({"train_micro_batch_size_per_gpu": 8}, r"train_micro_batch_size_per_gpu=8 but train.batch_size=2"),
    ({"gradient_accumulation_steps": 4}, r"gradient_accumulation_steps=4 but train.grad_accum=1"),
    ({"train_batch_size": 3}, r"train_batch_size=3, not a multiple.*= 2"),
    ({"bf16": {"enabled": True}}, r"bf16.enabled=true but train.bf16=false"),
    ({"fp16": {"enabled": True}}, r"enables fp16"),
    ("{not json", r"ds.json is not valid JSON \(line 1"),
    ("[1, 2]", r"must hold a JSON object"),
])
def test_bad_user_configs_are_refused_naming_file_and_fix(tmp_path, content, match):
    with pytest.raises(ConfigError, match=match):
        resolve_deepspeed_config(_write(tmp_path, content), TrainConfig(batch_size=2, grad_accum=1))


def test_unknown_name_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="neither a shipped preset nor a file.*zero1, zero2, zero3, zero3_offload"):
        resolve_deepspeed_config("zero4", TrainConfig())
    with pytest.raises(ConfigError, match=r"nope.json does not exist; fix the path"):
        resolve_deepspeed_config(str(tmp_path / "nope.json"), TrainConfig())


def test_missing_deepspeed_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # import deepspeed -> ImportError
    ok, why = deepspeed_available()
    assert not ok and "import of deepspeed halted" in why
    with pytest.raises(ConfigError, match=r"needs the deepspeed package.*pip install"):
        resolve_deepspeed_config("zero2", TrainConfig())


# ----------------------------------------------------------------------------- vision keep-alive


def _text_batch(model, n=2, length=7):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 200, (n, length), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone(),
            "mm_token_type_ids": torch.zeros_like(ids)}


def _grads(model):
    return {n: (None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()}


@pytest.fixture(scope="module")
def tiny():
    from cotrain.model.tiny import build_tiny_model

    return build_tiny_model("qwen2_5_vl", hidden_size=64).train()


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_keepalive_term_is_zero_with_zero_vision_grads(family):
    from cotrain.model.tiny import build_tiny_model

    model = build_tiny_model(family, hidden_size=64).train()
    batch = _text_batch(model)
    loss = model(**batch).loss
    loss.backward()
    reference = _grads(model)  # the text-only gradient, without any keep-alive
    model.zero_grad(set_to_none=True)
    loss2 = model(**batch).loss
    extra = vision_keepalive(model, batch)
    assert extra is not None and extra.ndim == 0
    total = loss2 + extra
    assert total.item() == loss.item()
    total.backward()
    vision = {n for n, _ in model.named_parameters() if n.startswith("model.visual.")}
    assert vision and all(reference[n] is None for n in vision)  # without the term the tower is idle
    for n, g in _grads(model).items():
        if n in vision:
            assert g is not None and torch.count_nonzero(g) == 0, n
        else:
            assert torch.equal(g, reference[n]), n


def test_keepalive_is_none_with_images_or_without_a_tower(tiny):
    batch = {**_text_batch(tiny), "pixel_values": torch.zeros(4, 1176), "image_grid_thw": torch.tensor([[1, 2, 2]])}
    assert vision_keepalive(tiny, batch) is None
    assert vision_keepalive(torch.nn.Linear(3, 3), _text_batch(tiny)) is None
    assert vision_tower(torch.nn.Linear(3, 3)) is None


def test_keepalive_finds_the_tower_behind_wrappers(tiny):
    from peft import LoraConfig, get_peft_model

    class Engine(torch.nn.Module):  # DDP and DeepSpeedEngine both keep the model in .module
        def __init__(self, m):
            super().__init__()
            self.module = m

    peft_model = get_peft_model(tiny, LoraConfig(r=2, target_modules=r".*language_model.*\.q_proj"))
    try:
        assert vision_tower(Engine(peft_model)) is tiny.model.visual
    finally:
        peft_model.unload()


def test_installed_hooks_run_the_tower_inside_the_forward_only_when_needed():
    from cotrain.model.tiny import build_tiny_model

    model = build_tiny_model("qwen2_5_vl", hidden_size=64).train()
    batch = _text_batch(model)
    loss = model(**batch).loss
    loss.backward()
    reference = _grads(model)
    model.zero_grad(set_to_none=True)
    calls = []
    model.model.visual.register_forward_hook(lambda *a: calls.append(1))
    handles = install_vision_keepalive(model)
    assert install_vision_keepalive(model) is handles  # idempotent
    hooked = model(**batch).loss
    assert len(calls) == 1 and hooked.item() == loss.item()
    assert vision_keepalive(model, batch) is None  # the forward already ran the tower
    hooked.backward()
    for n, g in _grads(model).items():
        if n.startswith("model.visual."):
            assert g is not None and torch.count_nonzero(g) == 0, n
        else:
            assert torch.equal(g, reference[n]), n
    with torch.no_grad():
        model(**batch)
    model.eval()
    model(**batch)
    assert len(calls) == 1  # no dummy pass in eval or without grad
    model.train()
    side = 28  # one real image of 2x2 patches: the tower runs once, for the image
    c = model.config
    ids = torch.tensor([[c.vision_start_token_id, c.image_token_id, c.vision_end_token_id, 10, 11]])
    model(input_ids=ids, attention_mask=torch.ones_like(ids), mm_token_type_ids=(ids == c.image_token_id).long(),
          pixel_values=torch.randn(4, 3 * 2 * 14 * 14), image_grid_thw=torch.tensor([[1, side // 14, side // 14]]))
    assert len(calls) == 2
    for h in handles:
        h.remove()


def test_all_reduce_counts_without_a_process_group_is_the_identity():
    counts = {"a": 3.0, "b": 5}
    out = all_reduce_counts(counts)
    assert out == {"a": 3.0, "b": 5} and out is not counts


# ----------------------------------------------------------------------------- 2 processes


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from cotrain.data.synthetic import generate_demo_data

    root = tmp_path_factory.mktemp("syn")
    generate_demo_data(root, seed=3, n_scenes=30, n_large=0, progress=False, workers=1)
    return root


@pytest.fixture(scope="module")
def torch_extensions(tmp_path_factory):
    # one compile of DeepSpeed's CPU op per test session (CI points all runs at one directory)
    return os.environ.get("TORCH_EXTENSIONS_DIR") or str(tmp_path_factory.mktemp("torch_extensions"))


def _env(ext_dir):
    return {**os.environ, "TORCH_EXTENSIONS_DIR": ext_dir, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _results(stdout: str, ranks: int, context: str) -> dict:
    # ranks share stdout and their lines may interleave: decode each object where it starts
    decoder = json.JSONDecoder()
    parts = stdout.split("DIST_RESULT ")[1:]
    results = {x["rank"]: x for x in (decoder.raw_decode(p)[0] for p in parts)}
    assert sorted(results) == list(range(ranks)), context
    for x in results.values():
        assert x["ok"], f"rank {x['rank']}: {x.get('error')}\n{context}"
    return results


def _torchrun(mode, spec, ext_dir, timeout=240):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER),
           mode, json.dumps(spec)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(ext_dir), cwd=ROOT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{mode} {spec.get('deepspeed')} did not finish in {timeout} s (hang):\n"
                    f"{(e.stdout or b'')[-2000:]!r}\n{(e.stderr or b'')[-3000:]!r}")
    return _results(r.stdout, 2, f"rc={r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun_two_nodes(mode, specs, ext_dir, timeout=300):
    """Two torchrun agents on this machine, one process each, meeting through a c10d rendezvous (as two
    nodes would: ``--nnodes 2 --node_rank i --rdzv-backend c10d --rdzv-endpoint HOST:PORT``).
    ``specs``: the worker spec of node 0 and node 1 (they differ when each node has its own paths)."""
    endpoint = f"127.0.0.1:{_free_port()}"
    procs, logs = [], []
    for node, spec in enumerate(specs):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
               "--node_rank", str(node), "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint,
               "--rdzv-id", "cotrain-test", str(WORKER), mode, json.dumps(spec)]
        out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        logs.append((out, err))
        procs.append(subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=_env(ext_dir), cwd=ROOT))
    deadline = time.monotonic() + timeout
    hung = False
    for p in procs:
        try:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            hung = True
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    texts = []
    for out, err in logs:
        out.seek(0), err.seek(0)
        texts.append((out.read(), err.read()))
    context = "\n".join(f"node {i}: rc={p.returncode}\n{o[-3000:]}\n{e[-5000:]}"
                         for i, (p, (o, e)) in enumerate(zip(procs, texts)))
    if hung:
        pytest.fail(f"two-node {mode} run did not finish in {timeout} s (hang):\n{context}")
    return _results("".join(o for o, _ in texts), 2, context)


def _recipe(data_root, out_dir, deepspeed):
    return {
        "run_name": f"dist-{deepspeed}",
        "data": {"data_root": str(data_root), "max_pixels": 16 * 28 * 28, "max_length": 1536,
                 "datasets": [{"name": "syn_cls", "records": "${data_root}/records/syn_cls_train.jsonl",
                               "image_root": "${data_root}", "max_samples": 8},
                              {"name": "syn_grounding", "records": "${data_root}/records/syn_grounding_test.jsonl",
                               "image_root": "${data_root}", "weight": 0.25}]},
        "model": {"tiny": {"hidden_size": 64}},
        "train": {"output_dir": str(out_dir), "batch_size": 2, "max_steps": 4, "logging_steps": 1,
                  "learning_rate": 1e-3, "save_steps": 0, "deepspeed": deepspeed},
        "eval": {"enabled": False},
    }


@pytest.fixture(scope="module")
def one_node_runs(data_root, torch_extensions, tmp_path_factory):
    """DDP, ZeRO-2 and ZeRO-3 runs of one node with 2 processes (shared by the tests below)."""
    out = tmp_path_factory.mktemp("one_node")
    return {ds: _torchrun("recipe", {"recipe": _recipe(data_root, out / str(ds), ds)}, torch_extensions)
            for ds in (None, "zero2", "zero3")}, out


@pytest.mark.slow
def test_ddp_zero2_zero3_give_the_same_losses(one_node_runs):
    runs, out = one_node_runs
    ddp = runs[None][0]["losses"]
    assert len(ddp) == 4 and all(r[0]["steps"] == 4 for r in runs.values())
    assert [runs[ds][0]["zero_stage"] for ds in (None, "zero2", "zero3")] == [0, 2, 3]
    for ds in ("zero2", "zero3"):
        # same data, init and fp32 math; only the reduction route differs (bucketed all-reduce vs
        # reduce-scatter/all-gather of flat fp32 buffers), so agreement is to float rounding
        assert runs[ds][0]["losses"] == pytest.approx(ddp, rel=1e-4), ds
        assert runs[ds][1]["losses"] == runs[ds][0]["losses"]  # the logged loss is the ranks' mean
    # per-rank counters summed over ranks: every key of either rank, values added
    for res in runs.values():
        local = [res[r]["local_samples"] for r in (0, 1)]
        want = {k: float(local[0].get(k, 0) + local[1].get(k, 0)) for k in set(local[0]) | set(local[1])}
        assert res[0]["summed_samples"] == want == res[1]["summed_samples"]
        assert sum(want.values()) == 4 * 2 * 2  # steps x ranks x batch_size
    assert (out / "zero3" / "final" / "config.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("shared", [True, False])
def test_two_nodes_c10d_zero2_give_the_losses_of_one_node(one_node_runs, data_root, torch_extensions, tmp_path,
                                                         shared):
    """2 "nodes" x 1 process (c10d rendezvous, gloo, ZeRO-2) == 1 node x 2 processes, step by step.

    ``data.shared_filesystem: false`` (node-local copies) changes who builds indexes and who saves,
    never the numbers.
    """
    # shared: both nodes read one data_root; node-local: each node reads its own copy. The output
    # directory is shared either way (transformers writes model files on global rank 0 only).
    roots = [data_root] * 2 if shared else [shutil.copytree(data_root, tmp_path / f"data{n}") for n in (0, 1)]
    specs = []
    for root in roots:
        recipe = _recipe(root, tmp_path / "out", "zero2")
        recipe["data"]["shared_filesystem"] = shared
        specs.append({"recipe": recipe})
    two = _torchrun_two_nodes("recipe", specs, torch_extensions)
    want = one_node_runs[0]["zero2"][0]["losses"]
    assert len(want) == 4
    for rank in (0, 1):
        assert two[rank]["losses"] == pytest.approx(want, rel=1e-5), rank
        assert two[rank]["summed_samples"] == one_node_runs[0]["zero2"][0]["summed_samples"]
    assert (tmp_path / "out" / "final" / "config.json").is_file()


def test_index_builder_ranks_follow_the_filesystem(monkeypatch):
    """Node 1 of 2 x 4 processes: its first process builds on node-local copies, waits on a shared filesystem."""
    from cotrain.distributed import index_builder_ranks

    for k, v in {"RANK": "4", "WORLD_SIZE": "8", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "4"}.items():
        monkeypatch.setenv(k, v)
    assert index_builder_ranks(True) == {"rank": 4, "world_size": 8}
    assert index_builder_ranks(False) == {"rank": 0, "world_size": 4}


@pytest.mark.slow
def test_text_only_micro_batch_under_zero3_finishes_and_matches_ddp(torch_extensions, tmp_path):
    runs = {ds: _torchrun("textonly", {"deepspeed": ds, "max_steps": 2, "output_dir": str(tmp_path / str(ds))},
                          torch_extensions)
            for ds in (None, "zero3")}
    for ds, res in runs.items():
        rank1 = res[1]["keepalive"]
        # rank 1 really trained on text-only micro-batches, and each one ran the dummy vision pass
        assert rank1["text_only_batches"] == 2 and rank1["dummy_vision_runs"] == 2, ds
        assert res[1]["datasets_seen"] == {"txt": 4}
        assert res[0]["keepalive"]["dummy_vision_runs"] == 0 and res[0]["datasets_seen"]["img"] == 3
    assert runs["zero3"][0]["losses"] == pytest.approx(runs[None][0]["losses"], rel=1e-4)


def _clip_recipe(data_root, out, batch_size):
    return {"data": {"data_root": str(data_root), "datasets": [
                {"name": "t", "records": f"{data_root}/records/syn_triplet_train.jsonl", "image_root": str(data_root)}]},
            "model": {"kind": "clip", "clip": {"max_text_tokens": 64, "image_size": 32, "hidden_size": 32,
                                               "num_layers": 1, "projection_dim": 16}},
            "train": {"output_dir": str(out), "batch_size": batch_size, "max_steps": 3, "logging_steps": 1,
                      "lr_scheduler": "constant", "warmup_ratio": 0.0},
            "eval": {"enabled": False}}


@pytest.mark.slow
def test_torchrun_clip_trains_on_the_global_batch(data_root, torch_extensions, tmp_path):
    """2 ranks x batch 2 under torchrun log the losses of 1 process x batch 4 (same items, same updates)."""
    from cotrain.config import load_config
    from cotrain.contrastive.recipe import run

    two = _torchrun("clip", {"recipe": _clip_recipe(data_root, tmp_path / "two", 2)}, torch_extensions)[0]
    run(load_config(raw=_clip_recipe(data_root, tmp_path / "one", 4)))
    one = [r["loss"] for r in map(json.loads, (tmp_path / "one" / "log_history.jsonl").read_text().splitlines())
           if "loss" in r]
    assert two["global_batch"] == [4]
    assert len(two["losses"]) == len(one) == 3
    assert two["losses"] == pytest.approx(one, rel=1e-4)


@pytest.mark.slow
def test_sensor_branch_under_zero3_gives_the_losses_of_ddp(torch_extensions, tmp_path):
    """The widened patch embedding (S2 bands in their own channels) trains under ZeRO-3 as under DDP, and
    the saved model keeps its layout."""
    from cotrain.data.synthetic.multisensor import generate_multisensor_data

    root = tmp_path / "ms"
    generate_multisensor_data(root, n_patches=30, seed=2)
    branch = {"bands": ["B02", "B03", "B04", "B08", "B11"], "stats": str(root / "stats" / "s2.json")}

    def recipe(ds):
        return {"run_name": f"branch-{ds}",
                "data": {"data_root": str(root), "min_pixels": 3136, "max_pixels": 3136, "max_length": 512,
                         "datasets": [{"name": "ms_cls", "records": "${data_root}/records/ms_cls_train.jsonl",
                                       "image_root": "${data_root}", "composite": "true_colour",
                                       "sensor_branch": branch}]},
                "model": {"tiny": {"hidden_size": 64}},
                "train": {"output_dir": str(tmp_path / str(ds)), "batch_size": 2, "max_steps": 3, "logging_steps": 1,
                          "learning_rate": 1e-3, "save_steps": 0, "deepspeed": ds},
                "eval": {"enabled": False}}

    runs = {ds: _torchrun("recipe", {"recipe": recipe(ds)}, torch_extensions) for ds in (None, "zero3")}
    assert len(runs[None][0]["losses"]) == 3
    assert (runs[None][0]["zero_stage"], runs["zero3"][0]["zero_stage"]) == (0, 3)  # ZeRO-3 really engaged
    assert runs["zero3"][0]["losses"] == pytest.approx(runs[None][0]["losses"], rel=1e-4)
    saved = json.loads((tmp_path / "zero3" / "final" / "config.json").read_text())
    assert saved["sensor_channels"][3:] == branch["bands"] and saved["vision_config"]["in_channels"] == 8
