"""One loader for local Qwen-VL checkpoints, real or tiny: model, processor and family facts.

Owns the checks that turn a bad model directory into a ``ModelLoadError`` that says what is
missing and how to fix it, the choice of attention implementation and dtype, and the processor
fallback for machines without torchvision (stock Qwen-VL processors build a video processor,
which needs it; we then assemble the processor from the checkpoint's tokenizer, PIL image
processor and chat template, and log that we did).

Must never touch the network (``local_files_only``) nor run checkpoint code
(``trust_remote_code=False``). It does not freeze, wrap or patch the model (training does that).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from pathlib import Path

import torch
import transformers

from cotrain.errors import ModelLoadError
from cotrain.model.families import FAMILIES, FamilySpec, get_family
from cotrain.model.processor import load_offline_processor, save_processor

logger = logging.getLogger(__name__)

ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2", "torch_varlen", "auto")
DTYPES: dict[str, torch.dtype | str] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "auto": "auto",
}
"""dtype name -> what ``from_pretrained`` gets ("auto": the dtype recorded in config.json)."""

TOKENIZER_FILE_SETS = (("tokenizer.json",), ("vocab.json", "merges.txt"))
"""Either set of files is a loadable Qwen2 tokenizer."""
IMAGE_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
"""Where transformers looks for the image processor settings (the latter only with an
``image_processor`` entry)."""


def flash_attention_available() -> bool:
    """True when flash-attn is importable and a CUDA device exists."""
    return importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available()


def resolve_attn_implementation(requested: str) -> str:
    """Validate ``requested`` and turn "auto" into a concrete implementation (logged).

    "auto": flash_attention_2 when the flash-attn package imports on CUDA, else torch_varlen
    (PyTorch's own FlashAttention varlen) on CUDA, else sdpa (packed batches then run cotrain's
    per-sample sdpa). A concrete choice that cannot run here raises ``ModelLoadError`` naming the
    fix. torch_varlen is registered with transformers before it is returned.
    """
    from cotrain.model import torch_varlen

    if requested not in ATTN_IMPLEMENTATIONS:
        raise ModelLoadError(f"attn_implementation {requested!r} is not one of {ATTN_IMPLEMENTATIONS}. "
                             "Set model.attn_implementation to one of them.")
    if requested == "flash_attention_2" and not flash_attention_available():
        why = "flash-attn is not installed" if importlib.util.find_spec("flash_attn") is None \
            else "no CUDA device is visible"
        raise ModelLoadError(
            f"attn_implementation 'flash_attention_2' requested but {why}. Install flash-attn on a "
            "CUDA machine (pip install 'cotrain[gpu]'), or use attn_implementation='torch_varlen' (CUDA, "
            "no extra package), 'sdpa' (works everywhere) or 'auto' (picks the best that can run)."
        )
    if requested == "torch_varlen" and (why := torch_varlen.availability()) is not None:
        raise ModelLoadError(f"attn_implementation 'torch_varlen' cannot run here: {why}. "
                             "Set model.attn_implementation=sdpa or auto.")
    picked = requested
    if requested == "auto":
        if flash_attention_available():
            picked = "flash_attention_2"
        elif torch_varlen.availability() is None:
            picked = "torch_varlen"
        else:
            picked = "sdpa"
        logger.info("attn_implementation 'auto' -> %s", picked)
    if picked == "torch_varlen":
        torch_varlen.register()
    return picked


def _check_directory(path: Path) -> dict:
    """Fail early, naming files, before any weights are read. Returns config.json's contents."""
    if not path.exists():
        raise ModelLoadError(f"model path {str(path)!r} does not exist. Point model.path at a local "
                             "checkpoint directory (models are never downloaded at run time).")
    if not path.is_dir():
        raise ModelLoadError(f"model path {str(path)!r} is a file, not a checkpoint directory. Point "
                             "model.path at the directory that holds config.json.")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{config_file} is missing: {str(path)!r} is not a Hugging Face checkpoint. "
                             "Point model.path at the directory that holds config.json and the weights.")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{config_file} cannot be read as JSON ({exc}). Re-copy the checkpoint.") from None

    has_tokenizer = any(all((path / f).is_file() for f in files) for files in TOKENIZER_FILE_SETS)
    has_image_processor = (path / "preprocessor_config.json").is_file() or (
        (path / "processor_config.json").is_file()
        and "image_processor" in json.loads((path / "processor_config.json").read_text(encoding="utf-8")))
    missing = []
    if not has_tokenizer:
        missing.append("tokenizer.json (or vocab.json + merges.txt) and tokenizer_config.json")
    if not has_image_processor:
        missing.append("preprocessor_config.json (or processor_config.json with an 'image_processor' entry)")
    if missing:
        raise ModelLoadError(
            f"{path} has no processor files: missing {'; '.join(missing)}. Copy them from the base "
            "model the checkpoint was trained from (they are small), or save the processor with "
            "cotrain.model.loader.save_model_and_processor."
        )
    return config


def _load_processor(path: Path, spec: FamilySpec):
    try:
        return transformers.AutoProcessor.from_pretrained(
            str(path), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001 - any failure here has the same remedy, below
        # Typical cause: the stock processor builds a video processor, which needs torchvision.
        why = str(exc).splitlines()[0] if str(exc).strip() else "usually torchvision is missing"
        logger.info("AutoProcessor could not load %s (%s: %s); building the processor from its "
                    "tokenizer + PIL image processor + chat template instead (no video support)",
                    path, type(exc).__name__, why)
    try:
        return load_offline_processor(path, spec.name)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"cannot load the processor of {path}: {type(exc).__name__}: {exc}. Check "
                             "tokenizer.json / tokenizer_config.json / preprocessor_config.json there, or "
                             "re-save them from the base model.") from exc


def load_model_and_processor(path: str | os.PathLike, *, attn_implementation: str = "sdpa",
                             dtype: str = "float32", family: str | None = None):
    """Load ``(model, processor, FamilySpec)`` from a local checkpoint directory.

    ``family`` (optional) must agree with config.json's ``model_type`` when given.
    ``dtype`` is "float32", "bfloat16", "float16" or "auto" (as recorded in config.json).
    """
    path = Path(path)
    config = _check_directory(path)
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
        raise ModelLoadError(
            f"{path / 'config.json'}: model_type {model_type!r} is not supported; supported: "
            f"{', '.join(sorted(FAMILIES))}. Use a Qwen2-VL, Qwen2.5-VL or Qwen3-VL checkpoint.")
    spec = get_family(model_type)
    if family is not None and get_family(family).name != spec.name:
        raise ModelLoadError(f"model.family is {family!r} but {path / 'config.json'} says model_type "
                             f"{model_type!r}. Remove model.family or point model.path at a {family} checkpoint.")
    if dtype not in DTYPES:
        raise ModelLoadError(f"dtype {dtype!r} is not one of {sorted(DTYPES)}. Set model.dtype accordingly.")
    attn = resolve_attn_implementation(attn_implementation)

    processor = _load_processor(path, spec)
    model_class = getattr(transformers, spec.model_class)
    try:
        model = model_class.from_pretrained(
            str(path), dtype=DTYPES[dtype], attn_implementation=attn,
            local_files_only=True, trust_remote_code=False)
    except OSError as exc:
        raise ModelLoadError(f"cannot load the weights of {path}: {exc}. The directory needs "
                             "model.safetensors (or its index and shards) next to config.json.") from exc
    logger.info("loaded %s from %s (attn=%s, dtype=%s)", spec.model_class, path, attn, model.dtype)
    return model, processor, spec


def save_model_and_processor(model, processor, out_dir: str | os.PathLike) -> Path:
    """Save weights, config and processor so that :func:`load_model_and_processor` reloads them."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    save_processor(processor, out, model.config.model_type)
    return out
