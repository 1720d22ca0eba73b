"""Training and inference cannot diverge: a training chain and the controller's oracle chain are the same turns and pixels."""

import numpy as np
import pytest

from cotrain.config import DataConfig, DatasetConfig
from cotrain.data.dataset import LoadedDataset, SampleBuilder
from cotrain.data.synthetic import generate_demo_data
from cotrain.inference.base import GenerationResponse, load_request_images
from cotrain.resolution import PixelLimits
from cotrain.model.families import get_family
from cotrain.records import read_records
from zoom_chain.controller import ChainConfig, Question, ZoomChain
from zoom_chain.evaluate import load_items, oracle_windows
from zoom_chain.training_data import build_chain_records

LO, HI = 3136, 50176


@pytest.fixture(scope="module")
def chains(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    generate_demo_data(root, seed=5, n_scenes=30, n_large=1, large_size=2048, progress=False, workers=1)
    zoom = read_records(root / "records" / "syn_zoom_train.jsonl")
    out = tmp_path_factory.mktemp("chains")
    recs, skips = build_chain_records(zoom, root, out, family="qwen2_5_vl", min_pixels=LO, max_pixels=HI)
    assert not skips and recs
    return {"root": root, "zoom": zoom, "out": out, "recs": recs}


class Capture:
    """Answers at once and keeps the request it answered (the whole conversation the model saw)."""

    name = "capture"

    def __init__(self):
        self.family = get_family("qwen2_5_vl")
        self.limits = PixelLimits(LO, HI, self.family.factor)
        self.seen = {}

    def generate(self, requests, *, progress=False):
        for r in requests:
            self.seen[r.id] = r
        return [GenerationResponse(r.id, "answer", "stop", 0, 0) for r in requests]


def _flat(messages):
    """(role, [text or '<image>']) per message."""
    return [(m["role"], [p["text"] if p["type"] == "text" else "<image>" for p in m["content"]]) for m in messages]


def test_training_chain_equals_the_oracle_chain(chains):
    family = get_family("qwen2_5_vl")
    data_cfg = DataConfig(min_pixels=LO, max_pixels=HI, max_length=10**6)
    ds = DatasetConfig(name="zoom_chain", records="x", image_root=str(chains["out"]), task="conversation",
                       box_format="hbb")
    ld = LoadedDataset(ds, chains["recs"], None)
    builder = SampleBuilder(None, family, data_cfg)
    backend = Capture()
    items = {it.question.id: it for it in load_items(chains["root"] / "records" / "syn_zoom_train.jsonl", chains["root"])}
    questions = []
    for rec in chains["recs"]:
        it = items[rec["zoom_chain"]["source_id"]]
        wins = oracle_windows(it, 3, factor=family.factor, max_pixels=HI)
        assert wins == rec["zoom_chain"]["windows"]  # the same zooms: one function decides them
        questions.append(Question(rec["id"], it.question.image, it.question.question, it.question.choices,
                                  oracle_windows=wins))
    results = ZoomChain(backend, ChainConfig(token_budget=10**6, max_steps=3)).run(questions)
    assert all(r.status == "answered" for r in results)
    for i, rec in enumerate(chains["recs"]):
        conv = builder.conversation(rec, ld, 0, i)
        train_msgs = conv.messages[:-1]  # everything before the supervised answer
        req = backend.seen[rec["id"]]
        assert _flat(req.messages) == _flat(train_msgs), rec["id"]
        # the same pixels: training decodes its PNGs, inference reads the original file by windows
        train_px = builder.load_pixels(conv)
        infer_px = load_request_images(req)
        assert len(train_px) == len(infer_px)
        for a, b in zip(train_px, infer_px):
            assert a.size == b.size
            diff = np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int))
            assert diff.max() <= 1  # PNG round trip of identical arrays: exact; allow one grey level of resampling
        assert [img["resized_wh"] for img in conv.images] == [img["resized_wh"] for img in req.images]
