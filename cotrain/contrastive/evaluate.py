"""Tri-modal retrieval: embeddings computed once, six directions, R@1/5/10 and their mean (FusionRS table).

Directions (query -> items): IR->text, text->IR, RGB->IR, IR->RGB, RGB->text, text->RGB. Keys are
``<query>2<items>_r@<k>`` in percent, ``mean_recall`` the mean of the 18 numbers and
``chance_mean_recall`` what random scores give (``cotrain.metrics.retrieval.chance_recall``).

Texts: RGB<->text uses every record's ``captions``; IR<->text uses its ``ir_captions`` (``ir_texts``:
``auto`` = ir_captions when every record has them, else captions; or ``captions`` / ``ir_captions``).
Several captions per image are handled both ways: an image query hits when ANY of its captions is in
the top k; every caption is a query whose relevant item is its image. A caption string shared by
several images is ONE text item relevant to each of them (counted as ``duplicate_captions``), so a
duplicate neither counts twice nor turns a correct match into a miss. RGB<->IR: the twin is the one
relevant item. Ties are pessimistic (``cotrain.metrics.retrieval``).

Records whose images cannot be read are counted skips (by reason), with their captions left out.
Must not train.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from cotrain.errors import BadRecordError, ConfigError

log = logging.getLogger("cotrain")

DIRECTIONS = (("ir", "text"), ("text", "ir"), ("rgb", "ir"), ("ir", "rgb"), ("rgb", "text"), ("text", "rgb"))
KS = (1, 5, 10)
NAMES = {"ir": "IR", "rgb": "RGB", "text": "Text"}


def text_pool(captions: list[list[str]]) -> tuple[list[str], list[set[int]], int]:
    """(unique texts, the images each belongs to, duplicate occurrences merged) of per-image caption lists."""
    index: dict[str, int] = {}
    owners: list[set[int]] = []
    duplicates = 0
    for i, caps in enumerate(captions):
        for c in caps:
            key = " ".join(c.split())
            if key in index:
                duplicates += 1
                owners[index[key]].add(i)
            else:
                index[key] = len(owners)
                owners.append({i})
    return list(index), owners, duplicates


def retrieval_scores(rgb: np.ndarray, ir: np.ndarray, texts: np.ndarray, owners: list[set[int]],
                     ir_texts: np.ndarray, ir_owners: list[set[int]], chunk: int = 1024) -> dict:
    """The six directions from L2-normalised embeddings (rows: images; text rows with their owner sets)."""
    from cotrain.metrics.retrieval import chance_recall, embedding_recall

    n = rgb.shape[0]
    of_image = {"text": [set() for _ in range(n)], "ir_text": [set() for _ in range(n)]}
    for key, own in (("text", owners), ("ir_text", ir_owners)):
        for t, imgs in enumerate(own):
            for i in imgs:
                of_image[key][i].add(t)
    twins = [{i} for i in range(n)]
    runs = {
        ("ir", "text"): (ir, ir_texts, of_image["ir_text"]), ("text", "ir"): (ir_texts, ir, ir_owners),
        ("rgb", "ir"): (rgb, ir, twins), ("ir", "rgb"): (ir, rgb, twins),
        ("rgb", "text"): (rgb, texts, of_image["text"]), ("text", "rgb"): (texts, rgb, owners),
    }
    out: dict = {}
    chance = []
    for (q, i) in DIRECTIONS:
        queries, items, pos = runs[(q, i)]
        got = embedding_recall(queries, items, pos, KS, chunk)
        out.update({f"{q}2{i}_r@{k}": 100.0 * got[f"r@{k}"] for k in KS})
        chance += list(chance_recall(items.shape[0], [len(p) for p in pos], KS).values())
    out["mean_recall"] = sum(out[f"{q}2{i}_r@{k}"] for q, i in DIRECTIONS for k in KS) / 18
    out["chance_mean_recall"] = 100.0 * sum(chance) / len(chance)
    return out


@torch.no_grad()
def embed_texts_batched(model, processor, texts: list[str], batch_size: int = 64) -> np.ndarray:
    from cotrain.contrastive.model import embed_texts

    device = next(model.parameters()).device
    out = []
    for s in range(0, len(texts), batch_size):
        ids, mask = processor.texts(texts[s:s + batch_size])
        out.append(embed_texts(model, ids.to(device), mask.to(device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1), dtype=np.float32)


@torch.no_grad()
def embed_record_images(model, processor, records: list[dict], image_root: str | Path, pick, *, batch_size: int = 32,
                        progress: bool = True, desc: str = "embedding images") -> tuple[np.ndarray, list[int], Counter]:
    """(features (kept, k, d), indices of the kept records, skips by reason): the k image entries ``pick(record)``
    names, embedded in batches; a record with an unreadable image is skipped whole (counted, logged)."""
    from cotrain.contrastive.data import open_record_images
    from cotrain.contrastive.model import embed_images

    device = next(model.parameters()).device
    feats, kept, skipped, pending = [], [], Counter(), []
    k = 1

    def flush():
        if pending:
            emb = embed_images(model, processor.images(pending).to(device)).float().cpu().numpy()
            feats.append(emb.reshape(-1, k, emb.shape[-1]))
            pending.clear()

    for i, rec in enumerate(tqdm(records, desc=desc, disable=not progress, unit="record")):
        entries = pick(rec)
        k = len(entries)
        try:
            pending.extend(open_record_images(rec, image_root, entries))
        except BadRecordError as e:
            skipped[e.reason] += 1
            log.warning("%s: skipping %s (%s)", desc, rec.get("id"), e)
            continue
        kept.append(i)
        if len(pending) >= batch_size * k:
            flush()
    flush()
    return (np.concatenate(feats) if feats else np.zeros((0, k, 1), np.float32)), kept, skipped


def embed_triplets(model, processor, records: list[dict], image_root: str | Path, *, batch_size: int = 32,
                   progress: bool = True) -> tuple[np.ndarray, np.ndarray, list[dict], Counter]:
    """(rgb, ir, kept records, skips by reason): both images of every readable record, embedded once."""
    feats, kept, skipped = embed_record_images(model, processor, records, image_root, lambda r: r["images"],
                                               batch_size=batch_size, progress=progress)
    if not kept:
        return np.zeros((0, 1), np.float32), np.zeros((0, 1), np.float32), [], skipped
    return feats[:, 0], feats[:, 1], [records[i] for i in kept], skipped


def _ir_caption_lists(records: list[dict], ir_texts: str) -> tuple[list[list[str]], str]:
    have = all(r.get("ir_captions") for r in records)
    if ir_texts == "auto":
        ir_texts = "ir_captions" if have else "captions"
    if ir_texts == "ir_captions" and not have:
        missing = [r["id"] for r in records if not r.get("ir_captions")]
        raise ConfigError(f"ir_texts=ir_captions but {len(missing)} records have none (e.g. {missing[:3]}); use "
                          "ir_texts=captions or auto")
    if ir_texts not in ("captions", "ir_captions"):
        raise ConfigError(f"ir_texts={ir_texts!r}; use auto, captions or ir_captions")
    return [r[ir_texts] for r in records], ir_texts


def evaluate_triplets(model, processor, records: list[dict], image_root: str | Path, *, ir_texts: str = "auto",
                      batch_size: int = 32, progress: bool = True) -> dict:
    """Retrieval metrics of one set of triplet records (see the module docstring)."""
    bad = [r["id"] for r in records if r.get("task") != "triplet"]
    if bad:
        raise ConfigError(f"tri-modal retrieval needs triplet records; {len(bad)} are not (e.g. {bad[:3]})")
    was_training = model.training
    model.eval()
    rgb, ir, kept, skipped = embed_triplets(model, processor, records, image_root, batch_size=batch_size,
                                            progress=progress)
    out: dict = {"task": "triplet", "metric": "triplet_retrieval", "n": len(kept), "skipped": dict(skipped)}
    if len(kept) >= 2:
        texts, owners, dup = text_pool([r["captions"] for r in kept])
        ir_lists, used = _ir_caption_lists(kept, ir_texts)
        ir_pool, ir_owners, ir_dup = text_pool(ir_lists)
        out.update(retrieval_scores(rgb, ir, embed_texts_batched(model, processor, texts), owners,
                                    embed_texts_batched(model, processor, ir_pool), ir_owners))
        out.update(texts=len(texts), ir_texts=len(ir_pool), ir_text_field=used, duplicate_captions=dup + ir_dup)
    model.train(was_training)
    return out


def retrieval_table(results: dict[str, dict]) -> str:
    """Markdown in the FusionRS paper's shape: one row per set, R@1/5/10 per direction, then mR."""
    head = " | ".join(f"{NAMES[q]}->{NAMES[i]} R@{k}" for q, i in DIRECTIONS for k in KS)
    lines = [f"| set | n | {head} | mR | random mR |", "|---|---|" + "---|" * (len(DIRECTIONS) * len(KS) + 2)]
    for name, m in results.items():
        if "mean_recall" not in m:
            lines.append(f"| {name} | {m.get('n', 0)} | " + "- | " * (len(DIRECTIONS) * len(KS) + 2))
            continue
        cells = " | ".join(f"{m[f'{q}2{i}_r@{k}']:.1f}" for q, i in DIRECTIONS for k in KS)
        lines.append(f"| {name} | {m['n']} | {cells} | {m['mean_recall']:.2f} | {m['chance_mean_recall']:.2f} |")
    return "\n".join(lines) + "\n"


def evaluate_clip(benchmarks: list, model_dir: str | Path, out_dir: str | Path, *, max_samples: int | None = None,
                  batch_size: int = 32, progress: bool = True) -> dict:
    """``cotrain eval`` for a CLIP checkpoint: every benchmark's retrieval metrics, metrics.json, report.md."""
    from cotrain.contrastive.model import load_clip
    from cotrain.eval.summary import report_markdown
    from cotrain.files import write_json_atomic, write_text_atomic
    from cotrain.records import iter_records

    model, processor = load_clip(model_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for b in benchmarks:
        if b.metric != "triplet_retrieval":
            raise ConfigError(f"benchmark {b.name!r} ({b.metric}) needs a vision-language model; a CLIP checkpoint "
                              "runs triplet retrieval benchmarks (fusionrs_retrieval, syn_triplet_retrieval)")
        records = list(iter_records(b.records))
        limit = max_samples or b.options.get("max_samples")
        records = records[:limit] if limit else records
        results[b.name] = {"benchmark": b.name, **evaluate_triplets(
            model, processor, records, b.image_root, ir_texts=b.options.get("ir_texts", "auto"),
            batch_size=batch_size, progress=progress)}
        log.info("%s: mean R %s over %d triplets", b.name, results[b.name].get("mean_recall"), results[b.name]["n"])
    write_json_atomic(out / "metrics.json", results)
    write_text_atomic(out / "report.md", report_markdown(results, {"model": str(model_dir)})
                      + "\n## Retrieval (FusionRS table)\n\n" + retrieval_table(results))
    return results
