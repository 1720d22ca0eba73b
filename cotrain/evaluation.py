"""Run-report glue and the responses-file writer used by detection evaluation.

Evaluation itself lives in ``cotrain.bench`` (the harness behind ``tools/eval.py`` and the
evaluations inside training) and ``cotrain.metrics`` (scores); answers come from the backends in
``cotrain.inference``. This module keeps what the run report and ``tools/predict.py`` need:
``Prediction`` (one evaluated record, drawn in the report), ``user_text`` and ``predict_to_jsonl``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from cotrain.metrics.answers import extract_choice, normalise_answer  # noqa: F401 - stable re-exports
from cotrain.metrics.grounding import box_iou  # noqa: F401

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    """One evaluated record."""

    dataset: str
    record_id: str
    task: str
    prompt: str
    response: str
    correct: bool | None
    details: dict = field(default_factory=dict)


def user_text(conv: Any) -> str:
    """The text of the user turns of a conversation or request (what was asked)."""
    return " ".join(p["text"] for m in conv.messages if m["role"] == "user"
                    for p in m["content"] if p.get("type") == "text")


def predict_to_jsonl(model_dir: str, records: str, image_root: str, out_path: str, *, box_format: str = "quad",
                     prompt_style: str = "plain", max_samples: int = 10**9, batch_size: int = 16,
                     max_new_tokens: int = 256, min_pixels: int | None = None, max_pixels: int | None = None,
                     seed: int = 0) -> int:
    """Generate responses for a records file with a saved model; write one JSON line per record.

    Each line: ``{"id", "task", "prompt", "response", "resized": [h, w], "orig_wh": [w, h], "box_convention"}``
    (sizes of the first image; "abs" or "norm1000"), which is what ``tools/eval_det.py`` needs to map
    boxes back to original pixels.
    Returns the number of lines written; the file is written to a temporary name and renamed.
    """
    import json
    import os

    from cotrain.config import DataConfig, DatasetConfig
    from cotrain.data.dataset import SampleBuilder, load_dataset, read_record
    from cotrain.errors import BadRecordError
    from cotrain.inference.base import GenerationRequest, SamplingParams, override_limits
    from cotrain.inference.hf import HFBackend

    backend = HFBackend.from_checkpoint(model_dir, batch_size=batch_size)
    family = backend.family
    override_limits(backend, min_pixels or family.default_min_pixels, max_pixels or 256 * family.factor ** 2)
    data_cfg = DataConfig(seed=seed, min_pixels=backend.limits.min_pixels, max_pixels=backend.limits.max_pixels,
                          max_length=10**9)
    ds = DatasetConfig(name=os.path.splitext(os.path.basename(records))[0], records=records, image_root=image_root,
                       box_format=box_format, prompt_style=prompt_style)
    ld = load_dataset(ds)
    builder = SampleBuilder(None, family, data_cfg)
    skips: Counter = Counter()
    convs, requests = [], []
    for i in range(min(max_samples, len(ld.records))):
        try:
            rec = read_record(ld, i)
            conv = builder.conversation(rec, ld, 0, i)
        except BadRecordError as e:
            skips[e.reason] += 1
            continue
        convs.append((rec, conv))
        requests.append(GenerationRequest.from_conversation(conv, SamplingParams(max_new_tokens=max_new_tokens)))
    responses = backend.generate(requests, progress=True)
    tmp = out_path + ".tmp"
    n = 0
    with open(tmp, "w") as f:
        for (rec, conv), resp in zip(convs, responses):
            if resp.error:
                skips[resp.error] += 1
                continue
            img = conv.images[0]
            f.write(json.dumps({"id": str(rec["id"]), "task": rec["task"], "prompt": user_text(conv),
                                "response": resp.text, "resized": list(img["resized"]),
                                "orig_wh": [img["width"], img["height"]],
                                "box_convention": family.box_convention}) + "\n")
            n += 1
    os.replace(tmp, out_path)
    if skips:
        log.warning("skipped records: %s", dict(skips))
    return n
