"""Large-image VQA evaluation of the zoom chain: three modes on the same questions.

- ``overview``: the question with the overview only (what a model without zooming sees);
- ``chain``: the zoom-in chain (the model chooses where to look);
- ``oracle``: the ground-truth evidence regions are shown (as zoom turns written by us, exactly like
  the training data) before the model answers; the gap between ``chain`` and ``oracle`` is
  localisation error, the gap between ``oracle`` and 100% is recognition error.

Inputs: canonical ``zoom_vqa`` records (``question, answer, regions``; the category is the record's
``category`` or its id's last ``-`` part, the source its ``source`` or the file name) or LRS-VQA-style
JSONL (``question_id, image, text, ground_truth, category``; the source is the question id's prefix
before ``_``, as the LRS-VQA scripts group it). LRS-VQA rows carry no evidence regions, so ``oracle``
is skipped for them (reported). Scoring is a strict normalised match (an option letter or its
text when the question has choices); the LRS-VQA script's WordNet synonym leniency is not used.
Reported per mode: accuracy overall, per category, per source, the average over categories, and
visual tokens per question against the full-resolution equivalent.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from cotrain.errors import ConfigError
from cotrain.geometry.quads import enclosing_hbb
from cotrain.metrics.answers import extract_choice, vqa_match
from zoom_chain import protocol as P
from zoom_chain.controller import ChainConfig, ChainResult, Question, ZoomChain

log = logging.getLogger(__name__)

MODES = ("overview", "chain", "oracle")


@dataclass
class Item:
    """One evaluation question with its truth."""

    question: Question
    answer: str
    category: str
    source: str
    regions: list[list[float]] | None
    image_wh: tuple[int, int] | None


def load_items(path: str | Path, image_root: str | Path | None = None) -> list[Item]:
    """Items of a canonical zoom_vqa records file or an LRS-VQA-style JSONL."""
    path = Path(path)
    root = Path(image_root) if image_root else path.parent
    items = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}:{lineno}: not JSON ({e.msg})") from None
            try:
                if "images" in r:
                    img = r["images"][0]
                    q = Question(str(r["id"]), str(root / img["path"]), r.get("question", ""), r.get("choices"))
                    answer = r["answer"] if not r.get("choices") or not isinstance(r["answer"], int) \
                        else r["choices"][r["answer"]]
                    regions = [enclosing_hbb(reg)["hbb"] for reg in r.get("regions", [])]
                    items.append(Item(q, str(answer), str(r.get("category") or str(r["id"]).rsplit("-", 1)[-1]),
                                      str(r.get("source") or path.stem), regions or None,
                                      (int(img["width"]), int(img["height"]))))
                elif "image" in r:
                    qid = str(r.get("question_id", lineno))
                    q = Question(qid, str(root / r["image"]), r.get("text", ""))
                    items.append(Item(q, str(r["ground_truth"]), str(r.get("category", "all")), qid.split("_")[0],
                                      None, None))
                else:
                    raise ConfigError("neither 'images' (canonical zoom_vqa record) nor 'image' (LRS-VQA row)")
            except (KeyError, TypeError, IndexError) as e:
                raise ConfigError(f"{path}:{lineno}: missing or malformed field {e}") from None
            except ConfigError as e:
                raise ConfigError(f"{path}:{lineno}: {e}") from None
    return items


def correct(item: Item, answer: str) -> bool:
    """Strict match: normalised text, or the unambiguous option when the question has choices."""
    if item.question.choices:
        idx = extract_choice(answer, item.question.choices)
        return idx is not None and item.question.choices[idx] == item.answer
    return vqa_match(answer, item.answer)


def oracle_windows(item: Item, max_steps: int, *, factor: int, max_pixels: int) -> list[list[int]]:
    """The windows the training data zooms into for this item's evidence regions."""
    return P.evidence_windows(item.regions, item.image_wh, factor=factor, max_pixels=max_pixels, max_steps=max_steps)


def summarise(items: list[Item], results: list[ChainResult]) -> dict:
    """Accuracy overall / per category / per source, average over categories, tokens, statuses."""
    ok = [(it, r) for it, r in zip(items, results) if r.status != "error"]
    hits = [correct(it, r.answer) for it, r in ok]
    out: dict = {"n": len(ok), "errors": sum(r.status == "error" for r in results)}
    if not ok:
        return out
    out["accuracy"] = sum(hits) / len(ok)
    for key in ("category", "source"):
        groups = defaultdict(list)
        for (it, _), h in zip(ok, hits):
            groups[getattr(it, key)].append(h)
        out[f"by_{key}"] = {k: sum(v) / len(v) for k, v in sorted(groups.items())}
    out["average_over_categories"] = sum(out["by_category"].values()) / len(out["by_category"])
    out["visual_tokens_mean"] = sum(r.visual_tokens for _, r in ok) / len(ok)
    out["full_resolution_tokens_mean"] = sum(r.full_resolution_tokens for _, r in ok) / len(ok)
    out["token_share"] = out["visual_tokens_mean"] / out["full_resolution_tokens_mean"]
    out["zooms_mean"] = sum(sum(s.action == "zoom" for s in r.steps) for _, r in ok) / len(ok)
    out["status"] = dict(Counter(r.status for _, r in ok))
    out["events"] = dict(sum((r.events for _, r in ok), Counter()))
    return out


def evaluate_zoom(backend, items: list[Item], out_dir: str | Path, *, modes=MODES, config: ChainConfig | None = None,
                  progress: bool = False) -> dict:
    """Run each mode on the same items; write ``<mode>.jsonl`` traces, ``metrics.json``, ``report.md``."""
    from cotrain.files import write_json_atomic

    cfg = config or ChainConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ConfigError(f"unknown mode(s) {unknown}; modes: {', '.join(MODES)}")
    metrics: dict = {}
    for mode in modes:
        if mode == "oracle":
            usable = [it for it in items if it.regions]
            if not usable:
                metrics[mode] = {"skipped": "no evidence regions in these questions (LRS-VQA rows have none)"}
                continue
            questions = [Question(it.question.id, it.question.image, it.question.question, it.question.choices,
                                  oracle_windows=oracle_windows(it, cfg.max_steps, factor=backend.limits.factor,
                                                                max_pixels=cfg.crop_max_pixels or backend.limits.max_pixels))
                         for it in usable]
            run_items = usable
        else:
            questions, run_items = [it.question for it in items], items
        mode_cfg = ChainConfig(**{**vars(cfg), "zoom": mode != "overview"})
        results = ZoomChain(backend, mode_cfg).run(questions, progress=progress)
        with open(out / f"{mode}.jsonl", "w", encoding="utf-8") as f:
            for it, r in zip(run_items, results):
                f.write(json.dumps({**r.trace(), "truth": it.answer, "category": it.category, "source": it.source,
                                    "correct": r.status != "error" and correct(it, r.answer)}, default=str) + "\n")
        metrics[mode] = summarise(run_items, results)
        log.info("zoom eval %-8s %s", mode, {k: v for k, v in metrics[mode].items() if not isinstance(v, dict)})
    write_json_atomic(out / "metrics.json", metrics)
    (out / "report.md").write_text(report_markdown(metrics), encoding="utf-8")
    return metrics


def report_markdown(metrics: dict) -> str:
    lines = ["# Zoom-chain evaluation", "",
             "| mode | n | accuracy | average over categories | visual tokens / question | full-resolution tokens | share | zooms |",
             "|---|---|---|---|---|---|---|---|"]
    for mode, m in metrics.items():
        if "accuracy" not in m:
            lines.append(f"| {mode} | - | - | - | - | - | - | {m.get('skipped', 'no answers')} |")
            continue
        lines.append(f"| {mode} | {m['n']} | {m['accuracy']:.3f} | {m['average_over_categories']:.3f} | "
                     f"{m['visual_tokens_mean']:.0f} | {m['full_resolution_tokens_mean']:.0f} | {m['token_share']:.2%} | "
                     f"{m['zooms_mean']:.2f} |")
    cats = sorted({c for m in metrics.values() for c in m.get("by_category", {})})
    if cats:
        lines += ["", "| mode | " + " | ".join(cats) + " |", "|---|" + "---|" * len(cats)]
        for mode, m in metrics.items():
            if "by_category" in m:
                lines.append(f"| {mode} | " + " | ".join(f"{m['by_category'].get(c, float('nan')):.3f}" for c in cats) + " |")
    lines += ["", "Strict normalised answer match. Events (clipped / reversed boxes, malformed calls, step limit, "
              "budget) per mode are in metrics.json."]
    return "\n".join(lines) + "\n"
