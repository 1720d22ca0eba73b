"""Localisation tasks: grounding (expression -> one box) and detection (classes -> all boxes).

Boxes are rendered by the codec for the RESIZED image in the requested box format; an hbb target
asked as quad/obb is rendered losslessly from its corners, a quad asked as hbb becomes its
enclosing box. A grounding answer asked as ``point`` is the record's ``point`` (a point inside the
target, for targets whose centre may fall outside them) else the target's centre. Targets keep the
boxes in ORIGINAL pixels. Must not parse model output (that is
``cotrain.boxes``) or compute metrics.
"""

from __future__ import annotations

from cotrain.boxes import format_detection_answer
from cotrain.tasks import templates as T
from cotrain.tasks.base import BuildContext, assistant


def build_grounding(record: dict, ctx: BuildContext) -> tuple[list[dict], dict]:
    """Referring expression -> its box (plain ``[...]`` or a one-object JSON list labelled by the expression)."""
    expression = record["expression"]
    template = ctx.pick(f"grounding.{ctx.prompt_style}", T.GROUNDING[ctx.prompt_style])
    question = template.format(expression=expression, image=ctx.image_noun(),
                               box_desc=T.BOX_DESCRIPTIONS[ctx.box_format])
    box = record["target"]
    if ctx.box_format == "point" and "point" in record:
        box = {"point": list(record["point"])}  # the records' point lies on image 0
    answer = ctx.box_text(box, label=expression if ctx.prompt_style == "json" else None)
    target = {"box": dict(box), "box_format": ctx.box_format, "rendered": ctx.render(box)}
    return [ctx.user(question), assistant(answer)], target


def build_detection(record: dict, ctx: BuildContext) -> tuple[list[dict], dict]:
    """Class list -> every object of those classes, ordered by class then top-left (see boxes.py)."""
    classes = ctx.class_list()
    unknown = sorted({o["label"] for o in record["objects"]} - set(classes))
    if unknown:
        raise ctx.fail("objects", f"labels {unknown} are not in the class list {classes}",
                       "fix the labels or the dataset's class list")
    template = ctx.pick(f"detection.{ctx.prompt_style}", T.DETECTION[ctx.prompt_style])
    question = template.format(classes=", ".join(classes), image=ctx.image_noun(),
                               box_desc=T.BOX_DESCRIPTIONS[ctx.box_format])
    if any(o.get("image", 0) != 0 for o in record["objects"]):
        # one answer list has one coordinate frame: objects of a second image would be ambiguous
        raise ctx.fail("objects", "has objects on an image other than the first",
                       "split multi-image detection into one record per image")
    orig, resized = ctx.sizes(0)
    answer = format_detection_answer(record["objects"], ctx.box_format, ctx.codec, orig, resized,
                                     style=ctx.prompt_style)
    target = {"objects": [dict(o) for o in record["objects"]], "classes": classes, "box_format": ctx.box_format}
    return [ctx.user(question), assistant(answer)], target
