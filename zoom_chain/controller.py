"""The zoom-in chain controller: many questions about large images in flight, each with its own state.

Step 1 sends the overview (the whole image within the pixel budget) with the question and the
zoom instruction. Each answer is either final, or a tool call with a box in the overview's frame;
the controller maps it to ORIGINAL pixels, reads that window at native resolution from the file
(``cotrain.raster``: only the tiles it needs), and appends it as a new user turn. Every turn's
text comes from ``zoom_chain.protocol``, as in the training data.

Limits and policy (counted per question in ``ChainResult.events``):

- ``max_steps`` zooms per question; a further call gets :data:`~zoom_chain.protocol.ANSWER_NOW`,
  and a call after that ends the chain unanswered (``step_limit``);
- ``token_budget`` visual tokens per question (overview + crops): a crop that does not fit is
  downscaled to the tokens left (a further zoom is then allowed); when not even ``min_pixels``
  fit, the model is told to answer (``budget``);
- reversed corners are swapped, boxes partly outside the image are clipped; a malformed call or a
  box with nothing inside the image gets ONE retry turn saying what was wrong, a second one ends
  the zooming (:data:`ANSWER_NOW`).

Requests go through any backend's ``generate(requests)`` (HF or vLLM): crops travel inside each
request as in-memory images, so a batch mixing questions keeps each question's own crops.
Must not score answers (``zoom_chain.evaluate`` does).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from cotrain.boxes import BoxCodec
from cotrain.errors import ConfigError
from cotrain.inference.base import GenerationRequest, SamplingParams
from cotrain.resolution import PixelLimits, resized_size
from cotrain.resolution import ImageSizeError
from zoom_chain import protocol as P

log = logging.getLogger(__name__)


@dataclass
class ChainConfig:
    """Limits of one chain."""

    max_steps: int = 3
    """Zoom calls allowed per question."""
    token_budget: int = 4096
    """Visual tokens per question, overview and crops together."""
    max_new_tokens: int = 128
    """Generation limit per turn."""
    overview_max_pixels: int | None = None
    """Pixel budget of the overview (default: the backend's max_pixels, at most a quarter of token_budget,
    so that crops keep most of the budget)."""
    crop_max_pixels: int | None = None
    """Pixel budget of one crop before the token budget applies (default: the backend's max_pixels)."""
    zoom: bool = True
    """False: overview-only mode (the question without the zoom instruction; a tool call is just a wrong answer)."""

    def __post_init__(self):
        if self.max_steps < 0:
            raise ConfigError(f"max_steps={self.max_steps} must be >= 0")
        if self.token_budget < 1:
            raise ConfigError(f"token_budget={self.token_budget} must be >= 1")


@dataclass
class Question:
    """One question about one (large) image."""

    id: str
    image: str
    """Path of the image (tiled GeoTIFF / TIFF read by windows; PNG / JPEG decoded whole)."""
    question: str
    choices: list[str] | None = None
    oracle_windows: list[list[int]] | None = None
    """Oracle mode: the zoom windows (original pixels) to show before asking for the answer."""

    def __post_init__(self):
        if not isinstance(self.question, str) or not self.question.strip():
            raise ConfigError(f"question {self.id!r} has no text; give the question to ask about {self.image}")


@dataclass
class Step:
    """One model turn and what the controller did with it."""

    response: str
    action: str
    """``answer``, ``zoom``, ``retry`` (malformed call, retry turn sent), ``stop`` (told to answer now),
    ``unanswered`` (still calling after being told to answer), ``oracle`` (a zoom written by the oracle mode)."""
    box_overview: list[float] | None = None
    """The bbox as the model wrote it (overview frame, model convention)."""
    box_original: list[int] | None = None
    """The window read, [x0, y0, x1, y1) in original pixels."""
    box_map: list[list[float]] | None = None
    """Corners of that window in map coordinates (georeferenced images only)."""
    crop_resized_wh: list[int] | None = None
    """[w, h] the crop is shown at."""
    """[h, w] the crop was given to the model at."""
    native: bool | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class ChainResult:
    """The outcome of one question."""

    id: str
    image: str
    question: str
    answer: str
    status: str
    """``answered``, ``step_limit`` (never stopped calling), ``error`` (the image could not be used)."""
    steps: list[Step] = field(default_factory=list)
    visual_tokens: int = 0
    full_resolution_tokens: int = 0
    """Visual tokens the whole image would take at native resolution (no pixel limit)."""
    image_size: list[int] | None = None
    overview_resized_wh: list[int] | None = None
    """[w, h] the overview is shown at."""
    events: Counter = field(default_factory=Counter)
    error: str | None = None
    crops: list[Image.Image] = field(default_factory=list, repr=False)
    overview: Image.Image | None = field(default=None, repr=False)

    def trace(self) -> dict:
        """JSON-able record of the chain (everything but pixels)."""
        return {"id": self.id, "image": self.image, "question": self.question, "answer": self.answer,
                "status": self.status, "error": self.error, "image_size": self.image_size,
                "overview_resized_wh": self.overview_resized_wh, "visual_tokens": self.visual_tokens,
                "full_resolution_tokens": self.full_resolution_tokens, "events": dict(self.events),
                "steps": [vars(s) for s in self.steps]}


def image_tokens(h: int, w: int, factor: int) -> int:
    """Visual tokens of an image given to the model at (h, w)."""
    return (h // factor) * (w // factor)


class _State:
    """Per-question conversation state."""

    def __init__(self, q: Question, img, overview: Image.Image, limits: PixelLimits, cfg: ChainConfig,
                 overview_pixels: int):
        self.q, self.img, self.cfg = q, img, cfg
        w, h = img.info.width, img.info.height
        ov_limits = PixelLimits(limits.min_pixels, overview_pixels, limits.factor)
        rh, rw = resized_size(w, h, ov_limits)
        self.ov_resized_wh = (rw, rh)
        self.images = [{"pil": overview, "width": w, "height": h, "resized_wh": [rw, rh]}]
        question = P.question_text(q.question, q.choices)
        text = P.first_text(question) if cfg.zoom else question
        self.messages = [{"role": "user", "content": [{"type": "image", "index": 0}, {"type": "text", "text": text}]}]
        self.tokens = image_tokens(rh, rw, limits.factor)
        self.zooms = 0
        self.retried = False
        self.stopped = False  # ANSWER_NOW sent: the next response is final
        self.done = False
        self.result = ChainResult(q.id, q.image, q.question, "", "answered", image_size=[w, h],
                                  overview_resized_wh=[rw, rh], overview=overview,
                                  full_resolution_tokens=math.ceil(h / limits.factor) * math.ceil(w / limits.factor))

    def request(self, sampling: SamplingParams) -> GenerationRequest:
        return GenerationRequest(id=self.q.id, messages=list(self.messages), images=list(self.images), sampling=sampling)

    def add(self, role: str, *parts: dict) -> None:
        self.messages.append({"role": role, "content": list(parts)})


class ZoomChain:
    """Runs zoom chains through a backend (``generate(requests) -> responses``)."""

    def __init__(self, backend, config: ChainConfig | None = None, *, limits: PixelLimits | None = None):
        self.backend = backend
        self.cfg = config or ChainConfig()
        self.limits = limits or backend.limits
        self.codec = BoxCodec.for_family(backend.family)
        self.sampling = SamplingParams(max_new_tokens=self.cfg.max_new_tokens)
        self._overviews: dict = {}
        f2 = self.limits.factor ** 2
        self.overview_pixels = self.cfg.overview_max_pixels or max(
            self.limits.min_pixels, min(self.limits.max_pixels, self.cfg.token_budget // 4 * f2))

    # -- setting up -------------------------------------------------------------------------

    def _open(self, q: Question) -> _State | ChainResult:
        from cotrain.raster import RasterInputError, open_uhr

        try:
            img = open_uhr(q.image)
            key = (str(Path(q.image).resolve()), self.overview_pixels)
            if key not in self._overviews:  # many questions share one large image: decimate it once
                self._overviews[key] = img.overview(self.overview_pixels)[0]
            overview = self._overviews[key]
            state = _State(q, img, overview, self.limits, self.cfg, self.overview_pixels)
        except (RasterInputError, ImageSizeError) as e:
            log.warning("question %r: %s", q.id, e)
            return ChainResult(q.id, q.image, q.question, "", "error", error=str(e),
                               events=Counter({"image_error": 1}))
        if state.tokens > self.cfg.token_budget:
            raise ConfigError(f"the overview of {q.image} alone takes {state.tokens} visual tokens > token_budget "
                              f"{self.cfg.token_budget}; raise the budget or lower overview_max_pixels")
        for window in q.oracle_windows or []:
            step = Step(response="", action="oracle")  # written by us, recorded so traces pair crops with windows
            if self._show(state, window, response=None, step=step):
                step.response = state.messages[-2]["content"][0]["text"]
                state.result.steps.append(step)
            else:
                state.result.events["oracle_window_over_budget"] += 1
        if q.oracle_windows:
            state.result.events["oracle_windows"] = len(q.oracle_windows)
        return state

    # -- one zoom ---------------------------------------------------------------------------

    def _show(self, s: _State, window: list[int], response: str | None, step: Step | None = None) -> bool:
        """Read ``window`` at native resolution and append (the call and) the crop turn; False when no budget is left."""
        left = self.cfg.token_budget - s.tokens
        f = self.limits.factor
        cap = min(self.cfg.crop_max_pixels or self.limits.max_pixels, left * f * f)
        if cap < self.limits.min_pixels:
            return False
        crop = s.img.read_window(*window)
        cw, ch = crop.size
        try:
            rh, rw = resized_size(cw, ch, PixelLimits(self.limits.min_pixels, max(cap, self.limits.min_pixels), f))
        except (ImageSizeError, ConfigError):
            return False
        if image_tokens(rh, rw, f) > left:
            return False
        native = (rh, rw) == (ch, cw)
        if response is None:  # oracle / training-style call written by us
            values = self.codec.render({"hbb": window}, (s.img.info.width, s.img.info.height),
                                       s.ov_resized_wh, "hbb")
            response = P.tool_call_text(self.codec.format(values, "hbb"))
        s.add("assistant", {"type": "text", "text": response})
        s.images.append({"pil": crop, "width": cw, "height": ch, "resized_wh": [rw, rh]})
        s.add("user", {"type": "image", "index": len(s.images) - 1}, {"type": "text", "text": P.crop_text(window, native)})
        s.tokens += image_tokens(rh, rw, f)
        s.result.crops.append(crop)
        if step is not None:
            step.box_original, step.crop_resized_wh, step.native = list(window), [rw, rh], native
            step.box_map = s.img.box_to_map(window)
        return True

    def _stop(self, s: _State, response: str, step: Step, why: str) -> None:
        s.add("assistant", {"type": "text", "text": response})
        s.add("user", {"type": "text", "text": P.ANSWER_NOW})
        s.stopped = True
        step.action = "stop"
        s.result.events[why] += 1

    def _advance(self, s: _State, text: str) -> None:
        call = P.parse_tool_call(text) if self.cfg.zoom else P.ToolCall("answer")
        step = Step(response=text, action="answer")
        s.result.steps.append(step)
        if call.kind == "answer":
            s.result.answer, s.done = text.strip(), True
            return
        if s.stopped:  # told to answer and still calling
            step.action = "unanswered"
            s.result.status, s.done = "step_limit", True
            s.result.events["unanswered"] += 1
            return
        if call.kind == "zoom":
            step.box_overview = call.values
            window, notes = P.overview_to_original(call.values, self.codec, (s.img.info.width, s.img.info.height),
                                                   s.ov_resized_wh)
            step.notes = notes
            for n in notes:
                s.result.events[n] += 1
            if window is not None:
                window = P.snap_to_factor(window, (s.img.info.width, s.img.info.height), self.limits.factor)
            if window is None:
                call = P.ToolCall("malformed", why="the box lies outside the image")
            elif s.zooms >= self.cfg.max_steps:
                self._stop(s, text, step, "step_limit_reached")
                return
            elif self._show(s, window, text, step):
                s.zooms += 1
                step.action = "zoom"
                return
            else:
                self._stop(s, text, step, "budget")
                return
        # malformed (or unusable box): one retry, then answer from what was seen
        s.result.events["malformed"] += 1
        step.notes.append(call.why)
        if not s.retried:
            s.retried = True
            s.add("assistant", {"type": "text", "text": text})
            s.add("user", {"type": "text", "text": P.RETRY_TEXT.format(why=call.why)})
            step.action = "retry"
        else:
            self._stop(s, text, step, "malformed_twice")

    # -- the loop ---------------------------------------------------------------------------

    def run(self, questions: list[Question], *, progress: bool = False) -> list[ChainResult]:
        """Answer every question; results in question order. Each question needs at most max_steps + 3 rounds."""
        states: list[_State | ChainResult] = [self._open(q) for q in questions]
        live = [s for s in states if isinstance(s, _State)]
        rounds = 0
        limit = self.cfg.max_steps + 3  # zooms + one retry + ANSWER_NOW + the final answer
        try:
            while live:
                rounds += 1
                requests = [s.request(self.sampling) for s in live]
                responses = self.backend.generate(requests, progress=progress)
                for s, resp in zip(live, responses):
                    if resp.error:
                        s.result.status, s.result.error, s.done = "error", resp.error, True
                        s.result.events["image_error"] += 1
                        continue
                    self._advance(s, resp.text)
                    if rounds >= limit and not s.done:  # cannot happen by the policy; a guard, counted
                        s.result.status, s.done = "step_limit", True
                        s.result.events["round_limit"] += 1
                live = [s for s in live if not s.done]
        finally:
            for s in states:
                if isinstance(s, _State):
                    s.img.close()
        out = []
        for s in states:
            if isinstance(s, _State):
                s.result.visual_tokens = s.tokens
                out.append(s.result)
            else:
                out.append(s)
        return out


__all__ = ["ChainConfig", "ChainResult", "Question", "Step", "ZoomChain", "image_tokens"]
