"""Zoom chain controller with scripted backends: every policy branch, native crops, mixed batches, bad input."""

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from cotrain.boxes import BoxCodec
from cotrain.errors import ConfigError
from cotrain.inference.base import GenerationResponse
from cotrain.resolution import PixelLimits
from cotrain.model.families import get_family
from zoom_chain import protocol as P
from zoom_chain.controller import ChainConfig, Question, ZoomChain, image_tokens

FAMILY = get_family("qwen2_5_vl")


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A 3000 x 2000 tiled TIFF with structured (not constant) pixels, and its array."""
    d = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (2000, 3000, 3), dtype=np.uint8)
    arr[::7] //= 2  # structure, so a resampled crop cannot equal the original by chance
    path = d / "big.tif"
    tifffile.imwrite(path, arr, tile=(256, 256), compression="zlib", photometric="rgb")
    other = rng.integers(0, 255, (1500, 2500, 3), dtype=np.uint8)
    path2 = d / "other.tif"
    tifffile.imwrite(path2, other, tile=(256, 256), compression="zlib", photometric="rgb")
    return {"path": str(path), "arr": arr, "path2": str(path2), "arr2": other, "dir": d}


class Scripted:
    """Answers from a function of (request, round); records every request it saw."""

    name = "scripted"

    def __init__(self, fn, family=FAMILY, limits=None):
        self.family = family
        self.limits = limits or PixelLimits(3136, 200704, family.factor)
        self.fn = fn
        self.requests = []

    def generate(self, requests, *, progress=False):
        self.requests.append(requests)
        out = []
        for r in requests:
            n_assistant = sum(m["role"] == "assistant" for m in r.messages)
            out.append(GenerationResponse(r.id, self.fn(r, n_assistant), "stop", 10, 3))
        return out


def call_for(req, window, family=FAMILY):
    """The tool call a perfect model writes for ``window`` (original pixels), in the overview frame."""
    ov = req.images[0]
    codec = BoxCodec.for_family(family)
    values = codec.render({"hbb": window}, (ov["width"], ov["height"]), tuple(ov["resized_wh"]), "hbb")
    return P.tool_call_text(codec.format(values, "hbb"))


def test_answer_at_once(big):
    be = Scripted(lambda r, k: "three ships")
    (res,) = ZoomChain(be).run([Question("q", big["path"], "How many ships?")])
    assert (res.status, res.answer, len(res.steps)) == ("answered", "three ships", 1)
    w, h = res.overview_resized_wh
    assert res.visual_tokens == image_tokens(h, w, 28) and h * w <= be.limits.max_pixels
    text = be.requests[0][0].messages[0]["content"][1]["text"]
    assert text == P.first_text("How many ships?")


def test_one_zoom_gives_original_pixels_not_an_upsampled_overview(big):
    window = [1000, 600, 1400, 900]
    be = Scripted(lambda r, k: call_for(r, window) if k == 0 else "a harbour")
    (res,) = ZoomChain(be).run([Question("q", big["path"], "What is there?")])
    assert res.status == "answered" and res.answer == "a harbour"
    zoom = res.steps[0]
    assert zoom.action == "zoom" and zoom.native
    x0, y0, x1, y1 = zoom.box_original
    assert abs(x0 - window[0]) <= 12 and abs(y1 - window[3]) <= 12  # overview-frame rounding only
    second = be.requests[1][0]
    crop = second.images[1]
    assert crop["resized_wh"] == [x1 - x0, y1 - y0]  # 400 x 300 fits the budget: native size
    pixels = np.asarray(crop["pil"])
    assert np.array_equal(pixels, big["arr"][y0:y1, x0:x1])
    # what an upsampled overview of the same window would be: clearly different pixels
    ov = np.asarray(res.overview.resize((3000, 2000), Image.BICUBIC))[y0:y1, x0:x1]
    assert np.abs(ov.astype(int) - pixels.astype(int)).mean() > 20
    assert second.messages[-1]["content"][1]["text"] == P.crop_text(zoom.box_original, True)
    assert res.visual_tokens == image_tokens(*res.overview_resized_wh[::-1], 28) + image_tokens(y1 - y0, x1 - x0, 28)


def test_two_zooms_then_answer_and_step_limit(big):
    wins = [[100, 100, 400, 300], [2500, 1500, 2900, 1900]]
    be = Scripted(lambda r, k: call_for(r, wins[k]) if k < 2 else "yes")
    (res,) = ZoomChain(be).run([Question("q", big["path"], "Any planes?")])
    assert [s.action for s in res.steps] == ["zoom", "zoom", "answer"] and len(res.crops) == 2

    # a model that never stops calling: max_steps zooms, then "answer now", then the chain ends unanswered
    be = Scripted(lambda r, k: call_for(r, wins[k % 2]))
    (res,) = ZoomChain(be, ChainConfig(max_steps=2)).run([Question("q", big["path"], "Any planes?")])
    assert [s.action for s in res.steps] == ["zoom", "zoom", "stop", "unanswered"]
    assert res.status == "step_limit" and res.answer == ""
    assert be.requests[-1][0].messages[-1]["content"][0]["text"] == P.ANSWER_NOW
    assert len(be.requests) == 4  # bounded: never more rounds than the policy allows


def test_malformed_calls_retry_once_then_answer_now(big):
    replies = ['<tool_call>{"name": "image_zoom_in", "arguments": {"bbox": [1, 2]}}</tool_call>', "image_zoom_in please",
               "forest"]
    be = Scripted(lambda r, k: replies[k])
    (res,) = ZoomChain(be).run([Question("q", big["path"], "Land cover?")])
    assert [s.action for s in res.steps] == ["retry", "stop", "answer"]
    assert res.answer == "forest" and res.events["malformed"] == 2
    retry_turn = be.requests[1][0].messages[-1]["content"][0]["text"]
    assert retry_turn == P.RETRY_TEXT.format(why="bbox must be four numbers [x1, y1, x2, y2]")


def test_out_of_image_reversed_and_negative_boxes(big):
    codec = BoxCodec.for_family(FAMILY)

    def reply(r, k):
        ov = r.images[0]
        w, h = ov["resized_wh"]
        if k == 0:  # reversed corners, partly outside (negative and beyond the right edge)
            return P.tool_call_text(codec.format([w + 40, h // 2, -10, h // 4], "hbb"))
        if k == 1:  # entirely outside the image
            return P.tool_call_text(codec.format([w + 10, h + 10, w + 50, h + 60], "hbb"))
        return "done"

    be = Scripted(reply)
    (res,) = ZoomChain(be).run([Question("q", big["path"], "Where?")])
    first = res.steps[0]
    assert first.action == "zoom" and set(first.notes) == {"reversed", "clipped"}
    x0, y0, x1, y1 = first.box_original
    assert x1 - x0 == 2996 and x0 <= 4 and y0 < y1  # clipped to the full width, snapped to 107 blocks of 28
    assert res.steps[1].action == "retry" and "outside the image" in res.steps[1].notes[-1]
    assert res.answer == "done" and res.events["clipped"] >= 1 and res.events["reversed"] == 1


def test_mixed_batch_keeps_each_questions_crops(big):
    wins = {"a": [200, 200, 500, 400], "b": [1800, 900, 2200, 1200]}
    be = Scripted(lambda r, k: call_for(r, wins[r.id]) if k == 0 else f"answer {r.id}")
    res = ZoomChain(be).run([Question("a", big["path"], "Q a?"), Question("b", big["path2"], "Q b?")])
    assert [r.answer for r in res] == ["answer a", "answer b"]
    batch = be.requests[1]
    assert [r.id for r in batch] == ["a", "b"]  # both questions in one generate call
    for req, arr in zip(batch, (big["arr"], big["arr2"])):
        x0, y0, x1, y1 = next(r for r in res if r.id == req.id).steps[0].box_original
        assert np.array_equal(np.asarray(req.images[1]["pil"]), arr[y0:y1, x0:x1])


def test_token_budget_downscales_then_stops(big):
    def reply(r, k):  # keeps zooming into a large window until told to answer
        told = r.messages[-1]["content"][-1].get("text") == P.ANSWER_NOW
        return "ok" if told else call_for(r, [0, 0, 1400, 1000])

    limits = PixelLimits(3136, 200704, 28)
    probe = ZoomChain(Scripted(lambda r, k: "x", limits=limits),
                      ChainConfig(overview_max_pixels=200704)).run([Question("q", big["path"], "?")])[0]
    budget = image_tokens(*probe.overview_resized_wh[::-1], 28) + 120
    be = Scripted(reply, limits=limits)
    cfg = ChainConfig(token_budget=budget, max_steps=10, overview_max_pixels=200704)
    (res,) = ZoomChain(be, cfg).run([Question("q", big["path"], "?")])
    first = res.steps[0]
    assert first.action == "zoom" and first.native is False  # 1400 x 1000 squeezed into what was left
    w, h = first.crop_resized_wh
    assert image_tokens(h, w, 28) <= 120 and res.visual_tokens <= budget
    assert [s.action for s in res.steps][-2:] == ["stop", "answer"] and res.events["budget"] == 1
    assert res.answer == "ok"
    assert P.crop_text(first.box_original, False) in json.dumps(be.requests[1][0].messages, default=str)


def test_overview_only_mode_sends_no_instruction(big):
    be = Scripted(lambda r, k: call_for(r, [0, 0, 100, 100]))
    (res,) = ZoomChain(be, ChainConfig(zoom=False)).run([Question("q", big["path"], "How many?")])
    assert res.steps[0].action == "answer" and res.answer.startswith("<tool_call>")  # scored as a (wrong) answer
    assert be.requests[0][0].messages[0]["content"][1]["text"] == "How many?"


def test_oracle_windows_are_shown_before_the_answer(big):
    be = Scripted(lambda r, k: "answer")
    q = Question("q", big["path"], "How many?", oracle_windows=[[100, 100, 400, 300]])
    (res,) = ZoomChain(be).run([q])
    msgs = be.requests[0][0].messages
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert P.parse_tool_call(msgs[1]["content"][0]["text"]).kind == "zoom"
    assert np.array_equal(np.asarray(be.requests[0][0].images[1]["pil"]), big["arr"][100:300, 100:400])
    assert res.answer == "answer"
    assert [s.action for s in res.steps] == ["oracle", "answer"] and res.steps[0].box_original == [100, 100, 400, 300]
    assert res.steps[0].response == msgs[1]["content"][0]["text"] and len(res.crops) == 1


def test_bad_inputs(big, tmp_path):
    be = Scripted(lambda r, k: "x")
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00" + b"\x00" * 40)
    strip = tmp_path / "strip.tif"
    tifffile.imwrite(strip, np.zeros((1, 50000, 3), np.uint8), photometric="rgb")
    res = ZoomChain(be).run([Question("missing", str(tmp_path / "nope.tif"), "?"), Question("corrupt", str(corrupt), "?"),
                             Question("strip", str(strip), "?"), Question("ok", big["path"], "?")])
    assert [r.status for r in res] == ["error", "error", "error", "answered"]
    assert "nope.tif" in res[0].error and "200" in res[2].error  # aspect ratio beyond the model's limit
    with pytest.raises(ConfigError, match="no text"):
        Question("q", big["path"], "   ")
    with pytest.raises(ConfigError, match="token_budget"):
        ZoomChain(be, ChainConfig(token_budget=5, overview_max_pixels=200704)).run([Question("q", big["path"], "?")])


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen2_vl"])
def test_overview_box_mapping_by_hand(family):
    codec = BoxCodec.for_family(get_family(family))
    # overview: 3000 x 2000 image shown at 756 x 504 (w x h)
    if family == "qwen2_5_vl":  # absolute pixels of the resized overview: x * 3000/756
        values = [189, 126, 378, 252]
        expected = [750, 500, 1500, 1000]
    else:  # integers in [0, 1000): x * 3000 / 1000
        values = [250, 250, 500, 500]
        expected = [750, 500, 1500, 1000]
    window, notes = P.overview_to_original(values, codec, (3000, 2000), (756, 504))
    assert window == expected and notes == []


@pytest.mark.parametrize("text, kind", [
    ("a river", "answer"), ("", "answer"),
    ('<tool_call>{"name": "image_zoom_in", "arguments": {"bbox": [1, 2, 3, 4]}}</tool_call>', "zoom"),
    ('<tool_call>{"name": "image_zoom_in", "arguments": {"bbox": [1, 2, 3, 4]', "zoom"),  # cut off, numbers intact
    ('<tool_call>{"name": "crop", "arguments": {"bbox": [1, 2, 3, 4]}}</tool_call>', "malformed"),
    ('<tool_call>{"name": "image_zoom_in", "arguments": {"bbox": ["a", 2, 3, 4]}}</tool_call>', "malformed"),
    ('<tool_call>{"name": "image_zoom_in", "arguments": {"bbox": [1e999, 2, 3, 4]}}</tool_call>', "malformed"),
    ("<tool_call>garbage", "malformed"), ("call image_zoom_in on the left", "malformed"),
])
def test_parse_tool_call(text, kind):
    assert P.parse_tool_call(text).kind == kind


def test_georeferenced_windows_are_reported_in_map_coordinates(tmp_path):
    # 10 m pixels, upper-left corner at (500000, 4600000) in EPSG:32633 (UTM 33N)
    geokeys = [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633]
    arr = np.random.default_rng(3).integers(0, 255, (1200, 1600, 3), dtype=np.uint8)
    path = tmp_path / "geo.tif"
    tifffile.imwrite(path, arr, tile=(256, 256), photometric="rgb",
                     extratags=[(34735, "H", len(geokeys), geokeys, True), (33550, "d", 3, [10.0, 10.0, 0.0], True),
                                (33922, "d", 6, [0.0, 0.0, 0.0, 500000.0, 4600000.0, 0.0], True)])
    be = Scripted(lambda r, k: call_for(r, [280, 140, 560, 420]) if k == 0 else "ok")
    (res,) = ZoomChain(be).run([Question("g", str(path), "What is here?")])
    step = res.steps[0]
    x0, y0, x1, y1 = step.box_original
    expected = [[500000 + 10 * x0, 4600000 - 10 * y0], [500000 + 10 * x1, 4600000 - 10 * y0],
                [500000 + 10 * x1, 4600000 - 10 * y1], [500000 + 10 * x0, 4600000 - 10 * y1]]
    assert np.allclose(step.box_map, expected)
    assert json.loads(json.dumps(res.trace()))["steps"][0]["box_map"] == step.box_map
