"""Held-out evaluation of a trained model on canonical records (the demo-level harness).

Builds prompts with the SAME task builder, resolution and box codec as training, generates
greedily with HF ``generate`` in left-padded batches, parses answers and scores them:

- classification: strict match of the normalised answer against the label (case, spaces,
  hyphens/underscores and a trailing full stop are normalised; no "contains" leniency);
- vqa / zoom_vqa: normalised exact match;
- mcq: the single option letter (or option text) that can be extracted unambiguously;
- grounding: Acc@0.5 and mean IoU of the parsed box, mapped back to original pixels.

An empty or unparseable answer is scored wrong and counted, never raises. Other tasks
(detection, captioning) are listed with their prediction counts only; their metrics live in
``detection/`` and the evaluation harness.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from shapely.geometry import Polygon
from tqdm.auto import tqdm

from cotrain.boxes import order_quad
from cotrain.data.dataset import LoadedDataset, SampleBuilder, read_record
from cotrain.errors import BadRecordError

log = logging.getLogger(__name__)

_SCORED_TASKS = ("classification", "vqa", "zoom_vqa", "mcq", "grounding")


def normalise_answer(text: str) -> str:
    """Lower-case, unify separators, drop surrounding spaces/quotes and a trailing full stop."""
    t = text.strip().lower()
    t = re.sub(r"[_\-]+", " ", t)
    t = re.sub(r"\s+", " ", t)
    return t.strip(" .\"'")


def extract_choice(text: str, choices: list[str]) -> int | None:
    """Index of the option the answer names, or None when none or several can be read from it.

    Accepted: exactly one option text; a bare letter (``B``, ``B.``, ``(B)``, ``B)``); or a
    letter followed by that same option's text (``B. forest``). Anything else (``A river`` when
    "A river" is not option A's text, ``I am not sure``, ``C and D``) extracts nothing.
    """
    t = text.strip()
    norm = normalise_answer(t)
    hits = [i for i, c in enumerate(choices) if normalise_answer(c) == norm]
    if len(hits) == 1:
        return hits[0]
    letters = [chr(ord("A") + i) for i in range(len(choices))]
    m = re.fullmatch(r"\(?([A-Z])\)?[.:)]?", t)
    if m and m.group(1) in letters:
        return letters.index(m.group(1))
    m = re.fullmatch(r"\(?([A-Z])\)?[.:)]?\s+(.+)", t, flags=re.S)
    if m and m.group(1) in letters:
        i = letters.index(m.group(1))
        if normalise_answer(m.group(2)) == normalise_answer(choices[i]):
            return i
    return None


def _polygon(box: dict) -> Polygon:
    if "quad" in box:
        # records may list quad vertices in any order; an unordered quad is a bow-tie polygon
        q = order_quad(box["quad"])
        return Polygon([(q[0], q[1]), (q[2], q[3]), (q[4], q[5]), (q[6], q[7])])
    x1, y1, x2, y2 = box["hbb"]
    return Polygon([(x1, y1), (x2, y1), (x2, y2), (x1, y2)])


def box_iou(a: dict, b: dict) -> float:
    """IoU of two boxes given as {"hbb": [...]} or {"quad": [...]} (exact polygon IoU)."""
    pa, pb = _polygon(a), _polygon(b)
    if not pa.is_valid or not pb.is_valid or pa.area <= 0 or pb.area <= 0:
        return 0.0
    inter = pa.intersection(pb).area
    return float(inter / (pa.area + pb.area - inter))


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


def score(record: dict, conv: Any, response: str, builder: SampleBuilder, box_format: str) -> tuple[bool | None, dict]:
    """Score one response; returns (correct or None when the task is not scored here, details)."""
    task = record["task"]
    if task == "classification":
        ok = normalise_answer(response) == normalise_answer(record["label"])
        return ok, {"label": record["label"]}
    if task in ("vqa", "zoom_vqa"):
        return normalise_answer(response) == normalise_answer(str(record["answer"])), {"answer": record["answer"]}
    if task == "mcq":
        idx = extract_choice(response, record["choices"])
        return idx == record["answer"], {"extracted": idx, "answer": record["answer"],
                                         "n_choices": len(record["choices"])}
    if task == "grounding":
        img = conv.images[int(record["target"].get("image", 0))]
        orig = (int(img["width"]), int(img["height"]))
        h, w = img["resized"]
        values = builder.codec.parse(response, box_format)
        if values is None:
            return False, {"iou": 0.0, "parsed": False}
        try:
            pred = builder.codec.to_original(values, box_format, orig, (w, h))
            iou = box_iou(pred, record["target"])
        except (ValueError, TypeError, IndexError):
            return False, {"iou": 0.0, "parsed": False}
        return iou >= 0.5, {"iou": iou, "parsed": True, "pred_box": pred}
    return None, {}


@torch.no_grad()
def generate_batch(model, processor, samples: list[dict], max_new_tokens: int) -> list[str]:
    """Greedy generation for already-encoded prompts; returns the decoded new text of each."""
    from cotrain.data.collator import PaddingCollator, model_inputs

    tok = processor.tokenizer
    collate = PaddingCollator(pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                              padding_side="left")
    batch = collate(samples)
    inputs = {k: v.to(model.device) if torch.is_tensor(v) else v for k, v in model_inputs(batch).items()}
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                         pad_token_id=collate.pad_token_id, eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"))
    new = out[:, inputs["input_ids"].shape[1]:]
    return [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]


def generate_responses(model, processor, builder: SampleBuilder, ld: LoadedDataset, *, max_samples: int,
                       batch_size: int, max_new_tokens: int, skips: Counter | None = None):
    """Greedy responses to the first ``max_samples`` records of ``ld``: a list of (record, conversation, text).

    Prompts are built exactly as in training (epoch 0, record index as the template index); records
    whose images are missing or corrupt are counted in ``skips`` and left out.
    """
    model.eval()
    items: list[tuple[dict, Any, dict]] = []
    for i in range(min(max_samples, len(ld.records))):
        try:
            rec = read_record(ld, i)  # a lazily read record that fails validation is a counted skip
            conv = builder.conversation(rec, ld, 0, i)
            sample = builder.encode(conv, ld, prompt=True)
        except BadRecordError as e:
            if skips is not None:
                skips[e.reason] += 1
            log.warning("eval skip (%s): %s", e.reason, e)
            continue
        items.append((rec, conv, sample))
    out = []
    for start in tqdm(range(0, len(items), batch_size), desc=f"generate {ld.cfg.name}", leave=False):
        chunk = items[start:start + batch_size]
        responses = generate_batch(model, processor, [c[2] for c in chunk], max_new_tokens)
        out.extend((rec, conv, resp) for (rec, conv, _), resp in zip(chunk, responses))
    return out


def user_text(conv: Any) -> str:
    """The text of the user turns of a conversation (what was asked)."""
    return " ".join(p["text"] for m in conv.messages if m["role"] == "user"
                    for p in m["content"] if p.get("type") == "text")


def evaluate_datasets(model, processor, builder: SampleBuilder, datasets: list[LoadedDataset], *,
                      max_samples: int, batch_size: int, max_new_tokens: int) -> tuple[dict, list[Prediction]]:
    """Evaluate each dataset; returns (metrics per dataset, predictions)."""
    metrics: dict[str, dict] = {}
    preds: list[Prediction] = []
    for ld in datasets:
        skips: Counter = Counter()
        ds_preds = []
        for rec, conv, resp in generate_responses(model, processor, builder, ld, max_samples=max_samples,
                                                  batch_size=batch_size, max_new_tokens=max_new_tokens, skips=skips):
            ok, details = score(rec, conv, resp, builder, ld.cfg.box_format)
            ds_preds.append(Prediction(ld.cfg.name, str(rec["id"]), rec["task"], user_text(conv), resp, ok, details))
        metrics[ld.cfg.name] = summarise(ld, ds_preds, skips)
        preds.extend(ds_preds)
    return metrics, preds


def summarise(ld: LoadedDataset, preds: list[Prediction], skips: Counter) -> dict:
    """Per-dataset numbers, with chance / majority baselines; per task when a dataset mixes tasks."""
    tasks = sorted({p.task for p in preds}) or [ld.cfg.task or "unknown"]
    per_task = {t: _summarise_task(ld, t, [p for p in preds if p.task == t]) for t in tasks}
    if len(per_task) == 1:
        out = next(iter(per_task.values()))
    else:
        scored = [p for p in preds if p.correct is not None]
        out = {"task": "mixed", "n": len(preds), "by_task": per_task,
               "empty_responses": sum(1 for p in preds if not p.response.strip())}
        if scored:
            out["accuracy"] = sum(p.correct for p in scored) / len(scored)
    out["skipped"] = dict(skips)
    return out


def _summarise_task(ld: LoadedDataset, task: str, preds: list[Prediction]) -> dict:
    scored = [p for p in preds if p.correct is not None]
    out: dict[str, Any] = {"task": task, "n": len(preds),
                           "empty_responses": sum(1 for p in preds if not p.response.strip())}
    if scored:
        out["accuracy"] = sum(p.correct for p in scored) / len(scored)
    if task == "classification":
        classes = ld.classes or sorted({p.details["label"] for p in preds})
        out["classes"] = len(classes)
        out["chance"] = 1.0 / len(classes)
    if task in ("classification", "vqa", "zoom_vqa") and preds:
        # share of the most common answer: what "always say X" would score on this split
        key = "label" if task == "classification" else "answer"
        answers = Counter(normalise_answer(str(p.details[key])) for p in preds)
        out["majority_baseline"] = answers.most_common(1)[0][1] / len(preds)
    if task == "mcq" and preds:
        out["chance"] = sum(1.0 / p.details["n_choices"] for p in preds) / len(preds)
        out["instruction_following"] = sum(1 for p in preds if p.details.get("extracted") is not None) / len(preds)
    if task == "grounding" and preds:
        out["mean_iou"] = sum(p.details.get("iou", 0.0) for p in preds) / len(preds)
        out["parse_rate"] = sum(1 for p in preds if p.details.get("parsed")) / len(preds)
    return out


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
    from cotrain.data.dataset import load_dataset
    from cotrain.data.encoder import ChatEncoder
    from cotrain.model.loader import load_model_and_processor

    model, processor, family = load_model_and_processor(model_dir)
    data_cfg = DataConfig(seed=seed, min_pixels=min_pixels or family.default_min_pixels,
                          max_pixels=max_pixels or 256 * family.factor ** 2)
    ds = DatasetConfig(name=os.path.splitext(os.path.basename(records))[0], records=records, image_root=image_root,
                       box_format=box_format, prompt_style=prompt_style)
    ld = load_dataset(ds)
    builder = SampleBuilder(ChatEncoder(processor, family), family, data_cfg)
    skips: Counter = Counter()
    rows = generate_responses(model, processor, builder, ld, max_samples=max_samples, batch_size=batch_size,
                              max_new_tokens=max_new_tokens, skips=skips)
    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        for rec, conv, resp in rows:
            img = conv.images[0]
            f.write(json.dumps({"id": str(rec["id"]), "task": rec["task"], "prompt": user_text(conv), "response": resp,
                                "resized": list(img["resized"]), "orig_wh": [img["width"], img["height"]],
                                "box_convention": family.box_convention}) + "\n")
    os.replace(tmp, out_path)
    if skips:
        log.warning("skipped records: %s", dict(skips))
    return len(rows)
