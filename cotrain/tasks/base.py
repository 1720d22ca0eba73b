"""What every task builder shares: the ``Conversation`` it returns and the ``BuildContext`` it reads.

A builder turns one validated record into messages + a structured target. The context hands it
the images (with resized sizes), the box codec, the seeded generator for template choice and the
dataset options (box format, prompt style, class list). This module must not tokenize, open images
or decide sizes: sizes arrive from the resolution step, pixels are the encoder's business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cotrain.boxes import BoxCodec
from cotrain.errors import RecordError
from cotrain.tasks import templates as T


@dataclass
class Conversation:
    """Task builder output and chat encoder input (contract in docs/design-notes.md)."""

    messages: list[dict]
    """Role-tagged messages; content parts are ``{"type": "image", "index": i}`` or ``{"type": "text", "text": s}``."""
    images: list[dict]
    """The record's image entries plus ``"abs_path"`` (image_root/path) and ``"resized_wh": [w, h]``."""
    target: dict
    """Structured answer for metrics, e.g. ``{"label": "forest"}``; boxes in ORIGINAL pixels."""
    meta: dict
    """``{"id", "task", "dataset", "template"}``; template names the bank entries chosen."""


def user_text(conv: Any) -> str:
    """The text of the user turns of a conversation or request (what was asked)."""
    return " ".join(p["text"] for m in conv.messages if m["role"] == "user"
                    for p in m["content"] if p.get("type") == "text")


def template_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """Generator for one sample's template choices: a pure function of (seed, epoch, index).

    numpy hashes the integer sequence through SeedSequence, so nearby indices give unrelated
    streams; Python's hash() is avoided because it is salted per process.
    """
    for name, v in (("seed", seed), ("epoch", epoch), ("index", index)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    return np.random.default_rng([int(seed), int(epoch), int(index)])


@dataclass
class BuildContext:
    """Everything a builder needs besides the record."""

    record: dict
    """The validated canonical record."""
    images: list[dict]
    """Image entries with ``abs_path`` and ``resized`` ([h, w]) added."""
    codec: BoxCodec
    """Box codec of the model family."""
    rng: np.random.Generator
    """Seeded from (seed, epoch, index); the only source of randomness for the builder."""
    box_format: str
    """hbb | obb | quad: how boxes are written in prompts and answers."""
    prompt_style: str
    """plain | json: answer style for boxes."""
    classes: list[str] | None = None
    """The dataset's class list, used when the record has none."""
    chosen: list[str] = field(default_factory=list)
    """Names of the template entries picked so far (for ``meta["template"]``)."""

    def pick(self, name: str, bank) -> str:
        """Choose one phrasing of ``bank`` and remember which."""
        i = int(self.rng.integers(len(bank)))
        self.chosen.append(f"{name}:{i}")
        return bank[i]

    def fail(self, field_name: str, problem: str, fix: str) -> RecordError:
        return RecordError(f"{problem}. {fix[:1].upper()}{fix[1:]}", record_id=self.record.get("id"), field=field_name)

    # ---- images -------------------------------------------------------------------------------

    def image_noun(self) -> str:
        if len(self.images) > 1:
            return "image pair" if len(self.images) == 2 else "images"
        return T.IMAGE_NOUNS[self.images[0]["modality"]]

    def modality_preamble(self) -> str:
        """One sentence naming the modality of each image; empty for single-image records."""
        if len(self.images) < 2:
            return ""
        parts = [f"image {i + 1} is {T.MODALITY_NAMES[img['modality']]}" for i, img in enumerate(self.images)]
        listing = ", ".join(parts[:-1]) + " and " + parts[-1]
        return T.MODALITY_PREAMBLE.format(listing=listing[0].upper() + listing[1:])

    def sizes(self, image: int = 0) -> tuple[tuple[int, int], tuple[int, int]]:
        """(original (w, h), resized (w, h)) of one image, in the codec's (width, height) order."""
        img = self.images[image]
        rw, rh = img["resized_wh"]
        return (img["width"], img["height"]), (rw, rh)

    # ---- boxes --------------------------------------------------------------------------------

    def render(self, box: dict) -> list[int]:
        """A record box rendered for its image in the requested box format."""
        orig, resized = self.sizes(box.get("image", 0))
        return self.codec.render(box, orig, resized, self.box_format)

    def box_text(self, box: dict, label: str | None = None) -> str:
        """A record box as answer text in the requested box format and prompt style."""
        return self.codec.format(self.render(box), self.box_format, style=self.prompt_style, label=label)

    def class_list(self) -> list[str]:
        classes = self.record.get("classes") or self.classes
        if not classes:
            raise self.fail("classes", f"a {self.record['task']} prompt lists the classes, but neither the record "
                            "nor the dataset has a class list", "add 'classes' to the record or pass the dataset's "
                            "class list (classes=...)")
        return list(classes)

    # ---- messages -----------------------------------------------------------------------------

    def user(self, text: str, *, preamble: bool = True) -> dict:
        """A user message with every image before the text (and the modality preamble if several)."""
        if preamble and len(self.images) > 1:
            text = f"{self.modality_preamble()}\n{text}"
        parts = [{"type": "image", "index": i} for i in range(len(self.images))]
        return {"role": "user", "content": parts + [{"type": "text", "text": text}]}


def assistant(text: str) -> dict:
    """An assistant message holding ``text``."""
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}
