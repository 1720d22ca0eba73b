"""Multi-process training support: DeepSpeed ZeRO configs, vision keep-alive, cross-rank counts.

Owns four things the training loop (``cotrain.training``) needs when it runs on several ranks:

* ``resolve_deepspeed_config``: a shipped ZeRO preset (``cotrain/deepspeed/*.json``) or a user's
  JSON file, checked against ``train.*`` before any model is built. Batch sizes, clipping and
  precision stay ``"auto"`` so the HF Trainer fills them from ``TrainingArguments``. Optimizer
  and scheduler sections are refused: cotrain builds the optimizer (per-module learning rates,
  weight-decay groups) and the scheduler itself, and DeepSpeed would silently replace both.
* ``vision_keepalive``: a zero-valued loss term that runs the vision tower on a dummy image for a
  micro-batch without images, so every rank touches the same parameters (ZeRO-3 gathers them
  collectively; DDP and ZeRO-1/2 reduce their gradients) and nothing changes numerically.
* ``all_reduce_counts``: sums per-rank counters (samples / tokens per dataset) for the summary;
* ``index_builder_ranks``: which rank builds a record index, on a shared or a node-local filesystem.

Must not build models, optimizers or Trainers, nor launch processes; importing it must not
import deepspeed (it is an optional dependency, imported only when a config is resolved).
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

from cotrain.errors import ConfigError

log = logging.getLogger(__name__)

_PRESET_DIR = Path(__file__).resolve().parent / "deepspeed"

DEEPSPEED_PRESETS: dict[str, Path] = {
    name: _PRESET_DIR / f"{name}.json" for name in ("zero1", "zero2", "zero3", "zero3_offload")
}
"""Shipped DeepSpeed configs by the name ``train.deepspeed`` accepts."""


def deepspeed_available() -> tuple[bool, str]:
    """(True, version) when deepspeed imports, else (False, why not)."""
    try:
        import deepspeed
    except Exception as e:  # an ImportError, or a broken install failing inside its own import
        return False, f"{type(e).__name__}: {e}"
    return True, str(getattr(deepspeed, "__version__", "unknown"))


def index_builder_ranks(shared_filesystem: bool) -> dict[str, int]:
    """``rank`` / ``world_size`` to give ``RecordIndex.build_or_load`` under torchrun.

    On a filesystem every node sees, global rank 0 builds a records file's index and all other ranks
    wait for it; with node-local copies of the data (``data.shared_filesystem: false``) each node's
    local rank 0 builds its own copy's index and only that node's ranks wait for it.
    """
    import os

    if shared_filesystem:
        return {"rank": int(os.environ.get("RANK", 0)), "world_size": int(os.environ.get("WORLD_SIZE", 1))}
    return {"rank": int(os.environ.get("LOCAL_RANK", 0)), "world_size": int(os.environ.get("LOCAL_WORLD_SIZE", 1))}


def _load_json(value: str) -> tuple[dict, str]:
    """The config named by ``value`` (preset name or path) and a label for messages."""
    if value in DEEPSPEED_PRESETS:
        path = DEEPSPEED_PRESETS[value]
        label = f"preset {value!r} ({path})"
    else:
        path = Path(value).expanduser()
        label = str(path)
        if not path.suffix == ".json" and not path.exists():
            raise ConfigError(f"train.deepspeed={value!r} is neither a shipped preset nor a file; use one of "
                              f"{', '.join(DEEPSPEED_PRESETS)} or the path of a DeepSpeed JSON config")
        if not path.is_file():
            raise ConfigError(f"train.deepspeed: DeepSpeed config file {path} does not exist; fix the path or use "
                              f"a preset ({', '.join(DEEPSPEED_PRESETS)})")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"train.deepspeed: {label} is not valid JSON (line {e.lineno}, column {e.colno}: "
                          f"{e.msg}); fix the file or use a preset ({', '.join(DEEPSPEED_PRESETS)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"train.deepspeed: {label} must hold a JSON object (a mapping of DeepSpeed options), "
                          f"got {type(raw).__name__}")
    return raw, label


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_against_train(ds: dict, label: str, train_cfg: Any) -> None:
    """Refuse what would silently override ``train.*`` or contradict it."""
    for section, owner in (("optimizer", "train.learning_rate / vision_lr / merger_lr / language_lr and the "
                                         "weight-decay groups (train.weight_decay)"),
                           ("scheduler", "train.lr_scheduler and train.warmup_ratio")):
        if section in ds:
            raise ConfigError(f"train.deepspeed: {label} has a {section!r} section; DeepSpeed's own {section} would "
                              f"silently replace {owner}. Delete the {section!r} section: cotrain builds the "
                              f"{section} from train.*")
    pairs = (("train_micro_batch_size_per_gpu", "train.batch_size", train_cfg.batch_size),
             ("gradient_accumulation_steps", "train.grad_accum", train_cfg.grad_accum))
    for key, ours, want in pairs:
        v = ds.get(key, "auto")
        if _is_number(v) and v != want:
            raise ConfigError(f"train.deepspeed: {label} sets {key}={v} but {ours}={want}; set {key} to \"auto\" "
                              f"(the Trainer fills it from {ours}) or make the two equal")
    per_rank = train_cfg.batch_size * train_cfg.grad_accum
    tbs = ds.get("train_batch_size", "auto")
    if _is_number(tbs) and (tbs <= 0 or tbs % per_rank):
        raise ConfigError(f"train.deepspeed: {label} sets train_batch_size={tbs}, not a multiple of "
                          f"train.batch_size x train.grad_accum = {per_rank}; set it to \"auto\"")
    bf16 = (ds.get("bf16") or {}).get("enabled", "auto")
    if isinstance(bf16, bool) and bf16 != bool(train_cfg.bf16):
        raise ConfigError(f"train.deepspeed: {label} sets bf16.enabled={str(bf16).lower()} but "
                          f"train.bf16={str(bool(train_cfg.bf16)).lower()}; set bf16.enabled to \"auto\"")
    if (ds.get("fp16") or {}).get("enabled") is True:
        raise ConfigError(f"train.deepspeed: {label} enables fp16, which cotrain does not train in; delete the "
                          "'fp16' section (use train.bf16=true for mixed precision)")


def resolve_deepspeed_config(value: str, train_cfg: Any) -> dict:
    """The DeepSpeed config for ``train.deepspeed=value`` as a new dict, checked against ``train_cfg``.

    ``value`` is a preset name (:data:`DEEPSPEED_PRESETS`) or the path of a JSON file. Raises
    ``ConfigError`` when deepspeed is not installed, the file is missing or not JSON, or the
    config has an optimizer/scheduler section or batch sizes that contradict ``train.*``.
    """
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"train.deepspeed={value!r}; use one of {', '.join(DEEPSPEED_PRESETS)} or a JSON path")
    raw, label = _load_json(value.strip())
    _check_against_train(raw, label, train_cfg)
    ok, why = deepspeed_available()
    if not ok:
        raise ConfigError(f"train.deepspeed={value!r} needs the deepspeed package, which does not import ({why}); "
                          "install it with `pip install 'cotrain[deepspeed]'` or unset train.deepspeed")
    return copy.deepcopy(raw)


# ----------------------------------------------------------------------------- vision keep-alive


def _unwrap(model: Any) -> Any:
    """The transformers model behind DDP / DeepSpeed engine / torch.compile / peft wrappers."""
    for _ in range(8):  # wrappers nest a few levels at most; a bound avoids cycles
        if hasattr(model, "get_base_model") and callable(model.get_base_model):  # peft PeftModel
            model = model.get_base_model()
        elif hasattr(model, "_orig_mod"):  # torch.compile
            model = model._orig_mod
        elif hasattr(model, "module") and not hasattr(model, "config"):  # DDP, DeepSpeedEngine
            model = model.module
        else:
            break
    return model


def vision_tower(model: Any) -> Any | None:
    """The Qwen-VL vision tower (``model.model.visual`` in transformers 5) behind any wrapper, or None."""
    base = _unwrap(model)
    inner = getattr(base, "model", None)
    tower = getattr(inner, "visual", None) if inner is not None else None
    if tower is None:
        tower = getattr(base, "visual", None)
    return tower


def _dummy_grid(tower: Any) -> tuple[int, int, int]:
    # one merge window: the merger needs merge x merge patches for its single output token, and
    # Qwen2.5-VL's window attention pads a partial window, so nothing smaller is valid
    merge = int(tower.config.spatial_merge_size)
    return 1, merge, merge


def _image_embeddings(out: Any) -> list:
    """Every tensor of the tower's output the model feeds into the language model."""
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor) and not hasattr(out, "keys"):
        # transformers <= 4.x returned the merged features (Qwen3-VL: plus deepstack list)
        tensors = [out[0]]
        for extra in out[1:]:
            tensors += [t for t in (extra if isinstance(extra, (list, tuple)) else [extra])
                        if isinstance(t, torch.Tensor)]
        return tensors
    merged = out.get("pooler_output") if hasattr(out, "get") else None
    if merged is None:
        merged = out.get("last_hidden_state") if hasattr(out, "get") else None
    if merged is None:
        raise TypeError(f"vision tower returned {type(out).__name__} without pooler_output/last_hidden_state")
    tensors = [merged]
    # Qwen3-VL injects deepstack features into early decoder layers: their mergers train too
    for feat in (out.get("deepstack_features") or []) if hasattr(out, "get") else []:
        tensors += [feat] if isinstance(feat, torch.Tensor) else list(feat)
    return tensors


def _dummy_features(tower: Any) -> Any:
    """``0.0 * sum(features)`` of the tower run on the smallest valid image of zero pixels."""
    import torch

    first = next(tower.parameters())
    cfg = tower.config
    t, h, w = _dummy_grid(tower)
    in_channels = getattr(cfg, "in_channels", None) or getattr(cfg, "in_chans", 3)
    patch_dim = int(in_channels) * int(cfg.temporal_patch_size) * int(cfg.patch_size) ** 2
    pixels = torch.zeros(t * h * w, patch_dim, dtype=first.dtype, device=first.device)
    grid = torch.tensor([[t, h, w]], dtype=torch.long, device=first.device)
    out = tower(pixels, grid_thw=grid)
    return 0.0 * sum(x.float().sum() for x in _image_embeddings(out))


def vision_keepalive(model: Any, inputs: dict) -> Any | None:
    """A loss term equal to 0 that runs the vision tower on a dummy image, or None when not needed.

    None when ``inputs`` has ``pixel_values`` (the forward already ran the tower), the model has
    no vision tower, or :func:`install_vision_keepalive` hooks are on the model (they already ran
    the tower inside the forward). Otherwise the tower runs on the smallest valid image (one merge
    window of zero pixels) in its parameters' dtype and device, and ``0.0 * sum(features)`` is
    returned: adding it to the loss leaves the loss value and every gradient unchanged, while the
    vision parameters take part in the backward pass (their gradient is exactly zero).

    Only an unwrapped model may take this term: added after the forward of a wrapped model it
    breaks the run (measured on 2 CPU ranks, gloo). DDP has already marked the unused vision
    weights ready when the forward ended ("marked as ready twice"); ZeRO-3 gathers each module's
    weights with one collective in execution order and gloo aborts on the mismatch ("Received data
    size doesn't match expected size"). So for a wrapped model without the hooks of
    :func:`install_vision_keepalive` this returns None under DDP (its find_unused_parameters,
    the HF default, copes with idle vision weights) and raises RuntimeError under DeepSpeed.
    """
    if inputs.get("pixel_values") is not None or inputs.get("pixel_values_videos") is not None:
        return None
    tower = vision_tower(model)
    if tower is None or next(tower.parameters(), None) is None:
        return None
    if getattr(tower, "_cotrain_keepalive", None) is not None:
        return None
    wrapper = type(model).__name__
    if wrapper == "DeepSpeedEngine":
        raise RuntimeError("vision_keepalive: a micro-batch without images under DeepSpeed needs the dummy vision "
                           "pass inside the forward; call cotrain.distributed.install_vision_keepalive(model) "
                           "before training (the Trainer's __init__)")
    if wrapper == "DistributedDataParallel":
        if not _warned:
            log.warning("vision_keepalive: no install_vision_keepalive hooks on a DDP model; text-only "
                        "micro-batches rely on find_unused_parameters")
            _warned.append(True)
        return None
    return _dummy_features(tower)


_warned: list = []


def install_vision_keepalive(model: Any) -> list | None:
    """Hook a zero-valued dummy vision pass into the model's forward where real images would run.

    In a training forward (module in train mode, grad enabled) that did not run the vision
    tower, a pre-hook on the language model adds ``0.0 * sum(dummy features)`` to
    ``inputs_embeds`` (adding zero: the values are unchanged bit for bit). Qwen-VL runs the tower
    between the token embedding and the language model, so every rank then gathers and reduces
    the vision weights at the same point of the forward and backward as a rank with images, which
    ZeRO-3 (one collective per module, in execution order) and ZeRO-2 (gradient buckets in the
    order they fill) need. Returns the hook handles, or None when the model has no vision tower.
    Installing twice is a no-op that returns the existing handles.
    """
    import torch

    tower = vision_tower(model)
    base = _unwrap(model)
    inner = getattr(base, "model", None)
    language = getattr(inner, "language_model", None)
    if tower is None or inner is None or language is None:
        return None
    existing = getattr(tower, "_cotrain_keepalive", None)
    if existing is not None:
        return existing["handles"]
    state = {"ran": False, "handles": []}

    def reset(_module, _args):
        state["ran"] = False

    def mark(_module, _args, _out):
        state["ran"] = True

    def feed(module, args, kwargs):
        if state["ran"] or not (module.training and torch.is_grad_enabled()):
            return None
        embeds = kwargs.get("inputs_embeds")
        if embeds is None:  # called with token ids: nothing to attach the term to
            return None
        kwargs["inputs_embeds"] = embeds + _dummy_features(tower).to(embeds.dtype)
        return args, kwargs

    state["handles"] = [inner.register_forward_pre_hook(reset), tower.register_forward_hook(mark),
                        language.register_forward_pre_hook(feed, with_kwargs=True)]
    tower._cotrain_keepalive = state
    return state["handles"]


# ----------------------------------------------------------------------------- counters


def close_process_group() -> None:
    """Barrier, then destroy the process group, if one is up: gloo workers can abort at exit unless
    every rank meets here first (shared/PLATFORM.md)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_counts(counter: dict[str, float]) -> dict[str, float]:
    """Per-key sums of ``counter`` over all ranks (identity without an initialised process group).

    Ranks may hold different keys (a rank never saw a dataset), so the key sets are gathered
    first and every rank reduces the same vector, in the same (sorted) order.
    """
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return dict(counter)
    key_sets: list = [None] * dist.get_world_size()
    dist.all_gather_object(key_sets, sorted(counter))
    keys = sorted(set().union(*key_sets))
    # float64 keeps integer token counts exact up to 2**53; the backend's device (CUDA for nccl)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    values = torch.tensor([float(counter.get(k, 0)) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return dict(zip(keys, values.cpu().tolist()))
