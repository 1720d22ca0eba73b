"""Whole-scene tasks: classification and captioning.

Builders here read only the record's labels/captions and the context; they must not render
boxes (these tasks have none) or tokenize.
"""

from __future__ import annotations

from cotrain.tasks import templates as T
from cotrain.tasks.base import BuildContext, assistant


def build_classification(record: dict, ctx: BuildContext) -> tuple[list[dict], dict]:
    """The question lists the classes; the answer is the label exactly as written in that list."""
    classes = ctx.class_list()
    label = record["label"]
    if label not in classes:
        raise ctx.fail("label", f"label {label!r} is not in the class list {classes}",
                       "fix the label or the dataset's class list")
    template = ctx.pick("classification", T.CLASSIFICATION)
    question = template.format(image=ctx.image_noun(), classes=", ".join(classes))
    return [ctx.user(question), assistant(label)], {"label": label, "classes": classes}


def build_captioning(record: dict, ctx: BuildContext) -> tuple[list[dict], dict]:
    """Scene or IR-aware caption prompt; multi-image records get a prompt naming every modality.

    One reference caption is the training answer, chosen with the sample's generator so that
    different epochs see different references; the target keeps them all for metrics.
    """
    style = record.get("caption_style", "scene")
    layout = "multi" if len(ctx.images) > 1 else "single"
    template = ctx.pick(f"captioning.{style}.{layout}", T.CAPTIONING[(style, layout)])
    prompt = template.format(image=ctx.image_noun(), modalities=ctx.modality_preamble())
    captions = record["captions"]
    chosen = int(ctx.rng.integers(len(captions)))
    target = {"captions": list(captions), "caption": captions[chosen], "caption_style": style}
    return [ctx.user(prompt, preamble=False), assistant(captions[chosen])], target
