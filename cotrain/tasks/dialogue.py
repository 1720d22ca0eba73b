"""Free-form multi-turn conversations (LLaVA-style records).

``<image>`` placeholders become image parts where they stand (or, when a record has none, all
images go before the first user text); ``<box>i</box>`` becomes the text of ``boxes[i]`` rendered
by the codec in the requested box format, always in the plain form, since it sits inside prose.
Must not invent turns: the record's turns are the messages.
"""

from __future__ import annotations

from cotrain.records import BOX_REF, IMAGE_PLACEHOLDER
from cotrain.tasks.base import BuildContext


def build_conversation_task(record: dict, ctx: BuildContext) -> tuple[list[dict], dict]:
    """Turns -> alternating user/assistant messages; target is the final assistant text."""
    boxes = record.get("boxes", [])

    def expand_boxes(text: str) -> str:
        def one(m):
            return ctx.codec.format(ctx.render(boxes[int(m.group(1).strip())]), ctx.box_format)
        return BOX_REF.sub(one, text)

    turns = record["turns"]
    placed = any(IMAGE_PLACEHOLDER in t["text"] for t in turns)
    next_image = 0
    messages = []
    for k, turn in enumerate(turns):
        text = expand_boxes(turn["text"])
        parts: list[dict] = []
        if turn["role"] == "user" and not placed and k == 0:
            parts = [{"type": "image", "index": i} for i in range(len(ctx.images))]
        pieces = text.split(IMAGE_PLACEHOLDER)
        for j, piece in enumerate(pieces):
            if j > 0:
                parts.append({"type": "image", "index": next_image})
                next_image += 1
            if piece.strip():
                parts.append({"type": "text", "text": piece.strip()})
        messages.append({"role": turn["role"], "content": parts})
    ctx.chosen.append("conversation:record")
    final = "".join(p["text"] for p in messages[-1]["content"] if p["type"] == "text")
    return messages, {"answer": final}

