"""Offline processors for the Qwen-VL families: tokenizer + image processor + chat template.

Owns three things that must work on a machine with no network and no torchvision:

* a byte-level ``Qwen2Tokenizer`` whose ids 0..255 are the 256 byte symbols (id == byte value)
  and whose ids 256.. are Qwen's special tokens in Qwen's order (see docs/design-notes.md
  "Tiny vocabulary": a compact vocabulary keeps the tiny model's softmax cheap);
* the Qwen2-VL chat template (``<|im_start|>{role}\\n{content}<|im_end|>\\n``, images as
  ``<|vision_start|><|image_pad|><|vision_end|>``, default system message only when none is given);
* processor classes that are the stock Qwen processors minus the video processor, because
  the stock ``__init__`` demands a video processor and every video processor needs torchvision.
  :func:`save_processor` writes the stock class name and a video processor config so that a
  machine WITH torchvision reloads the directory through plain ``AutoProcessor``.

Must not download anything, and must not know about conversations or labels (that is
``cotrain.data.encoder``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from transformers import Qwen2_5_VLProcessor, Qwen2VLProcessor, Qwen3VLProcessor
from transformers.convert_slow_tokenizer import bytes_to_unicode
from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from cotrain.errors import ModelLoadError
from cotrain.model.families import FamilySpec, get_family

logger = logging.getLogger(__name__)

QWEN_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
"""Qwen's special tokens in the order of their real ids (151643..151656)."""

DEFAULT_SYSTEM_MESSAGE = "You are a helpful assistant."

# Written by hand from the documented Qwen2-VL chat format. Every output goes through an
# explicit string expression with "-" trimming so that HF's trim_blocks/lstrip_blocks settings
# cannot change a single character; cotrain.data.encoder rebuilds exactly this text.
QWEN2_VL_CHAT_TEMPLATE = (
    "{%- if messages and messages[0]['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\n" + DEFAULT_SYSTEM_MESSAGE + "<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' or 'image' in part or 'image_url' in part -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'video' or 'video' in part -%}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif 'text' in part -%}"
    "{{- part['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)


class OfflineQwen2VLProcessor(Qwen2VLProcessor):
    """``Qwen2VLProcessor`` without a video processor (no torchvision needed)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor=image_processor, tokenizer=tokenizer,
                         video_processor=None, chat_template=chat_template, **kwargs)


class OfflineQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """``Qwen2_5_VLProcessor`` without a video processor (no torchvision needed)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor=image_processor, tokenizer=tokenizer,
                         video_processor=None, chat_template=chat_template, **kwargs)


class OfflineQwen3VLProcessor(Qwen3VLProcessor):
    """``Qwen3VLProcessor`` without a video processor (no torchvision needed)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor=image_processor, tokenizer=tokenizer,
                         video_processor=None, chat_template=chat_template, **kwargs)


OFFLINE_PROCESSORS: dict[str, type] = {
    "qwen2_vl": OfflineQwen2VLProcessor,
    "qwen2_5_vl": OfflineQwen2_5_VLProcessor,
    "qwen3_vl": OfflineQwen3VLProcessor,
}
"""Family -> processor class that needs no video processor."""

STOCK_CLASSES: dict[str, tuple[str, str]] = {
    "qwen2_vl": ("Qwen2VLProcessor", "Qwen2VLVideoProcessor"),
    "qwen2_5_vl": ("Qwen2_5_VLProcessor", "Qwen2VLVideoProcessor"),
    "qwen3_vl": ("Qwen3VLProcessor", "Qwen3VLVideoProcessor"),
}
"""Family -> (stock processor class, stock video processor class) written into saved configs."""

# Normalisation statistics of the released checkpoints: CLIP's for Qwen2/2.5-VL,
# 0.5/0.5 for Qwen3-VL (its SigLIP-2 vision tower).
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "qwen2_vl": (_CLIP_MEAN, _CLIP_STD),
    "qwen2_5_vl": (_CLIP_MEAN, _CLIP_STD),
    "qwen3_vl": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}
"""Family -> (image_mean, image_std)."""


def build_byte_tokenizer(number_tokens: int = 0) -> Qwen2Tokenizer:
    """Byte-level Qwen2 tokenizer: byte b has id b, Qwen's specials follow from id 256.

    No merges, so every text byte is one token; decoding is the exact inverse of encoding.
    ``number_tokens`` = N > 10 adds the whole numbers 10 .. N-1 as single tokens (ids 270 ..
    N + 259, in numeric order), matched longest first ("1234" -> "123", "4" for N = 1000): a box
    coordinate is then one token, whose value a small model reads as a class instead of composing
    it from digits. Real Qwen tokenizers split numbers into single digits; this is a setting of the
    tiny demo models only (docs/design-notes.md "Coordinate tokens").
    """
    byte_symbol = bytes_to_unicode()
    vocab = {byte_symbol[b]: b for b in range(256)}
    # Specials are placed in the vocabulary itself so their ids are fixed by this table and
    # not by the order in which the tokenizer happens to register added tokens.
    for offset, token in enumerate(QWEN_SPECIAL_TOKENS):
        vocab[token] = 256 + offset
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=[],
        eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token="<|endoftext|>",
        additional_special_tokens=list(QWEN_SPECIAL_TOKENS[1:]),
    )
    if number_tokens < 0 or 0 < number_tokens <= 10:
        raise ValueError(f"number_tokens={number_tokens}: use 0 (digits one by one) or N > 10 (10 .. N-1 whole)")
    if number_tokens:
        tokenizer.add_tokens([str(i) for i in range(10, number_tokens)])
    return tokenizer


def build_image_processor(family: str | FamilySpec = "qwen2_5_vl", *, min_pixels: int | None = None,
                          max_pixels: int | None = None) -> Qwen2VLImageProcessorPil:
    """PIL image processor with the family's patch/merge sizes and pixel budget."""
    spec = family if isinstance(family, FamilySpec) else get_family(family)
    mean, std = IMAGE_STATS[spec.name]
    return Qwen2VLImageProcessorPil(
        patch_size=spec.patch_size, merge_size=spec.merge_size,
        temporal_patch_size=spec.temporal_patch_size,
        min_pixels=min_pixels if min_pixels is not None else spec.default_min_pixels,
        max_pixels=max_pixels if max_pixels is not None else spec.default_max_pixels,
        image_mean=list(mean), image_std=list(std),
    )


def build_offline_processor(family: str = "qwen2_5_vl", *, min_pixels: int | None = None,
                            max_pixels: int | None = None, number_tokens: int = 0):
    """Processor for ``family`` built from nothing: byte tokenizer (see :func:`build_byte_tokenizer`
    for ``number_tokens``), PIL image processor, chat template."""
    spec = get_family(family)
    return OFFLINE_PROCESSORS[spec.name](
        image_processor=build_image_processor(spec, min_pixels=min_pixels, max_pixels=max_pixels),
        tokenizer=build_byte_tokenizer(number_tokens),
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )


def special_token_ids(tokenizer) -> dict[str, int]:
    """The token ids a Qwen-VL model config must agree with, read from ``tokenizer``.

    Raises ModelLoadError when one of Qwen's vision tokens is missing from the vocabulary.
    """
    wanted = {
        "image_token_id": "<|image_pad|>",
        "video_token_id": "<|video_pad|>",
        "vision_start_token_id": "<|vision_start|>",
        "vision_end_token_id": "<|vision_end|>",
        "bos_token_id": "<|endoftext|>",
        "eos_token_id": "<|im_end|>",
        "pad_token_id": "<|endoftext|>",
    }
    vocab = tokenizer.get_vocab()
    missing = sorted({tok for tok in wanted.values() if tok not in vocab})
    if missing:
        raise ModelLoadError(
            f"tokenizer lacks Qwen special tokens {missing}; a Qwen-VL tokenizer must define them. "
            "Use the tokenizer files of a Qwen2/2.5/3-VL checkpoint or build_offline_processor()."
        )
    return {key: vocab[tok] for key, tok in wanted.items()}


def load_offline_processor(path: str | os.PathLike, family: str):
    """Load a saved processor directory into the video-free class of ``family`` (local files only)."""
    processor = OFFLINE_PROCESSORS[get_family(family).name].from_pretrained(
        str(path), local_files_only=True, trust_remote_code=False)
    if not processor.chat_template:
        logger.info("no chat template in %s; using cotrain's Qwen2-VL template", path)
        processor.chat_template = QWEN2_VL_CHAT_TEMPLATE
    return processor


def save_processor(processor, out_dir: str | os.PathLike, family: str | None = None) -> None:
    """``save_pretrained`` plus the fixes that let stock ``AutoProcessor`` reload the directory.

    The offline classes are unknown to transformers, so their name is replaced by the stock
    one; a ``video_preprocessor_config.json`` with the stock video processor is written when
    absent, because the stock processor loads one on construction (only where torchvision exists).
    """
    out = Path(out_dir)
    processor.save_pretrained(str(out))
    offline_family = next((name for name, cls in OFFLINE_PROCESSORS.items()
                           if type(processor) is cls), None)
    family = family or offline_family
    if offline_family is None or family is None:
        return  # a stock processor already saved itself in a reloadable form
    stock_processor, stock_video = STOCK_CLASSES[family]
    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        file = out / name
        if file.is_file():
            data = json.loads(file.read_text(encoding="utf-8"))
            if "processor_class" in data:
                data["processor_class"] = stock_processor
                file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    video_file = out / "video_preprocessor_config.json"
    if not video_file.exists():
        image = processor.image_processor
        video_file.write_text(json.dumps({
            "video_processor_type": stock_video,
            "processor_class": stock_processor,
            "patch_size": image.patch_size,
            "temporal_patch_size": image.temporal_patch_size,
            "merge_size": image.merge_size,
            "image_mean": list(image.image_mean),
            "image_std": list(image.image_std),
            "size": dict(image.size),
        }, indent=2, sort_keys=True) + "\n", encoding="utf-8")
