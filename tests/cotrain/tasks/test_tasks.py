"""Task builders: message structure, answers, determinism in (seed, epoch, index), options."""

import subprocess
import sys

import pytest

from cotrain.boxes import BoxCodec
from cotrain.errors import ConfigError, RecordError
from cotrain.geometry.quads import hbb_to_quad
from cotrain.records import CONVERSATION_TASKS as TASKS
from cotrain.records import validate_record
from cotrain.tasks import TASK_BUILDERS, Conversation, build_conversation, prompt_only
from cotrain.tasks import templates as T

RGB = {"path": "scenes/a.png", "modality": "rgb", "width": 1000, "height": 500}
IR = {"path": "scenes/a_ir.png", "modality": "ir", "width": 1000, "height": 500}
RESIZED = (224, 448)  # (h, w) as smart_resize returns it

RECORDS = {
    "classification": {"label": "river", "classes": ["forest", "river", "airport"]},
    "vqa": {"question": "How many ships are there?", "answer": "3", "answer_type": "number"},
    "mcq": {"question": "What is the main land cover?", "choices": ["water", "forest", "urban"], "answer": 1},
    "grounding": {"expression": "the large white ship", "target": {"hbb": [100, 50, 300, 250]}},
    "detection": {"classes": ["ship", "car"], "objects": [
        {"label": "ship", "quad": [500, 100, 600, 120, 590, 170, 490, 150]},
        {"label": "car", "hbb": [10, 400, 30, 420]},
        {"label": "car", "hbb": [700, 20, 720, 40]}]},
    "captioning": {"captions": ["A river crosses a forest.", "Forest on both banks of a river.", "A green valley."]},
    "zoom_vqa": {"question": "What colour is the roof?", "answer": "red", "regions": [{"hbb": [10, 10, 50, 50]}]},
    "conversation": {"boxes": [{"hbb": [100, 50, 300, 250]}], "turns": [
        {"role": "user", "text": "<image>\nWhat is at <box>0</box>?"}, {"role": "assistant", "text": "A ship."},
        {"role": "user", "text": "Where is the ship?"}, {"role": "assistant", "text": "It is at <box>0</box>."}]},
}


def rec(task, images=(RGB,), **changes):
    r = {"id": f"{task}-7", "task": task, "images": [dict(i) for i in images], **RECORDS[task], **changes}
    return validate_record(r)


def build(r, codec=BoxCodec("abs"), index=0, epoch=0, seed=1, **kw):
    return build_conversation(r, image_root="/data/rs", resized_sizes=[RESIZED] * len(r["images"]), codec=codec,
                              seed=seed, epoch=epoch, index=index, **kw)


def texts(msg):
    return "".join(p["text"] for p in msg["content"] if p["type"] == "text")


def final_answer(conv):
    assert conv.messages[-1]["role"] == "assistant"
    return texts(conv.messages[-1])


def test_registry_covers_every_conversation_task():
    # every record task but triplet (contrastive data, cotrain.contrastive) is phrased as a conversation
    from cotrain.records import TASKS as ALL

    assert set(TASK_BUILDERS) == set(TASKS) == set(ALL) - {"triplet"}


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("box_format", ["hbb", "obb", "quad"])
@pytest.mark.parametrize("prompt_style", ["plain", "json"])
def test_structure_and_answer_of_every_task(task, box_format, prompt_style):
    r = rec(task)
    conv = build(r, box_format=box_format, prompt_style=prompt_style)
    assert isinstance(conv, Conversation)
    roles = [m["role"] for m in conv.messages]
    assert roles == ["user", "assistant"] * (len(roles) // 2) and roles
    first = conv.messages[0]["content"]
    assert first[0] == {"type": "image", "index": 0} and first[-1]["type"] == "text"
    assert conv.images[0]["abs_path"] == "/data/rs/scenes/a.png" and conv.images[0]["resized_wh"] == [448, 224]
    assert conv.meta["id"] == r["id"] and conv.meta["task"] == task and conv.meta["template"]
    answer, codec = final_answer(conv), BoxCodec("abs")
    if task == "classification":
        assert answer == "river" and "forest, river, airport" in texts(conv.messages[0])
    elif task in ("vqa", "zoom_vqa"):
        assert answer == r["answer"] == conv.target["answer"]
    elif task == "mcq":
        assert answer == "B" and conv.target["choice"] == 1
        assert "A. water\nB. forest\nC. urban" in texts(conv.messages[0])
    elif task == "grounding":
        values = codec.parse(answer, box_format)
        assert values == codec.render(r["target"], (1000, 500), (448, 224), box_format)
        assert conv.target["box"] == r["target"]
        back = codec.to_original(values, box_format, (1000, 500), (448, 224))
        corners = back["hbb"] if "hbb" in back else back["quad"]
        assert abs(min(corners[0::2]) - 100) <= 2.5 and abs(max(corners[1::2]) - 250) <= 2.5
    elif task == "detection":
        from detection.parse import parse_response  # the parser evaluation uses reads what training writes

        parsed = parse_response(answer, kind=box_format, codec=codec, orig_wh=(1000, 500), resized_wh=(448, 224),
                                classes=["car", "ship"])
        assert [d.label for d in parsed.objects] == ["car", "car", "ship"]
        # Within a class, top-most first: the car at y=20 precedes the one at y=400.
        first = codec.to_original(codec.render(r["objects"][2], (1000, 500), (448, 224), box_format), box_format,
                                  (1000, 500), (448, 224))
        corners = first["hbb"] if "hbb" in first else first["quad"]
        assert abs(float(parsed.objects[0].quad[0::2].min()) - min(corners[0::2])) < 1e-6
        assert abs(float(parsed.objects[0].quad[1::2].min()) - min(corners[1::2])) < 1e-6
        assert conv.target["objects"] == r["objects"]
        assert ("```json" in answer) == (prompt_style == "json")
    elif task == "captioning":
        assert answer in r["captions"] and answer == conv.target["caption"]
    elif task == "conversation":
        assert answer == "It is at [45, 22, 134, 112]." if box_format == "hbb" else answer.startswith("It is at [")
        assert conv.target["answer"] == answer


def test_grounding_hand_example_and_hbb_as_quad():
    r = rec("grounding")
    assert final_answer(build(r, box_format="hbb")) == "[45, 22, 134, 112]"
    # hbb -> quad is lossless: the corners of the same box, clockwise from top-left.
    assert final_answer(build(r, box_format="quad")) == "[45, 22, 134, 22, 134, 112, 45, 112]"
    assert final_answer(build(r, box_format="obb")) == "[90, 67, 90, 90, 0]"
    norm = final_answer(build(r, codec=BoxCodec("norm1000"), box_format="hbb"))
    assert norm == "[100, 100, 300, 500]"
    json_answer = final_answer(build(r, box_format="hbb", prompt_style="json"))
    assert json_answer == '```json\n[\n\t{"bbox_2d": [45, 22, 134, 112], "label": "the large white ship"}\n]\n```'


def test_quad_target_rendered_as_quad_keeps_vertex_rule():
    q = hbb_to_quad([100, 50, 300, 250])
    counter_clockwise = [v for i in (3, 2, 1, 0) for v in q[2 * i:2 * i + 2]]  # BL, BR, TR, TL
    r = rec("grounding", target={"quad": counter_clockwise})
    values = BoxCodec("abs").parse(final_answer(build(r, box_format="quad")), "quad")
    assert values == [45, 22, 134, 22, 134, 112, 45, 112]


def test_deterministic_in_seed_epoch_index():
    for task in TASKS:
        r = rec(task)
        assert build(r, index=5) == build(r, index=5)
    r = rec("classification")
    by_index = {build(r, index=i).meta["template"] for i in range(40)}
    assert len(by_index) == len(T.CLASSIFICATION)  # 40 draws reach every phrasing
    by_epoch = {build(r, index=3, epoch=e).meta["template"] for e in range(40)}
    by_seed = {build(r, index=3, seed=s).meta["template"] for s in range(40)}
    assert len(by_epoch) > 1 and len(by_seed) > 1
    captions = {final_answer(build(rec("captioning"), index=i)) for i in range(30)}
    assert captions == set(RECORDS["captioning"]["captions"])


def test_template_choice_does_not_depend_on_python_hash_seed():
    code = ("from cotrain.tasks import build_conversation; from cotrain.boxes import BoxCodec; "
            "r={'id':'x','task':'classification','label':'a','classes':['a','b'],"
            "'images':[{'path':'p','modality':'rgb','width':9,'height':9}]}; "
            "print([build_conversation(r, image_root='.', resized_sizes=[(28,28)], codec=BoxCodec('abs'), seed=3,"
            " epoch=1, index=i).meta['template'] for i in range(12)])")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": s, "PATH": ""}).stdout for s in ("1", "2")}
    assert len(outs) == 1


def test_captioning_prompts_scene_ir_aware_and_dual():
    scene = {texts(build(rec("captioning"), index=i).messages[0]) for i in range(30)}
    ir = {texts(build(rec("captioning", images=(IR,), caption_style="ir_aware"), index=i).messages[0])
          for i in range(30)}
    assert scene and ir and not scene & ir
    assert all("thermal" in t or "infrared" in t for t in ir)
    dual = build(rec("captioning", images=(RGB, IR)), index=2)
    first = dual.messages[0]["content"]
    assert first[:2] == [{"type": "image", "index": 0}, {"type": "image", "index": 1}]
    assert "optical (RGB)" in first[2]["text"] and "infrared" in first[2]["text"]
    assert [i["abs_path"] for i in dual.images] == ["/data/rs/scenes/a.png", "/data/rs/scenes/a_ir.png"]


def test_conversation_placeholders_and_box_refs():
    r = rec("conversation", images=(RGB, IR), turns=[
        {"role": "user", "text": "Compare <image> with <image>: what is at <box>0</box>?"},
        {"role": "assistant", "text": "A ship."}])
    conv = build(r, box_format="hbb")
    assert conv.messages[0]["content"] == [
        {"type": "text", "text": "Compare"}, {"type": "image", "index": 0}, {"type": "text", "text": "with"},
        {"type": "image", "index": 1}, {"type": "text", "text": ": what is at [45, 22, 134, 112]?"}]
    no_placeholder = build(rec("conversation", turns=[{"role": "user", "text": "Describe it."},
                                                      {"role": "assistant", "text": "Fields."}]))
    assert no_placeholder.messages[0]["content"][0] == {"type": "image", "index": 0}


def test_classes_option_system_prompt_and_prompt_only():
    r = {k: v for k, v in rec("detection").items() if k != "classes"}
    with pytest.raises(RecordError, match="classes"):
        build(r)
    conv = build(r, classes=["car", "ship", "plane"], system_prompt="You are an RS expert.")
    assert "car, ship, plane" in texts(conv.messages[1])
    assert conv.messages[0] == {"role": "system", "content": [{"type": "text", "text": "You are an RS expert."}]}
    prompt = prompt_only(conv)
    assert [m["role"] for m in prompt.messages] == ["system", "user"] and len(conv.messages) == 3
    assert prompt.target == conv.target and prompt.images == conv.images


def test_empty_detection_and_bad_options():
    conv = build(rec("detection", objects=[]))
    assert final_answer(conv) == "There are none."
    with pytest.raises(ConfigError, match="box_format"):
        build(rec("grounding"), box_format="rbox")
    with pytest.raises(ConfigError, match="prompt_style"):
        build(rec("grounding"), prompt_style="xml")
    with pytest.raises(ValueError, match="resized"):
        build_conversation(rec("vqa"), image_root=".", resized_sizes=[], codec=BoxCodec("abs"), seed=0, epoch=0,
                           index=0)
    with pytest.raises(ValueError, match="seed"):
        build(rec("vqa"), seed=-1)


def test_detection_answer_by_hand_and_multi_image_objects_refused():
    from cotrain.errors import RecordError

    r = rec("detection", objects=[{"label": "car", "hbb": [500, 250, 600, 300]},
                                  {"label": "car", "hbb": [100, 50, 300, 250]}], classes=["car"])
    # 1000x500 -> 448x224, scale 0.448: [100,50,300,250] -> [44.8,22.4,134.4,112] -> [45,22,134,112];
    # [500,250,600,300] -> [224,112,268.8,134.4] -> [224,112,269,134]; top-most first
    assert final_answer(build(r, box_format="hbb")) == "[45, 22, 134, 112] car\n[224, 112, 269, 134] car"
    two = rec("detection", images=(RGB, IR), objects=[{"label": "car", "hbb": [1, 1, 20, 20], "image": 1}],
              classes=["car"])
    with pytest.raises(RecordError, match="image other than the first"):
        build(two, box_format="hbb")


def test_grounding_as_a_point_and_point_refused_where_boxes_need_extent():
    # 1000x500 -> 448x224 (scale 0.448): the record's point (150, 100) -> (67.2, 44.8) -> [67, 45]; without a
    # point, the target's centre (200, 150) -> (89.6, 67.2) -> [90, 67]
    conv = build(rec("grounding", point=[150, 100]), box_format="point")
    assert final_answer(conv) == "[67, 45]" and "point [x, y]" in texts(conv.messages[0])
    assert final_answer(build(rec("grounding"), box_format="point")) == "[90, 67]"
    json_answer = final_answer(build(rec("grounding"), box_format="point", prompt_style="json"))
    assert '"point_2d": [90, 67]' in json_answer
    for task in ("detection", "conversation"):
        with pytest.raises(RecordError, match="box_format point"):
            build(rec(task), box_format="point")
