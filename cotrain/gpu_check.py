"""One prepared GPU check: environment, numerics at full 7B width, throughput / MFU / memory, generation.

``cotrain gpu-check`` is the CLI. Sections run in this order, each under an internal time budget
(a section whose estimate exceeds the time left is skipped and says so):

1. ``env``: GPU, driver, torch, transformers, triton, liger-kernel, flash-attn versions;
2. ``throughput_plain_*``: plain HF (padded batches, sdpa, full logits, no Liger) on Qwen2.5-VL-3B
   (full fine-tune) and -7B (LoRA r=64 on the language model, merger trained, vision frozen: a full
   7B fine-tune with AdamW needs > 80 GB), bf16, gradient checkpointing;
3. ``generate_3b``: HF generate, batched vs one by one, same prompts, fixed new-token count;
4. ``numerics``: a 2-layer model with full Qwen2.5-VL-7B widths, bf16: packed torch_varlen vs padded
   sdpa, selective vs full logits, Liger on vs off (last: Liger patches transformers process-wide);
5. ``throughput_cotrain_*``: the same samples packed + torch_varlen + Liger + selective logits.

Plain runs come before anything Liger touches, so the baseline is really unpatched. Samples are
synthetic stand-ins drawn from the full recipe's length mix (:data:`LENGTH_MIX`). ``dry_run`` uses
tiny shapes (on CPU: sdpa per sample stands in for torch_varlen, Liger is reported unavailable).

MFU: model FLOPs of the real tokens / (time x peak). Per sample of n text tokens and p vision
patches: 6 N_lm n + 6 L_lm n^2 d_attn (causal attention, forward + backward) for the language model
(N_lm: decoder and lm_head matmul parameters, not the embedding), 6 N_vis p + 12 p w d_vis per
windowed block and 12 p^2 d_vis per full-attention block for the vision tower (w = patches per
window); gradient-checkpoint recomputation is not counted. Peak: :data:`PEAK_BF16_TFLOPS`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
"""Dense bf16 tensor-core peak by GPU name fragment (NVIDIA datasheets, SXM, no sparsity)."""
LENGTH_MIX = [
    # (task, share, image side range in px, answer words): stand-ins for data_recipes/full.yaml's mix
    ("classification", 0.25, (224, 512), 2),
    ("vqa", 0.25, (256, 768), 4),
    ("grounding", 0.20, (384, 1008), 12),
    ("detection", 0.15, (512, 1008), 160),
    ("captioning", 0.15, (256, 768), 60),
]
BUDGET_S = 480.0


@dataclass
class Budget:
    """Wall-clock budget shared by the sections; a section that would overrun is skipped."""

    total_s: float
    start: float = field(default_factory=time.monotonic)
    results: dict = field(default_factory=dict)

    def left(self) -> float:
        return self.total_s - (time.monotonic() - self.start)

    def run(self, name: str, estimate_s: float, fn: Callable[[], dict]) -> dict:
        if estimate_s > self.left():
            out = {"status": "skipped", "reason": f"needs ~{estimate_s:.0f} s, {self.left():.0f} s left in the budget"}
        else:
            t0 = time.monotonic()
            try:
                out = {"status": "ok", **fn()}
            except Exception as e:  # noqa: BLE001 - one failing section must not lose the others' figures
                log.exception("section %s failed", name)
                out = {"status": "error", "reason": f"{type(e).__name__}: {str(e)[:400]}"}
            out["seconds"] = round(time.monotonic() - t0, 1)
        self.results[name] = out
        log.info("%s: %s", name, out.get("status"))
        return out


def environment() -> dict:
    import importlib.metadata as md
    import subprocess

    import torch

    def version(pkg):
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    env = {pkg: version(pkg) for pkg in ("torch", "transformers", "triton", "liger-kernel", "flash-attn", "peft",
                                         "accelerate")}
    env["cuda"] = torch.version.cuda
    env["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    try:
        env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                       capture_output=True, text=True, timeout=20).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        env["driver"] = None
    return env


def peak_tflops(gpu: str | None) -> float | None:
    for key, value in PEAK_BF16_TFLOPS.items():
        if gpu and key in gpu:
            return value
    return None


@dataclass
class Setup:
    """What every section shares: device, dtype, shapes, processor."""

    dry_run: bool
    device: str
    dtype: Any
    processor: Any
    family: Any
    max_length: int
    n_samples: int
    min_pixels: int
    max_pixels: int


def make_setup(dry_run: bool) -> Setup:
    import torch

    from cotrain.model.families import get_family
    from cotrain.model.processor import build_offline_processor

    cuda = torch.cuda.is_available()
    lo, hi = 4 * 28 * 28, (16 if dry_run else 1296) * 28 * 28  # full.yaml: 256..1296 visual tokens
    return Setup(dry_run, "cuda" if cuda else "cpu", torch.bfloat16 if cuda else torch.float32,
                 build_offline_processor("qwen2_5_vl", min_pixels=lo, max_pixels=hi),
                 get_family("qwen2_5_vl"), 1024 if dry_run else 8192, 8 if dry_run else 48, lo, hi)


def stand_in_samples(setup: Setup, seed: int = 0) -> list[dict]:
    """Encoded synthetic samples whose image sizes and answer lengths follow :data:`LENGTH_MIX`."""
    from PIL import Image

    from cotrain.data.encoder import ChatEncoder
    from cotrain.resolution import smart_resize

    rng = np.random.default_rng(seed)
    encoder = ChatEncoder(setup.processor, setup.family)
    shares = np.array([m[1] for m in LENGTH_MIX])
    words = "field river road building ship plane harbour forest bridge tank".split()
    out = []
    for k in range(setup.n_samples):
        task, _, (lo, hi), n_words = LENGTH_MIX[int(rng.choice(len(LENGTH_MIX), p=shares / shares.sum()))]
        side = (lo // 8, hi // 8) if setup.dry_run else (lo, hi)
        h, w = (int(rng.integers(side[0], side[1] + 1)) for _ in range(2))
        h, w = smart_resize(h, w, setup.family.factor, setup.min_pixels, setup.max_pixels)
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        answer = " ".join(rng.choice(words, size=max(1, n_words // (8 if setup.dry_run else 1))))
        conv = {"messages": [
            {"role": "user", "content": [{"type": "image", "index": 0}, {"type": "text", "text": f"{task} {k}?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]}], "images": [], "meta": {"id": k}}
        out.append(encoder.encode(conv, [img]))
    return out


def build(setup: Setup, arch: str, **depth):
    """A random-init model of ``arch`` (tiny in a dry run) on the setup's device and dtype."""
    from cotrain.model.archs import build_arch_model
    from cotrain.model.processor import special_token_ids
    from cotrain.model.tiny import build_tiny_model

    if setup.dry_run:
        model = build_tiny_model("qwen2_5_vl", processor=setup.processor, hidden_size=64).to(setup.device, setup.dtype)
    else:
        model = build_arch_model(arch, special_token_ids(setup.processor.tokenizer), device=setup.device,
                                 dtype=setup.dtype, **depth)
    model.set_attn_implementation("sdpa")
    return model.train()


def packed_attention(setup: Setup) -> tuple[str, bool]:
    """(implementation for packed rows, True when a CPU stand-in replaces torch_varlen)."""
    from cotrain.model import torch_varlen, varlen_sdpa

    if torch_varlen.availability() is None:
        return torch_varlen.register(), False
    if setup.dry_run:
        return varlen_sdpa.register(), True
    raise RuntimeError(f"torch_varlen cannot run: {torch_varlen.availability()}")


def _to(batch: dict, device: str) -> dict:
    import torch

    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def _group(name: str) -> str:
    from cotrain.model.trainable import part_of

    return part_of(name)


def _loss(model, batch: dict, selective: bool):
    """Token-mean loss of one micro-batch: the model's own (full logits) or over supervised positions only."""
    import torch

    from cotrain.data.collate import model_inputs
    from cotrain.model.selective_logits import loss_positions, supervised_logits

    inputs = model_inputs(batch)
    if not selective:
        return model(**inputs).loss
    need, targets = loss_positions(inputs.pop("labels"))
    with supervised_logits(model, need):
        logits = model(**inputs).logits
    return torch.nn.functional.cross_entropy(logits[0].float(), targets)


def loss_and_grads(model, batch: dict, *, selective: bool = False) -> tuple[float, dict]:
    """Token-mean loss and per-parameter gradients (float32 copies) of one forward + backward."""
    model.zero_grad(set_to_none=True)
    loss = _loss(model, batch, selective)
    loss.backward()
    grads = {n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


def compare(a: tuple[float, dict], b: tuple[float, dict]) -> dict:
    """Loss relative difference and the cosine of the concatenated gradients of each model part."""
    import torch

    loss_a, grads_a = a
    loss_b, grads_b = b
    cos = {}
    for part in ("vision", "merger", "language"):
        names = [n for n in grads_a if _group(n) == part and n in grads_b]
        if names:
            x = torch.cat([grads_a[n].flatten() for n in names])
            y = torch.cat([grads_b[n].flatten() for n in names])
            cos[part] = round(float(torch.nn.functional.cosine_similarity(x, y, dim=0)), 5)
    return {"loss_a": loss_a, "loss_b": loss_b, "loss_rel_diff": abs(loss_b - loss_a) / max(abs(loss_a), 1e-12),
            "grad_cosine": cos}


def numerics(setup: Setup) -> dict:
    """Reduced depth (2 text layers, 2 vision blocks), full 7B widths: three comparisons."""
    from cotrain.data.collate import PaddingCollator
    from cotrain.data.collate import PackCollator
    from cotrain.model.kernels import apply_liger, liger_status

    samples = stand_in_samples(setup, seed=1)[:4]
    pad = setup.processor.tokenizer.pad_token_id
    padded = _to(PaddingCollator(pad_token_id=pad)(samples), setup.device)
    packed = _to(PackCollator(pad_token_id=pad, spatial_merge_size=2, flatten=True)([samples]), setup.device)
    model = build(setup, "qwen2_5_vl_7b", num_layers=2, vision_depth=2)
    base = loss_and_grads(model, padded)
    out: dict = {"model": "qwen2_5_vl_7b widths, 2 text layers, 2 vision blocks", "dtype": str(setup.dtype)}
    attn, stand_in = packed_attention(setup)
    model.set_attn_implementation(attn)
    out["packed_varlen_vs_padded_sdpa"] = {**compare(base, loss_and_grads(model, packed)), "attention": attn,
                                           "cpu_stand_in": stand_in}
    model.set_attn_implementation("sdpa")
    out["selective_vs_full_logits"] = compare(base, loss_and_grads(model, padded, selective=True))
    ok, why = liger_status("qwen2_5_vl")
    if ok:
        apply_liger(model, "qwen2_5_vl")
        out["liger_vs_off"] = compare(base, loss_and_grads(model, padded))
    else:
        out["liger_vs_off"] = {"status": "unavailable", "reason": why}
    return out


def model_flops(model, samples: list[dict]) -> float:
    """Training FLOPs of the samples' real tokens (formula in the module docstring)."""
    cfg = model.config
    text, vision = cfg.text_config, cfg.vision_config
    lm_params = sum(p.numel() for n, p in model.named_parameters()
                    if ("language_model" in n or n.startswith("lm_head")) and "embed_tokens" not in n)
    if getattr(model.config, "tie_word_embeddings", False):
        lm_params += model.get_input_embeddings().weight.numel()
    vis_params = sum(p.numel() for n, p in model.named_parameters() if "visual" in n)
    d_attn = text.num_attention_heads * (getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads)
    d_vis = vision.hidden_size
    window = (getattr(vision, "window_size", 0) // vision.patch_size) ** 2 or None
    full_blocks = len(getattr(vision, "fullatt_block_indexes", []) or []) if window else vision.depth
    total = 0.0
    for s in samples:
        n = int(s["input_ids"].numel())
        p = int(s["pixel_values"].shape[0]) if s.get("pixel_values") is not None else 0
        total += 6 * lm_params * n + 6 * text.num_hidden_layers * n * n * d_attn
        total += 6 * vis_params * p + 12 * full_blocks * p * p * d_vis
        if window:
            total += 12 * (vision.depth - full_blocks) * p * min(window, p) * d_vis
    return total


def _lora(model, r: int = 64):
    from types import SimpleNamespace

    from cotrain.config import LoraConfig
    from cotrain.model.trainable import apply_freeze, apply_lora

    cfg = SimpleNamespace(train_vision=False, train_merger=True, train_language=True,
                          lora=LoraConfig(enabled=True, r=r, alpha=2 * r, dropout=0.0))
    apply_freeze(model, cfg)
    return apply_lora(model, cfg)


def throughput(setup: Setup, arch: str, mode: str, *, lora: bool, steps: int) -> dict:
    """Real tokens/s, MFU and peak memory of ``steps`` optimizer steps (after one warm-up step)."""
    import torch

    from cotrain.data.collate import PaddingCollator
    from cotrain.data.collate import PackCollator
    from cotrain.data.packing import plan_packs
    from cotrain.model.kernels import apply_liger, liger_status

    samples = stand_in_samples(setup, seed=2)
    pad = setup.processor.tokenizer.pad_token_id
    cuda = setup.device == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    lengths = [int(s["input_ids"].numel()) for s in samples]
    packs = plan_packs(lengths, setup.max_length, seed=0, epoch=0)
    model = build(setup, arch)
    info = {"arch": arch, "mode": mode, "training": "LoRA r=64 on the LM, merger trained, vision frozen" if lora
            else "full fine-tune"}
    if mode == "cotrain":
        ok, why = liger_status("qwen2_5_vl")
        if ok:
            apply_liger(model, "qwen2_5_vl")
        info["liger"] = True if ok else f"unavailable ({why.split(': ', 1)[-1][:60]})"
        info["attention"], info["cpu_stand_in"] = packed_attention(setup)
        model.set_attn_implementation(info["attention"])
        collate = PackCollator(pad_token_id=pad, spatial_merge_size=2, flatten=True)
        batches = [collate([[samples[i] for i in p]]) for p in packs]
        selective = not ok
    else:
        per = math.ceil(len(samples) / len(packs))  # padded batches hold as many samples as a pack
        collate = PaddingCollator(pad_token_id=pad)
        batches = [collate(samples[i:i + per]) for i in range(0, len(samples), per)]
        selective = False
    if lora:
        model = _lora(model)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=cuda)
    flops = model_flops(model.get_base_model() if lora else model, samples)
    real_tokens = sum(lengths)
    slots = sum(int(b["input_ids"].numel()) for b in batches)

    def step():
        for b in batches:  # one optimizer step over all samples (gradient accumulation)
            _loss(model, _to(b, setup.device), selective).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    try:
        step()  # warm-up: allocator, kernels, autotuning
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) / steps
    except torch.cuda.OutOfMemoryError as e:
        return {**info, "oom": True, "reason": str(e).splitlines()[0][:200]}
    finally:
        del opt
    out = {**info, "samples": len(samples), "micro_batches": len(batches), "real_tokens": real_tokens,
           "fill": round(real_tokens / slots, 4), "step_s": round(dt, 4), "tokens_per_s": round(real_tokens / dt, 1),
           "model_tflops_per_s": round(flops / dt / 1e12, 3)}
    if cuda:
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        peak = peak_tflops(torch.cuda.get_device_name(0))
        out["mfu"] = round(flops / dt / (peak * 1e12), 4) if peak else None
    return out


def generate(setup: Setup, n: int = 8, new_tokens: int = 32) -> dict:
    """Greedy generation of ``new_tokens`` for ``n`` prompts: one batch vs one by one."""
    import torch

    from cotrain.data.collate import PaddingCollator, model_inputs

    samples = stand_in_samples(setup, seed=3)[:n]
    model = build(setup, "qwen2_5_vl_3b").eval()
    pad = setup.processor.tokenizer.pad_token_id
    kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=pad)

    def prompt(s):
        keep = s["labels"] == -100  # the prompt part: everything before the first supervised token
        first = int(torch.nonzero(~keep)[0]) if (~keep).any() else s["input_ids"].numel()
        n = s["input_ids"].numel()
        return {k: v[..., :first] if torch.is_tensor(v) and v.shape[-1:] == (n,) else v for k, v in s.items()}

    prompts = [prompt(s) for s in samples]
    timings = {}
    with torch.no_grad():
        for label, groups in (("batched", [prompts]), ("one_by_one", [[p] for p in prompts])):
            t0 = time.perf_counter()
            for g in groups:
                batch = PaddingCollator(pad_token_id=pad, padding_side="left")(g)
                inputs = {k: v for k, v in model_inputs(_to(batch, setup.device)).items() if k != "labels"}
                model.generate(**inputs, **kw)
            if setup.device == "cuda":
                torch.cuda.synchronize()
            timings[label] = time.perf_counter() - t0
    return {"prompts": n, "new_tokens": new_tokens, **{f"{k}_s": round(v, 3) for k, v in timings.items()},
            "batched_speedup": round(timings["one_by_one"] / timings["batched"], 2)}


def clip_speed(setup: Setup) -> dict:
    """Contrastive training images/s of a ViT-B/32-shaped random CLIP, float32 vs bfloat16 (issue 16)."""
    import torch

    from cotrain.contrastive.speed import images_per_second

    dry = setup.device != "cuda"
    return images_per_second(dry, 8 if dry else 128, 1 if dry else 5, torch.device(setup.device))


SECTIONS = [
    # (name, estimate in seconds on one H100, estimate in a dry run, function of the setup)
    ("throughput_plain_3b", 110, 5, lambda s: throughput(s, "qwen2_5_vl_3b", "plain", lora=False, steps=2)),
    ("throughput_plain_7b", 110, 5, lambda s: throughput(s, "qwen2_5_vl_7b", "plain", lora=True, steps=2)),
    ("generate_3b", 40, 5, generate),
    ("numerics", 40, 5, numerics),
    ("throughput_cotrain_3b", 80, 5, lambda s: throughput(s, "qwen2_5_vl_3b", "cotrain", lora=False, steps=2)),
    ("throughput_cotrain_7b", 80, 5, lambda s: throughput(s, "qwen2_5_vl_7b", "cotrain", lora=True, steps=2)),
    ("clip_vit_b32", 40, 5, clip_speed),
]


def run_gpu_check(out_dir: str | Path, *, dry_run: bool = False, budget_s: float = BUDGET_S) -> dict:
    """Run every section within ``budget_s``; write gpu_check.json and gpu_check.md to ``out_dir``."""
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    budget = Budget(budget_s)
    budget.run("env", 5, environment)
    setup = make_setup(dry_run)
    for name, gpu_s, dry_s, fn in SECTIONS:
        budget.run(name, dry_s if dry_run else gpu_s, lambda fn=fn: fn(setup))
        if setup.device == "cuda":
            torch.cuda.empty_cache()
    result = {"dry_run": dry_run, "device": setup.device, "budget_s": budget_s,
              "elapsed_s": round(budget_s - budget.left(), 1), "sections": budget.results,
              "ratios": ratios(budget.results), "flop_formula": __doc__.split("MFU: ")[1].strip(),
              "peak_bf16_tflops": PEAK_BF16_TFLOPS}
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "gpu_check.md").write_text(markdown(result))
    return result


def ratios(sections: dict) -> dict:
    """cotrain / plain for each model size: tokens/s (higher is better) and peak memory (lower is better)."""
    out = {}
    for size in ("3b", "7b"):
        plain, ours = sections.get(f"throughput_plain_{size}", {}), sections.get(f"throughput_cotrain_{size}", {})
        if plain.get("tokens_per_s") and ours.get("tokens_per_s"):
            out[f"{size}_tokens_per_s"] = round(ours["tokens_per_s"] / plain["tokens_per_s"], 3)
        if plain.get("peak_memory_gib") and ours.get("peak_memory_gib"):
            out[f"{size}_peak_memory"] = round(ours["peak_memory_gib"] / plain["peak_memory_gib"], 3)
    return out


def _cell(section: dict) -> str:
    if section.get("status") != "ok":
        return f"{section.get('status')}: {section.get('reason', '')}"
    if section.get("oom"):
        return f"OOM ({section.get('reason', '')})"
    keys = ("tokens_per_s", "mfu", "peak_memory_gib", "fill", "batched_speedup", "liger", "fp32_images_per_s",
            "bf16_images_per_s", "bf16_speedup")
    return ", ".join(f"{k}={section[k]}" for k in keys if k in section)


def markdown(result: dict) -> str:
    sec = result["sections"]
    env = sec.get("env", {})
    lines = [f"# gpu_check ({'dry run, tiny shapes' if result['dry_run'] else 'full shapes'}, {result['device']})", "",
             "environment: " + ", ".join(f"{k} {v}" for k, v in env.items() if k not in ("status", "seconds")), "",
             "| section | seconds | result |", "|---|---|---|"]
    for name, s in sec.items():
        if name != "env":
            lines.append(f"| {name} | {s.get('seconds', '-')} | {_cell(s)} |")
    num = sec.get("numerics", {})
    if num.get("status") == "ok":
        lines += ["", "| numerics (bf16 on GPU) | loss rel. diff | grad cosine (vision / merger / language) |",
                  "|---|---|---|"]
        for key in ("packed_varlen_vs_padded_sdpa", "selective_vs_full_logits", "liger_vs_off"):
            c = num.get(key, {})
            cos = c.get("grad_cosine")
            lines.append(f"| {key} | {c.get('loss_rel_diff', c.get('reason', '-'))} | "
                         f"{' / '.join(str(cos.get(p, '-')) for p in ('vision', 'merger', 'language')) if cos else '-'} |")
    lines += ["", f"ratios cotrain / plain: {result['ratios'] or 'n/a'}", "",
              f"MFU: {result['flop_formula']}", ""]
    return "\n".join(lines)
