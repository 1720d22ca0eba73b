"""Liger kernels (fused RMSNorm, SwiGLU, M-RoPE, linear cross-entropy) for the Qwen-VL families.

Owns the one decision "can Liger be applied here, and if not, why" (:func:`liger_status`) and
the call that patches an already-built model (:func:`apply_liger`). ``model.liger: true`` either
patches or fails with ``ModelLoadError`` saying what to fix: there is never a silent fallback
to the unpatched model.

Supported range, decided from liger-kernel's source (shared/PLATFORM.md has the measurements):

* liger-kernel >= 0.8.5: the first release whose Qwen2-VL / Qwen2.5-VL patches know the
  ``Qwen2VLRMSNorm`` / ``Qwen2_5_VLRMSNorm`` classes that transformers >= 5.2 defines;
* liger-kernel <= 0.8.5 with transformers >= 5.23 is refused: its Qwen-VL forward imports an
  output class transformers 5.23 removed. Newer pairs are judged by actually importing the
  family's Liger module, so a future break is reported the same way instead of crashing later.

Must not import liger_kernel at module import time (it is an optional GPU extra), install
anything, or change the model beyond the Liger call. Note that Liger's rope / rms_norm switches
also replace functions and classes in the transformers modeling module (process-wide): models of
the same family built later in the process get Liger's RoPE too.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging

import torch
from packaging.version import Version

from cotrain.errors import ModelLoadError

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'cotrain[gpu]'"
MIN_LIGER_VERSION = Version("0.8.5")
"""Oldest liger-kernel whose Qwen-VL patches match the transformers 5 module layout."""
LAST_LIGER_BEFORE_TF_5_23 = Version("0.8.5")
"""Newest liger-kernel known to break on transformers >= 5.23 (removed Qwen-VL output class)."""
TRANSFORMERS_BREAKING = Version("5.23.0")

LIGER_PATCHES: dict[str, dict] = {
    # family -> Liger entry point and the switches we turn on. Qwen3-VL's patch has no SwiGLU
    # (its swiglu flag is ignored by liger 0.8.5), so we do not claim it.
    "qwen2_vl": {"function": "apply_liger_kernel_to_qwen2_vl", "module": "liger_kernel.transformers.model.qwen2_vl",
                 "kwargs": {"rope": True, "rms_norm": True, "layer_norm": True, "swiglu": True,
                            "fused_linear_cross_entropy": True, "cross_entropy": False}},
    "qwen2_5_vl": {"function": "apply_liger_kernel_to_qwen2_5_vl",
                   "module": "liger_kernel.transformers.model.qwen2_5_vl",
                   "kwargs": {"rope": True, "rms_norm": True, "swiglu": True,
                              "fused_linear_cross_entropy": True, "cross_entropy": False}},
    "qwen3_vl": {"function": "apply_liger_kernel_to_qwen3_vl", "module": "liger_kernel.transformers.model.qwen3_vl",
                 "kwargs": {"rope": True, "rms_norm": True,
                            "fused_linear_cross_entropy": True, "cross_entropy": False}},
}
"""Families with a Liger patch (liger-kernel's ``apply_liger_kernel_to_<family>`` functions)."""


def _liger_version() -> Version | None:
    """Installed liger-kernel version, or None when it is not installed."""
    try:
        return Version(importlib.metadata.version("liger-kernel"))
    except importlib.metadata.PackageNotFoundError:
        return None


def _transformers_version() -> Version:
    return Version(importlib.metadata.version("transformers"))


def _load_patch(family_name: str):
    """Import Liger's patch function for the family, and the model module it will import lazily."""
    spec = LIGER_PATCHES[family_name]
    # the apply function imports this module only when called; import it now so that an
    # incompatible transformers fails here, with our message, not in the middle of patching
    importlib.import_module(spec["module"])
    return getattr(importlib.import_module("liger_kernel.transformers"), spec["function"])


def _check(family_name: str):
    """Return Liger's patch function for ``family_name`` or raise ``ModelLoadError`` saying why not."""
    if family_name not in LIGER_PATCHES:
        raise ModelLoadError(f"model.liger=true but liger-kernel has no patch for family {family_name!r} "
                             f"(patched families: {', '.join(sorted(LIGER_PATCHES))}). Set model.liger=false.")
    version = _liger_version()
    if version is None:
        raise ModelLoadError(f"model.liger=true but liger-kernel is not installed. Install it on the CUDA "
                             f"machine with `{INSTALL_HINT}`, or set model.liger=false.")
    if version < MIN_LIGER_VERSION:
        raise ModelLoadError(f"model.liger=true but liger-kernel {version} is too old for the transformers 5 "
                             f"Qwen-VL layout (need >= {MIN_LIGER_VERSION}). Upgrade with "
                             f"`pip install -U 'liger-kernel>={MIN_LIGER_VERSION}'` or `{INSTALL_HINT}`, or set "
                             "model.liger=false.")
    tf_version = _transformers_version()
    if version <= LAST_LIGER_BEFORE_TF_5_23 and tf_version >= TRANSFORMERS_BREAKING:
        raise ModelLoadError(f"model.liger=true but liger-kernel {version}'s Qwen-VL patch does not import with "
                             f"transformers {tf_version} (it needs an output class removed in "
                             f"{TRANSFORMERS_BREAKING}). Pin `transformers<{TRANSFORMERS_BREAKING}`, upgrade "
                             "liger-kernel to a release that supports it, or set model.liger=false.")
    try:
        patch = _load_patch(family_name)
    except (ImportError, AttributeError) as exc:
        raise ModelLoadError(f"model.liger=true but liger-kernel {version} cannot patch {family_name} with "
                             f"transformers {tf_version}: {type(exc).__name__}: {exc}. Install a matching pair "
                             f"(`{INSTALL_HINT}`) or set model.liger=false.") from exc
    if not torch.cuda.is_available():
        raise ModelLoadError("model.liger=true but no CUDA device is visible: Liger's Triton kernels run only "
                             "on a GPU. Run on a CUDA machine or set model.liger=false.")
    return patch


def liger_status(family_name: str) -> tuple[bool, str]:
    """``(True, "...")`` when Liger can patch ``family_name`` here, else ``(False, reason with the fix)``."""
    try:
        _check(family_name)
    except ModelLoadError as exc:
        return False, str(exc)
    return True, (f"liger-kernel {_liger_version()} can patch {family_name} "
                  f"(transformers {_transformers_version()}, CUDA available)")


def apply_liger(model, family_name: str) -> str:
    """Patch the built ``model`` of ``family_name`` with Liger kernels; returns what was applied.

    Raises ``ModelLoadError`` with :func:`liger_status`'s reason when Liger cannot be applied.
    Call it before wrapping the model (peft, DDP, DeepSpeed): Liger patches the model's own
    submodules and replaces its ``forward`` (fused linear cross-entropy: no logits are returned
    while training with labels).
    """
    patch = _check(family_name)
    kwargs = LIGER_PATCHES[family_name]["kwargs"]
    patch(model=model, **kwargs)
    applied = ", ".join(k for k, on in kwargs.items() if on)
    message = f"Liger kernels applied to {family_name} (liger-kernel {_liger_version()}): {applied}"
    logger.info(message)
    return message


__all__ = ["LIGER_PATCHES", "INSTALL_HINT", "liger_status", "apply_liger"]
