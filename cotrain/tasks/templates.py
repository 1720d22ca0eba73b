"""Template banks: the phrasings a task builder chooses from.

Several phrasings per task keep the model from over-fitting one prompt wording. Builders pick one
with a generator seeded from (seed, epoch, index), so the choice is reproducible. This module
holds text only; it must not choose, format boxes or read records.

Slots: ``{image}`` a noun phrase for the image(s) ("remote sensing image", "infrared remote sensing
image", "image pair"), ``{classes}`` a comma-separated class list, ``{question}``, ``{options}``
(one "A. ..." line per choice), ``{expression}``, ``{box_desc}`` (what coordinates to output).
"""

from __future__ import annotations

IMAGE_NOUNS = {
    "rgb": "remote sensing image",
    "ir": "infrared remote sensing image",
    "sar": "SAR image",
    "ms": "multispectral image",
}
"""Noun phrase for a single image of each modality."""

MODALITY_NAMES = {"rgb": "an optical (RGB) image", "ir": "a thermal infrared image", "sar": "a SAR image",
                  "ms": "a multispectral image"}
"""How the modality preamble of a multi-image prompt names each image."""

BOX_DESCRIPTIONS = {
    "hbb": "bounding box [x1, y1, x2, y2]",
    "obb": "oriented bounding box [cx, cy, w, h, angle]",
    "quad": "four corner points [x1, y1, x2, y2, x3, y3, x4, y4]",
    "point": "point [x, y]",
}

CLASSIFICATION = (
    "Classify this {image} into one of the following classes: {classes}. Answer with the class name only.",
    "What type of scene does this {image} show? Choose from: {classes}. Reply with just the class name.",
    "Which of these categories best describes the {image}? {classes}. Answer with one category exactly as written.",
    "Categories: {classes}.\nAssign the {image} to one category and answer with its name.",
)

VQA = {
    "yes_no": (
        "{question}\nAnswer yes or no.",
        "{question} Please reply with yes or no.",
        "Based on the {image}, answer with yes or no: {question}",
    ),
    "number": (
        "{question}\nAnswer with a number.",
        "{question} Reply with a single number.",
        "Looking at the {image}: {question}\nGive the number only.",
    ),
    "word": (
        "{question}\nAnswer the question using a single word or phrase.",
        "{question} Answer briefly.",
        "Looking at the {image}: {question}\nGive a short answer.",
    ),
    "free": (
        "{question}",
        "Answer the question about the {image}: {question}",
        "{question}\nAnswer based on what the {image} shows.",
    ),
}
"""VQA phrasings by answer type; records without ``answer_type`` use "word"."""

MCQ = (
    "{question}\n{options}\nAnswer with the option's letter from the given choices directly.",
    "Question: {question}\nOptions:\n{options}\nReply with the letter of the correct option.",
    "Choose the correct option for the question about the {image}.\n{question}\n{options}\nAnswer with the letter only.",
)

ZOOM_CHOICES = "{question}\nOptions: {choices}."
"""How a zoom_vqa record's optional choices are appended (the answer is given as text)."""

GROUNDING = {
    "plain": (
        "Locate {expression} in the {image}. Output its {box_desc}.",
        "Where is {expression}? Give its {box_desc}.",
        "Find the object described as \"{expression}\" and output its {box_desc}.",
        "Output the {box_desc} of {expression}.",
    ),
    "json": (
        "Locate {expression} in the {image} and output its {box_desc} in JSON format.",
        "Find {expression}. Report its {box_desc} as JSON.",
        "Output the {box_desc} of {expression} using JSON format.",
    ),
}

DETECTION = {
    "plain": (
        "Detect all objects of the following categories in the {image}: {classes}. For each object output "
        "its {box_desc} followed by the category name, one object per line.",
        "Find every instance of {classes} in the {image}. List each as its {box_desc} and label, one per line.",
        "Which objects of the categories {classes} appear in this {image}? Give the {box_desc} and the "
        "category of each, one per line.",
    ),
    "json": (
        "Detect all objects of the following categories in the {image}: {classes}. Output them in JSON "
        "format with the {box_desc} and label of each.",
        "Find every instance of {classes} in the {image} and report each object's {box_desc} and label as JSON.",
    ),
}

CAPTIONING = {
    ("scene", "single"): (
        "Describe this {image} in one sentence.",
        "Write a short caption for this {image}.",
        "Give a brief description of the scene in this {image}.",
        "What does this {image} show? Answer with one descriptive sentence.",
    ),
    ("ir_aware", "single"): (
        "Describe this {image}, noting which objects appear warm or cool in the thermal signal.",
        "Write a caption for this {image} that mentions thermal cues such as warm vehicles or cool water.",
        "Describe the scene in this {image}, paying attention to how bright objects are in infrared.",
    ),
    ("scene", "multi"): (
        "{modalities} Describe the scene using both images.",
        "{modalities} Write one caption for the scene they show.",
        "{modalities} Give a brief description of the area, combining both views.",
    ),
    ("ir_aware", "multi"): (
        "{modalities} Describe the scene, combining what the optical view shows with the thermal cues of "
        "the infrared view.",
        "{modalities} Write a caption that uses both views and mentions which objects appear warm or cool.",
        "{modalities} Describe the area, noting thermal differences visible only in the infrared image.",
    ),
}
"""Caption prompts by (caption_style, single or multiple images)."""

MODALITY_PREAMBLE = "{listing} of the same area."
"""First sentence of a multi-image prompt, e.g. "Image 1 is an optical (RGB) image and image 2 is ..."."""


def ninth_phrase(name: str) -> str:
    """Words for one ninth of an image (``cotrain.geometry.quads.NINTHS``): "the top-left part of the image"."""
    return "the centre of the image" if name == "centre" else f"the {name} part of the image"
