"""What a run saves: checkpoints (staged, then renamed into place), their resume checks, the final model.

A checkpoint is the HF Trainer's ``checkpoint-<step>`` directory (weights, optimizer, scheduler,
RNG states of every rank, trainer state) plus ``cotrain_state.json``: the mixture's sampler state
at that step (epoch, position, mixture fingerprint; with packing the epoch's pack count and fill)
and the run fingerprint (the config fields that change what the next batch is or how it is
trained). The trainer writes the whole directory under a staging name and renames it into place
(``cotrain.train``), so a directory named ``checkpoint-<step>`` is always complete; a run killed
while saving leaves only a ``.staging-*`` directory that is ignored and cleaned up.

Resuming refuses, with the differing keys named, a checkpoint written by a different recipe, and
checks before any weight is read that the files are present and not truncated.

Must not train, build models or decide the data order.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from cotrain.config import RunConfig, config_to_dict
from cotrain.errors import ConfigError
from cotrain.files import replace_dir

log = logging.getLogger(__name__)

STATE_FILE = "cotrain_state.json"
STAGING_PREFIX = ".staging-"

MAY_CHANGE_ON_RESUME = (
    "run_name", "eval.", "train.output_dir", "train.resume_from", "train.logging_steps", "train.save_steps",
    "train.save_total_limit", "train.max_steps", "train.epochs", "data.num_workers", "data.synthetic",
    "data.data_root", "data.eval_datasets", "model.attn_implementation", "model.liger",
)
"""Config keys (or prefixes) a resumed run may change: bookkeeping, the horizon, and how the same
math is executed. Everything else (data, seeds, batch geometry, optimiser, what trains) must match.
``data.data_root`` may move (records are identified by their dataset names and sizes, which the
mixture fingerprint covers)."""


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def run_fingerprint(cfg: RunConfig) -> dict[str, Any]:
    """The flattened config fields that must be equal for an exact resume."""
    flat = _flat(config_to_dict(cfg))
    keep = {}
    for k, v in flat.items():
        if any(k == p or (p.endswith(".") and k.startswith(p)) for p in MAY_CHANGE_ON_RESUME):
            continue
        if k.startswith("data.datasets"):
            # paths may move with data_root; names, weights and options may not
            continue
        keep[k] = v
    for i, ds in enumerate(cfg.data.datasets):
        for key, value in _flat(config_to_dict(ds)).items():
            if key not in ("records", "image_root"):
                keep[f"data.datasets[{i}].{key}"] = value
    return json.loads(json.dumps(keep, default=str))


def write_state(ckpt_dir: Path, cfg: RunConfig, sampler_state: dict[str, Any], step: int) -> Path:
    """Write ``cotrain_state.json`` into a (staging) checkpoint directory."""
    path = Path(ckpt_dir) / STATE_FILE
    path.write_text(json.dumps({"global_step": step, "sampler": sampler_state,
                                "run": run_fingerprint(cfg)}, indent=1, sort_keys=True))
    return path


_STEP = re.compile(r"^checkpoint-(\d+)$")


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete ``checkpoint-<step>`` directories under ``run_dir``, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if p.is_dir() and (m := _STEP.match(p.name))]
    return [p for _, p in sorted(found)]


def clean_staging(run_dir: Path) -> list[Path]:
    """Remove half-written checkpoints left by a killed run; returns what was removed."""
    run_dir = Path(run_dir)
    removed = []
    if run_dir.is_dir():
        for p in run_dir.iterdir():
            if p.name.startswith(STAGING_PREFIX):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    for p in removed:
        log.warning("removed an incomplete checkpoint left by an interrupted save: %s", p)
    return removed


def resolve_resume(cfg: RunConfig) -> Path | None:
    """The checkpoint to resume from per ``train.resume_from`` (None = start fresh), checked."""
    value = cfg.train.resume_from
    if not value:
        return None
    run_dir = Path(cfg.train.output_dir) / "checkpoints"
    if value == "auto":
        found = list_checkpoints(run_dir)
        if not found:
            log.info("train.resume_from=auto: no checkpoint in %s, starting fresh", run_dir)
            return None
        path = found[-1]
    else:
        path = Path(value)
    check_checkpoint(path, cfg)
    return path


def _check_torch_file(path: Path) -> str | None:
    """A torch.save file is a zip archive: check its magic and its end-of-central-directory record."""
    size = path.stat().st_size
    if size < 22:
        return "is empty or truncated"
    with path.open("rb") as f:
        head = f.read(4)
        f.seek(max(0, size - 65558))
        tail = f.read()
    if head != b"PK\x03\x04" or b"PK\x05\x06" not in tail:
        return "is not a complete torch.save archive (truncated or overwritten)"
    return None


def _check_safetensors(path: Path) -> str | None:
    size = path.stat().st_size
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            return "is empty or truncated"
        n = int.from_bytes(raw, "little")
        if n <= 0 or 8 + n > size:
            return "has a header longer than the file (truncated)"
        try:
            header = json.loads(f.read(n))
        except ValueError:
            return "has an unreadable header"
    end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        return f"is truncated ({size} bytes, its header needs {8 + n + end})"
    return None


def check_checkpoint(path: Path, cfg: RunConfig) -> dict[str, Any]:
    """Refuse a missing, incomplete, corrupt or foreign checkpoint; returns its ``cotrain_state.json``."""
    path = Path(path)
    fix = ("point train.resume_from at a complete checkpoint-<step> directory, use resume_from=auto "
           "(the newest complete one), or drop resume_from to start fresh")
    if not path.is_dir():
        raise ConfigError(f"train.resume_from: {path} is not a directory; {fix}")
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise ConfigError(f"checkpoint {path} has no {STATE_FILE} (not written by cotrain, or incomplete); {fix}")
    try:
        state = json.loads(state_file.read_text())
    except ValueError as e:
        raise ConfigError(f"{state_file} is corrupt ({e}); {fix}") from None
    needed = ["trainer_state.json", "scheduler.pt"]
    if not cfg.train.deepspeed:
        needed.append("optimizer.pt")
    for name in needed:
        if not (path / name).is_file():
            raise ConfigError(f"checkpoint {path} is missing {name}; {fix}")
    weights = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
    if not weights and not any(p.is_dir() and p.name.startswith("global_step") for p in path.iterdir()):
        raise ConfigError(f"checkpoint {path} has no model weights (*.safetensors); {fix}")
    if not list(path.glob("rng_state*.pth")):
        raise ConfigError(f"checkpoint {path} has no rng_state*.pth, so the resumed run could not be exact; {fix}")
    for p in sorted(path.glob("*.pt")) + sorted(path.glob("*.pth")):
        problem = _check_torch_file(p)
        if problem:
            raise ConfigError(f"checkpoint file {p} {problem}; {fix}")
    for p in weights:
        problem = _check_safetensors(p) if p.suffix == ".safetensors" else _check_torch_file(p)
        if problem:
            raise ConfigError(f"checkpoint file {p} {problem}; {fix}")
    try:
        json.loads((path / "trainer_state.json").read_text())
    except ValueError as e:
        raise ConfigError(f"{path / 'trainer_state.json'} is corrupt ({e}); {fix}") from None

    theirs = state.get("run", {})
    mine = run_fingerprint(cfg)
    diff = sorted(k for k in set(theirs) | set(mine) if theirs.get(k, "<absent>") != mine.get(k, "<absent>"))
    if diff:
        shown = "; ".join(f"{k}: checkpoint {theirs.get(k, '<absent>')!r} vs now {mine.get(k, '<absent>')!r}"
                          for k in diff[:8])
        more = f" (and {len(diff) - 8} more)" if len(diff) > 8 else ""
        raise ConfigError(f"checkpoint {path} was written by a different recipe: {shown}{more}. An exact resume "
                          "needs the same data, seeds, batch geometry and optimiser; restore those settings, or "
                          "start a new run (another train.output_dir, no resume_from)")
    return state


TRAINED_PARTS = "trained_parts.safetensors"
"""Full weights of parameters a LoRA run trains outside its adapters (e.g. the merger)."""


def save_trained_parts(model, ckpt_dir: Path) -> None:
    """With LoRA, HF checkpoints hold only the adapters: add the fully trained non-adapter parameters."""
    from safetensors.torch import save_file

    trained = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters()
               if p.requires_grad and "lora_" not in n}
    if trained:
        save_file(trained, str(Path(ckpt_dir) / TRAINED_PARTS))


def load_checkpoint_weights(model, ckpt_dir: Path) -> None:
    """Put a checkpoint's weights into ``model`` in place, strictly: every parameter, or an error.

    transformers saves Qwen-VL checkpoints in the original key layout (``visual.*``, ``model.layers.*``)
    but the Trainer's resume loads them with ``load_state_dict(strict=False)`` into the new layout
    (``model.visual.*``, ``model.language_model.*``): every key misses and the resumed run silently
    continues from the random init (found by tests/cotrain/test_resume.py). ``from_pretrained``
    knows the mapping, so the checkpoint is read through it and copied over strictly.
    """
    import torch

    ckpt_dir = Path(ckpt_dir)
    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        adapter = load_file(str(ckpt_dir / "adapter_model.safetensors"))
        result = set_peft_model_state_dict(model, adapter)
        if getattr(result, "unexpected_keys", None):
            raise ConfigError(f"{ckpt_dir}: adapter keys do not fit this model: {result.unexpected_keys[:5]}")
        extra = ckpt_dir / TRAINED_PARTS
        if extra.is_file():
            params = dict(model.named_parameters())
            for name, value in load_file(str(extra)).items():
                if name not in params or params[name].shape != value.shape:
                    raise ConfigError(f"{extra}: {name} does not fit this model")
                with torch.no_grad():
                    params[name].copy_(value)
        return
    fresh = type(model).from_pretrained(str(ckpt_dir), dtype=next(model.parameters()).dtype)
    model.load_state_dict(fresh.state_dict(), strict=True)
    del fresh


def save_checkpoint_atomically(trainer, save) -> None:
    """Run the Trainer's own checkpoint save (``save()``) into a staging folder, complete it, rename it.

    Every rank writes its shards under ``.staging-<step>`` (the trainer's ``_staging_root`` steers
    ``_get_output_dir`` there); the main process then adds ``cotrain_state.json`` (and, with LoRA,
    the fully trained non-adapter parameters), moves ``checkpoint-<step>`` into the run folder and
    rotates old checkpoints.
    """
    from transformers.trainer import rotate_checkpoints

    step = trainer.state.global_step
    run_dir = Path(trainer.args.output_dir)
    staging = run_dir / f"{STAGING_PREFIX}{step}"
    if trainer.args.should_save and staging.exists():
        shutil.rmtree(staging)
    trainer.accelerator.wait_for_everyone()
    trainer._staging_root = staging
    try:
        save()
    finally:
        trainer._staging_root = None
    trainer.accelerator.wait_for_everyone()  # every rank's shards are written
    if trainer.args.should_save:
        staged = staging / f"checkpoint-{step}"
        write_state(staged, trainer.run_cfg, trainer.sampler_state(), step)
        if hasattr(trainer.model, "peft_config"):
            save_trained_parts(trainer.model, staged)
        final = run_dir / staged.name
        if final.exists():
            shutil.rmtree(final)
        os.replace(staged, final)
        shutil.rmtree(staging, ignore_errors=True)
        rotate_checkpoints(output_dir=str(run_dir), save_total_limit=trainer.args.save_total_limit,
                           best_model_checkpoint=None, use_mtime=False)
    trainer.accelerator.wait_for_everyone()


def check_resume_fingerprint(resume: Path, sampler_state: dict) -> None:
    """Refuse a checkpoint whose mixture fingerprint differs from this run's (records files changed)."""
    saved = json.loads((Path(resume) / STATE_FILE).read_text())["sampler"]
    if saved["fingerprint"] != sampler_state["fingerprint"]:
        raise ConfigError(f"checkpoint {resume} was written for another mixture (fingerprint {saved['fingerprint']} "
                          f"vs {sampler_state['fingerprint']}: the records files changed size or order); restore "
                          "them or start a new run")


def save_final(model, processor, out_dir: Path) -> Path:
    """Save the final model + processor atomically: write to a temp dir, then rename into place."""
    from cotrain.model.loader import save_model_and_processor

    tmp = out_dir / "final.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    save_model_and_processor(model, processor, tmp)
    return replace_dir(tmp, out_dir / "final")


def finish_model(trainer, processor, cfg: RunConfig, out_dir: Path):
    """(model to evaluate, final artefact path) after training; every rank calls it.

    LoRA: the adapter is saved apart and, with ``merge_on_save``, merged for the final model.
    DeepSpeed: the engine gathers the weights (ZeRO-3: 16-bit gather on save) through the
    Trainer's own ``save_model``; otherwise rank 0 saves. Rank 0 then renames into place.
    """
    from cotrain.model.processor import save_processor

    model = trainer.model
    main = trainer.args.should_save
    lora = cfg.model.lora
    if lora.enabled:
        from cotrain.model.trainable import merge_lora, save_adapter

        if main:
            log.info("LoRA adapter saved to %s", save_adapter(model, out_dir / "adapter"))
            # with the processor (training pixel budget), so evaluation with --adapter sees training-sized images
            save_processor(processor, out_dir / "adapter", model.get_base_model().config.model_type)
        if not lora.merge_on_save:
            trainer.accelerator.wait_for_everyone()
            return model, out_dir / "adapter"
        model = merge_lora(model)
    if trainer.is_deepspeed_enabled and not lora.enabled:
        tmp = out_dir / "final.tmp"
        if main and tmp.exists():
            shutil.rmtree(tmp)
        trainer.accelerator.wait_for_everyone()
        trainer.save_model(str(tmp))  # collective under ZeRO-3; writes on rank 0
        if main:
            save_processor(processor, tmp, model.config.model_type)
            replace_dir(tmp, out_dir / "final")
    elif main:
        save_final(model, processor, out_dir)
    trainer.accelerator.wait_for_everyone()
    final = out_dir / "final"
    log.info("final model saved to %s", final)
    return model, final
