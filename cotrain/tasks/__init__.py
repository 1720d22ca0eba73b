"""Task builders: canonical record -> ``Conversation`` (messages with image refs, target, meta).

Workflow of ``build_conversation``: check the options, attach ``abs_path`` and the resized size to
each image, seed a generator from (seed, epoch, index), let the task's builder pick a template and
write the user/assistant messages (boxes rendered by the codec for the resized image), then add
the optional system message and the meta. Builders are registered in ``TASK_BUILDERS``; adding a
task means one function and one entry there. Nothing here tokenizes, opens images or chooses
sizes (``cotrain.resolution`` does, before this step).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from cotrain.boxes import CODEC_KINDS, BoxCodec
from cotrain.errors import ConfigError, RecordError
from cotrain.tasks.base import BuildContext, Conversation, template_rng
from cotrain.tasks.dialogue import build_conversation_task
from cotrain.tasks.localization import build_detection, build_grounding
from cotrain.tasks.qa import build_mcq, build_vqa, build_zoom_vqa
from cotrain.tasks.scene import build_captioning, build_classification

PROMPT_STYLES = ("plain", "json")

Builder = Callable[[dict, BuildContext], "tuple[list[dict], dict]"]

TASK_BUILDERS: dict[str, Builder] = {
    "classification": build_classification,
    "vqa": build_vqa,
    "mcq": build_mcq,
    "grounding": build_grounding,
    "detection": build_detection,
    "captioning": build_captioning,
    "zoom_vqa": build_zoom_vqa,
    "conversation": build_conversation_task,
}
"""Task name -> builder(record, ctx) returning (user/assistant messages, target)."""


def build_conversation(record: dict, *, image_root: str | Path, resized_sizes: list[tuple[int, int]],
                       codec: BoxCodec, seed: int, epoch: int, index: int, box_format: str = "quad",
                       prompt_style: str = "plain", classes: list[str] | None = None,
                       system_prompt: str | None = None, dataset: str | None = None) -> Conversation:
    """Build the training conversation of one validated record.

    ``resized_sizes`` holds one (h, w) per image, as returned by ``smart_resize``/``random_resize``.
    Template and caption choices are a pure function of (seed, epoch, index).
    """
    task = record.get("task")
    if task == "triplet":
        raise RecordError("a triplet record (RGB + IR twin + captions) trains a CLIP model (model.kind: clip), not a "
                          "conversation; convert it to captioning records for a vision-language model",
                          record_id=record.get("id"), field="task")
    if task not in TASK_BUILDERS:
        raise RecordError(f"unknown task {task!r}; valid tasks: {', '.join(TASK_BUILDERS)}. Set 'task' to one of them",
                          record_id=record.get("id"), field="task")
    if box_format not in CODEC_KINDS:
        raise ConfigError(f"box_format={box_format!r} is not one of {', '.join(CODEC_KINDS)}; fix the dataset's "
                          "'box_format'")
    if box_format == "point" and task in ("detection", "conversation"):
        raise RecordError(f"box_format point answers one referring expression with a point; a {task} record's "
                          "boxes would lose their extent. Set the dataset's box_format to hbb, obb or quad",
                          record_id=record.get("id"), field="box_format")
    if prompt_style not in PROMPT_STYLES:
        raise ConfigError(f"prompt_style={prompt_style!r} is not one of {', '.join(PROMPT_STYLES)}; fix the "
                          "dataset's 'prompt_style'")
    if len(resized_sizes) != len(record["images"]):
        raise ValueError(f"record {record.get('id')!r} has {len(record['images'])} image(s) but "
                         f"{len(resized_sizes)} resized size(s) were given; pass one (h, w) per image")
    images = []
    for img, (h, w) in zip(record["images"], resized_sizes):
        entry = {**img, "abs_path": str(Path(image_root) / img["path"]), "resized_wh": [int(w), int(h)]}
        if "band_files" in img:  # per-band files of an ms / sar image, resolved like abs_path
            entry["band_files"] = {b: str(Path(image_root) / f) for b, f in img["band_files"].items()}
        images.append(entry)
    ctx = BuildContext(record=record, images=images, codec=codec, rng=template_rng(seed, epoch, index),
                       box_format=box_format, prompt_style=prompt_style, classes=classes)
    messages, target = TASK_BUILDERS[task](record, ctx)
    if system_prompt:
        messages = [{"role": "system", "content": [{"type": "text", "text": system_prompt}]}] + messages
    meta = {"id": record.get("id"), "task": task, "dataset": dataset if dataset is not None else record.get("dataset"),
            "template": "+".join(ctx.chosen)}
    return Conversation(messages=messages, images=images, target=target, meta=meta)


def prompt_only(conv: Conversation) -> Conversation:
    """The conversation without its trailing assistant message(s): the prompt for generation."""
    messages = list(conv.messages)
    while messages and messages[-1]["role"] == "assistant":
        messages.pop()
    return dataclasses.replace(conv, messages=messages)


__all__ = ["Conversation", "BuildContext", "TASK_BUILDERS", "PROMPT_STYLES", "build_conversation", "prompt_only",
           "template_rng"]
