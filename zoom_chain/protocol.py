"""The zoom-in chain's conversation protocol: the one place its texts, tool calls and windows are defined.

Training data (``zoom_chain.training_data``) and inference (``zoom_chain.controller``) build every
turn through these functions, so the model is trained on exactly the turns it later sees:

1. user: overview image + question + :data:`ZOOM_INSTRUCTION`;
2. assistant: either the answer, or one tool call
   ``<tool_call>{"name": "image_zoom_in", "arguments": {"bbox": [x1, y1, x2, y2]}}</tool_call>``
   with the box in the model's box convention FOR THE OVERVIEW (Qwen2.5-VL: pixels of the resized
   overview; Qwen2-VL / Qwen3-VL: integers in [0, 1000));
3. user: the crop of that box read from the ORIGINAL pixels + :func:`crop_text`; back to 2.
4. when no zoom is allowed any more: user :data:`ANSWER_NOW`.

Boxes are mapped between the overview frame and original pixels by the training ``BoxCodec``
(the overview's "original size" is the full image's, its "resized size" is what the model sees).
Must not read images or run models.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from cotrain.boxes import BoxCodec

TOOL_NAME = "image_zoom_in"

ZOOM_INSTRUCTION = (
    "This is a downscaled overview of a very large image. If you need to see a part of it in detail, reply "
    "only with a tool call <tool_call>{\"name\": \"image_zoom_in\", \"arguments\": {\"bbox\": [x1, y1, x2, y2]}}"
    "</tool_call> giving the region in this overview's coordinates; otherwise answer the question.")
"""Appended to the question in the first user turn."""

ANSWER_NOW = "No more zooming is possible. Answer the question now from what you have seen."
"""The user turn that ends the chain (step limit, token budget, or a second malformed call)."""

RETRY_TEXT = ("Your tool call could not be used ({why}). Reply with one valid tool call "
              "<tool_call>{{\"name\": \"image_zoom_in\", \"arguments\": {{\"bbox\": [x1, y1, x2, y2]}}}}</tool_call> "
              "or answer the question.")
"""The user turn after a malformed or unusable tool call (the one retry the policy allows)."""

_CALL_RE = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.S)


def question_text(question: str, choices: list[str] | None = None) -> str:
    """The question as the first turn states it (choices listed the ``zoom_vqa`` task's way)."""
    from cotrain.tasks import templates as T

    if choices:
        return T.ZOOM_CHOICES.format(question=question.strip(), choices=", ".join(choices))
    return question.strip()


def first_text(question: str) -> str:
    """Text of the first user turn (after the overview image)."""
    return f"{question.strip()}\n{ZOOM_INSTRUCTION}"


def tool_call_text(bbox_text: str) -> str:
    """The assistant's tool call; ``bbox_text`` is the codec's plain box text (``[x1, y1, x2, y2]``)."""
    return '<tool_call>{"name": "%s", "arguments": {"bbox": %s}}</tool_call>' % (TOOL_NAME, bbox_text)


def crop_text(box: list[int], native: bool) -> str:
    """Text after a crop: which original pixels it shows and whether they are at native resolution."""
    where = f"[{', '.join(str(int(v)) for v in box)}]"
    how = "at native resolution" if native else "downscaled to fit the pixel budget (zoom again for more detail)"
    return f"Zoomed region {where} of the original image, {how}."


@dataclass
class ToolCall:
    """What a response asked for."""

    kind: str
    """``answer`` (no tool call), ``zoom`` (values usable) or ``malformed`` (a call that cannot be used)."""
    values: list[float] | None = None
    """Box values in the overview frame, as written."""
    why: str = ""
    """For ``malformed``: what was wrong, shown to the model in the retry turn and counted."""


def parse_tool_call(text: str) -> ToolCall:
    """Classify a response; never raises. A response mentioning the tool without a usable call is malformed."""
    text = text if isinstance(text, str) else ""
    m = _CALL_RE.search(text)
    if m is None:
        if TOOL_NAME in text:
            return ToolCall("malformed", why="the call is not inside <tool_call>...</tool_call>")
        return ToolCall("answer")
    body = m.group(1).strip()
    try:
        obj = json.loads(body)
    except json.JSONDecodeError:
        # a call whose JSON is cut off or broken: read the bbox numbers if they are there
        nums = re.search(r'"bbox"\s*:\s*\[([^\]]*)\]', body)
        if not nums:
            return ToolCall("malformed", why="the call is not valid JSON")
        obj = {"name": TOOL_NAME if TOOL_NAME in body else "", "arguments": {"bbox": None}}
        try:
            obj["arguments"]["bbox"] = [float(v) for v in nums.group(1).split(",")]
        except ValueError:
            return ToolCall("malformed", why="the bbox holds something other than numbers")
    if not isinstance(obj, dict) or obj.get("name") != TOOL_NAME:
        return ToolCall("malformed", why=f"the only tool is {TOOL_NAME}")
    args = obj.get("arguments")
    bbox = args.get("bbox") if isinstance(args, dict) else None
    if not isinstance(bbox, list) or len(bbox) != 4:
        return ToolCall("malformed", why="bbox must be four numbers [x1, y1, x2, y2]")
    try:
        values = [float(v) for v in bbox]
    except (TypeError, ValueError):
        return ToolCall("malformed", why="bbox must be four numbers [x1, y1, x2, y2]")
    if not all(math.isfinite(v) for v in values):
        return ToolCall("malformed", why="bbox numbers must be finite")
    return ToolCall("zoom", values)


def overview_to_original(values: list[float], codec: BoxCodec, orig_wh: tuple[int, int],
                         overview_resized_wh: tuple[int, int]) -> tuple[list[int] | None, list[str]]:
    """A bbox written for the overview -> an integer window [x0, y0, x1, y1) in original pixels, and what was fixed.

    Policy (counted by the caller from the returned notes): reversed corners are swapped
    (``reversed``); parts outside the image are clipped (``clipped``); a box with no area left
    inside the image is unusable (None, ``outside``).
    """
    notes = []
    x1, y1, x2, y2 = values
    if x2 < x1 or y2 < y1:
        notes.append("reversed")
    box = codec.to_original([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)], "hbb", orig_wh,
                            overview_resized_wh)["hbb"]
    w, h = orig_wh
    c = [max(0.0, min(box[0], w)), max(0.0, min(box[1], h)), max(0.0, min(box[2], w)), max(0.0, min(box[3], h))]
    if c != box:
        notes.append("clipped")
    window = [int(math.floor(c[0])), int(math.floor(c[1])), int(math.ceil(c[2])), int(math.ceil(c[3]))]
    if window[2] <= window[0] or window[3] <= window[1]:
        return None, notes + ["outside"]
    return window, notes


def zoom_window(regions: list[list[float]], image_wh: tuple[int, int], *, min_side: int = 512,
                margin: float = 0.5) -> list[int]:
    """The window a good zoom asks for: the regions' union, widened by ``margin`` of its size on each side
    and to at least ``min_side`` pixels per side (context around small objects), clipped to the image."""
    w, h = image_wh
    x1 = min(r[0] for r in regions)
    y1 = min(r[1] for r in regions)
    x2 = max(r[2] for r in regions)
    y2 = max(r[3] for r in regions)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    bw = min(w, max((x2 - x1) * (1 + 2 * margin), min_side))
    bh = min(h, max((y2 - y1) * (1 + 2 * margin), min_side))
    sw, sh = int(math.ceil(bw)), int(math.ceil(bh))  # integer sides first: flooring one end and ceiling the
    x0 = int(min(max(0.0, math.floor(cx - bw / 2)), w - sw))  # other would add a pixel to every window
    y0 = int(min(max(0.0, math.floor(cy - bh / 2)), h - sh))
    return [max(0, x0), max(0, y0), min(w, x0 + sw), min(h, y0 + sh)]


def group_regions(regions: list[list[float]], max_calls: int, image_wh: tuple[int, int], *,
                  min_side: int = 512) -> list[list[list[float]]]:
    """Evidence regions split into at most ``max_calls`` groups, one zoom each: regions whose windows
    overlap share a zoom; when more groups remain than calls, the closest groups are merged."""
    groups = [[r] for r in sorted(regions, key=lambda r: (r[1], r[0]))]

    def win(g):
        return zoom_window(g, image_wh, min_side=min_side)

    def overlap(a, b):
        wa, wb = win(a), win(b)
        return wa[0] < wb[2] and wb[0] < wa[2] and wa[1] < wb[3] and wb[1] < wa[3]

    merged = True
    while merged:
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                if overlap(groups[i], groups[j]):
                    groups[i] = groups[i] + groups.pop(j)
                    merged = True
                    break
            if merged:
                break
    while len(groups) > max_calls:
        best = None
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                a, b = win(groups[i]), win(groups[j])
                area = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
                if best is None or area < best[0]:
                    best = (area, i, j)
        _, i, j = best
        groups[i] = groups[i] + groups.pop(j)
    return groups


def snap_to_factor(window: list[int], image_wh: tuple[int, int], factor: int) -> list[int]:
    """The window resized about its centre to sides that are multiples of ``factor`` (kept inside the image).

    The model takes images in blocks of ``factor`` pixels; a window of such sides is given to it at
    exactly its native resolution (``smart_resize`` is then the identity), instead of being
    resampled by a few pixels. Sides round to the nearest multiple (at least one block); an image
    side shorter than a block is taken whole.
    """
    w, h = image_wh
    out = []
    for lo, hi, size in ((window[0], window[2], w), (window[1], window[3], h)):
        side = max(factor, int(round((hi - lo) / factor)) * factor)
        if side > size:
            side = size - size % factor if size >= factor else size
        start = int(round((lo + hi) / 2 - side / 2))
        start = min(max(0, start), size - side)
        out.append((start, start + side))
    return [out[0][0], out[1][0], out[0][1], out[1][1]]


def default_min_side(max_pixels: int, factor: int) -> int:
    """Smallest zoom window side: 512 px of context, or less when one image may not hold 512 x 512
    (so that a window of the minimum size is still given at native resolution)."""
    return max(factor, min(512, int(math.isqrt(int(max_pixels)) // factor * factor)))


def evidence_windows(regions: list[list[float]], image_wh: tuple[int, int], *, factor: int, max_pixels: int,
                     max_steps: int) -> list[list[int]]:
    """The zooms a good chain makes for these evidence regions (hbb, original pixels): at most
    ``max_steps`` windows, regions grouped, context added, sides in whole blocks of ``factor``.
    The training data teaches exactly these windows and the oracle evaluation shows them."""
    min_side = default_min_side(max_pixels, factor)
    groups = group_regions(regions, max(1, max_steps), image_wh, min_side=min_side)
    return [snap_to_factor(zoom_window(g, image_wh, min_side=min_side), image_wh, factor) for g in groups]
