"""Canonical records for every task, built from what a rendered synthetic scene contains.

This module owns the synthetic datasets (``DATASETS``: name -> task), the question/caption
templates, the rules that make referring expressions unique, and the zoom questions on large
images. It reads only ``SceneInfo`` (the scene's size, image paths, cover fractions and objects);
it must not render pixels or write files.

Record ids are ``<scene id>-<kind>`` and therefore unique within each dataset. Boxes are in
ORIGINAL image pixels; quads come from ``objects.place_objects`` already ordered and rounded.
Text choices draw from a generator seeded by (seed, scene index), independent of rendering.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cotrain.data.synthetic.objects import COLOURS, KINDS, LABELS, PlacedObject
from cotrain.data.synthetic.scenes import CLASS_NAMES, COVER_NAMES, COVERS, SCENE_CLASSES
from cotrain.geometry.quads import NINTHS, ninth_box
from cotrain.tasks.templates import ninth_phrase

DATASETS: dict[str, str] = {
    "syn_cls": "classification", "syn_vqa": "vqa", "syn_mcq": "mcq", "syn_grounding": "grounding",
    "syn_det": "detection", "syn_cap_rgb": "captioning", "syn_cap_ir": "captioning",
    "syn_cap_dual": "captioning", "syn_zoom": "zoom_vqa", "syn_conv": "conversation", "syn_triplet": "triplet",
}
"""Dataset name -> task of every record in it."""


@dataclass
class SceneInfo:
    """What the record builders know about one rendered scene."""

    scene_id: str
    """Unique id ("s00012" ordinary, "L000" large); prefix of every record id of the scene."""
    index: int
    """Position in the generation plan; seeds the text choices."""
    scene_class: str
    """Classification label, or "mixture" for large images."""
    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""
    rgb_path: str
    """RGB image path relative to the image root."""
    ir_path: str
    """IR twin path relative to the image root."""
    covers: dict[str, float]
    """Cover name -> area fraction, largest first."""
    objects: list[PlacedObject] = field(default_factory=list)
    """Every object in the image."""
    split: str = "train"
    """train | val | test."""
    large: bool = False
    """A large (zoom) image."""
    conversation: bool = False
    """Whether this scene also yields a conversation record."""

    def image(self, modality: str = "rgb") -> dict:
        path = self.rgb_path if modality == "rgb" else self.ir_path
        return {"path": path, "modality": modality, "width": self.width, "height": self.height}

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.objects:
            out[o.label] = out.get(o.label, 0) + 1
        return out


def count_phrase(label: str, n: int) -> str:
    """"1 plane", "3 small vehicles"."""
    kind = KINDS[label]
    return f"{n} {kind.phrase if n == 1 else kind.plural}"


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _pick(rng: np.random.Generator, options: list):
    return options[int(rng.integers(len(options)))]


def _objects_sentence(scene: SceneInfo) -> str:
    counts = scene.counts()
    if not counts:
        return "No objects are visible."
    parts = [count_phrase(lab, counts[lab]) for lab in sorted(counts, key=lambda k: (-counts[k], k))]
    verb = "is" if parts[0].startswith("1 ") else "are"  # agrees with the nearest noun
    return f"There {verb} {_join(parts)}."


def _covers_sentence(scene: SceneInfo) -> str:
    names = [n for n, f in scene.covers.items() if f >= 0.03]
    main = COVERS[names[0]].phrase
    rest = [COVERS[n].phrase for n in names[1:]]
    tail = f", with patches of {_join(rest)}" if rest else ""
    return f"{main[0].upper()}{main[1:]} covers most of the image{tail}."


def _dominant(scene: SceneInfo) -> str:
    return next(iter(scene.covers))


# --- record builders for ordinary scenes ----------------------------------------------------------


def classification_records(scene: SceneInfo, rng: np.random.Generator) -> list[dict]:
    return [{"id": f"{scene.scene_id}-cls", "task": "classification", "images": [scene.image()],
             "label": scene.scene_class, "classes": list(CLASS_NAMES)}]


def vqa_records(scene: SceneInfo, rng: np.random.Generator) -> list[dict]:
    counts = scene.counts()
    present = sorted(counts)
    absent = [lab for lab in LABELS if lab not in counts]
    out = []
    if present:
        lab = _pick(rng, present)
        q = _pick(rng, ["How many {p} are there in the image?", "How many {p} can be seen?",
                        "Count the {p} in this image."]).format(p=KINDS[lab].plural)
        out.append({"id": f"{scene.scene_id}-count", "task": "vqa", "images": [scene.image()],
                    "question": q, "answer": str(counts[lab]), "answer_type": "number"})
    ask_present = bool(present) and (not absent or rng.random() < 0.5)
    lab = _pick(rng, present if ask_present else absent)
    q = _pick(rng, ["Is there a {s} in the image?", "Are there any {p} in this scene?"])
    out.append({"id": f"{scene.scene_id}-presence", "task": "vqa", "images": [scene.image()],
                "question": q.format(s=KINDS[lab].phrase, p=KINDS[lab].plural),
                "answer": "yes" if ask_present else "no", "answer_type": "yes_no"})
    out.append({"id": f"{scene.scene_id}-cover", "task": "vqa", "images": [scene.image()],
                "question": _pick(rng, ["What is the main land cover in this image?",
                                        "Which land cover dominates this scene?"]),
                "answer": COVERS[_dominant(scene)].phrase, "answer_type": "word"})
    return out


def _mcq(scene, suffix, question, right: str, wrong: list[str], rng) -> dict:
    choices = [right] + wrong
    order = rng.permutation(len(choices))
    choices = [choices[i] for i in order]
    return {"id": f"{scene.scene_id}-{suffix}", "task": "mcq", "images": [scene.image()], "question": question,
            "choices": choices, "answer": choices.index(right)}


def mcq_records(scene: SceneInfo, rng: np.random.Generator) -> list[dict]:
    dom = _dominant(scene)
    others = [COVERS[n].phrase for n in COVER_NAMES if n != dom]
    wrong = [others[i] for i in rng.choice(len(others), 3, replace=False)]
    out = [_mcq(scene, "cover", "Which land cover occupies the largest part of the image?",
                COVERS[dom].phrase, wrong, rng)]
    counts = scene.counts()
    absent = [lab for lab in LABELS if lab not in counts]
    if counts and len(absent) >= 3:
        right = _pick(rng, sorted(counts))
        wrong = [KINDS[absent[i]].phrase for i in rng.choice(len(absent), 3, replace=False)]
        out.append(_mcq(scene, "object", "Which of these objects can be seen in the image?",
                        KINDS[right].phrase, wrong, rng))
    return out


# A rule: (template, key(object, width, height), pick "min"|"max", margin kind, margin size).
# The chosen object must beat the runner-up by the margin, so the expression names it unambiguously
# for a reader looking at the picture, not just by a rounding difference.
GROUNDING_RULES: dict[str, tuple[str, Callable, str, str, float]] = {
    "largest": ("the largest {p}", lambda o, w, h: o.area, "max", "ratio", 1.2),
    "smallest": ("the smallest {p}", lambda o, w, h: o.area, "min", "ratio", 1.2),
    "left": ("the {p} farthest to the left", lambda o, w, h: o.cx, "min", "width", 0.05),
    "right": ("the {p} on the far right", lambda o, w, h: o.cx, "max", "width", 0.05),
    "top": ("the {p} nearest the top edge", lambda o, w, h: o.cy, "min", "height", 0.05),
    "bottom": ("the {p} nearest the bottom edge", lambda o, w, h: o.cy, "max", "height", 0.05),
    "top_left": ("the {p} closest to the top-left corner", lambda o, w, h: math.hypot(o.cx, o.cy),
                 "min", "diagonal", 0.05),
    "top_right": ("the {p} closest to the top-right corner", lambda o, w, h: math.hypot(w - o.cx, o.cy),
                  "min", "diagonal", 0.05),
    "bottom_left": ("the {p} closest to the bottom-left corner", lambda o, w, h: math.hypot(o.cx, h - o.cy),
                    "min", "diagonal", 0.05),
    "bottom_right": ("the {p} closest to the bottom-right corner",
                     lambda o, w, h: math.hypot(w - o.cx, h - o.cy), "min", "diagonal", 0.05),
}


def unique_expressions(objects: list[PlacedObject], width: int, height: int) -> list[tuple[str, int]]:
    """(expression, object index) pairs where the expression fits exactly one object, clearly.

    "the <kind>" when the kind occurs once; otherwise every rule whose winner beats the runner-up
    of the same kind by the rule's margin.
    """
    by_label: dict[str, list[int]] = {}
    for i, o in enumerate(objects):
        by_label.setdefault(o.label, []).append(i)
    out = []
    for label in sorted(by_label):
        idx = by_label[label]
        phrase = KINDS[label].phrase
        if len(idx) == 1:
            out.append((f"the {phrase}", idx[0]))
            continue
        for template, key, pick, margin_kind, margin in GROUNDING_RULES.values():
            vals = sorted(((key(objects[i], width, height), i) for i in idx), reverse=(pick == "max"))
            (best, i_best), (second, _) = vals[0], vals[1]
            if margin_kind == "ratio":
                ok = (best >= margin * second) if pick == "max" else (second >= margin * best)
            else:
                scale = {"width": width, "height": height, "diagonal": math.hypot(width, height)}[margin_kind]
                ok = abs(best - second) >= margin * scale
            if ok:
                out.append((template.format(p=phrase), i_best))
    return out


def grounding_records(scene: SceneInfo, rng: np.random.Generator) -> list[dict]:
    exprs = unique_expressions(scene.objects, scene.width, scene.height)
    out = []
    for k in rng.permutation(len(exprs))[:2]:
        text, i = exprs[int(k)]
        o = scene.objects[i]
        base = {"task": "grounding", "images": [scene.image()], "expression": text}
        out.append({"id": f"{scene.scene_id}-g{len(out)}-hbb", **base, "target": {"hbb": o.hbb}})
        out.append({"id": f"{scene.scene_id}-g{len(out) - 1}-quad", **base, "target": {"quad": list(o.quad)}})
    return out


def detection_records(scene: SceneInfo, rng: np.random.Generator) -> list[dict]:
    objs = [{"label": o.label, "quad": list(o.quad), "difficult": 0} for o in scene.objects]
    return [{"id": f"{scene.scene_id}-det", "task": "detection", "images": [scene.image()], "objects": objs,
             "classes": list(LABELS)}]


def _scene_phrase(scene: SceneInfo) -> str:
    return SCENE_CLASSES[scene.scene_class].phrase


def rgb_captions(scene: SceneInfo, rng: np.random.Generator) -> list[str]:
    phrase = _scene_phrase(scene)
    openers = [f"An aerial view of {phrase}.", f"A remote sensing image showing {phrase}.",
               f"This overhead image shows {phrase}."]
    order = rng.permutation(len(openers))
    objs, covers = _objects_sentence(scene), _covers_sentence(scene)
    return [f"{openers[order[0]]} {objs}", f"{openers[order[1]]} {covers}",
            f"{openers[order[2]]} {covers} {objs}"]


def _ir_sentences(scene: SceneInfo) -> list[str]:
    out = []
    for name, frac in scene.covers.items():
        if frac >= 0.05:
            c = COVERS[name]
            out.append(f"{c.phrase[0].upper()}{c.phrase[1:]} appears {c.ir_phrase}.")
    counts = scene.counts()
    engines = [lab for lab in ("plane", "large-vehicle", "small-vehicle") if lab in counts]
    if engines:
        one = sum(counts[lab] for lab in engines) == 1
        out.append(f"{_join([count_phrase(lab, counts[lab]) for lab in engines]).capitalize()} "
                   f"{'shows a bright engine hot spot' if one else 'show bright engine hot spots'}.")
    if "ship" in counts:
        one = counts["ship"] == 1
        out.append(f"{count_phrase('ship', counts['ship']).capitalize()} "
                   f"{'shows a hot funnel on a cooler hull' if one else 'show hot funnels on cooler hulls'}.")
    if "storage-tank" in counts:
        one = counts["storage-tank"] == 1
        out.append(f"{count_phrase('storage-tank', counts['storage-tank']).capitalize()} "
                   f"{'appears as a bright disc' if one else 'appear as bright discs'}.")
    return out


def ir_captions(scene: SceneInfo, rng: np.random.Generator) -> list[str]:
    cues = " ".join(_ir_sentences(scene))
    phrase = _scene_phrase(scene)
    openers = [f"A thermal infrared image of {phrase}.", f"An infrared view of {phrase}, warmer is brighter.",
               "In this thermal image brighter means warmer."]
    order = rng.permutation(len(openers))
    return [f"{openers[order[0]]} {cues}", f"{openers[order[1]]} {cues}"]


def caption_rgb_records(scene: SceneInfo, rng: np.random.Generator) -> list[dict]:
    return [{"id": f"{scene.scene_id}-cap", "task": "captioning", "images": [scene.image()],
             "captions": rgb_captions(scene, rng), "caption_style": "scene"}]


def caption_ir_records(scene: SceneInfo, rng: np.random.Generator) -> list[dict]:
    return [{"id": f"{scene.scene_id}-capir", "task": "captioning", "images": [scene.image("ir")],
             "captions": ir_captions(scene, rng), "caption_style": "ir_aware"}]


def caption_dual_records(scene: SceneInfo, rng: np.random.Generator) -> list[dict]:
    rgb = rgb_captions(scene, rng)[2]
    ir = " ".join(_ir_sentences(scene))
    captions = [f"Paired RGB and thermal infrared images. RGB: {rgb} Infrared: {ir}",
                f"{rgb} In the infrared twin, {ir[0].lower()}{ir[1:]}"]
    return [{"id": f"{scene.scene_id}-capdual", "task": "captioning",
             "images": [scene.image("rgb"), scene.image("ir")], "captions": captions,
             "caption_style": "ir_aware"}]


def triplet_records(scene: SceneInfo, rng: np.random.Generator) -> list[dict]:
    """The RGB image, its IR twin, the scene captions and the IR-aware captions (contrastive training)."""
    return [{"id": f"{scene.scene_id}-trip", "task": "triplet", "images": [scene.image("rgb"), scene.image("ir")],
             "captions": rgb_captions(scene, rng), "ir_captions": ir_captions(scene, rng)}]


def conversation_records(scene: SceneInfo, rng: np.random.Generator) -> list[dict]:
    if not scene.conversation:
        return []
    exprs = unique_expressions(scene.objects, scene.width, scene.height)
    turns = [("user", "<image>\nWhat kind of scene is this?"),
             ("assistant", f"This is {_scene_phrase(scene)}. {_covers_sentence(scene)}")]
    boxes = []
    for k in rng.permutation(len(exprs))[:2]:
        text, i = exprs[int(k)]
        o = scene.objects[i]
        boxes.append({"quad": list(o.quad)} if rng.random() < 0.5 else {"hbb": o.hbb})
        turns += [("user", f"Where is {text}?"), ("assistant", f"It is at <box>{len(boxes) - 1}</box>.")]
    counts = scene.counts()
    if counts:
        lab = _pick(rng, sorted(counts))
        turns += [("user", f"How many {KINDS[lab].plural} can you see?"),
                  ("assistant", f"I can see {count_phrase(lab, counts[lab])}.")]
    rec = {"id": f"{scene.scene_id}-conv", "task": "conversation", "images": [scene.image()],
           "turns": [{"role": r, "text": t} for r, t in turns]}
    if boxes:
        rec["boxes"] = boxes
    return [rec]


SCENE_BUILDERS: dict[str, Callable[[SceneInfo, np.random.Generator], list[dict]]] = {
    "syn_cls": classification_records, "syn_vqa": vqa_records, "syn_mcq": mcq_records,
    "syn_grounding": grounding_records, "syn_det": detection_records, "syn_cap_rgb": caption_rgb_records,
    "syn_cap_ir": caption_ir_records, "syn_cap_dual": caption_dual_records, "syn_conv": conversation_records,
    "syn_triplet": triplet_records,  # last: the seeds of the other builders stay as they were
}
"""Dataset -> builder of its records from one ordinary scene (all but syn_zoom)."""


# --- zoom questions on large images ---------------------------------------------------------------

COLOUR_QUESTION_KINDS = ("plane", "ship", "small-vehicle", "storage-tank")
"""Kinds painted mostly in their colour; a truck's colour is its cab only, a court's is crossed by lines."""
def _inside(b, cell) -> bool:
    return b[0] >= cell[0] and b[1] >= cell[1] and b[2] <= cell[2] and b[3] <= cell[3]


def _touches(b, cell) -> bool:
    return b[0] < cell[2] and b[2] > cell[0] and b[1] < cell[3] and b[3] > cell[1]


def zoom_records(scene: SceneInfo, rng: np.random.Generator, max_records: int = 24) -> list[dict]:
    """Questions about small objects of a large image, each with its evidence regions.

    In every ninth of the image: the colour of a kind's only object there, the number of a kind's
    objects there (1..9), and the kind of the only object there. A question is asked only when
    no object of the kind straddles the ninth's border, so the answer does not depend on where
    a reader draws the line.
    """
    cands = []
    for name in [n for row in NINTHS for n in row]:
        cell = ninth_box(name, scene.width, scene.height)
        where = ninth_phrase(name)
        touching = [o for o in scene.objects if _touches(o.hbb, cell)]
        for label in sorted({o.label for o in touching}):
            objs = [o for o in touching if o.label == label]
            if not all(_inside(o.hbb, cell) for o in objs):
                continue
            kind = KINDS[label]
            if len(objs) == 1 and label in COLOUR_QUESTION_KINDS:
                o = objs[0]
                others = [c for c in COLOURS if c != o.colour]
                choices = [o.colour] + [others[i] for i in rng.choice(len(others), 3, replace=False)]
                choices = [choices[i] for i in rng.permutation(4)]
                cands.append({"question": f"What is the color of the {kind.phrase} in {where}?",
                              "answer": o.colour, "regions": [{"hbb": o.hbb}], "choices": choices,
                              "_kind": "colour"})
            if len(objs) <= 9:
                cands.append({"question": f"How many {kind.plural} are there in {where}?",
                              "answer": str(len(objs)), "regions": [{"hbb": o.hbb} for o in objs],
                              "_kind": "count"})
        if len(touching) == 1 and _inside(touching[0].hbb, cell):
            o = touching[0]
            others = [lab for lab in LABELS if lab != o.label]
            choices = [KINDS[o.label].phrase] + [KINDS[others[i]].phrase
                                                 for i in rng.choice(len(others), 3, replace=False)]
            choices = [choices[i] for i in rng.permutation(4)]
            cands.append({"question": f"What kind of object is in {where}?", "answer": KINDS[o.label].phrase,
                          "regions": [{"hbb": o.hbb}], "choices": choices, "_kind": "kind"})
    out = []
    for k in sorted(rng.permutation(len(cands))[:max_records]):
        c = cands[int(k)]
        rec = {"id": f"{scene.scene_id}-z{k:03d}-{c.pop('_kind')}", "task": "zoom_vqa",
               "images": [scene.image()], **c}
        out.append(rec)
    return out
