"""What trains: freezing by part, LoRA adapters, per-part optimizer groups, adapter save/load/merge.

A Qwen-VL model has three parts, and every parameter belongs to exactly one of them
(transformers 5.x layout, the same for Qwen2-VL, Qwen2.5-VL and Qwen3-VL):

* ``vision``: ``model.visual`` (patch embedding, position embedding, ViT blocks);
* ``merger``: ``model.visual.merger`` and Qwen3-VL's ``model.visual.deepstack_merger_list``
  (the MLPs that turn merged patches into language-model tokens);
* ``language``: ``model.language_model`` (embeddings, decoder, final norm) and ``lm_head``.

The workflow the training run follows::

    apply_freeze(model, cfg.model)              # requires_grad per part (train_* flags)
    if cfg.model.lora.enabled:
        model = apply_lora(model, cfg.model)    # adapters on the chosen parts, their base frozen
    groups = optimizer_param_groups(model, cfg.train)   # part x decay/no-decay, per-part lr
    ... train ...
    save_adapter(model, out / "adapter")        # adapters + fully trained non-adapted parts
    model = merge_lora(model)                   # plain transformers model for save/eval

This module owns those decisions and the checks that turn a mismatched adapter into a
``ModelLoadError``. It must not build optimizers, schedulers or Trainers (the training loop does),
load checkpoints from disk other than adapters, or patch model code (``cotrain.model.kernels`` does).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from cotrain.errors import ConfigError, ModelLoadError

logger = logging.getLogger(__name__)

PARTS = ("vision", "merger", "language")
"""The parts of a Qwen-VL model that can be frozen, adapted and given their own learning rate."""

_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "base_model.model.")
"""Prefixes that wrappers add to parameter names: DDP, torch.compile, peft's PeftModel."""

_PART_PREFIXES = (
    ("model.visual.merger.", "merger"),
    ("model.visual.deepstack_merger_list.", "merger"),
    ("model.visual.", "vision"),
    ("model.language_model.", "language"),
    ("lm_head.", "language"),
)
"""Name prefix -> part, first match wins (the mergers live inside ``model.visual``)."""

LORA_TARGETS = {
    # q/k/v/o of attention and the SwiGLU MLP of every decoder layer (all three families).
    "language": r"(?:.*\.)?language_model\.layers\.\d+\."
                r"(?:self_attn\.(?:q_proj|k_proj|v_proj|o_proj)|mlp\.(?:gate_proj|up_proj|down_proj))",
    # ViT blocks: fused qkv + output projection; the MLP is fc1/fc2 (Qwen2-VL), gate/up/down
    # (Qwen2.5-VL) or linear_fc1/linear_fc2 (Qwen3-VL). The mergers are not blocks: not matched.
    "vision": r"(?:.*\.)?visual\.blocks\.\d+\."
              r"(?:attn\.(?:qkv|proj)|mlp\.(?:fc1|fc2|linear_fc1|linear_fc2|gate_proj|up_proj|down_proj))",
}
"""Regexes (``re.fullmatch`` on module names, as peft applies them) of the LoRA-adapted linears."""

TRAINED_PARTS_FILE = "trained_parts.safetensors"
"""Next to the adapter: full weights of parts trained without adapters (e.g. the merger)."""
ADAPTER_META_FILE = "cotrain_adapter.json"
"""Next to the adapter: the base model facts an adapter only fits (family, widths)."""


def _strip_wrappers(name: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix):]
                stripped = True
    return name


def part_of(param_name: str) -> str:
    """The part ("vision", "merger" or "language") a parameter name belongs to.

    Accepts names of the bare model, of a peft model (``base_model.model.`` prefix, ``lora_A`` /
    ``base_layer`` suffixes) and of DDP / compiled wrappers. Raises ``ValueError`` naming the
    parameter when it belongs to no known part (e.g. a different architecture).
    """
    name = _strip_wrappers(param_name)
    for prefix, part in _PART_PREFIXES:
        if name.startswith(prefix):
            return part
    raise ValueError(f"parameter {param_name!r} belongs to no known part of a Qwen-VL model "
                     f"(expected a name under {', '.join(p for p, _ in _PART_PREFIXES)}); is this a "
                     "Qwen2-VL / Qwen2.5-VL / Qwen3-VL model in the transformers 5 layout?")


def _numel(p: torch.nn.Parameter) -> int:
    # under ZeRO-3 a partitioned parameter is empty locally; ds_numel is its full size
    return int(getattr(p, "ds_numel", p.numel()))


def _is_lora_param(name: str) -> bool:
    return ".lora_" in name


def trainable_summary(model) -> dict[str, dict]:
    """``{part: {"trainable": n, "total": n}}`` in parameter elements (adapters count to their part)."""
    summary = {part: {"trainable": 0, "total": 0} for part in PARTS}
    for name, p in model.named_parameters():
        counts = summary[part_of(name)]
        n = _numel(p)
        counts["total"] += n
        if p.requires_grad:
            counts["trainable"] += n
    return summary


def _log_summary(summary: dict[str, dict], what: str) -> None:
    for part in PARTS:
        c = summary[part]
        share = 100.0 * c["trainable"] / c["total"] if c["total"] else 0.0
        logger.info("%s %-8s trainable %12d / %12d (%.1f%%)", what, part, c["trainable"], c["total"], share)


def _train_flags(model_cfg) -> dict[str, bool]:
    return {"vision": bool(model_cfg.train_vision), "merger": bool(model_cfg.train_merger),
            "language": bool(model_cfg.train_language)}


def apply_freeze(model, model_cfg) -> dict[str, dict]:
    """Set ``requires_grad`` of every parameter from ``model.train_vision/train_merger/train_language``.

    Returns and logs :func:`trainable_summary`. Raises ``ConfigError`` when nothing would train.
    """
    flags = _train_flags(model_cfg)
    if not any(flags.values()):
        raise ConfigError("model.train_vision, model.train_merger and model.train_language are all false: "
                          "nothing would train. Set at least one of them to true.")
    for name, p in model.named_parameters():
        p.requires_grad_(flags[part_of(name)])
    _open_sensor_branch(model, model_cfg)
    summary = trainable_summary(model)
    if sum(c["trainable"] for c in summary.values()) == 0:
        raise ConfigError(f"no parameter is trainable with train flags {flags}; the model has no parameters "
                          "in the enabled parts. Enable another part.")
    _log_summary(summary, "freeze:")
    return summary


def _open_sensor_branch(model, model_cfg) -> None:
    """A widened patch embedding (``cotrain.model.sensor_branch``) trains when model.train_sensor_branch is on."""
    from cotrain.model.sensor_branch import channel_layout, has_branch, patch_embed

    if has_branch(channel_layout(model.config)) and getattr(model_cfg, "train_sensor_branch", True):
        for p in patch_embed(model).parameters():
            p.requires_grad_(True)


def lora_target_regex(model_cfg) -> str:
    """The peft ``target_modules`` regex for ``model.lora.language`` / ``model.lora.vision``."""
    lora = model_cfg.lora
    chosen = [LORA_TARGETS[part] for part, on in (("language", lora.language), ("vision", lora.vision)) if on]
    if not chosen:
        raise ConfigError("model.lora.enabled with lora.language=false and lora.vision=false adapts nothing; "
                          "enable one of them")
    return chosen[0] if len(chosen) == 1 else "(?:" + ")|(?:".join(chosen) + ")"


def apply_lora(model, model_cfg):
    """Wrap ``model`` in a peft ``PeftModel`` with LoRA adapters and return it.

    Adapted parts (``lora.language`` -> language, ``lora.vision`` -> vision) train only their
    adapters: all their base weights (also embeddings, norms, lm_head) are frozen. The other parts
    follow the train_* flags, so e.g. the merger trains fully while the language model gets LoRA.
    An adapted part whose train_* flag is false is a contradiction and raises ``ConfigError``.
    """
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    lora = model_cfg.lora
    adapted = {part for part, on in (("language", lora.language), ("vision", lora.vision)) if on}
    flags = _train_flags(model_cfg)
    for part in sorted(adapted):
        if not flags[part]:
            raise ConfigError(f"model.lora.{part}=true but model.train_{part}=false: a frozen part cannot be "
                              f"adapted. Set model.train_{part}=true to train it through LoRA, or "
                              f"model.lora.{part}=false to keep it frozen.")
    peft_cfg = PeftLoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                              target_modules=lora_target_regex(model_cfg), bias="none")
    try:
        peft_model = get_peft_model(model, peft_cfg)
    except ValueError as exc:
        raise ModelLoadError(f"LoRA targets {sorted(adapted)} match no module of {type(model).__name__} "
                             f"({exc}). Is this a Qwen-VL model in the transformers 5 layout?") from exc
    # peft froze every base weight; re-open the parts that train without adapters
    for name, p in peft_model.named_parameters():
        if _is_lora_param(name):
            p.requires_grad_(True)
        else:
            part = part_of(name)
            p.requires_grad_(part not in adapted and flags[part])
    _open_sensor_branch(peft_model, model_cfg)
    summary = trainable_summary(peft_model)
    _log_summary(summary, f"lora r={lora.r} alpha={lora.alpha} on {'+'.join(sorted(adapted))}:")
    return peft_model


def _no_decay_names(model) -> set[str]:
    """Biases and the weights of normalisation layers (LayerNorm, every *RMSNorm class)."""
    names = set()
    for mod_name, module in model.named_modules():
        # by class name: every family defines its own RMSNorm class (Qwen2RMSNorm, Qwen3VLTextRMSNorm...)
        is_norm = isinstance(module, torch.nn.LayerNorm) or "norm" in type(module).__name__.lower()
        for p_name, _ in module.named_parameters(recurse=False):
            if is_norm or p_name == "bias":
                names.add(f"{mod_name}.{p_name}" if mod_name else p_name)
    return names


def part_learning_rates(train_cfg) -> dict[str, float]:
    """``{part: lr}``: ``train.<part>_lr`` where set (0 allowed), else ``train.learning_rate``."""
    return {part: float(getattr(train_cfg, f"{part}_lr") if getattr(train_cfg, f"{part}_lr") is not None
                        else train_cfg.learning_rate) for part in PARTS}


def optimizer_param_groups(model, train_cfg) -> list[dict]:
    """Optimizer parameter groups: one per part x (decay, no_decay), trainable parameters only.

    Each group has ``params``, ``lr`` (the part's lr), ``weight_decay`` (``train.weight_decay``, 0 for
    biases and norm weights) and ``name`` (e.g. ``"language/decay"``). Empty groups are dropped, so
    a frozen part leaves no group. Any torch optimizer accepts the list; HF schedulers scale each
    group's lr by the same factor, keeping the per-part ratios.
    """
    lrs = part_learning_rates(train_cfg)
    no_decay = _no_decay_names(model)
    buckets: dict[tuple[str, str], list] = {(part, kind): [] for part in PARTS for kind in ("decay", "no_decay")}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        buckets[(part_of(name), "no_decay" if name in no_decay else "decay")].append(p)
    groups = []
    for (part, kind), params in buckets.items():
        if params:
            groups.append({"params": params, "lr": lrs[part], "name": f"{part}/{kind}",
                           "weight_decay": 0.0 if kind == "no_decay" else float(train_cfg.weight_decay)})
    if not groups:
        raise ConfigError("no trainable parameter: every part is frozen. Set model.train_vision, "
                          "model.train_merger or model.train_language to true (or enable model.lora).")
    return groups


def _is_peft_model(model) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return False
    return isinstance(model, PeftModel)


def _base_facts(model) -> dict:
    """What an adapter depends on: family and the widths its A/B matrices were shaped for."""
    from cotrain.model.sensor_branch import channel_layout

    cfg = model.config
    text = getattr(cfg, "text_config", cfg)
    vision = getattr(cfg, "vision_config", None)
    return {"model_type": cfg.model_type, "text_hidden_size": getattr(text, "hidden_size", None),
            "vision_hidden_size": getattr(vision, "hidden_size", getattr(vision, "embed_dim", None)),
            "sensor_channels": list(channel_layout(cfg))}


def save_adapter(model, out_dir: str | os.PathLike) -> Path:
    """Save LoRA adapters (peft format) plus the full weights of parts trained without adapters.

    Writes ``adapter_config.json`` + ``adapter_model.safetensors`` (peft), ``trained_parts.safetensors``
    (when a non-adapted part trained, e.g. the merger) and ``cotrain_adapter.json`` (base model facts
    checked by :func:`load_with_adapter`). Returns the directory.
    """
    from safetensors.torch import save_file

    if not _is_peft_model(model):
        raise ValueError(f"save_adapter needs a peft model from apply_lora, got {type(model).__name__}; "
                         "without LoRA save the whole model with save_model_and_processor")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    trained = {_strip_wrappers(n): p.detach().cpu().clone().contiguous()
               for n, p in model.named_parameters() if p.requires_grad and not _is_lora_param(n)}
    if trained:
        save_file(trained, str(out / TRAINED_PARTS_FILE))
    meta = {**_base_facts(model.get_base_model()), "trained_parts": sorted(trained)}
    (out / ADAPTER_META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return out


def load_with_adapter(base_model, adapter_dir: str | os.PathLike, *, is_trainable: bool = False):
    """Put the adapters (and fully trained parts) saved by :func:`save_adapter` onto ``base_model``.

    ``base_model`` must be the same family and size as the model the adapter was trained on; it is
    modified in place (discard it if this raises). Raises ``ModelLoadError`` naming the file and the
    mismatch when the directory is not an adapter or does not fit the base model.
    """
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(adapter_dir)
    if not (path / "adapter_config.json").is_file():
        raise ModelLoadError(f"{path / 'adapter_config.json'} is missing: {str(path)!r} is not a LoRA adapter "
                             "directory. Point at the 'adapter' directory a LoRA run wrote (save_adapter).")
    meta_file = path / ADAPTER_META_FILE
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        from cotrain.model.sensor_branch import has_branch, widen_patch_embed

        if has_branch(meta.get("sensor_channels")):  # trained with a sensor branch: widen the base to its layout

            widen_patch_embed(base_model, meta["sensor_channels"][3:])
        facts = _base_facts(base_model)
        wrong = {k: (meta[k], facts[k]) for k in facts if k in meta and meta[k] != facts[k]}
        if wrong:
            detail = "; ".join(f"{k}: adapter {a!r}, base {b!r}" for k, (a, b) in wrong.items())
            raise ModelLoadError(f"adapter {path} was trained on a different base model ({detail}). Load it onto "
                                 "the base checkpoint it was trained from.")
    parts_file = path / TRAINED_PARTS_FILE
    if parts_file.is_file():
        tensors = load_file(str(parts_file))
        own = dict(base_model.named_parameters())
        bad = [f"{k} (saved {tuple(t.shape)}, base {tuple(own[k].shape) if k in own else 'absent'})"
               for k, t in tensors.items() if k not in own or own[k].shape != t.shape]
        if bad:
            raise ModelLoadError(f"{parts_file} does not fit the base model: {', '.join(bad[:5])}. Load the "
                                 "adapter onto the base checkpoint it was trained from.")
        with torch.no_grad():
            for k, t in tensors.items():
                own[k].copy_(t.to(own[k].dtype))
    try:
        model = PeftModel.from_pretrained(base_model, str(path), is_trainable=is_trainable)
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"adapter {path} does not fit the base model {type(base_model).__name__}: {first}. "
                             "Load it onto the base checkpoint (same family and size) it was trained "
                             "from.") from exc
    # peft loads with strict=False: make sure every saved adapter tensor found its module
    weights = path / "adapter_model.safetensors"
    if weights.is_file():
        with safe_open(str(weights), framework="pt") as f:
            saved = set(f.keys())
        loaded = set(get_peft_model_state_dict(model))
        if saved != loaded:
            diff = sorted(saved ^ loaded)
            raise ModelLoadError(f"adapter {weights} and the base model disagree on the adapted modules "
                                 f"(e.g. {diff[:3]}). Load it onto the base checkpoint it was trained from.")
    return model


def merge_lora(model):
    """Fold the LoRA adapters into the base weights and return the plain transformers model."""
    if not _is_peft_model(model):
        raise ValueError(f"merge_lora needs a peft model from apply_lora, got {type(model).__name__}")
    return model.merge_and_unload()


__all__ = ["PARTS", "LORA_TARGETS", "part_of", "trainable_summary", "apply_freeze", "lora_target_regex",
           "apply_lora", "part_learning_rates", "optimizer_param_groups", "save_adapter", "load_with_adapter",
           "merge_lora"]

