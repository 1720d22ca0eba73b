"""Published architectures of full-size Qwen-VL models, as data: random-init models of real shape.

``model.arch: qwen2_5_vl_7b`` with ``model.path: null`` builds a model with the released model's
shapes and random weights (no download), for scale tests, memory planning and GPU benchmarks.
:func:`build_arch_model` builds on the meta device for counting (no memory) or directly on the
target device. The numbers are those of each model's ``config.json`` on the Hugging Face Hub
(https://huggingface.co/Qwen/<Model>-Instruct/blob/main/config.json, read 2026-12); the parameter
counts are the "Model size" the model cards state, which a test compares against the meta-device
count. The Hub itself cannot be reached from our machines: the shapes were read from verbatim copies
of those config.json files vendored in public repositories (Qwen2-VL-2B and Qwen3-VL-2B only from
partial restatements); the counts 3.75B, 8.29B (Qwen2.5-VL-7B), 2.21B and 4.44B were confirmed from
restatements of the cards. Qwen2-VL-7B (8.29B), Qwen3-VL-2B (card: "2B") and Qwen3-VL-8B (restated as
"8.8B") hold the meta count rounded to 2 decimals, consistent with those rounded figures only.
Special token ids are not part of the table: they come from the tokenizer that feeds the
model (the real one for checkpoints, the offline one for random-init models).

Must not download anything, and does not hold weights.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from cotrain.errors import ConfigError
from cotrain.model.families import get_family


@dataclass(frozen=True)
class ArchSpec:
    """Text and vision shapes of one released model."""

    family: str
    text: dict
    vision: dict
    tie_word_embeddings: bool
    card_params_b: float
    """Parameter count in billions as the model card states it (rounded as stated)."""
    source: str


_Q25_VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, patch_size=14,
                   spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31],
                   hidden_act="silu", in_channels=3)
_Q2_VISION = dict(depth=32, embed_dim=1280, mlp_ratio=4, num_heads=16, patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2, in_channels=3)
_Q3_VISION = dict(num_heads=16, patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                  num_position_embeddings=2304, hidden_act="gelu_pytorch_tanh", in_channels=3)
_Q2_ROPE = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]}
_Q3_ROPE = {"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [24, 20, 20], "mrope_interleaved": True}


def _text(hidden, inter, layers, heads, kv, vocab, rope, max_positions=128000, **extra) -> dict:
    return dict(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers, num_attention_heads=heads,
                num_key_value_heads=kv, vocab_size=vocab, rms_norm_eps=1e-6, hidden_act="silu",
                max_position_embeddings=max_positions, rope_parameters=dict(rope), **extra)


def _hub(model: str) -> str:
    return f"https://huggingface.co/Qwen/{model}/blob/main/config.json"


ARCHS: dict[str, ArchSpec] = {
    "qwen2_5_vl_3b": ArchSpec("qwen2_5_vl", _text(2048, 11008, 36, 16, 2, 151936, _Q2_ROPE),
                              dict(_Q25_VISION, out_hidden_size=2048), True, 3.75, _hub("Qwen2.5-VL-3B-Instruct")),
    "qwen2_5_vl_7b": ArchSpec("qwen2_5_vl", _text(3584, 18944, 28, 28, 4, 152064, _Q2_ROPE),
                              dict(_Q25_VISION, out_hidden_size=3584), False, 8.29, _hub("Qwen2.5-VL-7B-Instruct")),
    "qwen2_vl_2b": ArchSpec("qwen2_vl", _text(1536, 8960, 28, 12, 2, 151936, _Q2_ROPE, 32768),
                            dict(_Q2_VISION, hidden_size=1536), True, 2.21, _hub("Qwen2-VL-2B-Instruct")),
    "qwen2_vl_7b": ArchSpec("qwen2_vl", _text(3584, 18944, 28, 28, 4, 152064, _Q2_ROPE, 32768),
                            dict(_Q2_VISION, hidden_size=3584), False, 8.29, _hub("Qwen2-VL-7B-Instruct")),
    "qwen3_vl_2b": ArchSpec("qwen3_vl", _text(2048, 6144, 28, 16, 8, 151936, _Q3_ROPE, 262144, head_dim=128),
                            dict(_Q3_VISION, depth=24, hidden_size=1024, intermediate_size=4096, out_hidden_size=2048,
                                 deepstack_visual_indexes=[5, 11, 17]),
                            True, 2.13, _hub("Qwen3-VL-2B-Instruct")),
    "qwen3_vl_4b": ArchSpec("qwen3_vl", _text(2560, 9728, 36, 32, 8, 151936, _Q3_ROPE, 262144, head_dim=128),
                            dict(_Q3_VISION, depth=24, hidden_size=1024, intermediate_size=4096, out_hidden_size=2560,
                                 deepstack_visual_indexes=[5, 11, 17]),
                            True, 4.44, _hub("Qwen3-VL-4B-Instruct")),
    "qwen3_vl_8b": ArchSpec("qwen3_vl", _text(4096, 12288, 36, 32, 8, 151936, _Q3_ROPE, 262144, head_dim=128),
                            dict(_Q3_VISION, depth=27, hidden_size=1152, intermediate_size=4304, out_hidden_size=4096,
                                 deepstack_visual_indexes=[8, 16, 24]),
                            False, 8.77, _hub("Qwen3-VL-8B-Instruct")),
}
"""Released architectures by the name ``model.arch`` takes."""


def get_arch(name: str) -> ArchSpec:
    """The spec of ``name``, or a ``ConfigError`` with the closest names."""
    try:
        return ARCHS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(ARCHS), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"model.arch={name!r} is not a known architecture.{hint} Known: {', '.join(ARCHS)}") from None


def arch_config(name: str, token_ids: dict[str, int], *, num_layers: int | None = None,
                vision_depth: int | None = None):
    """Transformers config of ``name`` whose special ids are ``token_ids`` (of the feeding tokenizer).

    ``num_layers`` / ``vision_depth`` reduce the depth while keeping every width (numerics checks at
    full width in little memory); the vision tower's full-attention / deepstack layers are kept
    where they still exist, else the last block takes their role.
    """
    import transformers

    spec = get_arch(name)
    text = dict(spec.text, bos_token_id=token_ids["bos_token_id"], eos_token_id=token_ids["eos_token_id"],
                pad_token_id=token_ids["pad_token_id"])
    text["rope_parameters"] = dict(text["rope_parameters"])
    vision = dict(spec.vision)
    if num_layers is not None:
        text["num_hidden_layers"] = int(num_layers)
    if vision_depth is not None:
        vision["depth"] = int(vision_depth)
        for key in ("fullatt_block_indexes", "deepstack_visual_indexes"):
            if key in vision:
                kept = [i for i in vision[key] if i < vision_depth]
                vision[key] = kept or [int(vision_depth) - 1]
    if max(token_ids.values()) >= text["vocab_size"]:
        raise ConfigError(f"tokenizer ids up to {max(token_ids.values())} do not fit {name}'s vocabulary "
                          f"({text['vocab_size']})")
    ids = {key: token_ids[key] for key in
           ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")}
    config_class = getattr(transformers, get_family(spec.family).config_class)
    return config_class(text_config=text, vision_config=vision, tie_word_embeddings=spec.tie_word_embeddings, **ids)


def build_arch_model(name: str, token_ids: dict[str, int], *, device: str = "meta", dtype=None, seed: int = 0,
                     **depth):
    """Random-init model of ``name`` on ``device`` ("meta": shapes only, for counting and planning).

    Weights are drawn on the target device inside a forked RNG seeded with ``seed``.
    """
    import torch
    import transformers

    spec = get_arch(name)
    config = arch_config(name, token_ids, **depth)
    model_class = getattr(transformers, get_family(spec.family).model_class)
    previous = torch.get_default_dtype()
    try:
        if dtype is not None:
            torch.set_default_dtype(dtype)
        with torch.random.fork_rng(devices=[] if device in ("meta", "cpu") else None), torch.device(device):
            torch.manual_seed(seed)
            model = model_class(config)
    finally:
        torch.set_default_dtype(previous)
    return model


def count_parameters(model) -> int:
    """Distinct parameters (tied embeddings counted once), as the model cards count them."""
    return sum(p.numel() for p in model.parameters())
