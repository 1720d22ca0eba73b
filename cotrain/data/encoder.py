"""Chat encoder: a ``Conversation`` plus its (already resized) images -> one model sample.

Owns the Qwen chat layout at token level: ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per
message, the default system message when the conversation has none, one
``<|vision_start|><|image_pad|>*n<|vision_end|>`` span per image part, the labels (-100 everywhere
except the content tokens of assistant messages and the ``<|im_end|>`` that closes each of them),
``mm_token_type_ids`` (1 on image tokens: without it transformers silently falls back to 1-D
positions), and the pixel patches with their ``image_grid_thw``.

How: the conversation is cut into segments (role header, each text part, each image, the closing
``<|im_end|>``, the newline), each segment is tokenized on its own and the ids concatenated. This
makes label boundaries exact and lets :meth:`ChatEncoder.length_estimate` count tokens without
pixels. Qwen's pre-tokenizer already splits at every one of these boundaries, so the ids equal
those of tokenizing the whole rendered text, except where a message's content itself starts with
a newline (the header's "\\n" and the content's "\\n" would merge into one BPE token there); a
segmented assistant answer is tokenized the way the model would generate it after the header.

Must not resize images (the caller resized them to multiples of the family factor; the box
text was rendered for exactly those sizes), pick templates, or pad/batch (collator).
"""

from __future__ import annotations

import re

from typing import Any

import torch
from PIL import Image

from cotrain.errors import BadRecordError, ModelLoadError
from cotrain.model.families import FamilySpec, get_family
from cotrain.model.sensor_branch import has_branch

IGNORE_INDEX = -100
"""Label value the loss ignores."""

STRUCTURAL_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|vision_start|>", "<|vision_end|>",
                     "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
"""Special tokens that only the encoder may emit; inside content they are tokenized as text."""
_STRUCTURAL_RE = re.compile("(" + "|".join(re.escape(t) for t in STRUCTURAL_TOKENS) + ")")

IMAGE_SPAN = "<|vision_start|><|image_pad|><|vision_end|>"
"""What one image part renders to in the chat text (before expansion to n image tokens)."""

_FALLBACK_SYSTEM = "You are a helpful assistant."
_ROLES = ("system", "user", "assistant")


def _messages_of(conv: Any) -> list[dict]:
    """Messages of a Conversation dataclass, a {"messages": ...} dict or a plain message list."""
    if isinstance(conv, dict):
        return conv["messages"]
    if isinstance(conv, list):
        return conv
    return conv.messages


def _record_id(conv: Any) -> str:
    meta = conv.get("meta", {}) if isinstance(conv, dict) else getattr(conv, "meta", {}) or {}
    return str(meta.get("id", "?"))


def _parts(message: dict) -> list[dict]:
    content = message.get("content", [])
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def default_system_message(processor) -> str | None:
    """The system message ``processor``'s chat template inserts when a conversation has none.

    Read by rendering a probe conversation, so a real checkpoint's template decides (Qwen2/2.5-VL
    add "You are a helpful assistant.", Qwen3-VL adds none).
    """
    if not getattr(processor, "chat_template", None):
        return _FALLBACK_SYSTEM
    probe = [{"role": "user", "content": [{"type": "text", "text": "probe"}]}]
    text = processor.apply_chat_template(probe, tokenize=False)
    head = "<|im_start|>system\n"
    if not text.startswith(head):
        return None
    return text[len(head):text.index("<|im_end|>")]


class ChatEncoder:
    """Encodes conversations for one processor/family pair; see the module docstring."""

    def __init__(self, processor, family: FamilySpec | str, *, max_length: int | None = None,
                 channels: tuple[str, ...] | None = None):
        self.processor = processor
        # the model's input channels (cotrain.model.sensor_branch.channel_layout); None / R, G, B: a plain RGB model
        self.channels = tuple(channels) if has_branch(channels) else None
        self.tokenizer = processor.tokenizer
        self.image_processor = processor.image_processor
        self.family = family if isinstance(family, FamilySpec) else get_family(family)
        self.max_length = max_length
        ip = self.image_processor
        if (ip.patch_size, ip.merge_size) != (self.family.patch_size, self.family.merge_size):
            raise ModelLoadError(
                f"image processor has patch {ip.patch_size} / merge {ip.merge_size} but family "
                f"{self.family.name} needs {self.family.patch_size} / {self.family.merge_size}; "
                "load the processor of the same checkpoint as the model.")
        vocab = self.tokenizer.get_vocab()
        names = ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>")
        missing = [n for n in names if n not in vocab]
        if missing:
            raise ModelLoadError(f"tokenizer lacks {missing}; use a Qwen-VL tokenizer.")
        self.im_end_id = vocab["<|im_end|>"]
        self.vision_start_id = vocab["<|vision_start|>"]
        self.vision_end_id = vocab["<|vision_end|>"]
        self.image_token_id = vocab["<|image_pad|>"]
        self.default_system = default_system_message(processor)
        # Only the fixed structural pieces are cached: caching content would grow without
        # bound over millions of records.
        structural = [f"<|im_start|>{role}\n" for role in _ROLES] + ["<|im_end|>", "\n"]
        self._cache = {text: self.tokenizer.encode(text, add_special_tokens=False) for text in structural}

    # -- segments ---------------------------------------------------------------------------

    def _segments(self, conv: Any, add_generation_prompt: bool, drop_last_assistant: bool):
        """Yield (kind, value, trained): kind "text" with a str, or "image" with an image index."""
        messages = list(_messages_of(conv))
        rid = _record_id(conv)
        if drop_last_assistant:
            while messages and messages[-1].get("role") == "assistant":
                messages.pop()
        for i, m in enumerate(messages):
            role = m.get("role")
            if role not in _ROLES or (role == "system" and i != 0):
                raise BadRecordError(
                    f"record {rid!r}: message {i} has role {role!r}; roles are system (first only), "
                    "user, assistant. Fix the task builder that produced it.", reason="bad_conversation",
                    record_id=rid)
        if self.default_system is not None and (not messages or messages[0]["role"] != "system"):
            messages.insert(0, {"role": "system", "content": [{"type": "text", "text": self.default_system}]})
        for m in messages:
            trained = m["role"] == "assistant"
            yield "text", f"<|im_start|>{m['role']}\n", False
            for part in _parts(m):
                kind = part.get("type")
                if kind == "image":
                    yield "image", int(part["index"]), False
                elif kind == "text":
                    yield "text", part["text"], trained
                else:
                    raise BadRecordError(
                        f"record {rid!r}: content part of type {kind!r}; only 'text' and 'image' are "
                        "supported. Fix the task builder.", reason="bad_conversation", record_id=rid)
            yield "text", "<|im_end|>", trained
            yield "text", "\n", False
        if add_generation_prompt:
            yield "text", "<|im_start|>assistant\n", False

    def _tokenize(self, text: str) -> list[int]:
        ids = self._cache.get(text)
        if ids is not None:
            return ids
        if not any(t in text for t in STRUCTURAL_TOKENS):
            return self.tokenizer.encode(text, add_special_tokens=False)
        # Content is data, not structure: a record quoting "<|image_pad|>" or "<|im_end|>" must
        # not add image slots without features or fake a turn boundary, so those strings become
        # plain text. Grounding specials (<|box_start|>, <|object_ref_start|>, ...) stay special.
        ids = []
        for piece in _STRUCTURAL_RE.split(text):
            if piece:
                ids += self.tokenizer.encode(piece, add_special_tokens=False,
                                             split_special_tokens=piece in STRUCTURAL_TOKENS)
        return ids

    def image_token_count(self, height: int, width: int, record_id: str = "?") -> int:
        """Visual tokens of a (height, width) image that is already a multiple of the factor."""
        f = self.family.factor
        if height % f or width % f or height <= 0 or width <= 0:
            raise BadRecordError(
                f"record {record_id!r}: image of {height}x{width} (h x w) is not a positive multiple of "
                f"{f} ({self.family.name}); resize with cotrain.resolution.smart_resize before encoding.",
                reason="image_size", record_id=record_id)
        return (height // f) * (width // f)

    # -- public -----------------------------------------------------------------------------

    def render(self, conv: Any, *, add_generation_prompt: bool = False,
               drop_last_assistant: bool = False) -> str:
        """The chat text (one ``<|image_pad|>`` per image), equal to the processor's chat template."""
        return "".join(IMAGE_SPAN if kind == "image" else value for kind, value, _ in
                       self._segments(conv, add_generation_prompt, drop_last_assistant))

    def length_estimate(self, conv: Any, image_sizes: list[tuple[int, int]], *,
                        add_generation_prompt: bool = False, drop_last_assistant: bool = False) -> int:
        """Exact token count of :meth:`encode` for images of ``image_sizes`` ((h, w) per image index)."""
        rid = _record_id(conv)
        total = 0
        for kind, value, _ in self._segments(conv, add_generation_prompt, drop_last_assistant):
            if kind == "image":
                if not 0 <= value < len(image_sizes):
                    raise BadRecordError(f"record {rid!r}: image part refers to image {value} but "
                                         f"{len(image_sizes)} image size(s) were given.",
                                         reason="image_index", record_id=rid)
                total += 2 + self.image_token_count(*image_sizes[value], record_id=rid)
            else:
                total += len(self._tokenize(value))
        return total

    def encode(self, conv: Any, images: list[Image.Image], *, add_generation_prompt: bool = False,
               drop_last_assistant: bool = False) -> dict:
        """Token ids, labels, masks and pixel patches of one conversation.

        ``images[i]`` is the PIL image of ``{"type": "image", "index": i}``, already resized to
        multiples of the family factor. Images are patchified in the order their parts appear
        (the order the model consumes them); images no part refers to are ignored.
        Returns 1-D ``input_ids``/``labels``/``attention_mask``/``mm_token_type_ids``,
        ``pixel_values`` (patches x dim, zero rows without images), ``image_grid_thw``
        (images x 3) and ``num_image_tokens`` (int).
        """
        rid = _record_id(conv)
        ids: list[int] = []
        labels: list[int] = []
        order: list[int] = []
        for kind, value, trained in self._segments(conv, add_generation_prompt, drop_last_assistant):
            if kind == "image":
                if not 0 <= value < len(images):
                    raise BadRecordError(f"record {rid!r}: image part refers to image {value} but "
                                         f"{len(images)} image(s) were given.", reason="image_index",
                                         record_id=rid)
                width, height = images[value].size
                n = self.image_token_count(height, width, record_id=rid)
                order.append(value)
                piece = [self.vision_start_id] + [self.image_token_id] * n + [self.vision_end_id]
                ids += piece
                labels += [IGNORE_INDEX] * len(piece)
            else:
                piece = self._tokenize(value)
                ids += piece
                labels += piece if trained else [IGNORE_INDEX] * len(piece)
        if self.max_length is not None and len(ids) > self.max_length:
            raise BadRecordError(f"record {rid!r}: {len(ids)} tokens > max_length {self.max_length}; raise "
                                 "max_length or lower max_pixels.", reason="too_long", record_id=rid)

        input_ids = torch.tensor(ids, dtype=torch.long)
        sample = {
            "input_ids": input_ids,
            "labels": torch.tensor(labels, dtype=torch.long),
            "attention_mask": torch.ones_like(input_ids),
            "mm_token_type_ids": (input_ids == self.image_token_id).long(),
        }
        sample.update(self._pixels([images[i] for i in order], rid))
        sample["num_image_tokens"] = int(sample["mm_token_type_ids"].sum())
        return sample

    def _pixels(self, images: list, rid: str) -> dict:
        ip = self.image_processor
        n_channels = len(self.channels) if self.channels else 3
        if not images:
            dim = n_channels * ip.temporal_patch_size * ip.patch_size ** 2
            return {"pixel_values": torch.zeros(0, dim), "image_grid_thw": torch.zeros(0, 3, dtype=torch.long)}
        p = self.family.patch_size
        expected = torch.tensor([[1, im.height // p, im.width // p] for im in images], dtype=torch.long)
        if self.channels:  # a sensor branch: every image's rows span the model's whole channel layout
            from cotrain.sensor_pixels import layout_pixels

            rows = torch.cat([layout_pixels(im, self.channels, ip, rid) for im in images])
            return {"pixel_values": rows, "image_grid_thw": expected}
        if not all(isinstance(im, Image.Image) for im in images):
            raise BadRecordError(f"record {rid!r}: its ms / sar images enter through a sensor branch, but the model "
                                 "has RGB input only; train a sensor branch or show them as a composite",
                                 reason="band_channel", record_id=rid)
        # do_resize=False: the caller chose the size (and rendered boxes for it); a second
        # smart_resize with other pixel limits would silently move every box.
        out = ip(images=images, do_resize=False, return_tensors="pt")
        grid = out["image_grid_thw"].long()
        if not torch.equal(grid, expected):  # pragma: no cover - guards a transformers behaviour change
            raise BadRecordError(f"record {rid!r}: image processor produced grid {grid.tolist()} but the "
                                 f"images need {expected.tolist()}; the processor resized them.",
                                 reason="image_size", record_id=rid)
        return {"pixel_values": out["pixel_values"].float(), "image_grid_thw": grid}
