"""Question answering tasks: vqa, mcq and zoom_vqa (as plain VQA for now).

mcq answers are the option LETTER only ("B"): a single token is the easiest to score and matches
the instruction every mcq template gives. The target keeps the index, letter and choice text.
Builders must not render boxes: zoom_vqa's evidence regions go to the target, and the zoom chain
(zoom_chain/) builds its own multi-turn samples later.
"""

from __future__ import annotations

import string

from cotrain.tasks import templates as T
from cotrain.tasks.base import BuildContext, assistant

LETTERS = string.ascii_uppercase


def build_vqa(record: dict, ctx: BuildContext) -> tuple[list[dict], dict]:
    """Question -> answer, with a phrasing that matches the answer type (yes/no, number, word, free)."""
    answer_type = record.get("answer_type", "word")
    template = ctx.pick(f"vqa.{answer_type}", T.VQA[answer_type])
    question = template.format(question=record["question"], image=ctx.image_noun())
    target = {"answer": record["answer"], "answer_type": answer_type}
    return [ctx.user(question), assistant(record["answer"])], target


def format_options(choices: list[str]) -> str:
    """One ``A. choice`` line per choice."""
    return "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))


def build_mcq(record: dict, ctx: BuildContext) -> tuple[list[dict], dict]:
    """Question + lettered options -> the letter of the correct option."""
    choices = record["choices"]
    template = ctx.pick("mcq", T.MCQ)
    question = template.format(question=record["question"], options=format_options(choices), image=ctx.image_noun())
    letter = LETTERS[record["answer"]]
    target = {"choice": record["answer"], "letter": letter, "answer": choices[record["answer"]],
              "choices": list(choices)}
    return [ctx.user(question), assistant(letter)], target


def build_zoom_vqa(record: dict, ctx: BuildContext) -> tuple[list[dict], dict]:
    """Plain VQA on the whole (resized) image; optional choices are listed in the question."""
    question = record["question"]
    if record.get("choices"):
        question = T.ZOOM_CHOICES.format(question=question, choices=", ".join(record["choices"]))
    template = ctx.pick("zoom_vqa", T.VQA["word"])
    text = template.format(question=question, image=ctx.image_noun())
    target = {"answer": record["answer"], "regions": [dict(r) for r in record["regions"]]}
    if record.get("choices"):
        target["choices"] = list(record["choices"])
    return [ctx.user(text), assistant(record["answer"])], target
