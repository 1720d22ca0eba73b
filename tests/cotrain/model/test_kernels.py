"""Liger kernels: every reason it cannot apply is a ModelLoadError naming the fix; on a GPU, parity.

On the CPU machine liger-kernel is absent (or has no CUDA device); the other situations are
simulated with a stand-in ``liger_kernel`` package on ``sys.path`` (real dist-info metadata, so
the version is read the way pip-installed packages are) and a faked ``torch.cuda.is_available``.
The GPU test patches a real tiny model and compares its loss with the unpatched model's.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from cotrain.errors import ModelLoadError
from cotrain.model.kernels import LIGER_PATCHES, apply_liger, liger_status

FAMILIES = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]
LIGER_FUNCTIONS = {"qwen2_vl": "apply_liger_kernel_to_qwen2_vl", "qwen2_5_vl": "apply_liger_kernel_to_qwen2_5_vl",
                   "qwen3_vl": "apply_liger_kernel_to_qwen3_vl"}
"""Names of liger-kernel's entry points, copied by hand from liger_kernel/transformers/__init__.py (0.8.5)."""


def _liger_modules() -> dict:
    return {k: v for k, v in sys.modules.items() if k == "liger_kernel" or k.startswith("liger_kernel.")}


@pytest.fixture
def fake_liger(tmp_path, monkeypatch):
    """Factory: install a stand-in liger-kernel of a given version; the real one (if any) is restored."""
    saved = _liger_modules()
    for name in saved:
        del sys.modules[name]

    def install(version: str = "0.8.5", broken: bool = False):
        root = tmp_path / f"site-{version}-{int(broken)}"
        pkg = root / "liger_kernel"
        (pkg / "transformers" / "model").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "transformers" / "model" / "__init__.py").write_text("")
        functions = "CALLS = []\n" + "".join(
            f"def {fn}(model=None, **kwargs):\n    CALLS.append(({fn!r}, model, kwargs))\n"
            for fn in LIGER_FUNCTIONS.values())
        (pkg / "transformers" / "__init__.py").write_text(functions)
        for family in FAMILIES:
            # broken: what liger 0.8.5 does under transformers 5.23 (imports a class that is gone)
            body = (f"from transformers.models.{family}.modeling_{family} import NoSuchOutputClass\n"
                    if broken else "")
            (pkg / "transformers" / "model" / f"{family}.py").write_text(body)
        info = root / f"liger_kernel-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(textwrap.dedent(f"""\
            Metadata-Version: 2.1
            Name: liger-kernel
            Version: {version}
            """))
        monkeypatch.syspath_prepend(str(root))
        importlib.invalidate_caches()
        return root

    yield install
    for name in _liger_modules():
        del sys.modules[name]
    sys.modules.update(saved)


def _calls():
    return importlib.import_module("liger_kernel.transformers").CALLS


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU machine's error path")
def test_cpu_machine_gets_an_actionable_error():
    ok, reason = liger_status("qwen2_5_vl")
    assert not ok
    if importlib.util.find_spec("liger_kernel") is None:
        assert "pip install 'cotrain[gpu]'" in reason and "not installed" in reason
    else:
        assert "no CUDA device" in reason or "transformers" in reason
    assert "model.liger=false" in reason
    with pytest.raises(ModelLoadError, match="model.liger=false") as info:
        apply_liger(torch.nn.Linear(2, 2), "qwen2_5_vl")
    assert str(info.value) == reason


def test_installed_but_no_cuda(fake_liger, monkeypatch):
    fake_liger("0.8.5")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ok, reason = liger_status("qwen2_vl")
    assert not ok and "no CUDA device" in reason and "model.liger=false" in reason
    with pytest.raises(ModelLoadError, match="no CUDA device"):
        apply_liger(torch.nn.Linear(2, 2), "qwen2_vl")
    assert _calls() == [], "nothing may be patched when Liger cannot run"


def test_unsupported_family(fake_liger, monkeypatch):
    fake_liger("0.8.5")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    ok, reason = liger_status("llava")
    assert not ok and "no patch for family 'llava'" in reason and "qwen2_5_vl" in reason
    with pytest.raises(ModelLoadError, match="llava"):
        apply_liger(torch.nn.Linear(2, 2), "llava")


def test_too_old_version(fake_liger, monkeypatch):
    fake_liger("0.8.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    ok, reason = liger_status("qwen2_5_vl")
    assert not ok and "0.8.4" in reason and "too old" in reason and "pip install" in reason


def test_known_incompatible_transformers(fake_liger, monkeypatch):
    import cotrain.model.kernels as kernels
    from packaging.version import Version

    fake_liger("0.8.5")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    # the pair shared/PLATFORM.md measured: liger 0.8.5's Qwen-VL patch with transformers 5.23
    monkeypatch.setattr(kernels, "_transformers_version", lambda: Version("5.23.0"))
    ok, reason = liger_status("qwen2_5_vl")
    assert not ok and "transformers<5.23.0" in reason and "0.8.5" in reason


def test_liger_module_that_does_not_import(fake_liger, monkeypatch):
    # a future liger whose family module does not import with the installed transformers
    fake_liger("0.9.0", broken=True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    ok, reason = liger_status("qwen3_vl")
    assert not ok and "cannot patch qwen3_vl" in reason and "NoSuchOutputClass" in reason


@pytest.mark.parametrize("family", FAMILIES)
def test_apply_passes_the_model_and_switches(family, fake_liger, monkeypatch):
    fake_liger("0.8.5")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    ok, _ = liger_status(family)
    assert ok
    model = torch.nn.Linear(2, 2)
    message = apply_liger(model, family)
    ((function, got_model, kwargs),) = _calls()
    assert function == LIGER_FUNCTIONS[family] and got_model is model
    on = {k for k, v in kwargs.items() if v}
    assert {"rope", "rms_norm", "fused_linear_cross_entropy"} <= on and "cross_entropy" not in on
    # Qwen3-VL's liger patch has no SwiGLU switch that does anything: we must not claim it
    assert ("swiglu" in on) == (family != "qwen3_vl")
    assert all(name in message for name in on) and family in message


def test_switches_match_the_installed_liger_signature():
    """Where liger-kernel is installed, every switch we pass is a parameter of its entry point."""
    if importlib.util.find_spec("liger_kernel") is None:
        pytest.skip("liger-kernel not installed")
    import inspect

    try:
        module = importlib.import_module("liger_kernel.transformers")
    except Exception as exc:  # noqa: BLE001 - e.g. triton missing: nothing to compare
        pytest.skip(f"liger_kernel.transformers does not import here: {exc}")
    for family, spec in LIGER_PATCHES.items():
        params = inspect.signature(getattr(module, spec["function"])).parameters
        assert set(spec["kwargs"]) | {"model"} <= set(params), family


@pytest.mark.gpu
@pytest.mark.parametrize("family", FAMILIES)
def test_liger_loss_parity_on_gpu(family):
    from cotrain.data.encoder import ChatEncoder
    from cotrain.model.families import get_family
    from cotrain.model.processor import build_offline_processor
    from cotrain.model.tiny import build_tiny_model

    processor = build_offline_processor(family)
    f = get_family(family).factor
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (2 * f, 3 * f, 3), dtype=np.uint8))
    conversation = {"messages": [
        {"role": "user", "content": [{"type": "image", "index": 0}, {"type": "text", "text": "What is it?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A harbour with three ships."}]},
    ], "meta": {"id": "g0"}}
    sample = ChatEncoder(processor, family).encode(conversation, [image])
    batch = {k: sample[k][None].cuda() for k in ("input_ids", "attention_mask", "labels", "mm_token_type_ids")}
    batch.update(pixel_values=sample["pixel_values"].cuda(), image_grid_thw=sample["image_grid_thw"].cuda())

    reference = build_tiny_model(family, processor=processor).cuda().float().train()
    patched = build_tiny_model(family, processor=processor).cuda().float().train()  # same seed, same weights
    with torch.no_grad():
        expected = reference(**batch).loss.item()  # before patching: Liger swaps module-level functions
    modeling = importlib.import_module(f"transformers.models.{family}.modeling_{family}")
    saved = dict(vars(modeling))
    try:
        message = apply_liger(patched, family)
        assert "fused_linear_cross_entropy" in message
        with torch.no_grad():
            got = patched(**batch).loss.item()
    finally:  # undo the process-wide part of the patch for the tests that follow
        for name in set(vars(modeling)) - set(saved):
            delattr(modeling, name)
        for name, value in saved.items():
            setattr(modeling, name, value)
    assert got == pytest.approx(expected, rel=1e-3)
